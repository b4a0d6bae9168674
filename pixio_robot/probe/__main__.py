"""`python -m pixio_robot.probe [encoders=...] [key=value ...]` (hydra)."""

from __future__ import annotations


def main() -> None:
    import os

    import hydra

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pixio_robot.probe.config  # noqa: F401  (registers probe_schema)
    from pixio_robot.utils.cli import RunError, register_resolvers, run_app, to_config, user_errors

    register_resolvers()

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.probe", config_name="config")
    def _app(dcfg) -> None:
        from pixio_robot.probe.loop import run_probe

        with user_errors("re-run the same command: finished cells are skipped"):
            summary = run_probe(to_config(dcfg))
            if summary["failed"]:
                raise RunError(f"{len(summary['failed'])} of {summary['cells']} probe cell(s) failed: "
                               f"{', '.join(summary['failed'][:5])}; the errors are in <run_dir>/cells/*.json")

    from pixio_robot.probe.config import ProbeConfig



    run_app(_app, schema=ProbeConfig)


if __name__ == "__main__":
    main()
