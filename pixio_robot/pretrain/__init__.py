"""Pixio pretraining: `python -m pixio_robot.pretrain` (hydra) or `run_pretrain(PretrainConfig(...))`."""

from pixio_robot.pretrain.config import (
    CurationConfig,
    DataConfig,
    DistillConfig,
    LoggerConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    ScoreConfig,
    SourceConfig,
)


def run_pretrain(cfg: PretrainConfig) -> dict:
    """Run pretraining (see `pixio_robot.pretrain.loop.run_pretrain`)."""
    from pixio_robot.pretrain.loop import run_pretrain as _run

    return _run(cfg)


__all__ = ["CurationConfig", "DataConfig", "DistillConfig", "LoggerConfig", "ModelConfig", "OptimConfig", "PretrainConfig",
           "ScoreConfig", "SourceConfig", "run_pretrain"]
