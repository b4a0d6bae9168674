"""The schema of `python -m pixio_robot.collect` (hydra ConfigStore nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore


@dataclass
class CollectConfig:
    """Schema of the collect entry (unknown keys are errors)."""

    env: str = "metaworld/drawer-open-v3"
    n_episodes: int = 3
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
    steps_after_success: int | None = 10
    max_attempts: int | None = None
    render_quality: str = "fast"
    vcodec: str = "h264"
    progress: bool = True

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


ConfigStore.instance().store(name="collect_schema", node=CollectConfig)
