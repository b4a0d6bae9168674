"""The schema of `python -m pixio_robot.evaluate` (hydra ConfigStore nodes)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class EvaluateConfig:
    """Schema of the evaluate entry; `None` fields come from the policy's saved config."""

    policy: str = MISSING  # saved policy dir (model.safetensors + config.json): ours, or a LeRobot pretrained_model
    env: str | None = None  # e.g. metaworld/drawer-open-v3; default: the policy's env
    n_episodes: int = 50
    n_envs: int = 4
    seed: int = 1000
    image_size: int | None = None
    camera: str | None = None
    max_episode_steps: int | None = None
    n_videos: int = 2
    video_fps: int = 20
    vector_mode: str = "subproc"  # subproc: one process per env (rendering in parallel); serial
    stop_on_success: bool = False
    device: str = "auto"
    num_threads: int | None = None  # torch threads of the policy process (1 suits 2 cores + env workers)
    progress: bool = True
    run_dir: str | None = None  # default: the hydra run dir (runs/evaluate/<timestamp>)
    # the same evaluation finished there -> its summary is returned; other settings -> refused with the
    # differences; false: the earlier outputs move to previous/<time>/ (nothing is deleted)
    resume: bool = True

    def __post_init__(self) -> None:
        if self.n_episodes < 1:
            raise ValueError(f"n_episodes must be >= 1, got {self.n_episodes}")
        if self.n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {self.n_envs}")
        if self.vector_mode not in ("serial", "subproc"):
            raise ValueError(f"vector_mode must be 'serial' or 'subproc', got {self.vector_mode!r}")
        if self.n_videos < 0:
            raise ValueError(f"n_videos must be >= 0, got {self.n_videos}")


def register_configs() -> None:
    """`evaluate_schema` in hydra's ConfigStore (idempotent; done when this module is imported)."""
    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


register_configs()
