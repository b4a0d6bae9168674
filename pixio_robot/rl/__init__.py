"""Reinforcement learning on a Pixio backbone: `python -m pixio_robot.rl` (hydra, stable-baselines3).

    python -m pixio_robot.rl algo=ppo env=gym/Reacher-v5 total_timesteps=200000
    python -m pixio_robot.rl experiment=dmc_expert env=dmc/walker-walk export_path=experts/dmc-walker-walk.zip

`config.py` the schema, `agent.py` the SB3 agents (SAC's pixel policy, loading, the Policy-API
adapter the rollout loop drives), `checkpoint.py` the run directory (SB3's CheckpointCallback,
resume, refusal), `loop.py` `run_rl`. `run_rl(cfg)` is the hydra-free API.
"""

from __future__ import annotations

from pixio_robot.rl.config import ALGOS, OBS_MODES, PIXEL_MODES, VECTOR_MODES, RLConfig, register_configs

_LAZY = ("pixio_robot.rl.loop", "pixio_robot.rl.agent", "pixio_robot.rl.checkpoint")


def __getattr__(name: str):
    """The loop's and the agents' public names (`run_rl`, `load_agent`, ...) load on first use:
    importing the package for its config classes stays light (no SB3, no torch)."""
    if name.startswith("__") or name in ("loop", "agent", "checkpoint"):
        raise AttributeError(name)
    import importlib

    for mod in _LAZY:
        m = importlib.import_module(mod)
        if name in getattr(m, "__all__", ()):
            return getattr(m, name)
    raise AttributeError(f"module 'pixio_robot.rl' has no attribute {name!r}")


__all__ = ["ALGOS", "OBS_MODES", "PIXEL_MODES", "RLConfig", "VECTOR_MODES", "build_agent", "describe_observation",
           "evaluate_agent", "load_agent", "make_vec", "register_configs", "run_rl"]
