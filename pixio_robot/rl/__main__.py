"""`python -m pixio_robot.rl`: the hydra entry point."""

from __future__ import annotations

from pixio_robot.rl.config import register_configs


def main() -> None:
    """Console entry (`pixio-rl`)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from pixio_robot.utils.cli import run_app, to_config, user_errors

    register_configs()

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.rl", config_name="config")
    def _main(dcfg) -> None:
        from pixio_robot.rl.loop import run_rl

        hint = "re-run the same command to resume from the newest checkpoint"
        with user_errors(hint):
            cfg = to_config(dcfg)
            if cfg.run_dir is None:
                cfg.run_dir = HydraConfig.get().runtime.output_dir
                hint = f"re-run the same command with run_dir={cfg.run_dir} to resume from the newest checkpoint"
        with user_errors(f"{hint} in {cfg.run_dir}/checkpoints"):
            res = run_rl(cfg)
        print({k: res[k] for k in ("final", "best_success", "timesteps", "model_path", "exported_to")})

    from pixio_robot.rl.config import RLConfig



    run_app(_main, schema=RLConfig)


if __name__ == "__main__":
    main()
