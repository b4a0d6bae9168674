"""`python -m pixio_robot.collect` (console script `pixio-collect`): expert demos -> LeRobotDataset.

    python -m pixio_robot.collect                                   # 3 drawer-open demos, 64 px
    python -m pixio_robot.collect env=metaworld/hammer-v3 n_episodes=25 image_size=128 root=demos/hammer
    python -m pixio_robot.collect env=dmc/walker-walk expert_path=experts/walker-walk.zip only_success=false

Interrupt it at any time; re-running the same command keeps the saved episodes and continues.
"""

from __future__ import annotations

from pixio_robot.collect.config import CollectConfig


def __getattr__(name: str):
    """The loop's public names (`run_collect`, ...) load on first use: importing the package
    for its config classes stays light."""
    if name.startswith("__") or name == "loop":
        raise AttributeError(name)
    import importlib

    loop = importlib.import_module("pixio_robot.collect.loop")

    try:
        return getattr(loop, name)
    except AttributeError:
        raise AttributeError(f"module 'pixio_robot.collect' has no attribute {name!r}") from None


__all__ = ['CollectConfig', 'run_collect']
