"""`evaluate_policy`: roll a policy out for N episodes over K envs in lockstep.

One round = K episodes started together from seeds `seed + episode_index`; every step the
observations of the K envs go to the policy in ONE batched `select_action` call (the policy
keeps per-row frame history, so a row whose episode has ended keeps its last observation and
its action is ignored). `policy.reset()` runs at the start of every round. Episode seeds depend
only on `(seed, episode_index)`, so a deterministic policy gives the same per-episode results
for any `n_envs`.

Cameras: the env's `pixels` is `observation.image`; an env's extra views `pixels.<camera>` are
`observation.images.<camera>`. A policy trained on several cameras (`spec.image_keys`,
`observation.images.<camera>`) gets the env built with `cameras=[...]` where the env takes it
(`supports_cameras`, e.g. ALOHA); an env without them is refused before any episode, naming both.

A policy with `act_on_env(obs_rows, info_rows) -> [B, A]` instead gets the envs' own observation
and last info dicts (the demonstration experts read `info["full_state"]`; see
:mod:`pixio_robot.evaluation.experts`); the episodes, seeds and success rule stay the same.

An env that raises (in reset or step) ends that episode as a failure with the error recorded;
the env is rebuilt for the next round and the evaluation finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.utils.constants import OBS_IMAGE, OBS_IMAGES, OBS_STATE

from pixio_robot.envs.base import CAMERA_PREFIX
from pixio_robot.evaluation.envpool import EnvFactory, EnvPool
from pixio_robot.evaluation.results import EpisodeRecord, EvalResult, summarise
from pixio_robot.evaluation.video import write_video
from pixio_robot.policies.constants import EPISODE_SEED
from pixio_robot.utils.logging import get_logger
from pixio_robot.utils.seed import seed_everything

log = get_logger(__name__)

DEFAULT_MAX_STEPS = 1000


def _policy_device(policy: Any) -> torch.device | None:
    try:
        return next(policy.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return None


def _to_batch(obs_rows: list[dict], device: torch.device | None) -> dict[str, torch.Tensor]:
    """List of K env observations -> LeRobot-style batch (uint8 images, float32 state)."""
    batch = {}
    if "pixels" in obs_rows[0]:  # state-only envs (pixels=False) have none
        batch[OBS_IMAGE] = torch.from_numpy(np.stack([o["pixels"] for o in obs_rows]))  # (K,[T,]H,W,3)
    for key in obs_rows[0]:
        if key.startswith(CAMERA_PREFIX):  # pixels.<camera> -> observation.images.<camera>
            batch[f"{OBS_IMAGES}.{key.removeprefix(CAMERA_PREFIX)}"] = torch.from_numpy(
                np.stack([o[key] for o in obs_rows]))  # (K, H, W, 3)
    if "state" in obs_rows[0]:
        batch[OBS_STATE] = torch.from_numpy(
            np.stack([np.asarray(o["state"], dtype=np.float32) for o in obs_rows]))  # (K, S)
    if device is not None:
        batch = {k: v.to(device) for k, v in batch.items()}
    return batch


def policy_cameras(policy: Any) -> list[str]:
    """Env camera names of a multi-camera policy (`observation.images.<camera>` -> `<camera>`);
    empty for a one-camera policy (it reads the env's `pixels`)."""
    spec = getattr(policy, "spec", None)  # ours: spec.image_keys; a LeRobot policy dir: its image_keys
    keys = list(getattr(spec, "image_keys", None) or getattr(policy, "image_keys", None) or [])
    if len(keys) < 2:
        return []
    return [k.removeprefix(OBS_IMAGES + ".") for k in keys]


def camera_options(policy: Any, env_name: str, options: dict) -> dict:
    """`options` plus `cameras=[...]` for a multi-camera policy, where the env takes it and the
    caller did not choose the cameras."""
    cams = policy_cameras(policy)
    if cams and "cameras" not in options:
        from pixio_robot.envs.registry import supports_cameras

        if supports_cameras(env_name):
            return {**options, "cameras": cams}
    return options


def _frame(obs: dict) -> np.ndarray:
    px = np.asarray(obs["pixels"])
    return px[-1] if px.ndim == 4 else px  # last frame of a stack


class _Episode:
    """Book-keeping of one running episode."""

    def __init__(self, index: int, env_index: int, seed: int, record_video: bool):
        self.index, self.env_index, self.seed = index, env_index, seed
        self.ret, self.length, self.success, self.final_success = 0.0, 0, False, False
        self.first_success_step: int | None = None
        self.error: str | None = None
        self.done = False
        self.frames: list[np.ndarray] | None = [] if record_video else None
        self.t0 = time.perf_counter()

    def record(self, video_path: str | None) -> EpisodeRecord:
        return EpisodeRecord(
            episode=self.index, env_index=self.env_index, seed=self.seed, success=self.success,
            final_success=self.final_success, episode_return=self.ret, length=self.length,
            first_success_step=self.first_success_step, error=self.error or "",
            wall_s=time.perf_counter() - self.t0, video=video_path or "")


def evaluate_policy(policy: Any, env_name: str, *, n_episodes: int, n_envs: int = 1, seed: int = 0,
                    image_size: int = 128, camera: str | None = None,
                    max_episode_steps: int | None = None, video_dir: str | Path | None = None,
                    n_videos: int = 0, progress: bool = True, stop_on_success: bool = False,
                    vector_mode: str = "serial", start_method: str | None = None,
                    env_fn: Callable[[], Any] | None = None, env_options: dict | None = None,
                    video_fps: int = 20, clip_actions: bool = True, env_timeout_s: float = 300.0) -> EvalResult:
    """Evaluate `policy` (Policy API: `reset()`, `select_action(batch) -> [B, A]`) on `env_name`.

    `env_fn` replaces `make_env(env_name, ...)` (any gymnasium env with a Dict observation
    holding `pixels` and optionally `state`). `vector_mode="subproc"` runs each env in its own
    process; a worker silent for `env_timeout_s` is killed (its episode fails). Returns an :class:`EvalResult` (success rate with Wilson 95% interval, mean return
    with a t interval, lengths, per-episode records, errors).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    n_envs = max(1, min(int(n_envs), int(n_episodes)))
    if n_videos > 0 and video_dir is None:
        raise ValueError("n_videos > 0 needs video_dir (where the mp4 files go)")
    seed_everything(seed)
    if env_fn is None:
        options = {"image_size": image_size, "camera": camera, **(env_options or {})}
        if max_episode_steps is not None:
            options["max_episode_steps"] = max_episode_steps
        env_fn = EnvFactory(env_name, camera_options(policy, env_name, options))
    device = _policy_device(policy)
    records: list[EpisodeRecord] = []
    t_start, total_steps = time.perf_counter(), 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_episodes, desc=f"eval {env_name}", unit="ep", leave=False)
    pool = EnvPool(env_fn, n_envs, mode=vector_mode, start_method=start_method, timeout_s=env_timeout_s)
    startup_s = time.perf_counter() - t_start
    try:
        check_fits(policy, env_name, pool.observation_space, pool.action_space)
        limit = max_episode_steps or pool.max_episode_steps or DEFAULT_MAX_STEPS
        low = high = None
        if clip_actions and hasattr(pool.action_space, "low"):
            low, high = pool.action_space.low, pool.action_space.high
        start = 0
        while start < n_episodes:
            k = min(n_envs, n_episodes - start)
            episodes = [_Episode(start + j, j, seed + start + j, start + j < n_videos) for j in range(k)]
            steps = _run_round(policy, pool, episodes, limit, stop_on_success, device, low, high)
            total_steps += steps
            for ep in episodes:
                path = None
                if ep.frames:
                    path = str(Path(video_dir) / f"episode_{ep.index:04d}.mp4")
                    try:
                        write_video(path, ep.frames, fps=video_fps)
                    except Exception as exc:  # noqa: BLE001 - a video must never sink an evaluation
                        log.warning("could not write %s: %s", path, exc)
                        path = None
                records.append(ep.record(path))
                if ep.error:
                    log.warning("episode %d (seed %d) failed with an env error: %s", ep.index, ep.seed, ep.error)
            if bar is not None:
                bar.update(k)
                bar.set_postfix(success=f"{np.mean([r.success for r in records]):.2f}")
            start += k
    finally:
        pool.close()
        if bar is not None:
            bar.close()
    return summarise(env_name, records, wall_s=time.perf_counter() - t_start, steps=total_steps,
                     startup_s=startup_s)


def fit_problems(policy: Any, env_name: str, obs_space: Any, act_space: Any) -> list[str]:
    """What does not fit between a policy with a `spec` (action / state sizes it was trained
    with) and an env's spaces; empty when they fit (or the policy has no spec)."""
    spec = getattr(policy, "spec", None)
    if spec is None:
        return []
    problems = []
    shape = getattr(act_space, "shape", None)
    if shape and shape[-1] != spec.action_dim:
        problems.append(f"the policy outputs {spec.action_dim}-d actions, {env_name} takes {shape[-1]}-d")
    state = getattr(obs_space, "spaces", {}).get("state")
    if spec.state_dim and state is None:
        problems.append(f"the policy reads a {spec.state_dim}-d state, {env_name} gives none")
    elif spec.state_dim and state is not None and state.shape[-1] != spec.state_dim:
        problems.append(f"the policy reads {spec.state_dim}-d states, {env_name} gives {state.shape[-1]}-d")
    cams = policy_cameras(policy)
    spaces = getattr(obs_space, "spaces", None)
    if cams and spaces is not None:
        given = [k.removeprefix(CAMERA_PREFIX) for k in spaces if k.startswith(CAMERA_PREFIX)]
        missing = [c for c in cams if c not in given]
        if missing:
            problems.append(f"the policy was trained on cameras {spec.image_keys}; {env_name} gives "
                            f"{[f'{OBS_IMAGES}.{c}' for c in given] or 'one camera (observation.image)'}, "
                            f"without {[f'{OBS_IMAGES}.{c}' for c in missing]} (a multi-camera env takes "
                            "env_options.cameras=[...])")
    return problems


def check_fits(policy: Any, env_name: str, obs_space: Any, act_space: Any) -> None:
    """A policy with a `spec` against an env's spaces: a mismatch is an error naming both sides
    and what the policy was trained on, before any episode runs. A policy with its own
    `check_env(env_name, obs_space, act_space)` (a LeRobot policy dir) checks itself."""
    if callable(getattr(policy, "check_env", None)):
        policy.check_env(env_name, obs_space, act_space)
        return
    problems = fit_problems(policy, env_name, obs_space, act_space)
    if problems:
        spec = policy.spec
        dataset = getattr(spec, "dataset", None)
        if dataset:
            trained = f" (it was trained on the demos of dataset {dataset})"
        elif spec.env_name and spec.env_name != env_name:
            trained = f" (it was trained on {spec.env_name} demos)"  # a policy saved before `spec.dataset`
        else:
            trained = ""
        raise ValueError(f"policy and env do not fit: {'; '.join(problems)}{trained}. Evaluate it on the env it was "
                         f"trained for, or train a policy on demos of {env_name}")


def _run_round(policy, pool: EnvPool, episodes: list[_Episode], limit: int, stop_on_success: bool,
               device, low, high) -> int:
    """Run one lockstep round of len(episodes) episodes; return the number of env steps taken."""
    policy.reset()
    obs: dict[int, dict] = {}
    infos: dict[int, dict] = {}
    for j, (status, payload) in pool.reset({j: ep.seed for j, ep in enumerate(episodes)}).items():
        ep = episodes[j]
        if status == "ok":
            obs[j], infos[j] = payload[0], payload[1]
            if ep.frames is not None:
                ep.frames.append(_frame(obs[j]))
        else:
            ep.error, ep.done = f"reset: {payload}", True
    if not obs:
        return 0
    template = next(iter(obs.values()))
    rows = [obs.get(j, template) for j in range(len(episodes))]  # failed resets: placeholder rows
    row_infos = [infos.get(j, {}) for j in range(len(episodes))]
    on_env = callable(getattr(policy, "act_on_env", None))  # experts: raw obs + info rows (see EnvActor)
    seeds = torch.tensor([ep.seed for ep in episodes], dtype=torch.int64)  # row noise follows the episode, not K
    steps = 0
    while not all(ep.done for ep in episodes):
        with torch.no_grad():
            if on_env:
                actions = policy.act_on_env(rows, row_infos)
            else:
                actions = policy.select_action({**_to_batch(rows, device), EPISODE_SEED: seeds})
        actions = np.asarray(torch.as_tensor(actions).detach().float().cpu().numpy(), dtype=np.float32)
        if actions.ndim != 2 or actions.shape[0] != len(rows):
            raise ValueError(f"select_action must return [B, A] with B={len(rows)}, got {tuple(actions.shape)}")
        if low is not None:
            actions = np.clip(actions, low, high)
        active = {j: actions[j] for j, ep in enumerate(episodes) if not ep.done}
        for j, (status, payload) in pool.step(active).items():
            ep = episodes[j]
            if status != "ok":
                ep.error, ep.done = f"step {ep.length}: {payload}", True
                ep.success = ep.final_success = False  # an env error is a failure
                continue
            o, reward, terminated, truncated, info = payload
            steps += 1
            ep.length += 1
            ep.ret += reward
            ok = bool(info.get("is_success", info.get("success", False)))
            ep.final_success = ok
            if ok and ep.first_success_step is None:
                ep.first_success_step = ep.length
            ep.success = ep.success or ok
            rows[j], row_infos[j] = o, info
            if ep.frames is not None:
                ep.frames.append(_frame(o))
            if terminated or truncated or ep.length >= limit or (ok and stop_on_success):
                ep.done = True
    return steps
