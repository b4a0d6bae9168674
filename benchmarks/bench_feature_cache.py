"""Frozen-encoder imitation: one training epoch from the feature cache vs re-encoding frames.

    python benchmarks/bench_feature_cache.py                       # pixio_vittiny @128, 1000 frames
    python benchmarks/bench_feature_cache.py --model pixio_vitsmall --image-size 224 --frames 1000

Same policy (CortexBench MLP, 3-frame history, batch 256), same rows, one epoch each way:
  cached          features memory-mapped from disk (FeatureCache), gathered per batch
  re-encode/frame every frame encoded once per epoch, then the same MLP epoch (a lower bound
                  for any re-encoding loader)
  re-encode/sample every sample's 3 history frames encoded in its batch (a plain image loader;
                  --per-sample, slow)
Frames are already decoded in memory for the re-encoding variants, so video decoding is not
counted against them (the ratios are conservative). Prints medians of --repeats and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pixio_robot.data.feature_cache import ArrayFrames, FeatureCache  # noqa: E402
from pixio_robot.policies import AdapterConfig, MLPConfig, PolicySpec, make_policy  # noqa: E402
from pixio_robot.policies.demos import DemoBatcher, DemoData  # noqa: E402


def synthetic_demo(n_frames: int, episode_len: int, size: int, seed: int = 0) -> tuple[DemoData, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n_frames, size, size, 3), dtype=np.uint8)
    ep = np.arange(n_frames) // episode_len
    starts = ep * episode_len
    ends = np.minimum(starts + episode_len, n_frames)
    demo = DemoData(dataset=None, image_key="observation.image",
                    states=rng.standard_normal((n_frames, 4)).astype(np.float32),
                    actions=rng.uniform(-1, 1, (n_frames, 4)).astype(np.float32), episode_index=ep,
                    ep_start=starts, ep_end=ends, image_shape=(size, size, 3), fps=10)
    return demo, frames


def train_epoch(policy, opt, batcher: DemoBatcher, rows: np.ndarray, batch_size: int, rng) -> int:
    steps = 0
    for batch in batcher.iterate(rows, batch_size, rng):
        if len(batch["action"]) < 2:
            continue
        loss, _ = policy(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return steps


@torch.no_grad()
def encode_all(adapter, frames: np.ndarray, batch: int) -> np.ndarray:
    out = [adapter.encode(torch.from_numpy(frames[i:i + batch])).cpu().numpy() for i in range(0, len(frames), batch)]
    return np.concatenate(out)


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pixio_vittiny")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--frame-size", type=int, default=128, help="stored frame side (resized by the adapter)")
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--episode-len", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--encode-batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--per-sample", action="store_true", help="also time the (slowest) per-sample variant")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    demo, frames = synthetic_demo(args.frames, args.episode_len, args.frame_size)
    spec = PolicySpec(state_dim=4, action_dim=4, stats=demo.stats())
    enc = AdapterConfig(source="pixio", name=args.model, image_size=args.image_size)
    device = torch.device(args.device)
    policy = make_policy("mlp", MLPConfig(), enc, spec).to(device)
    opt = torch.optim.Adam([q for q in policy.parameters() if q.requires_grad], lr=1e-3)
    rows = np.arange(len(demo))
    rng = np.random.default_rng(0)
    print(f"# {args.model} @ {args.image_size}px, {args.frames} frames ({args.frame_size}px stored), "
          f"batch {args.batch_size}, device {device}, torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        t = time.perf_counter()
        feats = cache.build(policy.adapter, ArrayFrames(frames, "bench"), batch_size=args.encode_batch,
                            progress=False)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        feats, hit = cache.get(policy.adapter, ArrayFrames(frames, "bench"), progress=False)
        lookup_s = time.perf_counter() - t
        assert hit
        cached = DemoBatcher(demo, feats, history=3, chunk=1, cached=True)
        times = {"cached": [], "re-encode/frame": [], "re-encode/sample": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            train_epoch(policy, opt, cached, rows, args.batch_size, rng)
            times["cached"].append(time.perf_counter() - t)

            t = time.perf_counter()
            fresh = encode_all(policy.adapter, frames, args.encode_batch)
            train_epoch(policy, opt, DemoBatcher(demo, fresh, history=3, chunk=1, cached=True), rows,
                        args.batch_size, rng)
            times["re-encode/frame"].append(time.perf_counter() - t)

            if args.per_sample:
                t = time.perf_counter()
                train_epoch(policy, opt, DemoBatcher(demo, frames, history=3, chunk=1, cached=False), rows,
                            args.batch_size, rng)
                times["re-encode/sample"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items() if v}
        print(f"cache build (one-off): {build_s:.2f} s ({args.frames / build_s:.0f} frames/s); "
              f"hit lookup (hash of frames + weights): {lookup_s:.3f} s")
        print("| epoch variant | median s | frames/s | vs cached |\n|---|---|---|---|")
        for k, v in med.items():
            print(f"| {k} | {v:.3f} | {args.frames / v:.0f} | {v / med['cached']:.1f}x |")
        ratio = med["re-encode/frame"] / med["cached"]
        print(f"speed-up of a cached epoch over re-encoding every frame once: {ratio:.1f}x (target >= 20x); "
              f"the cache pays for itself after {build_s / max(med['re-encode/frame'] - med['cached'], 1e-9):.2f} "
              "epochs")


if __name__ == "__main__":
    main()
