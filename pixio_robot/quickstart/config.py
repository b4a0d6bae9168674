"""The schema of `python -m pixio_robot.quickstart` (hydra ConfigStore nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class QuickstartConfig:
    """Schema of the quickstart (defaults sized for <= 20 minutes on 2 CPU cores)."""

    run_dir: str = "runs/quickstart"  # stable, so re-running resumes
    # 1. pretraining (the pretrain entry's tiny model on the simulator corpus)
    pretrain_model: str = "pixio_mae_tiny"  # the registered MAE pretrained (the pretrain entry's model.name)
    pretrain_steps: int = 200  # pretraining optimizer steps
    pretrain_batch_size: int = 32  # pretraining batch (images per step)
    pretrain_image_size: int = 128  # pretraining model input side (px)
    sim_frames: int = 1500  # simulator frames rendered for the pretraining corpus
    sim_envs: list[str] | None = None  # scenes of the corpus (None: the pretrain entry's default set)
    sim_render_size: int = 144  # side of the rendered corpus frames (px)
    sim_cache_dir: str | None = None  # None: ~/.cache/pixio_robot/sim_frames
    # 2-3. demos, behaviour cloning, rollouts
    envs: list[str] = field(default_factory=lambda: [  # tasks (make_env names) for demos, BC and rollouts
        "metaworld/button-press-topdown-v3", "metaworld/drawer-open-v3"])
    n_demos: int = 10  # scripted-expert demo episodes per task
    image_size: int = 128  # env frames; the encoders see them at this size too
    max_episode_steps: int = 150  # episode limit of the demos and the rollouts
    epochs: int = 40  # BC training epochs (rollouts only after the last)
    # how the BC head reads the frozen encoder: spatial (patch tokens -> a learned projection) or
    # mean_cls (the CortexBench protocol). 200 CPU steps leave the class tokens nearly constant
    # across frames (0.8% relative spread vs 13% for random weights); the patch tokens carry what
    # pretraining learned.
    embedding: str = "spatial"  # spatial (patch tokens) | mean_cls (CortexBench protocol) | all_cls | multi_block
    n_episodes: int = 10  # rollout episodes of the final policy per task
    n_envs: int = 5  # rollout envs run side by side
    vector_mode: str = "subproc"  # subproc (one process per rollout env) | serial
    seed: int = 100  # BC training and rollout seed (the grid's one seed; also the rollout video's)
    data_root: str = "~/.cache/pixio_robot/demos"  # collected demos, reused across runs
    cache_dir: str = "~/.cache/pixio_robot/features"  # frozen-encoder feature cache
    num_threads: int | None = 1  # torch threads (null: torch default); 1 is fastest on 2 cores
    progress: bool = True  # progress bars

    def __post_init__(self) -> None:
        if not self.envs:
            raise ValueError("quickstart needs at least one env, e.g. envs=[metaworld/drawer-open-v3]")
        from pixio_robot.policies.encoder_adapter import EMBEDDINGS

        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding={self.embedding!r} is not one of {EMBEDDINGS}")
        for name in ("pretrain_steps", "n_demos", "epochs", "n_episodes", "n_envs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def register_configs() -> None:
    """`quickstart_schema` in hydra's ConfigStore (idempotent; done when this module is imported)."""
    from pixio_robot.utils.cli import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="quickstart_schema", node=QuickstartConfig)


register_configs()
