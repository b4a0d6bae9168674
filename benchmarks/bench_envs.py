"""Env throughput: steps/s per family and image size, fast vs default rendering, 1 vs N envs.

    MUJOCO_GL=egl python benchmarks/bench_envs.py                 # all families, ~3-5 min on 2 cores
    python benchmarks/bench_envs.py --families metaworld dmc --sizes 84 --seconds 1

Each cell steps one env with random actions (after a warm-up reset and step) and prints
steps/s: the fast and default-quality envs run in alternating windows (`--repeats`, median) so
that a shared machine's load hits both alike; ratios compare fast vs default quality and N
vectorised envs vs one.
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


def warm_up(env) -> None:
    """Reset and take one step: the first render builds the GL context."""
    env.reset(seed=0)
    env.step(env.action_space.sample())


def steps_per_s(env, seconds: float, max_steps: int = 5000) -> float:
    """Random-action steps/s of a warmed-up env over one window (episode resets count as time)."""
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds and n < max_steps:
        _, _, term, trunc, _ = env.step(rng.uniform(low, high).astype(np.float32))
        n += 1
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - t0)


def paired_rates(envs: dict, seconds: float, repeats: int) -> dict:
    """Median steps/s of each env over `repeats` windows taken in turn (A B A B ...), so that
    the load of a shared machine hits every variant alike."""
    for env in envs.values():
        warm_up(env)
    rates: dict = {k: [] for k in envs}
    for _ in range(repeats):
        for k, env in envs.items():
            rates[k].append(steps_per_s(env, seconds / repeats))
    return {k: float(np.median(v)) for k, v in rates.items()}


def vec_rates(name: str, n: int, size: int, seconds: float, repeats: int) -> dict:
    """Env steps/s (summed over envs) of 1 env, `n` envs stepped in this process (sync) and `n`
    envs in worker processes (async), measured in alternating windows (median)."""
    venvs = {"one": make_vec_env(name, 1, seed=0, image_size=size),
             "sync": make_vec_env(name, n, seed=0, image_size=size),
             "async": make_vec_env(name, n, seed=0, image_size=size, vector_mode="subproc")}
    rng = np.random.default_rng(0)
    rates: dict = {k: [] for k in venvs}
    try:
        for v in venvs.values():
            v.reset(seed=0)
        for _ in range(repeats):
            for k, v in venvs.items():
                space, m = v.single_action_space, v.num_envs
                actions = rng.uniform(space.low, space.high, (64, m, *space.shape)).astype(np.float32)
                v.step(actions[0])
                steps, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds / repeats:
                    v.step(actions[(steps // m) % 64])
                    steps += m
                rates[k].append(steps / (time.perf_counter() - t0))
    finally:
        for v in venvs.values():
            v.close()
    return {k: float(np.median(r)) for k, r in rates.items()}


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--sizes", nargs="+", type=int, default=[84, 128, 224])
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per cell and variant")
    ap.add_argument("--repeats", type=int, default=3, help="alternating windows per cell (median)")
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
        phys = paired_rates({"state": env}, args.seconds / 2, 1)["state"]
        env.close()
        for size in args.sizes:
            envs = {q: make_env(name, image_size=size, render_quality=q) for q in ("fast", "default")}
            rates = paired_rates(envs, args.seconds, args.repeats)
            for env in envs.values():
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
        r = vec_rates(name, args.n_envs, args.vec_size, args.seconds, args.repeats)
        one, sync, asyn = r["one"], r["sync"], r["async"]
        print(f"| {fam} | {args.vec_size} | {one:.1f} | {sync:.1f} | {asyn:.1f} | {asyn / one:.2f}x |", flush=True)
        out["vector"].append({"family": fam, "size": args.vec_size, "n_envs": args.n_envs, **r})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
