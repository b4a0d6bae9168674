"""`python -m pixio_robot.evaluate`: the hydra entry point."""

from __future__ import annotations

from pixio_robot.evaluate.loop import run_evaluate


def main() -> None:
    """Console script / `python -m` entry (hydra)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from pixio_robot.utils.cli import register_resolvers, to_config, user_errors

    register_resolvers()

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.evaluate", config_name="config")
    def _app(dcfg) -> None:
        with user_errors():
            run_evaluate(to_config(dcfg), HydraConfig.get().runtime.output_dir)

    from pixio_robot.evaluate.config import EvaluateConfig
    from pixio_robot.utils.cli import run_app



    run_app(_app, schema=EvaluateConfig)


if __name__ == "__main__":
    main()
