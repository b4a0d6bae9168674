"""`python -m pixio_robot.benchmark`: the hydra entry point."""

from __future__ import annotations

from pixio_robot.benchmark.loop import run_benchmark


def main() -> None:
    """Console script / `python -m` entry (hydra)."""
    import os

    import hydra

    from pixio_robot.utils.cli import RunError, to_config, user_errors

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.benchmark", config_name="config")
    def _app(dcfg) -> None:
        with user_errors("re-run the same command: finished cells are skipped"):
            cfg = to_config(dcfg)
            summary = run_benchmark(cfg)
            if summary["failed"] and not cfg.report_only:  # batch schedulers / CI must see it
                raise RunError(f"{len(summary['failed'])} of {summary['cells']} cell(s) failed: "
                               f"{', '.join(summary['failed'][:5])}{' ...' if len(summary['failed']) > 5 else ''}; "
                               f"each error is in {cfg.run_dir}/cells/<cell>.json. Re-running retries them")

    from pixio_robot.benchmark.config import BenchmarkConfig
    from pixio_robot.utils.cli import run_app



    run_app(_app, schema=BenchmarkConfig)


if __name__ == "__main__":
    main()
