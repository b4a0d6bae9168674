"""`python -m pixio_robot.pretrain` (console script `pixio-pretrain`): hydra entry point.

With no arguments it pretrains a tiny Pixio on frames rendered from the bundled simulators
(offline, a few minutes on 2 CPU cores). Examples:
  python -m pixio_robot.pretrain data=folder data.sources.folder.path=/data/images
  python -m pixio_robot.pretrain experiment=pixio_b16 data.sources.web.path='/data/shards/{000..999}.tar'
  torchrun --nproc_per_node=8 -m pixio_robot.pretrain experiment=pixio_l16 ...
"""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from pixio_robot.pretrain.config import PretrainConfig, register_configs
from pixio_robot.utils.cli import to_config as _to_config
from pixio_robot.utils.cli import user_errors

register_configs()


def to_config(cfg: DictConfig) -> PretrainConfig:
    """DictConfig (validated against the schema, no unknown keys) -> plain dataclasses."""
    return _to_config(cfg)


@hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.pretrain", config_name="config")
def _app(cfg: DictConfig) -> None:
    from pixio_robot.pretrain.loop import run_pretrain

    with user_errors("re-run the same command to resume from the last checkpoint"):
        run_pretrain(to_config(cfg))


def main() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pixio_robot.pretrain.config import PretrainConfig
    from pixio_robot.utils.cli import run_app



    run_app(_app, schema=PretrainConfig)


if __name__ == "__main__":
    main()
