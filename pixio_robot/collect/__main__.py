"""`python -m pixio_robot.collect`: the hydra entry point."""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from pixio_robot.collect.loop import run_collect
from pixio_robot.utils.cli import to_config, user_errors


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
    from pixio_robot.collect.config import CollectConfig
    from pixio_robot.utils.cli import run_app



    run_app(_app, schema=CollectConfig)


if __name__ == "__main__":
    main()
