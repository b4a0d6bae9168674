"""Measure a demonstration expert through the one rollout loop (`evaluate_policy`).

`EnvActor` turns experts (``reset()``, ``act(obs, info) -> action``, see
:mod:`pixio_robot.envs.experts`) into the rollout's env-side Policy API
(``act_on_env(obs_rows, info_rows) -> [B, A]``): experts act on the env's own observation and
last info dict (MetaWorld's scripted policies read ``info["full_state"]``), which a LeRobot batch
does not carry. Episodes, seeds (``seed + episode``) and the success rule (``is_success`` at any
step, the episode stops there) are those of every other evaluation.

    python -m pixio_robot.evaluation.experts metaworld/drawer-open-v3 metaworld/hammer-v3 --episodes 50
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from pixio_robot.evaluation.rollout import evaluate_policy


class EnvActor:
    """K stateful experts, one per lockstep row (`make()` builds one; `n_rows` of them)."""

    def __init__(self, make: Callable[[], Any], n_rows: int = 1) -> None:
        self.experts = [make() for _ in range(n_rows)]

    def reset(self) -> None:
        for e in self.experts:
            e.reset()

    def act_on_env(self, obs_rows: list[dict], info_rows: list[dict]) -> np.ndarray:
        if len(obs_rows) > len(self.experts):
            raise ValueError(f"EnvActor holds {len(self.experts)} experts, got {len(obs_rows)} rows")
        return np.stack([np.asarray(e.act(o, i), np.float32)
                         for e, o, i in zip(self.experts, obs_rows, info_rows, strict=False)])


def measure_expert(env_name: str, n_episodes: int = 50, *, seed: int = 0, expert=None,
                   max_episode_steps: int | None = None, n_envs: int = 1) -> dict:
    """Success of an expert over `n_episodes` seeded state-only episodes (seeds seed..seed+n-1).

    `expert`: an expert object (then n_envs must be 1: experts keep per-episode state), else the
    scripted one of :func:`pixio_robot.envs.experts.make_expert`, one per env. Returns the counts,
    the success rate with its Wilson 95% interval, steps to success and the mean return."""
    from pixio_robot.envs.experts import make_expert

    if expert is not None and n_envs != 1:
        raise ValueError("one expert object acts in one env: pass n_envs=1, or expert=None for one scripted "
                         "expert per env")
    actor = EnvActor((lambda: expert) if expert is not None else (lambda: make_expert(env_name)), n_envs)
    res = evaluate_policy(actor, env_name, n_episodes=n_episodes, n_envs=n_envs, seed=seed,
                          max_episode_steps=max_episode_steps, stop_on_success=True, progress=False,
                          env_options={"pixels": False}, clip_actions=False)
    if res.n_errors:
        raise RuntimeError(f"{env_name}: {res.n_errors} episodes failed with env errors: {res.errors[:3]}")
    lengths = [r.first_success_step for r in res.episodes if r.success]
    return {"env": env_name, "episodes": res.n_episodes, "successes": res.successes,
            "success_rate": res.success_rate, "success_ci": list(res.success_ci),
            "mean_steps_to_success": float(np.mean(lengths)) if lengths else None,
            "max_steps_to_success": int(np.max(lengths)) if lengths else None,
            "mean_return": res.mean_return}


def main(argv: list[str] | None = None) -> None:
    from pixio_robot.envs.experts import make_expert

    parser = argparse.ArgumentParser(description="Measure expert success over seeded state-only episodes.")
    parser.add_argument("envs", nargs="+", help="env names, e.g. metaworld/drawer-open-v3")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path", default=None, help="SB3 .zip expert (default: scripted)")
    args = parser.parse_args(argv)
    print("| env | success [Wilson 95%] | mean steps to success | max steps |\n|---|---|---|---|")
    for name in args.envs:
        expert = make_expert(name, path=args.path) if args.path else None
        r = measure_expert(name, args.episodes, seed=args.seed, expert=expert)
        lo, hi = r["success_ci"]
        print(f"| {name} | {r['successes']}/{r['episodes']} ({100 * r['success_rate']:.0f}% [{100 * lo:.0f}, "
              f"{100 * hi:.0f}]) | {r['mean_steps_to_success'] or float('nan'):.0f} | {r['max_steps_to_success']} |",
              flush=True)


if __name__ == "__main__":
    main()
