"""`python -m pixio_robot.quickstart`: the hydra entry point."""

from __future__ import annotations

import os

from pixio_robot.quickstart.loop import run_quickstart


def main() -> None:
    """Console script / `python -m` entry (hydra)."""
    import hydra

    from pixio_robot.utils.cli import to_config, user_errors

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.quickstart", config_name="config")
    def _app(dcfg) -> None:
        with user_errors("re-run the same command to resume (finished steps are kept)"):
            run_quickstart(to_config(dcfg))

    from pixio_robot.quickstart.config import QuickstartConfig
    from pixio_robot.utils.cli import run_app



    run_app(_app, schema=QuickstartConfig)


if __name__ == "__main__":
    main()
