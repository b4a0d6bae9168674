"""`python -m pixio_robot.quickstart` (`make quickstart`): the whole path on a laptop CPU.

1. pretrain a tiny Pixio on frames rendered from the simulators (`run_pretrain`, short budget);
2. collect scripted-expert demos on one or two MetaWorld tasks (LeRobotDataset on disk);
3. train the CortexBench BC policy on the frozen pretrained encoder AND on a frozen random-init
   encoder of exactly the same shape (through the benchmark grid: feature cache, training,
   rollouts);
4. write a report: `report.md` (what ran, scores with Wilson intervals, timings), the
   pretraining loss curve, a reconstruction grid, success bar charts and one rollout video.

Every step resumes: re-running the command reuses the finished pretraining, demos and cells.
"""

from __future__ import annotations

from pixio_robot.quickstart.config import QuickstartConfig


def __getattr__(name: str):
    """The loop's public names (`run_quickstart`, ...) load on first use: importing the package
    for its config classes stays light."""
    if name.startswith("__") or name == "loop":
        raise AttributeError(name)
    import importlib

    loop = importlib.import_module("pixio_robot.quickstart.loop")

    try:
        return getattr(loop, name)
    except AttributeError:
        raise AttributeError(f"module 'pixio_robot.quickstart' has no attribute {name!r}") from None


__all__ = ['QuickstartConfig', 'run_quickstart']
