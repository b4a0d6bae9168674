"""The schema of `python -m pixio_robot.rl` (a hydra ConfigStore node)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixio_robot.policies.encoder_config import AdapterConfig

ALGOS = ("ppo", "sac")
OBS_MODES = ("pixels", "pixels_state", "state")
PIXEL_MODES = ("pixels", "pixels_state")
VECTOR_MODES = ("serial", "subproc")


@dataclass
class RLConfig:
    algo: str = "ppo"  # ppo | sac
    env: str = "gym/Reacher-v5"  # a make_env name (gym/..., dmc/..., metaworld/..., aloha/..., pusht/...)
    obs: str = "pixels"  # pixels (frames only) | pixels_state (frames + state vector) | state (MLP, no rendering)
    n_envs: int = 4  # envs stepped side by side (SB3 VecEnv), >= 1
    vector_mode: str = "serial"  # serial (one process) | subproc (one process per env)
    total_timesteps: int = 100_000  # agent steps to train, summed over the n_envs envs (a resume continues to it)
    image_size: int = 64  # rendered frame side
    camera: str | None = None  # the env family's default camera when null
    frame_stack: int = 1  # pixel observations: the last N frames stacked (1: none; unused with obs=state)
    action_repeat: int = 1  # env steps per agent action (max_episode_steps counts agent steps)
    max_episode_steps: int | None = None  # the env's own limit when null
    env_options: dict[str, Any] = field(default_factory=dict)  # more make_env keyword arguments
    encoder: AdapterConfig = field(default_factory=AdapterConfig)  # pixel obs: the encoder and how its tokens are read
    share_features_extractor: bool | None = None  # null: SAC shares when frozen, PPO shares (SB3's default)
    net_arch: list[int] | None = None  # actor/critic MLP widths (SB3 defaults when null)
    algo_kwargs: dict[str, Any] = field(default_factory=dict)  # PPO/SAC keyword arguments (add with +algo_kwargs.x=)
    eval_every: int = 10_000  # env steps between evaluations; 0: only the final one
    n_episodes: int = 10  # episodes per evaluation
    ckpt_every: int = 50_000  # env steps between checkpoints; 0: off (Ctrl-C still saves one)
    ckpt_replay_buffer: bool = True  # SAC: save the replay buffer with checkpoints (resumes with it)
    resume: bool = True  # re-running into a run dir resumes from its newest checkpoint; false: move it aside
    export_path: str | None = None  # also copy the final model.zip here (e.g. experts/dmc-walker-walk.zip)
    seed: int = 0  # SB3's seed; training env i is seeded seed + i, evaluation episodes from seed + 10000
    device: str = "auto"  # auto | cpu | cuda[:i] | mps
    num_threads: int | None = 1  # torch threads (null: torch's default); tiny nets: 1 avoids oversubscription
    run_dir: str | None = None  # null: runs/rl/<time>
    tensorboard: bool = True  # TensorBoard events in <run_dir>/tb
    progress: bool = True  # a progress bar over env steps

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo={self.algo!r} is not one of {ALGOS}")
        if self.obs not in OBS_MODES:
            raise ValueError(f"obs={self.obs!r} is not one of {OBS_MODES}")
        if self.n_envs < 1 or self.total_timesteps < 1:
            raise ValueError("n_envs and total_timesteps must be >= 1")
        if self.vector_mode not in VECTOR_MODES:
            raise ValueError(f"vector_mode must be one of {VECTOR_MODES}, got {self.vector_mode!r}")
        if self.eval_every < 0 or self.ckpt_every < 0 or self.n_episodes < 1:
            raise ValueError("eval_every and ckpt_every must be >= 0 (0: off), n_episodes >= 1")


def register_configs() -> None:
    """`rl_schema` in hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="rl_schema", node=RLConfig)

register_configs()  # importing the schema module registers it (every entry does the same)

__all__ = ["ALGOS", "OBS_MODES", "PIXEL_MODES", "RLConfig", "VECTOR_MODES", "register_configs"]
