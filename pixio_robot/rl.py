"""Reinforcement learning on a Pixio backbone: `python -m pixio_robot.rl` (hydra, stable-baselines3).

    python -m pixio_robot.rl algo=ppo env_name=gym/Reacher-v5 total_timesteps=200000
    python -m pixio_robot.rl algo=sac env_name=metaworld/reach-v3 encoder.source=checkpoint encoder.path=...
    python -m pixio_robot.rl experiment=dmc_expert env_name=dmc/walker-walk   # state-only SAC expert

`obs=pixels`: `MultiInputPolicy` with `PixioFeaturesExtractor` (the adapter runs once per env step
for the whole vectorised batch; frozen by default, `encoder.mode=finetune|last_k` trains it).
`obs=state`: an MLP on the `state` vector only, no rendering (the dm_control experts that
`pixio_robot.envs.experts.SB3Expert` loads). The run directory gets `model.zip` (SB3),
`agent.json` (algo, env, obs mode, encoder reference), `best/best_model.zip` (EvalCallback),
`checkpoints/`, TensorBoard events and results.json; `save_path=` also copies the final zip.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from pixio_robot.policies.encoder_adapter import AdapterConfig
from pixio_robot.utils.logging import get_logger

log = get_logger("pixio_robot.rl")
ALGOS = ("ppo", "sac")
OBS_MODES = ("pixels", "state")
# Replay buffers hold uint8 frames; 1M of them (SB3's default) would not fit in memory.
PIXEL_SAC_DEFAULTS = {"buffer_size": 50_000, "learning_starts": 1_000}


@dataclass
class RLConfig:
    algo: str = "ppo"  # ppo | sac
    env_name: str = "gym/Reacher-v5"
    obs: str = "pixels"  # pixels (Pixio extractor + state) | state (MLP on state, no rendering)
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
    share_features_extractor: bool | None = None  # SAC; default: share when the encoder is frozen
    net_arch: list[int] | None = None  # actor/critic MLP widths (SB3 defaults when null)
    algo_kwargs: dict[str, Any] = field(default_factory=dict)  # PPO/SAC keyword arguments
    eval_every: int = 10_000  # env steps between evaluations; 0: only the final one
    eval_episodes: int = 10
    checkpoint_every: int = 50_000  # env steps; 0: off
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


class StateOnly(gym.ObservationWrapper):
    """Expose only the `state` vector of a Dict observation (a Box, what SB3's MlpPolicy takes)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space["state"]

    def observation(self, observation):
        return observation["state"]


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
        env = make_env(cfg.env_name, **opts)
        if cfg.obs == "state":
            env = StateOnly(env)
        return Monitor(env, info_keywords=("is_success",))

    return _make


def make_vec(cfg: RLConfig, n: int, seed: int):
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [env_factory(cfg, i, seed) for i in range(n)]
    if cfg.vectorization == "subproc" and n > 1:
        return SubprocVecEnv(fns, start_method="forkserver")
    return DummyVecEnv(fns)


def build_agent(cfg: RLConfig, env, device: torch.device, tensorboard_log: str | None = None):
    """PPO / SAC with the Pixio extractor (pixels) or an MLP (state)."""
    import stable_baselines3 as sb3

    from pixio_robot.policies.sb3_extractor import PixioFeaturesExtractor

    kwargs = dict(cfg.algo_kwargs)
    policy_kwargs: dict[str, Any] = dict(kwargs.pop("policy_kwargs", {}) or {})
    if cfg.net_arch is not None:
        policy_kwargs["net_arch"] = list(cfg.net_arch)
    if cfg.obs == "pixels":
        policy = "MultiInputPolicy"
        policy_kwargs.update(features_extractor_class=PixioFeaturesExtractor,
                             features_extractor_kwargs={"encoder": cfg.encoder.to_dict()})
        if cfg.algo == "sac":
            share = cfg.share_features_extractor
            policy_kwargs["share_features_extractor"] = cfg.encoder.mode == "frozen" if share is None else share
            kwargs = {**PIXEL_SAC_DEFAULTS, **kwargs}
    else:
        policy = "MlpPolicy"
    algo_cls = sb3.PPO if cfg.algo == "ppo" else sb3.SAC
    try:
        model = algo_cls(policy, env, policy_kwargs=policy_kwargs, seed=cfg.seed, device=device,
                         tensorboard_log=tensorboard_log, verbose=0, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad algo_kwargs for {cfg.algo.upper()}: {e}") from e
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


class ProgressCallback(BaseCallback):
    """tqdm over env steps (SB3's own bar needs `rich`, which the project does not pin)."""

    def __init__(self, total: int, enabled: bool) -> None:
        super().__init__()
        self.total, self.enabled = total, enabled

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc="rl", unit="step", disable=not self.enabled)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def evaluate_agent(model, env, n_episodes: int, seed: int | None = None) -> dict:
    """Deterministic episodes on a VecEnv: success rate (any-step `is_success`) and mean return.
    With `seed` the env is re-seeded first, so the same agent gives the same numbers whatever ran
    on this env before (the final evaluation of a run can be reproduced from the saved agent)."""
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
    return {"success_rate": float(np.mean(successes)), "mean_return": float(np.mean(returns)),
            "n_episodes": n_episodes}


def _agent_meta(cfg: RLConfig, model) -> dict:
    meta = {"format": "pixio_robot.rl_agent", "algo": cfg.algo, "env_name": cfg.env_name, "obs": cfg.obs,
            "image_size": cfg.image_size, "camera": cfg.camera, "frame_stack": cfg.frame_stack,
            "action_repeat": cfg.action_repeat, "config": dataclasses.asdict(cfg)}
    if cfg.obs == "pixels":
        meta["encoder"] = model.policy.features_extractor.adapter.reference() \
            if getattr(model.policy, "features_extractor", None) is not None else \
            model.policy.actor.features_extractor.adapter.reference()
    return meta


def load_agent(path: str | Path, device: str = "cpu"):
    """Load a saved agent: a run directory (model.zip + agent.json) or a `.zip` file."""
    import stable_baselines3 as sb3

    path = Path(path)
    zip_path = path / "model.zip" if path.is_dir() else path
    meta_path = zip_path.parent / "agent.json"
    if not zip_path.exists():
        raise FileNotFoundError(f"no SB3 agent at {zip_path} (expected a python -m pixio_robot.rl run directory)")
    algo = json.loads(meta_path.read_text())["algo"] if meta_path.exists() else None
    if algo is None:
        from pixio_robot.envs.experts import sb3_algo_of

        algo = sb3_algo_of(zip_path).lower()
    return getattr(sb3, algo.upper()).load(str(zip_path), device=device)


def run_rl(cfg: RLConfig) -> dict:
    """Train an SB3 agent; returns final/best evaluation, frozen-encoder check and paths."""
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback

    from pixio_robot.train import resolve_device
    from pixio_robot.utils.io import save_json
    from pixio_robot.utils.run import prepare_run_dir

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.perf_counter()
    run_dir = Path(cfg.run_dir or Path("runs/rl") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    prepare_run_dir(run_dir, cfg)
    device = resolve_device(cfg.device)
    env = make_vec(cfg, cfg.n_envs, cfg.seed)
    eval_env = make_vec(cfg, 1, cfg.seed + 10_000)
    model = build_agent(cfg, env, device, str(run_dir / "tb") if cfg.tensorboard else None)
    eval_env = model._wrap_env(eval_env, verbose=0)  # same image transposition as the training env
    callbacks = [ProgressCallback(cfg.total_timesteps, cfg.progress)]
    eval_cb = None
    if cfg.eval_every > 0:
        eval_cb = EvalCallback(eval_env, n_eval_episodes=cfg.eval_episodes,
                               eval_freq=max(cfg.eval_every // cfg.n_envs, 1),
                               best_model_save_path=str(run_dir / "best"), log_path=str(run_dir / "eval"),
                               deterministic=True, verbose=0)
        callbacks.append(eval_cb)
    if cfg.checkpoint_every > 0:
        callbacks.append(CheckpointCallback(save_freq=max(cfg.checkpoint_every // cfg.n_envs, 1),
                                            save_path=str(run_dir / "checkpoints"), name_prefix=cfg.algo))
    extractor = getattr(model.policy, "features_extractor", None) or \
        getattr(getattr(model.policy, "actor", None), "features_extractor", None)
    digest_before = extractor.adapter.encoder_digest() if cfg.obs == "pixels" else None
    model.learn(total_timesteps=cfg.total_timesteps, callback=CallbackList(callbacks))
    model.save(str(run_dir / "model.zip"))
    meta = _agent_meta(cfg, model)
    save_json(run_dir / "agent.json", meta)
    final = evaluate_agent(model, eval_env, cfg.eval_episodes, seed=cfg.seed + 10_000)
    evals = []
    if eval_cb is not None and len(eval_cb.evaluations_timesteps):
        for t, rets, succ in zip(eval_cb.evaluations_timesteps, eval_cb.evaluations_results,
                                 eval_cb.evaluations_successes or [[]] * len(eval_cb.evaluations_timesteps)):
            evals.append({"timesteps": int(t), "mean_return": float(np.mean(rets)),
                          "success_rate": float(np.mean(succ)) if len(succ) else None})
    if cfg.save_path:
        Path(cfg.save_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "model.zip", cfg.save_path)
    succ = [e["success_rate"] for e in evals if e["success_rate"] is not None] + [final["success_rate"]]
    results = {"run_dir": str(run_dir), "model_path": str(run_dir / "model.zip"), "algo": cfg.algo,
               "env_name": cfg.env_name, "obs": cfg.obs, "timesteps": int(model.num_timesteps),
               "final": final, "best_success": max(succ), "best_return": max(
                   [e["mean_return"] for e in evals] + [final["mean_return"]]), "evaluations": evals,
               "encoder_digest_before": digest_before,
               "encoder_digest_after": extractor.adapter.encoder_digest() if digest_before else None,
               "wall_s": time.perf_counter() - t0, "saved_to": cfg.save_path}
    results["steps_per_s"] = results["timesteps"] / results["wall_s"]
    save_json(run_dir / "results.json", results)
    env.close()
    eval_env.close()
    log.info("rl: %s %s %d steps in %.0fs (%.0f steps/s); final success %.2f, return %.1f -> %s", cfg.algo,
             cfg.env_name, results["timesteps"], results["wall_s"], results["steps_per_s"],
             final["success_rate"], final["mean_return"], run_dir)
    return results


def main() -> None:
    """Console entry (`pixio-rl`)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from pixio_robot.utils.cli import to_config, user_errors

    register_configs()

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.rl", config_name="config")
    def _main(dcfg) -> None:
        with user_errors():
            cfg = to_config(dcfg)
            if cfg.run_dir is None:
                cfg.run_dir = HydraConfig.get().runtime.output_dir
            res = run_rl(cfg)
        print({k: res[k] for k in ("final", "best_success", "timesteps", "model_path", "saved_to")})

    _main()


if __name__ == "__main__":
    main()
