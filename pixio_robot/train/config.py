"""The schema of `python -m pixio_robot.train` (hydra ConfigStore nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from pixio_robot.policies.encoder_adapter import AdapterConfig


@dataclass
class DatasetConfig:
    root: str | None = None  # LeRobotDataset folder on disk
    repo_id: str | None = None  # hub id (downloads; only when named)
    image_key: str | None = None  # one camera key (default: every camera of the dataset, see `cameras`)
    cameras: list[str] | None = None  # subset of cameras, in order (keys or short names: top); default all
    state_key: str | None = None  # state feature (default: observation.state when present, else no state)
    action_key: str = "action"  # action feature
    video_backend: str = "pyav"  # lerobot video decoder (pyav | torchcodec), as pretraining
    val_fraction: float = 0.1  # share of episodes held out for the validation loss


@dataclass
class OptimConfig:
    lr: float = 1e-3  # CortexBench: Adam, lr 1e-3, batch 256, 100 epochs
    batch_size: int = 256  # rows (frames) per optimizer step, >= 2
    epochs: int = 100  # passes over the training episodes' rows
    weight_decay: float = 0.0  # 0: Adam (CortexBench); > 0: AdamW with this decay (LeRobot policies: their preset)
    encoder_lr: float | None = None  # lr of trainable encoder weights (default lr / 10)
    clip_grad: float | None = None  # max gradient norm (null: no clipping)


@dataclass
class EvalConfig:
    env: str | None = None  # make_env name; null: the env recorded by pixio_robot.collect, else none
    every_epochs: int = 5  # rollouts every N epochs (and after the last); 0: only after the last
    n_episodes: int = 25  # 0: no rollouts
    n_envs: int = 5  # rollout envs run side by side (at most n_episodes)
    seed: int = 100  # episode i of a rollout resets its env with seed + i
    image_size: int | None = None  # env render size (default: the dataset's frame size)
    camera: str | None = None  # null: the camera the demos were collected with, else the family's default
    max_episode_steps: int | None = None  # null: the env's own limit
    n_videos: int = 0  # the final evaluation writes its first N episodes to <run_dir>/videos/ (mp4)
    vector_mode: str = "serial"  # serial | subproc
    stop_on_success: bool = False  # end an episode at its first success (same success rate, faster)
    env_options: dict[str, Any] = field(default_factory=dict)  # more make_env keyword arguments (+eval.env_options.x=)


@dataclass
class TrainConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # the demonstrations (a LeRobotDataset)
    encoder: AdapterConfig = field(default_factory=AdapterConfig)  # the policy's image encoder, how tokens are read
    policy: Any = MISSING  # MLPConfig | LeRobotPolicyChoice (pixio_act / pixio_diffusion) (group `policy`)
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimizer, batch and epochs
    eval: EvalConfig = field(default_factory=EvalConfig)  # rollouts during and after training (MLP policies)
    cache_dir: str = "~/.cache/pixio_robot/features"  # feature cache (frozen-encoder features, decoded frames)
    use_cache: bool = True  # frozen encoder: train from cached features
    cache_dtype: str = "float32"  # float16 halves the cache (patch tokens of big encoders)
    encode_batch_size: int = 64  # frames per encoder forward pass when filling the feature cache
    device: str = "auto"  # auto | cpu | cuda[:i]
    seed: int = 0  # torch / numpy seed: initial weights, train / val episode split, batch order
    num_threads: int | None = None  # torch intra-op threads (null: torch's default)
    run_dir: str | None = None  # default: hydra's run dir, or runs/train/<timestamp>
    resume: bool = True  # false: move an earlier run's outputs in run_dir to previous/<time>/ first
    tensorboard: bool = True  # TensorBoard events in <run_dir>/tb
    progress: bool = True  # progress bars (epochs, encoding, rollouts)

    def __post_init__(self) -> None:
        if self.optim.batch_size < 2:
            raise ValueError(f"optim.batch_size must be >= 2, got {self.optim.batch_size}")
        if self.optim.epochs < 1:
            raise ValueError(f"optim.epochs must be >= 1, got {self.optim.epochs}")
        if not 0.0 <= self.dataset.val_fraction < 1.0:
            raise ValueError(f"dataset.val_fraction must be in [0, 1), got {self.dataset.val_fraction}")


def register_configs() -> None:
    """Schemas in hydra's ConfigStore: `train_schema`, `pixio_train_policy/{mlp,lerobot}_schema`."""
    from hydra.core.config_store import ConfigStore

    from pixio_robot.policies import MLPConfig
    from pixio_robot.policies.lerobot.training import LeRobotPolicyChoice
    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    # A group of its own: ConfigStore groups are global, and a `policy` group would turn other
    # apps' `policy=<path>` overrides (python -m pixio_robot.evaluate) into group selections.
    cs.store(group="pixio_train_policy", name="mlp_schema", node=MLPConfig)
    cs.store(group="pixio_train_policy", name="lerobot_schema", node=LeRobotPolicyChoice)


RETIRED_POLICIES = {"act": "pixio_act", "diffusion": "pixio_diffusion"}


def retired_policy_message(name: str) -> str:
    return (f"policy={name} (the project's home-made {name} head) is retired: use policy={RETIRED_POLICIES[name]} "
            f"(LeRobot's own {'ACT' if name == 'act' else 'Diffusion Policy'} with a Pixio trunk)")


register_configs()  # importing the schema module registers it (every entry does the same)
