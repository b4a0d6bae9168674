"""`python -m pixio_robot.benchmark`: a suite x encoders x seeds grid, to a table, CSV and plots.

Each cell (task, encoder, seed): reuse or collect the suite's demos (LeRobotDataset under
`data_root`), train the suite's policy on the frozen encoder through `pixio_robot.train.run_train`
(which builds the frozen-feature cache and evaluates periodically), and record the best success
during training and the final success in `<run_dir>/cells/<key>.json`. Re-running skips
finished cells; `cell=<i>` runs one cell, so a launcher can spread the grid:

    python -m pixio_robot.benchmark                                   # the quick CPU suite
    python -m pixio_robot.benchmark suite=cortexbench_metaworld encoders=pixio_random_vs_ckpt \\
        encoders.1.path=runs/pretrain/tiny_cpu/encoder
    python -m pixio_robot.benchmark -m suite=cortexbench_metaworld cell='range(0,15)'  # one job per cell
    python -m pixio_robot.benchmark suite=cortexbench_metaworld report_only=true      # table + plots
    python -m pixio_robot.benchmark suite=pusht_diffusion encoders=resnet18_vs_pixio  # LeRobot's Diffusion
    python -m pixio_robot.benchmark suite=aloha_act encoders=resnet18_vs_pixio        # LeRobot's ACT

`suite.policy: act | diffusion` suites train LeRobot's own policy instead of the MLP (see
`pixio_robot.benchmark.lerobot`); a `source: resnet18` column is LeRobot's built-in trunk.
"""

from __future__ import annotations

from pixio_robot.benchmark.config import BenchmarkConfig


def __getattr__(name: str):
    """The loop's public names (`run_benchmark`, ...) load on first use: importing the package
    for its config classes stays light."""
    if name.startswith("__") or name == "loop":
        raise AttributeError(name)
    import importlib

    loop = importlib.import_module("pixio_robot.benchmark.loop")

    try:
        return getattr(loop, name)
    except AttributeError:
        raise AttributeError(f"module 'pixio_robot.benchmark' has no attribute {name!r}") from None


__all__ = ['BenchmarkConfig', 'run_benchmark', 'run_cell']
