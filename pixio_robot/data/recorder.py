"""`collect_demos`: roll an expert out and write the episodes to a LeRobotDataset v3 on disk.

Re-runnable: with the default ``append=False`` `n_episodes` is the number of episodes the
dataset should hold, so re-running the same call after an interruption (Ctrl-C, a kill) keeps
the episodes already saved and continues with new seeds until the count is reached. With
``append=True`` `n_episodes` more are added on top of what is there. Each episode is committed
on its own (see :class:`pixio_robot.data.lerobot_io.DemoWriter`).

Episode seeds are ``seed, seed+1, ...`` over attempts (failed attempts skipped by
``only_success`` use up a seed too); ``meta/pixio_collect.json`` records the seed, success and
length of every saved episode and the attempts made, so a re-run never repeats a seed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from pixio_robot.data.lerobot_io import (
    ACTION_KEY,
    ENV_STATE_KEY,
    IMAGE_KEY,
    STATE_KEY,
    DemoWriter,
    demo_features,
    read_collect_info,
    write_collect_info,
)
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)


def rollout_episode(env, expert, seed: int, *, steps_after_success: int | None = 10) -> tuple[list[dict], bool]:
    """One episode with `expert` from ``env.reset(seed=seed)``; returns (frames, success).

    Each frame holds the observation before the action, the action, and the reward / success /
    done that followed it. With ``steps_after_success`` set the episode ends that many steps after the
    first success (a short hold); with None it runs to the env's own end.
    """
    obs, info = env.reset(seed=int(seed))
    expert.reset()
    frames: list[dict[str, Any]] = []
    success, since, done = False, -1, False
    while not done:
        full = info.get("full_state")
        action = np.asarray(expert.act(obs, info), np.float32).reshape(env.action_space.shape)
        next_obs, reward, terminated, truncated, info = env.step(action)
        step_success = bool(info.get("is_success", False))
        success = success or step_success
        since = since + 1 if success else -1
        done = bool(terminated or truncated) or (steps_after_success is not None and since >= steps_after_success)
        frame = {IMAGE_KEY: obs["pixels"], STATE_KEY: np.asarray(obs["state"], np.float32), ACTION_KEY: action,
                 "next.reward": np.array([reward], np.float32), "next.success": np.array([step_success]),
                 "next.done": np.array([done])}
        if full is not None:
            frame[ENV_STATE_KEY] = np.asarray(full, np.float32)
        frames.append(frame)
        obs = next_obs
    return frames, success


def _seeds_in_use(root: Path, record: dict, done_eps: int, only_success: bool) -> set[int]:
    """Seeds a re-run must not use again: saved episodes and failed attempts. A kept attempt whose
    save a kill cut short is retried with the same seed, so an interrupted collection ends with the
    seeds of an uninterrupted one; one the kill caught after the dataset write but before the
    record (the last attempt only) is recorded now instead."""
    saved = {int(e["seed"]) for e in record["episodes"]}
    attempted = record.get("attempted", [])
    unsaved = [a for a in attempted if int(a["seed"]) not in saved and (a.get("success") or not only_success)]
    if done_eps > len(record["episodes"]) and unsaved:
        last = unsaved.pop()
        seed, length = int(last["seed"]), 0
        with contextlib.suppress(Exception):
            from pixio_robot.data.lerobot_io import open_dataset

            length = int(open_dataset(root).meta.episodes[len(record["episodes"])]["length"])
        record["episodes"].append({"episode_index": len(record["episodes"]), "seed": seed,
                                   "success": bool(last.get("success")), "length": length})
        saved.add(seed)
    return saved | ({int(a["seed"]) for a in attempted} - {int(a["seed"]) for a in unsaved})


def _resolve_expert(env_name: str, expert) -> Any:
    from pixio_robot.envs.experts import make_expert

    if expert is None:
        return make_expert(env_name)
    if isinstance(expert, str | Path):
        return make_expert(env_name, path=expert)
    if not (hasattr(expert, "act") and hasattr(expert, "reset")):
        raise TypeError("expert must be None (scripted), a path to an SB3 .zip, or an object with "
                        "reset() and act(obs, info).")
    return expert


def collect_demos(env_name: str, n_episodes: int, root: str | Path, *, image_size: int | tuple[int, int] = 128,
                  camera: str | None = None, seed: int = 0, only_success: bool = False, expert=None,
                  repo_id: str | None = None, append: bool = False, use_videos: bool = True,
                  max_episode_steps: int | None = None, steps_after_success: int | None = 10,
                  max_attempts: int | None = None, render_quality: str = "fast", vcodec: str = "h264",
                  progress: bool = True, env_options: dict | None = None) -> Path:
    """Write (or extend) a LeRobotDataset of expert demonstrations at `root`; returns `root`.

    Features: ``observation.image`` (video, or PNG images with ``use_videos=False``),
    ``observation.state``, ``observation.environment_state`` (the simulator state, where the
    env reports one), ``action``, ``next.reward``, ``next.success``, ``next.done``; task text
    from the env name. `expert`: None (the env's scripted expert), a path to an SB3 ``.zip``, or
    an object with ``reset()`` / ``act(obs, info)``. See the module docstring for re-runs.
    """
    from tqdm.auto import tqdm

    from pixio_robot.envs import make_env, task_description

    if n_episodes < 0:
        raise ValueError(f"n_episodes must be >= 0, got {n_episodes}.")
    root = Path(root)
    expert = _resolve_expert(env_name, expert)
    env = make_env(env_name, image_size=image_size, camera=camera, max_episode_steps=max_episode_steps,
                   render_quality=render_quality, **(env_options or {}))
    try:
        obs, info = env.reset(seed=int(seed))
        full_dim = int(np.size(info["full_state"])) if "full_state" in info else None
        features = demo_features(obs["pixels"].shape[:2], int(obs["state"].shape[0]),
                                 int(np.prod(env.action_space.shape)), use_videos=use_videos,
                                 env_state_dim=full_dim)
        fps = int(round(env.unwrapped.metadata.get("render_fps", 30)))
        writer = DemoWriter(root, features, fps, repo_id=repo_id, vcodec=vcodec)
        record = read_collect_info(root)
        if record.get("env", env_name) != env_name:
            raise ValueError(f"{root} holds demos of {record['env']}, not {env_name}; use another root.")
        done_eps = writer.num_episodes
        record.setdefault("episodes", [])
        record["episodes"] = [e for e in record["episodes"] if e["episode_index"] < done_eps]  # rolled back ones
        target = done_eps + n_episodes if append else n_episodes
        used = _seeds_in_use(root, record, done_eps, only_success)
        limit = max_attempts if max_attempts is not None else 3 * max(target - done_eps, 0) + 10
        record.update(env=env_name, task=task_description(env_name), image_size=list(obs["pixels"].shape[:2]),
                      camera=camera, only_success=only_success, steps_after_success=steps_after_success)
        task = record["task"]
        bar = tqdm(total=target, initial=min(done_eps, target), desc=f"collect {env_name}", unit="ep",
                   disable=not progress)
        attempts, next_seed, n_success = 0, int(seed), 0
        try:
            while writer.num_episodes < target:
                if attempts >= limit:
                    log.warning("stopped after %d attempts with %d/%d episodes (the expert fails too often); "
                                "raise max_attempts or set only_success=false", attempts, writer.num_episodes, target)
                    break
                while next_seed in used:
                    next_seed += 1
                ep_seed, attempts = next_seed, attempts + 1
                used.add(ep_seed)
                frames, success = rollout_episode(env, expert, ep_seed, steps_after_success=steps_after_success)
                n_success += int(success)
                record.setdefault("attempted", []).append({"seed": ep_seed, "success": success})
                write_collect_info(root, record)  # a kill before the save below: the next run retries it
                if only_success and not success:
                    continue
                idx = writer.add_episode(frames, task)
                record["episodes"].append({"episode_index": idx, "seed": ep_seed, "success": success,
                                           "length": len(frames)})
                write_collect_info(root, record)
                bar.update(1)
                bar.set_postfix(success=f"{n_success}/{attempts}")
        except KeyboardInterrupt:
            log.warning("interrupted: %d episodes are saved in %s; re-run the same command to continue",
                        writer.num_episodes, root)
            raise
        finally:
            bar.close()
    finally:
        env.close()
    log.info("%s: %d episodes in %s (%d attempts this run, %d successful)", env_name, writer.num_episodes,
             root, attempts, n_success)
    return root
