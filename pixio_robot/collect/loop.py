"""`python -m pixio_robot.collect` (console script `pixio-collect`): expert demos -> LeRobotDataset.

    python -m pixio_robot.collect                                   # 3 drawer-open demos, 64 px
    python -m pixio_robot.collect env=metaworld/hammer-v3 n_episodes=25 image_size=128 root=demos/hammer
    python -m pixio_robot.collect env=dmc/walker-walk expert_path=experts/walker-walk.zip only_success=false

Interrupt it at any time; re-running the same command keeps the saved episodes and continues.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pixio_robot.collect.config import CollectConfig


def run_collect(cfg: CollectConfig, run_dir: str | Path | None = None) -> dict:
    """Collect demonstrations as `cfg` says; returns {root, episodes, frames, attempts, successes}.
    The dataset root and the run directory are locked for the whole collection."""
    from pixio_robot.envs import parse_name
    from pixio_robot.utils.run import prepare_run_dir
    from pixio_robot.utils.rundir import run_dir_lock

    parse_name(cfg.env)  # clear error (known names, close matches) before anything is written
    root = Path(cfg.resolved_root()).expanduser()
    with contextlib.ExitStack() as locks:
        # the dataset root is locked by a file beside it (lerobot creates the root itself), the same
        # file the benchmark's cells wait on; the run directory by its own lock file
        locks.enter_context(run_dir_lock(root, lock_path=root.parent / f".{root.name}.lock"))
        if run_dir is not None:
            locks.enter_context(run_dir_lock(run_dir))
            prepare_run_dir(run_dir, cfg)
        return _collect(cfg, root, run_dir)


def _collect(cfg: CollectConfig, root: Path, run_dir) -> dict:
    from pixio_robot.data.lerobot_io import read_collect_info
    from pixio_robot.data.recorder import collect_demos
    from pixio_robot.utils.io import save_json

    root = collect_demos(cfg.env, cfg.n_episodes, root, image_size=cfg.image_size, camera=cfg.camera,
                         seed=cfg.seed, only_success=cfg.only_success, expert=cfg.expert_path, repo_id=cfg.repo_id,
                         append=cfg.append, use_videos=cfg.use_videos, max_episode_steps=cfg.max_episode_steps,
                         steps_after_success=cfg.steps_after_success, max_attempts=cfg.max_attempts,
                         render_quality=cfg.render_quality, vcodec=cfg.vcodec, progress=cfg.progress)
    record = read_collect_info(root)
    eps = record.get("episodes", [])
    result = {"root": str(root), "episodes": len(eps), "frames": int(sum(e["length"] for e in eps)),
              "attempts": len(record.get("attempted", [])),
              "successes": int(sum(bool(a["success"]) for a in record.get("attempted", [])))}
    if run_dir is not None:
        save_json(Path(run_dir) / "results.json", result)
    return result


