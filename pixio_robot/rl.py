"""Reinforcement learning on a Pixio backbone: `python -m pixio_robot.rl` (hydra, stable-baselines3).

    python -m pixio_robot.rl algo=ppo env_name=gym/Reacher-v5 total_timesteps=200000
    python -m pixio_robot.rl algo=sac env_name=metaworld/reach-v3 encoder.source=checkpoint encoder.path=...
    python -m pixio_robot.rl experiment=dmc_expert env_name=dmc/walker-walk   # state-only SAC expert

What the agent sees (`obs=`):
- `pixels` (default): the rendered frames only. `MultiInputPolicy` with `PixioFeaturesExtractor`
  (the adapter runs once per env step for the whole vectorised batch; frozen by default,
  `encoder.mode=finetune|last_k` trains it). The env's `state` vector is dropped.
- `pixels_state`: the Pixio features of the frames concatenated with the env's whole `state` vector
  (for gym/Reacher it holds the target position; for dm_control the whole observation).
- `state`: an MLP on the `state` vector only, no rendering (the dm_control experts that
  `pixio_robot.envs.experts.SB3Expert` loads).
The run log and results.json (`observation`) say which inputs, and how many dims, the agent gets.

The run directory gets `model.zip` (SB3), `agent.json` (algo, env, obs mode, encoder reference),
`best/best_model.zip` (best periodic evaluation), `eval/evaluations.json`, `checkpoints/`,
`run_state.json`, TensorBoard events and results.json; `save_path=` also copies the final zip.
Re-running the same command resumes from the newest checkpoint (Ctrl-C saves one); `resume=false`
moves the old contents aside to `previous/<time>/`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from pixio_robot.policies.encoder_adapter import AdapterConfig
from pixio_robot.rl_runs import Checkpointer, atomic_save, prepare_resume, write_state
from pixio_robot.utils.logging import get_logger

log = get_logger("pixio_robot.rl")
ALGOS = ("ppo", "sac")
OBS_MODES = ("pixels", "pixels_state", "state")
PIXEL_MODES = ("pixels", "pixels_state")
# Replay buffers hold uint8 frames; 1M of them (SB3's default) would not fit in memory.
PIXEL_SAC_DEFAULTS = {"buffer_size": 50_000, "learning_starts": 1_000}
# an encoder run at this many times the frame's side (or more) gets a warning (4x the tokens)
UPSAMPLE_WARN = 2


@dataclass
class RLConfig:
    algo: str = "ppo"  # ppo | sac
    env_name: str = "gym/Reacher-v5"
    obs: str = "pixels"  # pixels (frames only) | pixels_state (frames + state vector) | state (MLP, no rendering)
    n_envs: int = 4
    vectorization: str = "dummy"  # dummy (one process) | subproc
    total_timesteps: int = 100_000
    image_size: int = 64
    camera: str | None = None
    frame_stack: int = 1
    action_repeat: int = 1
    max_episode_steps: int | None = None
    env_options: dict[str, Any] = field(default_factory=dict)
    encoder: AdapterConfig = field(default_factory=AdapterConfig)
    share_features_extractor: bool | None = None  # default: SAC shares when frozen, PPO shares (SB3's default)
    net_arch: list[int] | None = None  # actor/critic MLP widths (SB3 defaults when null)
    algo_kwargs: dict[str, Any] = field(default_factory=dict)  # PPO/SAC keyword arguments
    eval_every: int = 10_000  # env steps between evaluations; 0: only the final one
    eval_episodes: int = 10
    checkpoint_every: int = 50_000  # env steps; 0: off (Ctrl-C still saves one)
    checkpoint_replay_buffer: bool = True  # SAC: save the replay buffer with checkpoints (resumes with it)
    resume: bool = True  # re-running into a run dir resumes from its newest checkpoint; false: move it aside
    save_path: str | None = None  # also copy the final model.zip here (e.g. experts/dmc-walker-walk.zip)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    run_dir: str | None = None
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo={self.algo!r} is not one of {ALGOS}")
        if self.obs not in OBS_MODES:
            raise ValueError(f"obs={self.obs!r} is not one of {OBS_MODES}")
        if self.n_envs < 1 or self.total_timesteps < 1:
            raise ValueError("n_envs and total_timesteps must be >= 1")
        if self.vectorization not in ("dummy", "subproc"):
            raise ValueError(f"vectorization must be dummy or subproc, got {self.vectorization!r}")


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="rl_schema", node=RLConfig)


def defines_success(env_name: str) -> bool:
    """Whether the env's `is_success` means anything (dm_control and most gym tasks define none:
    their success rate is reported as None, not 0.0)."""
    family, _, task = env_name.partition("/")
    if family == "dmc":
        return False
    if family == "gym":
        from pixio_robot.envs.gym_env import SUCCESS_DISTANCE

        return task.split("-")[0] in SUCCESS_DISTANCE
    return True


class StateOnly(gym.ObservationWrapper):
    """Expose only the `state` vector of a Dict observation (a Box, what SB3's MlpPolicy takes)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space["state"]

    def observation(self, observation):
        return observation["state"]


class PixelsOnly(gym.ObservationWrapper):
    """Keep only `pixels` of a Dict observation (obs=pixels: the agent must not see the state vector)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"pixels": env.observation_space["pixels"]})

    def observation(self, observation):
        return {"pixels": observation["pixels"]}


def env_factory(cfg: RLConfig, rank: int, seed: int):
    """A picklable-by-closure thunk building env `rank` (Monitor-wrapped for episode stats)."""

    def _make():
        from stable_baselines3.common.monitor import Monitor

        from pixio_robot.envs import make_env

        opts: dict[str, Any] = dict(image_size=cfg.image_size, camera=cfg.camera, frame_stack=cfg.frame_stack,
                                    action_repeat=cfg.action_repeat, max_episode_steps=cfg.max_episode_steps,
                                    seed=seed + rank, **cfg.env_options)
        if cfg.obs == "state":
            opts["pixels"] = False
            opts.pop("frame_stack")
            if cfg.env_name.startswith("metaworld/"):  # its default state is the 4-d hand + gripper only
                opts.setdefault("state", "full")
        env = make_env(cfg.env_name, **opts)
        if cfg.obs == "state":
            env = StateOnly(env)
        elif cfg.obs == "pixels":
            env = PixelsOnly(env)
        return Monitor(env, info_keywords=("is_success",))

    return _make


def make_vec(cfg: RLConfig, n: int, seed: int):
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [env_factory(cfg, i, seed) for i in range(n)]
    if cfg.vectorization == "subproc" and n > 1:
        return SubprocVecEnv(fns, start_method="forkserver")
    return DummyVecEnv(fns)


def _bad_kwargs(cfg: RLConfig, e: BaseException) -> ValueError:
    msg = str(e).strip() or type(e).__name__
    return ValueError(f"bad algo_kwargs for {cfg.algo.upper()} ({type(e).__name__}: {msg}); "
                      f"algo_kwargs={cfg.algo_kwargs} (the {cfg.algo.upper()} constructor's keyword arguments)")


def _policy_kwargs(cfg: RLConfig, kwargs: dict) -> tuple[str, dict, dict]:
    """(policy name, policy_kwargs, algorithm kwargs) for cfg; user policy_kwargs are merged, not replaced."""
    from pixio_robot.policies.sb3_extractor import PixioFeaturesExtractor

    policy_kwargs: dict[str, Any] = dict(kwargs.pop("policy_kwargs", {}) or {})
    if cfg.net_arch is not None:
        policy_kwargs["net_arch"] = list(cfg.net_arch)
    if cfg.obs == "state":
        return "MlpPolicy", policy_kwargs, kwargs
    if policy_kwargs.get("normalize_images", True) is False:
        raise ValueError("policy_kwargs.normalize_images=false would hand the Pixio adapter frames in 0..255 "
                         "(it expects [0,1] and normalises them itself): drop the override")
    cls = policy_kwargs.get("features_extractor_class", PixioFeaturesExtractor)
    if cls not in (PixioFeaturesExtractor, None) and cls != "PixioFeaturesExtractor":
        raise ValueError(f"policy_kwargs.features_extractor_class={cls!r}: obs={cfg.obs} uses "
                         "PixioFeaturesExtractor (use obs=state for a plain MLP)")
    user = dict(policy_kwargs.get("features_extractor_kwargs", {}) or {})
    want_state = "state" if cfg.obs == "pixels_state" else None
    if "state_key" in user and user["state_key"] != want_state:
        raise ValueError(f"policy_kwargs.features_extractor_kwargs.state_key={user['state_key']!r} contradicts "
                         f"obs={cfg.obs}: use obs=pixels (frames only) or obs=pixels_state (frames + state)")
    encoder = {**cfg.encoder.to_dict(), **dict(user.pop("encoder", {}) or {})}
    policy_kwargs.update(features_extractor_class=PixioFeaturesExtractor,
                         features_extractor_kwargs={**user, "encoder": encoder, "state_key": want_state})
    share = cfg.share_features_extractor
    if share is None:
        share = policy_kwargs.get("share_features_extractor",
                                  cfg.encoder.mode == "frozen" if cfg.algo == "sac" else True)
    policy_kwargs["share_features_extractor"] = bool(share)
    if cfg.algo == "sac":
        kwargs = {**PIXEL_SAC_DEFAULTS, **kwargs}
    return "MultiInputPolicy", policy_kwargs, kwargs


@functools.cache
def _sac_class():
    """SB3's SAC whose target-critic update skips frozen parameters. SB3 averages every parameter
    into the target (tau * online + (1 - tau) * target); for a frozen encoder the two are equal,
    yet the rounding moved ~5% of the target copy's weights by up to 2.4e-7 (measured), so the
    "frozen" encoder was not frozen in the target critic, and the averaging cost a copy of the
    encoder per gradient step (~8% of the update time with a tiny encoder)."""
    import stable_baselines3.sac.sac as sac_module
    from torch import nn

    original = sac_module.polyak_update

    def trainable_only(params, target_params, tau):
        pairs = [(p, t) for p, t in zip(params, target_params, strict=True)
                 if not (isinstance(p, nn.Parameter) and not p.requires_grad)]  # buffers (BN stats) stay
        original([p for p, _ in pairs], [t for _, t in pairs], tau)

    class PixioSAC(sac_module.SAC):
        def train(self, gradient_steps: int, batch_size: int = 64) -> None:
            sac_module.polyak_update = trainable_only  # read by SAC.train at call time
            try:
                super().train(gradient_steps, batch_size)
            finally:
                sac_module.polyak_update = original

    return PixioSAC


def algo_class(algo: str):
    """The SB3 class of `algo` (SAC with the frozen-parameter target update, see `_sac_class`)."""
    import stable_baselines3 as sb3

    return sb3.PPO if algo == "ppo" else _sac_class()


def build_agent(cfg: RLConfig, env, device: torch.device, tensorboard_log: str | None = None):
    """PPO / SAC with the Pixio extractor (obs=pixels|pixels_state) or an MLP (obs=state)."""

    from pixio_robot.policies.sb3_extractor import PixioFeaturesExtractor

    policy, policy_kwargs, kwargs = _policy_kwargs(cfg, dict(cfg.algo_kwargs))
    algo_cls = algo_class(cfg.algo)
    try:
        model = algo_cls(policy, env, policy_kwargs=policy_kwargs, seed=cfg.seed, device=device,
                         tensorboard_log=tensorboard_log, verbose=0, **kwargs)
    except (TypeError, AssertionError, ValueError) as e:
        raise _bad_kwargs(cfg, e) from e
    if cfg.algo == "ppo" and cfg.total_timesteps < model.n_steps * model.n_envs:
        log.warning("rl: total_timesteps=%d is less than one PPO rollout (n_steps %d x %d envs): SB3 will run %d; "
                    "lower it with +algo_kwargs.n_steps=...", cfg.total_timesteps, model.n_steps, model.n_envs,
                    model.n_steps * model.n_envs)
    # PPO's orthogonal init re-draws every Linear / Conv of the extractor, the Pixio backbone too:
    # give the backbone back its pretrained (or seeded) weights; the heads keep SB3's init
    restored = [m.restore_encoder() for m in model.policy.modules() if isinstance(m, PixioFeaturesExtractor)]
    if any(restored):
        log.info("rl: restored the encoder weights that %s's init had overwritten", cfg.algo.upper())
    return model


def _extractor(model):
    return getattr(model.policy, "features_extractor", None) or \
        getattr(getattr(model.policy, "actor", None), "features_extractor", None)


def describe_observation(cfg: RLConfig, model) -> dict:
    """What the agent's policy gets as input: pixels shape, state dims, feature dims."""
    space = model.observation_space
    if cfg.obs == "state":
        dim = int(np.prod(space.shape))
        return {"obs": "state", "pixels": None, "state_dim": dim, "features_dim": dim,
                "text": f"the state vector only ({dim} dims), no pixels"}
    ext = _extractor(model)
    pix = [cfg.image_size, cfg.image_size, 3]  # what the env renders (SB3 may hand it over channels-first)
    state_dim = int(np.prod(space["state"].shape)) if ext.state_key is not None else 0
    frames = f"{ext.n_frames} frame(s) of {cfg.image_size}x{cfg.image_size} RGB"
    text = (f"pixels ({frames}) -> {ext.n_frames * ext.adapter.out_dim} Pixio features "
            f"({ext.adapter.out_dim} per frame at {ext.adapter.image_size} px)")
    text += f" + the env's state vector ({state_dim} dims)" if state_dim else ", no state vector"
    return {"obs": cfg.obs, "pixels": pix, "state_dim": state_dim, "features_dim": int(ext.features_dim),
            "text": f"{text} = {ext.features_dim}-d policy input"}


def _warn_upsampling(cfg: RLConfig, model) -> None:
    if cfg.obs == "state":
        return
    ad = _extractor(model).adapter
    if ad.image_size >= UPSAMPLE_WARN * cfg.image_size:
        log.warning("rl: %d px frames are upsampled to the encoder's %d px input: %.0fx the tokens (and compute) "
                    "for no extra detail; set encoder.image_size=%d (a multiple of the patch size) or render larger "
                    "frames with image_size=", cfg.image_size, ad.image_size, (ad.image_size / cfg.image_size) ** 2,
                    cfg.image_size)


class ProgressCallback(BaseCallback):
    """tqdm over env steps (SB3's own bar needs `rich`, which the project does not pin)."""

    def __init__(self, total: int, enabled: bool) -> None:
        super().__init__()
        self.total, self.enabled = total, enabled

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=min(self.num_timesteps, self.total), desc="rl", unit="step",
                        disable=not self.enabled)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def evaluate_agent(model, env, n_episodes: int, seed: int | None = None, success: bool = True) -> dict:
    """Deterministic episodes on a VecEnv: success rate (any-step `is_success`) and mean return.
    With `seed` the env is re-seeded first, so the same agent gives the same numbers whatever ran
    on this env before (the final evaluation of a run can be reproduced from the saved agent).
    `success=False` (envs that define none, `defines_success`): success_rate is None."""
    n = env.num_envs
    if seed is not None:
        env.seed(seed)
    obs = env.reset()
    returns, successes, ep_ret = [], [], np.zeros(n)
    ep_succ = np.zeros(n, dtype=bool)
    while len(returns) < n_episodes:
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, done, infos = env.step(action)
        ep_ret += reward
        for i, info in enumerate(infos):
            ep_succ[i] |= bool(info.get("is_success", False))
            if done[i]:
                returns.append(float(ep_ret[i]))
                successes.append(bool(ep_succ[i]))
                ep_ret[i], ep_succ[i] = 0.0, False
    returns, successes = returns[:n_episodes], successes[:n_episodes]
    return {"success_rate": float(np.mean(successes)) if success else None, "mean_return": float(np.mean(returns)),
            "n_episodes": n_episodes}


def _score(e: dict) -> tuple[float, float]:
    """Best-model order: success rate first (None: no success signal), ties broken by return."""
    return (-1.0 if e["success_rate"] is None else e["success_rate"], e["mean_return"])


class PeriodicEval(BaseCallback):
    """Every `every` env steps: `evaluate_agent` (re-seeded like the final evaluation, any-step
    success), TensorBoard `eval/*`, `eval/evaluations.json`, and `best/best_model.zip` on a new best
    (success, then return)."""

    def __init__(self, eval_env, cfg: RLConfig, run_dir: Path, history: list[dict] | None = None) -> None:
        super().__init__()
        self.eval_env, self.cfg, self.run_dir = eval_env, cfg, run_dir
        self.every = cfg.eval_every
        self.success = defines_success(cfg.env_name)
        self.evaluations: list[dict] = list(history or [])
        self.best = max(self.evaluations, key=_score) if self.evaluations else None

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        while self._next <= self.num_timesteps:
            self._next += self.every
        from pixio_robot.utils.io import save_json

        r = evaluate_agent(self.model, self.eval_env, self.cfg.eval_episodes, seed=self.cfg.seed + 10_000,
                           success=self.success)
        entry = {"timesteps": int(self.num_timesteps), **r}
        self.evaluations.append(entry)
        self.logger.record("eval/mean_return", r["mean_return"])
        if r["success_rate"] is not None:
            self.logger.record("eval/success_rate", r["success_rate"])
        self.logger.dump(self.num_timesteps)
        if self.best is None or _score(entry) > _score(self.best) or not (self.run_dir / "best").is_dir():
            self.best = entry
            (self.run_dir / "best").mkdir(parents=True, exist_ok=True)
            atomic_save(self.model, self.run_dir / "best" / "best_model.zip")
            save_json(self.run_dir / "best" / "best.json", entry)
        save_json(self.run_dir / "eval" / "evaluations.json", self.evaluations)
        return True


def _agent_meta(cfg: RLConfig, model) -> dict:
    meta = {"format": "pixio_robot.rl_agent", "algo": cfg.algo, "env_name": cfg.env_name, "obs": cfg.obs,
            "image_size": cfg.image_size, "camera": cfg.camera, "frame_stack": cfg.frame_stack,
            "action_repeat": cfg.action_repeat, "config": dataclasses.asdict(cfg)}
    if cfg.obs in PIXEL_MODES:
        meta["encoder"] = _extractor(model).adapter.reference()
    return meta


def load_agent(path: str | Path, device: str = "cpu"):
    """Load a saved agent: a run directory (model.zip + agent.json), its `best/` directory
    (best_model.zip), or a `.zip` file (model, best model or checkpoint)."""
    import stable_baselines3 as sb3

    path = Path(path)
    if path.is_dir():
        cands = [path / "model.zip", path / "best_model.zip"]
        zip_path = next((p for p in cands if p.exists()), cands[0])
    else:
        zip_path = path
    if not zip_path.exists():
        raise FileNotFoundError(f"no SB3 agent at {zip_path} (expected a python -m pixio_robot.rl run directory, "
                                "its best/ directory or a .zip)")
    metas = [zip_path.parent / "agent.json", zip_path.parent.parent / "agent.json",
             zip_path.parent.parent / "config.yaml"]
    algo = None
    for meta_path in metas:
        if meta_path.is_file():
            import yaml

            algo = (yaml.safe_load(meta_path.read_text()) or {}).get("algo")
            if algo:
                break
    if algo is None:
        from pixio_robot.envs.experts import sb3_algo_of

        algo = sb3_algo_of(zip_path)
    from pixio_robot.utils.io import clean_torch_error

    try:
        return getattr(sb3, str(algo).upper()).load(str(zip_path), device=device)
    except Exception as e:
        raise clean_torch_error(e, zip_path) from None


def _load_for_resume(cfg: RLConfig, plan: dict, env, device, tb: str | None):
    algo_cls = algo_class(cfg.algo)
    from pixio_robot.utils.io import clean_torch_error

    try:
        model = algo_cls.load(str(plan["path"]), env=env, device=device, tensorboard_log=tb)
    except Exception as e:
        raise clean_torch_error(e, plan["path"]) from None
    if cfg.algo == "sac":
        ckdir = Path(plan["path"]).parent
        buf, buf_meta = ckdir / "replay_buffer.pkl", ckdir / "replay_buffer.json"
        n = json.loads(buf_meta.read_text()).get("timesteps") if buf_meta.is_file() else None
        if buf.is_file() and n == plan["timesteps"]:
            model.load_replay_buffer(str(buf))
            log.info("rl: resumed the replay buffer (%d transitions)", model.replay_buffer.size())
        else:
            log.warning("rl: no replay buffer saved with %s: SAC resumes with an empty buffer "
                        "(checkpoint_replay_buffer=true saves it with checkpoints)", plan["path"])
    return model


def run_rl(cfg: RLConfig) -> dict:
    """Train an SB3 agent (or resume one); returns final/best evaluation, frozen-encoder check and paths.
    The run directory is locked for the whole run (a second process into it is refused)."""
    from pixio_robot.utils.rundir import run_dir_lock

    run_dir = Path(cfg.run_dir or Path("runs/rl") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    with run_dir_lock(run_dir):
        return _run_rl(cfg, run_dir)


def _run_rl(cfg: RLConfig, run_dir: Path) -> dict:
    from stable_baselines3.common.callbacks import CallbackList

    from pixio_robot.utils.device import resolve_device
    from pixio_robot.utils.io import save_json
    from pixio_robot.utils.run import prepare_run_dir

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    plan = prepare_resume(cfg, run_dir)
    if plan["mode"] == "done":
        res = plan["results"]
        log.info("rl: %s already finished %d steps (total_timesteps=%d): nothing to do; raise total_timesteps= to "
                 "train on, or resume=false to start afresh", run_dir, res["timesteps"], cfg.total_timesteps)
        return res
    prepare_run_dir(run_dir, cfg)
    device = resolve_device(cfg.device)
    env = make_vec(cfg, cfg.n_envs, cfg.seed)
    eval_env = make_vec(cfg, 1, cfg.seed + 10_000)
    tb = str(run_dir / "tb") if cfg.tensorboard else None
    if plan["mode"] == "resume":
        _policy_kwargs(cfg, dict(cfg.algo_kwargs))  # the same refusals as a fresh run
        try:
            model = _load_for_resume(cfg, plan, env, device, tb)
        except (AssertionError, KeyError) as e:
            raise ValueError(f"cannot resume from {plan['path']} ({type(e).__name__}: {e}); pass resume=false "
                             "to move the old run aside") from e
        log.info("rl: resuming %s from %s (%d of %d steps)", run_dir, plan["path"], model.num_timesteps,
                 cfg.total_timesteps)
    else:
        model = build_agent(cfg, env, device, tb)
    seen = describe_observation(cfg, model)
    log.info("rl: obs=%s: the agent sees %s", cfg.obs, seen["text"])
    _warn_upsampling(cfg, model)
    eval_env = model._wrap_env(eval_env, verbose=0)  # same image transposition as the training env
    history = []
    if plan["mode"] == "resume" and (run_dir / "eval" / "evaluations.json").is_file():
        history = [e for e in json.loads((run_dir / "eval" / "evaluations.json").read_text())
                   if e["timesteps"] <= model.num_timesteps]
    callbacks: list[BaseCallback] = [ProgressCallback(cfg.total_timesteps, cfg.progress)]
    eval_cb = PeriodicEval(eval_env, cfg, run_dir, history) if cfg.eval_every > 0 else None
    if eval_cb is not None:
        callbacks.append(eval_cb)
    ckpt = Checkpointer(run_dir, cfg.algo, cfg.checkpoint_every,
                        cfg.algo == "sac" and cfg.checkpoint_replay_buffer)
    callbacks.append(ckpt)
    extractor = _extractor(model)
    digest_before = extractor.source_digest if cfg.obs in PIXEL_MODES else None
    start_steps = int(model.num_timesteps)
    remaining = cfg.total_timesteps - start_steps
    write_state(run_dir, "training", start_steps)
    t_learn = time.perf_counter()
    if remaining > 0:
        try:
            model.learn(total_timesteps=remaining, callback=CallbackList(callbacks),
                        reset_num_timesteps=plan["mode"] != "resume")
        except KeyboardInterrupt:
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the save short
            try:
                path = ckpt.save(model)
                write_state(run_dir, "interrupted", model.num_timesteps, checkpoint=str(path))
                log.warning("rl: interrupted at step %d: saved %s; re-run the same command to resume",
                            model.num_timesteps, path)
            finally:
                signal.signal(signal.SIGINT, old)
                for e in (env, eval_env):
                    try:
                        e.close()
                    except Exception:  # noqa: BLE001 - subprocess envs may already be gone
                        pass
            raise
        except (AssertionError, TypeError) as e:  # SB3 checks some options only when training
            if not cfg.algo_kwargs:
                raise
            raise _bad_kwargs(cfg, e) from e
    learn_s = time.perf_counter() - t_learn
    atomic_save(model, run_dir / "model.zip")
    meta = _agent_meta(cfg, model)
    save_json(run_dir / "agent.json", meta)
    write_state(run_dir, "finishing", model.num_timesteps)
    final = evaluate_agent(model, eval_env, cfg.eval_episodes, seed=cfg.seed + 10_000,
                           success=defines_success(cfg.env_name))
    evals = eval_cb.evaluations if eval_cb is not None else []
    if cfg.save_path:
        Path(cfg.save_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "model.zip", cfg.save_path)
    succ = [e["success_rate"] for e in evals + [final] if e["success_rate"] is not None]
    trained = int(model.num_timesteps) - start_steps
    results = {"run_dir": str(run_dir), "model_path": str(run_dir / "model.zip"), "algo": cfg.algo,
               "env_name": cfg.env_name, "obs": cfg.obs, "observation": {k: v for k, v in seen.items()},
               "timesteps": int(model.num_timesteps), "final": final, "best_success": max(succ) if succ else None,
               "best_return": max(e["mean_return"] for e in evals + [final]), "evaluations": evals,
               "encoder_digest_before": digest_before,
               "encoder_digest_after": extractor.adapter.encoder_digest() if digest_before else None,
               "resumed_from": str(plan["path"]) if plan["mode"] == "resume" else None,
               "resumed_at": start_steps if plan["mode"] == "resume" else None,
               "wall_s": time.perf_counter() - t0, "learn_s": learn_s, "saved_to": cfg.save_path}
    results["steps_per_s"] = trained / learn_s if trained > 0 and learn_s > 0 else None
    save_json(run_dir / "results.json", results)
    write_state(run_dir, "done", model.num_timesteps)
    env.close()
    eval_env.close()
    fmt = "n/a" if final["success_rate"] is None else f"{final['success_rate']:.2f}"
    log.info("rl: %s %s %d steps in %.0fs (learn: %s steps/s); final success %s, return %.1f -> %s", cfg.algo,
             cfg.env_name, results["timesteps"], results["wall_s"],
             "n/a" if results["steps_per_s"] is None else f"{results['steps_per_s']:.0f}", fmt,
             final["mean_return"], run_dir)
    return results


def main() -> None:
    """Console entry (`pixio-rl`)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from pixio_robot.utils.cli import to_config, user_errors

    register_configs()

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.rl", config_name="config")
    def _main(dcfg) -> None:
        hint = "re-run the same command to resume from the newest checkpoint"
        with user_errors(hint):
            cfg = to_config(dcfg)
            if cfg.run_dir is None:
                cfg.run_dir = HydraConfig.get().runtime.output_dir
                hint = f"re-run the same command with run_dir={cfg.run_dir} to resume from the newest checkpoint"
        with user_errors(f"{hint} in {cfg.run_dir}/checkpoints"):
            res = run_rl(cfg)
        print({k: res[k] for k in ("final", "best_success", "timesteps", "model_path", "saved_to")})

    from pixio_robot.utils.cli import run_app

    run_app(_main)


if __name__ == "__main__":
    main()
