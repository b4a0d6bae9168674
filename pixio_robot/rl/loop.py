"""`run_rl`: train an SB3 agent on a Pixio backbone (or resume one) and evaluate it.

    python -m pixio_robot.rl algo=ppo env=gym/Reacher-v5 total_timesteps=200000
    python -m pixio_robot.rl algo=sac env=metaworld/reach-v3 encoder.source=checkpoint encoder.path=...
    python -m pixio_robot.rl experiment=dmc_expert env=dmc/walker-walk   # state-only SAC expert

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
`run_state.json`, TensorBoard events and results.json; `export_path=` also copies the final zip.
Re-running the same command resumes from the newest checkpoint (Ctrl-C saves one); `resume=false`
moves the old contents aside to `previous/<time>/`.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from pixio_robot.rl.agent import (
    _bad_kwargs,
    _policy_kwargs,
    agent_meta,
    algo_class,
    build_agent,
    describe_observation,
    extractor_of,
    warn_upsampling,
)
from pixio_robot.rl.checkpoint import (
    RLCheckpoint,
    atomic_save,
    plan_run,
    replay_buffer_path,
    rl_run_dir,
    write_state,
)
from pixio_robot.rl.config import PIXEL_MODES, RLConfig
from pixio_robot.utils.logging import get_logger

log = get_logger("pixio_robot.rl")
EVAL_SEED_OFFSET = 10_000  # evaluation episodes are seeded away from the training envs


def defines_success(env: str) -> bool:
    """Whether the env's `is_success` means anything (dm_control and most gym tasks define none:
    their success rate is reported as None, not 0.0)."""
    family, _, task = env.partition("/")
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


def env_options(cfg: RLConfig, seed: int | None) -> dict[str, Any]:
    """The `make_env` keyword arguments of cfg's env."""
    opts: dict[str, Any] = dict(image_size=cfg.image_size, camera=cfg.camera, frame_stack=cfg.frame_stack,
                                action_repeat=cfg.action_repeat, max_episode_steps=cfg.max_episode_steps,
                                seed=seed, **cfg.env_options)
    if cfg.obs == "state":
        opts["pixels"] = False
        opts.pop("frame_stack")
        if cfg.env.startswith("metaworld/"):  # its default state is the 4-d hand + gripper only
            opts.setdefault("state", "full")
    return opts


def wrap_obs(cfg: RLConfig, env: gym.Env) -> gym.Env:
    """What the agent is shown of the env's Dict observation (`obs=`)."""
    if cfg.obs == "state":
        return StateOnly(env)
    if cfg.obs == "pixels":
        return PixelsOnly(env)
    return env


def env_factory(cfg: RLConfig, rank: int, seed: int):
    """A picklable-by-closure thunk building env `rank` (Monitor-wrapped for episode stats)."""

    def _make():
        from stable_baselines3.common.monitor import Monitor

        from pixio_robot.envs import make_env

        return Monitor(wrap_obs(cfg, make_env(cfg.env, **env_options(cfg, seed + rank))),
                       info_keywords=("is_success",))

    return _make


def make_vec(cfg: RLConfig, n: int, seed: int):
    """SB3's VecEnv of `n` envs: `vector_mode=serial` DummyVecEnv, `subproc` SubprocVecEnv."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [env_factory(cfg, i, seed) for i in range(n)]
    if cfg.vector_mode == "subproc" and n > 1:
        return SubprocVecEnv(fns, start_method="forkserver")
    return DummyVecEnv(fns)


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


def evaluate_agent(model, cfg: RLConfig, n_episodes: int, seed: int | None = None, env_fn=None) -> dict:
    """Deterministic episodes of an SB3 agent on cfg's env through the project's one rollout loop
    (`pixio_robot.evaluation.evaluate_policy`: episode k seeded `seed + k`, success = `is_success`
    at any step, Wilson interval). The global RNGs are put back afterwards, so an evaluation in the
    middle of training does not change what training draws next. Envs without a success signal
    (`defines_success`) report success_rate None. `env_fn` replaces cfg's env (any env with a Dict
    observation of `pixels` and / or `state`)."""
    import random

    from pixio_robot.evaluation import evaluate_policy
    from pixio_robot.rl.agent import SB3Actor

    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        opts = env_options(cfg, None)
        opts.pop("seed")
        res = evaluate_policy(SB3Actor(model, cfg.obs), cfg.env, n_episodes=n_episodes, seed=seed,
                              env_fn=env_fn or _EvalEnv(cfg, opts), progress=False, clip_actions=False)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
    return {"success_rate": res.success_rate if defines_success(cfg.env) else None,
            "success_ci": list(res.success_ci) if defines_success(cfg.env) else None,
            "mean_return": res.mean_return, "return_ci": list(res.return_ci), "n_episodes": res.n_episodes,
            "n_errors": res.n_errors}


class _EvalEnv:
    """Picklable env builder for evaluation: cfg's env with the Dict observation evaluate_policy
    reads (`pixels`, `state`); `SB3Actor` turns it into what the agent was trained on."""

    def __init__(self, cfg: RLConfig, options: dict) -> None:
        self.env, self.options = cfg.env, options

    def __call__(self):
        from pixio_robot.envs import make_env

        return make_env(self.env, **self.options)


def _score(e: dict) -> tuple[float, float]:
    """Best-model order: success rate first (None: no success signal), ties broken by return."""
    return (-1.0 if e["success_rate"] is None else e["success_rate"], e["mean_return"])


class PeriodicEval(BaseCallback):
    """Every `eval_every` env steps: `evaluate_agent` (seeded like the final evaluation),
    TensorBoard `eval/*`, `eval/evaluations.json`, and `best/best_model.zip` on a new best
    (success, then return)."""

    def __init__(self, cfg: RLConfig, run_dir: Path, history: list[dict] | None = None, env_fn=None) -> None:
        super().__init__()
        self.cfg, self.run_dir, self.env_fn = cfg, run_dir, env_fn
        self.every = cfg.eval_every
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

        r = evaluate_agent(self.model, self.cfg, self.cfg.n_episodes, env_fn=self.env_fn)
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


def _load_for_resume(cfg: RLConfig, plan: dict, env, device, tb: str | None):
    from pixio_robot.utils.io import clean_torch_error

    try:
        model = algo_class(cfg.algo).load(str(plan["path"]), env=env, device=device, tensorboard_log=tb)
    except (AssertionError, KeyError) as e:
        raise ValueError(f"cannot resume from {plan['path']} ({type(e).__name__}: {e}); pass resume=false "
                         "to move the old run aside") from e
    except Exception as e:
        raise clean_torch_error(e, plan["path"]) from None
    if cfg.algo == "sac":
        buf = replay_buffer_path(plan["path"], cfg.algo, plan["timesteps"])
        if buf.is_file():
            model.load_replay_buffer(str(buf))
            log.info("rl: resumed the replay buffer (%d transitions)", model.replay_buffer.size())
        else:
            log.warning("rl: no replay buffer saved with %s: SAC resumes with an empty buffer "
                        "(ckpt_replay_buffer=true saves it with checkpoints)", plan["path"])
    return model


def run_rl(cfg: RLConfig) -> dict:
    """Train an SB3 agent (or resume one); returns final/best evaluation, frozen-encoder check and paths.
    The run directory is locked for the whole run (a second process into it is refused)."""
    from pixio_robot.utils.run import prepare_run_dir, to_plain

    run_dir = Path(cfg.run_dir or Path("runs/rl") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    with rl_run_dir(run_dir) as rd:
        t0 = time.perf_counter()
        plan = plan_run(rd, to_plain(cfg), cfg.total_timesteps, cfg.resume)
        if plan["mode"] == "done":
            res = plan["results"]
            log.info("rl: %s already finished %d steps (total_timesteps=%d): nothing to do; raise "
                     "total_timesteps= to train on, or resume=false to start afresh", run_dir, res["timesteps"],
                     cfg.total_timesteps)
            return res
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        prepare_run_dir(run_dir, cfg)
        env = make_vec(cfg, cfg.n_envs, cfg.seed)
        try:
            model, seen = _agent(cfg, plan, env, run_dir)
            before = extractor_of(model).source_digest if cfg.obs in PIXEL_MODES else None
            start, learn_s, evals = _learn(cfg, plan, model, run_dir)
            return _finish(cfg, plan, model, run_dir, {"observation": seen, "evaluations": evals, "start": start,
                                                       "learn_s": learn_s, "t0": t0, "digest_before": before})
        finally:
            env.close()


def _agent(cfg: RLConfig, plan: dict, env, run_dir: Path):
    """A fresh agent, or the one of the checkpoint the plan resumes from; and what it sees."""
    from pixio_robot.utils.device import resolve_device

    device = resolve_device(cfg.device)
    tb = str(run_dir / "tb") if cfg.tensorboard else None
    if plan["mode"] == "resume":
        _policy_kwargs(cfg, dict(cfg.algo_kwargs))  # the same refusals as a fresh run
        model = _load_for_resume(cfg, plan, env, device, tb)
        log.info("rl: resuming %s from %s (%d of %d steps)", run_dir, plan["path"], model.num_timesteps,
                 cfg.total_timesteps)
    else:
        model = build_agent(cfg, env, device, tb)
    seen = describe_observation(cfg, model)
    log.info("rl: obs=%s: the agent sees %s", cfg.obs, seen["text"])
    warn_upsampling(cfg, model)
    return model, seen


def _learn(cfg: RLConfig, plan: dict, model, run_dir: Path) -> tuple[int, float, list[dict]]:
    """`model.learn` with the callbacks (progress, periodic evaluation, checkpoints); Ctrl-C saves a
    checkpoint and re-raises. Returns (steps at the start, seconds spent learning, evaluations)."""
    history = []
    if plan["mode"] == "resume" and (run_dir / "eval" / "evaluations.json").is_file():
        history = [e for e in json.loads((run_dir / "eval" / "evaluations.json").read_text())
                   if e["timesteps"] <= model.num_timesteps]
    periodic = PeriodicEval(cfg, run_dir, history) if cfg.eval_every > 0 else None
    ckpt = RLCheckpoint(run_dir, cfg.algo, cfg.ckpt_every, cfg.algo == "sac" and cfg.ckpt_replay_buffer)
    callbacks = [ProgressCallback(cfg.total_timesteps, cfg.progress), *([periodic] if periodic else []), ckpt]
    evals = periodic.evaluations if periodic is not None else []
    start = int(model.num_timesteps)
    write_state(run_dir, "training", start)
    t = time.perf_counter()
    remaining = cfg.total_timesteps - start
    if remaining <= 0:
        return start, 0.0, evals
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
        raise
    except (AssertionError, TypeError) as e:  # SB3 checks some options only when training
        if not cfg.algo_kwargs:
            raise
        raise _bad_kwargs(cfg, e) from e
    return start, time.perf_counter() - t, evals


def _finish(cfg: RLConfig, plan: dict, model, run_dir: Path, run: dict) -> dict:
    """Save the final agent, evaluate it, write results.json (`run`: what the earlier steps measured)."""
    from pixio_robot.utils.io import save_json

    atomic_save(model, run_dir / "model.zip")
    save_json(run_dir / "agent.json", agent_meta(cfg, model))
    write_state(run_dir, "finishing", model.num_timesteps)
    final = evaluate_agent(model, cfg, cfg.n_episodes)
    evals, start, before = run["evaluations"], run["start"], run["digest_before"]
    if cfg.export_path:
        Path(cfg.export_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "model.zip", cfg.export_path)
    succ = [e["success_rate"] for e in evals + [final] if e["success_rate"] is not None]
    trained = int(model.num_timesteps) - start
    results = {"run_dir": str(run_dir), "model_path": str(run_dir / "model.zip"), "algo": cfg.algo,
               "env": cfg.env, "obs": cfg.obs, "observation": run["observation"],
               "timesteps": int(model.num_timesteps), "final": final, "best_success": max(succ) if succ else None,
               "best_return": max(e["mean_return"] for e in evals + [final]), "evaluations": evals,
               "encoder_digest_before": before,
               "encoder_digest_after": extractor_of(model).adapter.encoder_digest() if before else None,
               "resumed_from": str(plan["path"]) if plan["mode"] == "resume" else None,
               "resumed_at": start if plan["mode"] == "resume" else None,
               "wall_s": time.perf_counter() - run["t0"], "learn_s": run["learn_s"],
               "exported_to": cfg.export_path,
               "steps_per_s": trained / run["learn_s"] if trained > 0 and run["learn_s"] > 0 else None}
    save_json(run_dir / "results.json", results)
    write_state(run_dir, "done", model.num_timesteps)
    fmt = "n/a" if final["success_rate"] is None else f"{final['success_rate']:.2f}"
    log.info("rl: %s %s %d steps in %.0fs (learn: %s steps/s); final success %s, return %.1f -> %s", cfg.algo,
             cfg.env, results["timesteps"], results["wall_s"],
             "n/a" if results["steps_per_s"] is None else f"{results['steps_per_s']:.0f}", fmt,
             final["mean_return"], run_dir)
    return results


__all__ = ["EVAL_SEED_OFFSET", "PeriodicEval", "PixelsOnly", "ProgressCallback", "StateOnly", "defines_success",
           "env_factory", "env_options", "evaluate_agent", "make_vec", "run_rl", "wrap_obs"]
