"""Demonstration data: LeRobotDataset v3 writing/reading and expert demo collection.

Imports are lazy (lerobot is slow to import): ``from pixio_robot.data import collect_demos``
loads it on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "collect_demos": "pixio_robot.data.recorder",
    "rollout_episode": "pixio_robot.data.recorder",
    "DemoWriter": "pixio_robot.data.lerobot_io",
    "demo_features": "pixio_robot.data.lerobot_io",
    "load_frames": "pixio_robot.data.lerobot_io",
    "open_dataset": "pixio_robot.data.lerobot_io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pixio_robot.data' has no attribute {name!r}")
