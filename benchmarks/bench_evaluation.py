"""Evaluation throughput: K envs in lockstep with ONE batched policy call per step vs a one-env loop.

Prints env steps/s of
  1. one env, one policy call per step (the usual evaluation loop),
  2. K envs in this process, one batched call (batching the encoder only),
  3. K envs in K worker processes, one batched call (rendering runs on several cores too),
and the ratios to (1). The policy is a CortexBench MLP on a randomly initialised Pixio encoder
(weights do not change the cost). Target (BENCHMARKS.md): (3) >= 1.6x (1) on 2 cores.

    MUJOCO_GL=egl python benchmarks/bench_evaluation.py --env metaworld/drawer-open-v3 --n-envs 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_policy(encoder: str, encoder_size: int, env_name: str, image_size: int):
    """MLP policy (3-frame history, proprioception) on a random-init Pixio encoder."""
    from pixio_robot.envs import make_env
    from pixio_robot.policies import AdapterConfig, MLPConfig, PolicySpec, make_policy

    env = make_env(env_name, image_size=image_size)
    state_dim = env.observation_space["state"].shape[0]
    action_dim = env.action_space.shape[0]
    env.close()
    spec = PolicySpec(state_dim=state_dim, action_dim=action_dim, env_name=env_name, image_size=image_size)
    adapter = AdapterConfig(source="pixio", name=encoder, image_size=encoder_size)
    return make_policy("mlp", MLPConfig(), adapter, spec).eval()


def measure(policy, env_name: str, n_envs: int, mode: str, episodes: int, steps: int, image_size: int) -> dict:
    from pixio_robot.evaluation import evaluate_policy

    t0 = time.perf_counter()
    res = evaluate_policy(policy, env_name, n_episodes=episodes, n_envs=n_envs, seed=0, image_size=image_size,
                          max_episode_steps=steps, vector_mode=mode, progress=False)
    wall = time.perf_counter() - t0  # includes env construction (workers start once per evaluation)
    return {"n_envs": n_envs, "mode": mode, "steps": res.steps, "wall_s": wall, "startup_s": res.startup_s,
            "steps_per_s": res.rollout_steps_per_s, "with_startup_steps_per_s": res.steps / wall,
            "errors": res.n_errors}


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="metaworld/drawer-open-v3")
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=128, help="env frame side")
    ap.add_argument("--encoder", default="pixio_vittiny")
    ap.add_argument("--encoder-size", type=int, default=128, help="side fed to the encoder")
    ap.add_argument("--steps", type=int, default=60, help="steps per episode")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of n_envs episodes per measurement")
    ap.add_argument("--repeats", type=int, default=2, help="repeats per setting (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    policy = build_policy(args.encoder, args.encoder_size, args.env, args.image_size)
    k = args.n_envs
    settings = [(1, "serial", args.rounds), (k, "serial", args.rounds * k), (k, "subproc", args.rounds * k)]
    results = []
    for n_envs, mode, episodes in settings:
        runs = [measure(policy, args.env, n_envs, mode, episodes, args.steps, args.image_size)
                for _ in range(args.repeats)]
        sps = statistics.median(r["steps_per_s"] for r in runs)
        results.append({**runs[0], "steps_per_s": sps, "all_steps_per_s": [r["steps_per_s"] for r in runs]})
    base = results[0]["steps_per_s"]
    print(f"env={args.env} image={args.image_size}px encoder={args.encoder}@{args.encoder_size}px "
          f"cores={os.cpu_count()} torch_threads={args.threads} steps/episode={args.steps}")
    print(f"load average (1 min) before the runs: {load:.2f} (wall-clock figures need an idle machine)")
    print(f"{'setting':<28}{'steps/s':>10}{'ratio':>8}{'start-up s':>12}{'steps/s incl. start-up':>24}")
    for r in results:
        name = f"{r['n_envs']} env(s), {r['mode']}"
        print(f"{name:<28}{r['steps_per_s']:>10.1f}{r['steps_per_s'] / base:>7.2f}x{r['startup_s']:>12.1f}"
              f"{r['with_startup_steps_per_s']:>24.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_average": load, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
