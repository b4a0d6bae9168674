"""Env throughput: steps/s per family and image size, fast vs default rendering, 1 vs N envs.

    MUJOCO_GL=egl python benchmarks/bench_envs.py                 # all families, ~3-5 min on 2 cores
    python benchmarks/bench_envs.py --families metaworld dmc --sizes 84 --seconds 1

Each cell steps one env with random actions for `--seconds` (after a warm-up reset and step)
and prints steps/s; ratios compare fast vs default quality and N vectorised envs vs one.
The machine may be shared: compare the figures of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pixio_robot.envs import make_env, make_vec_env  # noqa: E402

FAMILIES = {
    "metaworld": "metaworld/drawer-open-v3",
    "dmc": "dmc/walker-walk",
    "gym": "gym/Pusher-v5",
    "pusht": "lerobot/pusht",
    "aloha": "lerobot/aloha-transfer-cube",
}


def steps_per_s(env, seconds: float, max_steps: int = 5000) -> float:
    """Random-action steps/s of a single env (resets at episode ends count as time, not steps)."""
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=0)
    env.step(rng.uniform(low, high).astype(np.float32))  # warm-up: first render builds the GL context
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds and n < max_steps:
        _, _, term, trunc, _ = env.step(rng.uniform(low, high).astype(np.float32))
        n += 1
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - t0)


def vec_steps_per_s(name: str, n: int, size: int, seconds: float, vectorization: str) -> float:
    """Env steps/s (summed over envs) of a gymnasium VectorEnv of `n` copies."""
    venv = make_vec_env(name, n, seed=0, image_size=size, vectorization=vectorization)
    try:
        rng = np.random.default_rng(0)
        space = venv.single_action_space
        venv.reset(seed=0)
        venv.step(rng.uniform(space.low, space.high, (n, *space.shape)).astype(np.float32))
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            venv.step(rng.uniform(space.low, space.high, (n, *space.shape)).astype(np.float32))
            k += 1
        return k * n / (time.perf_counter() - t0)
    finally:
        venv.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--sizes", nargs="+", type=int, default=[84, 128, 224])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing window per cell")
    ap.add_argument("--n-envs", type=int, default=2, help="N of the vectorised comparison")
    ap.add_argument("--vec-size", type=int, default=128)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    rows, out = [], {"gl": os.environ.get("MUJOCO_GL"), "cpus": os.cpu_count(), "cells": []}
    print(f"MUJOCO_GL={out['gl']}  cpus={out['cpus']}  window={args.seconds}s\n")
    print("| family | env | px | state only | fast | default | fast/default |")
    print("|---|---|---|---|---|---|---|")
    for fam in args.families:
        name = FAMILIES[fam]
        env = make_env(name, pixels=False)
        phys = steps_per_s(env, args.seconds / 2)
        env.close()
        for size in args.sizes:
            rates = {}
            for quality in ("fast", "default"):
                env = make_env(name, image_size=size, render_quality=quality)
                rates[quality] = steps_per_s(env, args.seconds)
                env.close()
            ratio = rates["fast"] / rates["default"]
            print(f"| {fam} | {name} | {size} | {phys:.0f} | {rates['fast']:.1f} | {rates['default']:.1f} | "
                  f"{ratio:.1f}x |", flush=True)
            out["cells"].append({"family": fam, "env": name, "size": size, "state_only": phys, **rates})
            rows.append(ratio)
    print(f"\nfast vs default rendering: median {np.median(rows):.1f}x (min {min(rows):.1f}x, max {max(rows):.1f}x)")

    print(f"\n| family | px | 1 env | {args.n_envs} envs sync | {args.n_envs} envs async | async/1 |")
    print("|---|---|---|---|---|---|")
    out["vector"] = []
    for fam in args.families:
        name = FAMILIES[fam]
        one = vec_steps_per_s(name, 1, args.vec_size, args.seconds, "sync")
        sync = vec_steps_per_s(name, args.n_envs, args.vec_size, args.seconds, "sync")
        asyn = vec_steps_per_s(name, args.n_envs, args.vec_size, args.seconds, "async")
        print(f"| {fam} | {args.vec_size} | {one:.1f} | {sync:.1f} | {asyn:.1f} | {asyn / one:.2f}x |", flush=True)
        out["vector"].append({"family": fam, "size": args.vec_size, "one": one, "sync": sync, "async": asyn,
                              "n_envs": args.n_envs})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
