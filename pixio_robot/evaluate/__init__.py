"""`python -m pixio_robot.evaluate policy=<dir>`: roll a saved policy out and report.

Writes into the run directory: `summary.json` (success rate with a Wilson 95% interval, mean
return with a t interval, lengths, errors), `episodes.csv` (one row per episode), `videos/`
(mp4 of the first `n_videos` episodes) and the resolved config.

    python -m pixio_robot.evaluate policy=runs/train/<ts>/policy n_episodes=50 n_envs=4
    python -m pixio_robot.evaluate policy=... env=metaworld/hammer-v3 vector_mode=serial
    python -m pixio_robot.evaluate policy=<lerobot-train out>/checkpoints/last/pretrained_model env=lerobot/pusht

A LeRobot policy directory (config.json with a LeRobot `type`: act, diffusion, pixio_act, ...)
runs through LeRobot's own processors (see pixio_robot.evaluation.lerobot_policy).
"""

from __future__ import annotations

from pixio_robot.evaluate.config import EvaluateConfig


def __getattr__(name: str):
    """The loop's public names (`run_evaluate`, ...) load on first use: importing the package
    for its config classes stays light."""
    if name.startswith("__") or name == "loop":
        raise AttributeError(name)
    import importlib

    loop = importlib.import_module("pixio_robot.evaluate.loop")

    try:
        return getattr(loop, name)
    except AttributeError:
        raise AttributeError(f"module 'pixio_robot.evaluate' has no attribute {name!r}") from None


__all__ = ['EvaluateConfig', 'run_evaluate']
