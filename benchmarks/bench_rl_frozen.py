"""Pixel SAC with a frozen Pixio encoder: `learn()` time with and without the frozen-feature reuse.

    python benchmarks/bench_rl_frozen.py                                  # pixio_vittiny @64, 200 updates
    python benchmarks/bench_rl_frozen.py --model pixio_vittest --steps 164 --repeats 1

SB3's SAC encodes each replay batch five times per gradient step (actor, critic twice, next-obs
actor and target critic). A frozen encoder handed the same pixels again reuses its features
(`pixio_robot.policies.sb3_extractor.FrozenFeatureCache`, exact comparison, owned by the SAC policy), so two passes remain.
Runs gym/Reacher-v5 from pixels, the same seed each way; prints `learn()` seconds, the ratio, and
whether the final returns are identical (they must be).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pixio_robot.policies.sb3_extractor as extractor  # noqa: E402
from pixio_robot.policies import AdapterConfig  # noqa: E402
from pixio_robot.rl import RLConfig, run_rl  # noqa: E402


def one_run(args, cache: int) -> tuple[float, float]:
    extractor.FrozenFeatureCache.__init__.__defaults__ = (cache,)  # the size new policies' caches get
    with tempfile.TemporaryDirectory() as d:
        cfg = RLConfig(algo="sac", env="gym/Reacher-v5", n_envs=1, total_timesteps=args.steps,
                       image_size=args.image_size, max_episode_steps=50, eval_every=0, n_episodes=1,
                       ckpt_every=0, run_dir=f"{d}/sac", progress=False, device="cpu", tensorboard=False,
                       algo_kwargs={"learning_starts": 64, "buffer_size": 1000, "batch_size": args.batch},
                       encoder=AdapterConfig(name=args.model, image_size=args.image_size))
        res = run_rl(cfg)
    return res["learn_s"], res["final"]["mean_return"]


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pixio_vittiny")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=264, help="env steps (gradient steps = steps - 64)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    times = {4: [], 0: []}
    returns = {4: set(), 0: set()}
    for _ in range(args.repeats):
        for cache in (4, 0):
            t, ret = one_run(args, cache)
            times[cache].append(t)
            returns[cache].add(ret)
    reuse, plain = statistics.median(times[4]), statistics.median(times[0])
    print(f"SAC from pixels, frozen {args.model} @{args.image_size} px, batch {args.batch}, "
          f"{args.steps - 64} gradient steps, {args.threads} threads (medians of {args.repeats})")
    print(f"  learn() with feature reuse    {reuse:8.1f} s   {times[4]}")
    print(f"  learn() without (5 passes)    {plain:8.1f} s   {times[0]}")
    print(f"  speed-up {plain / reuse:.2f}x; final returns identical: {returns[4] == returns[0]} {sorted(returns[4])}")


if __name__ == "__main__":
    main()
