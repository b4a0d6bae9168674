"""`python -m pixio_robot.collect` (console script `pixio-collect`): expert demos -> LeRobotDataset.

    python -m pixio_robot.collect                                   # 3 drawer-open demos, 64 px
    python -m pixio_robot.collect env=metaworld/hammer-v3 episodes=25 image_size=128 root=demos/hammer
    python -m pixio_robot.collect env=dmc/walker-walk expert_path=experts/walker-walk.zip only_success=false

Interrupt it at any time; re-running the same command keeps the saved episodes and continues.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from pixio_robot.utils.cli import to_config, user_errors


@dataclass
class CollectConfig:
    """Schema of the collect entry (unknown keys are errors)."""

    env: str = "metaworld/drawer-open-v3"
    episodes: int = 3
    root: str | None = None
    image_size: int = 64
    camera: str | None = None
    seed: int = 0
    only_success: bool = True
    expert_path: str | None = None
    repo_id: str | None = None
    append: bool = False
    use_videos: bool = True
    max_episode_steps: int | None = None
    steps_after_success: int = 10
    max_attempts: int | None = None
    render_quality: str = "fast"
    vcodec: str = "h264"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"episodes must be >= 0, got {self.episodes}")
        if not 8 <= self.image_size <= 4096:
            raise ValueError(f"image_size must be in [8, 4096], got {self.image_size}")
        if self.render_quality not in ("fast", "default"):
            raise ValueError(f"render_quality must be 'fast' or 'default', got {self.render_quality!r}")

    def resolved_root(self) -> Path:
        return Path(self.root or f"demos/{self.env.replace('/', '_')}_{self.image_size}px")


ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


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
    from pixio_robot.data.collect import collect_demos
    from pixio_robot.data.lerobot_io import read_collect_info
    from pixio_robot.utils.io import save_json

    root = collect_demos(cfg.env, cfg.episodes, root, image_size=cfg.image_size, camera=cfg.camera,
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


@hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.collect", config_name="config")
def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    with user_errors("re-run the same command to continue to the requested number of episodes"):
        result = run_collect(to_config(cfg), run_dir=HydraConfig.get().runtime.output_dir)
    print(f"{result['episodes']} episodes ({result['frames']} frames) in {result['root']}; "
          f"expert success {result['successes']}/{result['attempts']} attempts")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pixio_robot.envs  # noqa: F401  (chooses the GL backend before mujoco is imported)
    from pixio_robot.utils.cli import run_app

    run_app(_app)


if __name__ == "__main__":
    main()
