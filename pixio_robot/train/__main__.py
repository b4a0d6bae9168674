"""`python -m pixio_robot.train`: the hydra entry point."""

from __future__ import annotations

from pixio_robot.train.config import RETIRED_POLICIES, register_configs, retired_policy_message
from pixio_robot.train.loop import run_train


def main() -> None:
    """Console entry (`pixio-train`)."""
    import sys

    import hydra
    from hydra.core.hydra_config import HydraConfig

    from pixio_robot.utils.cli import to_config, user_errors

    for arg in sys.argv[1:]:
        name = arg.lstrip("+~").removeprefix("policy=") if arg.lstrip("+~").startswith("policy=") else None
        if name in RETIRED_POLICIES:
            print(f"error: {retired_policy_message(name)}", file=sys.stderr)
            sys.exit(1)
    register_configs()

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.train", config_name="config")
    def _main(dcfg) -> None:
        with user_errors():
            cfg = to_config(dcfg)
            if cfg.run_dir is None:
                cfg.run_dir = HydraConfig.get().runtime.output_dir
            res = run_train(cfg)
        keys = ("best_success", "final_success", "final_train_loss", "final_val_loss", "cache", "policy_dir")
        print({k: res[k] for k in keys})

    from pixio_robot.train.config import TrainConfig
    from pixio_robot.utils.cli import run_app



    run_app(_main, schema=TrainConfig)


if __name__ == "__main__":
    main()
