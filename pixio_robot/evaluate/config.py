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
    n_episodes: int = 50  # rollout episodes, >= 1
    n_envs: int = 4  # envs run side by side (at most n_episodes)
    seed: int = 1000  # episode i resets its env with seed + i
    image_size: int | None = None  # rendered frame side; null: the policy's recorded size, else 128
    camera: str | None = None  # null: the policy's recorded camera, else the env family's default
    max_episode_steps: int | None = None  # null: the env's own limit
    n_videos: int = 2  # the first N episodes are written to <run_dir>/videos/ (mp4); 0: none
    video_fps: int = 20  # frame rate of those videos
    vector_mode: str = "subproc"  # subproc: one process per env (rendering in parallel); serial
    stop_on_success: bool = False  # end an episode at its first success (same success rate, faster)
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda[:i] | mps
    num_threads: int | None = None  # torch threads of the policy process (1 suits 2 cores + env workers)
    progress: bool = True  # a progress bar over episodes
    run_dir: str | None = None  # default: the hydra run dir (runs/evaluate/<timestamp>)
    resume: bool = True  # true: the same evaluation finished there -> its summary is returned; other settings
                         # -> refused with the differences; false: the earlier outputs move to previous/<time>/
                         # (nothing is deleted)

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
