"""The schema of `python -m pixio_robot.collect` (hydra ConfigStore nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore


@dataclass
class CollectConfig:
    """Schema of the collect entry (unknown keys are errors)."""

    env: str = "metaworld/drawer-open-v3"  # a make_env name with an expert (scripted MetaWorld, or expert_path)
    n_episodes: int = 3  # episodes to record (successful ones when only_success)
    root: str | None = None  # the LeRobotDataset folder; null: demos/<family>_<task>_<image_size>px
    image_size: int = 64  # rendered frame side
    camera: str | None = None  # null: the family's default camera (MetaWorld corner2)
    seed: int = 0  # env seed of the first episode; each attempt takes the next seed not used in root
    only_success: bool = True  # keep only episodes the expert solved
    expert_path: str | None = None  # SB3 .zip for non-MetaWorld envs (python -m pixio_robot.rl obs=state)
    repo_id: str | None = None  # dataset repo id; null: local/<root folder name>
    append: bool = False  # true: add `n_episodes` on top of what root holds
    use_videos: bool = True  # false: lossless PNG frames instead of mp4
    max_episode_steps: int | None = None  # null: the env's own limit
    steps_after_success: int | None = 10  # steps recorded after the first success; null: run to the env's limit
    max_attempts: int | None = None  # give up after this many episodes; null: 3x the missing ones + 10
    render_quality: str = "fast"  # fast | default (MuJoCo offscreen settings)
    vcodec: str = "h264"  # video codec of the mp4 frames
    progress: bool = True  # a progress bar over episodes

    def __post_init__(self) -> None:
        if self.n_episodes < 0:
            raise ValueError(f"n_episodes must be >= 0, got {self.n_episodes}")
        if self.steps_after_success is not None and self.steps_after_success < 0:
            raise ValueError(f"steps_after_success must be >= 0, or null to run every episode to the env's limit; "
                             f"got {self.steps_after_success}")
        if not 8 <= self.image_size <= 4096:
            raise ValueError(f"image_size must be in [8, 4096], got {self.image_size}")
        if self.render_quality not in ("fast", "default"):
            raise ValueError(f"render_quality must be 'fast' or 'default', got {self.render_quality!r}")

    def resolved_root(self) -> Path:
        return Path(self.root or f"demos/{self.env.replace('/', '_')}_{self.image_size}px")


def register_configs() -> None:
    """`collect_schema` in hydra's ConfigStore (idempotent; done when this module is imported)."""
    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


register_configs()
