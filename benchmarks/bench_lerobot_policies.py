"""pixio_act (LeRobot's ACT, frozen Pixio trunk): one training epoch re-encoding every frame (LeRobot's
path) vs reading the trunk's cached maps (pixio_robot.policies.lerobot.cache), side by side.

    python benchmarks/bench_lerobot_policies.py                                # pixio_vittiny @96, 256 frames
    python benchmarks/bench_lerobot_policies.py --encoder pixio_vittest --frames 256

Same policy, same batches (frames in memory, already [0,1] as LeRobot's processors hand them over;
decoding is not counted against LeRobot's path), same AdamW steps. The cached epoch includes no
encoding: the maps are made once (timed separately). Checks that the first batch's loss is the same
both ways, then prints the best and median of --repeats and the ratios (on a shared machine
the best is the figure least disturbed by other load).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lerobot.configs import FeatureType, PolicyFeature  # noqa: E402
from lerobot.policies.factory import get_policy_class  # noqa: E402
from lerobot_policy_pixio import PixioACTConfig  # noqa: E402

from pixio_robot.policies.lerobot.cache import act_reads_cached_maps, encode_act_frames  # noqa: E402

CAM, STATE, ACTION = "observation.image", "observation.state", "action"


def build(encoder: str, size: int, chunk: int) -> torch.nn.Module:
    cfg = PixioACTConfig(
        input_features={CAM: PolicyFeature(FeatureType.VISUAL, (3, size, size)),
                        STATE: PolicyFeature(FeatureType.STATE, (2,))},
        output_features={ACTION: PolicyFeature(FeatureType.ACTION, (2,))},
        pixio_encoder_name=encoder, pixio_mode="frozen", chunk_size=chunk, n_action_steps=chunk,
        dim_model=128, n_heads=4, dim_feedforward=256, n_encoder_layers=2, n_vae_encoder_layers=2, device="cpu")
    torch.manual_seed(0)
    return get_policy_class("pixio_act")(cfg)


def epoch(policy, frames, states, actions, batch_size, seed) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(frames), generator=g)
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=1e-4)
    policy.train()
    pad = torch.zeros(batch_size, actions.shape[1], dtype=torch.bool)
    first = None
    t0 = time.perf_counter()
    for i in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[i:i + batch_size]
        batch = {CAM: frames[idx], STATE: states[idx], ACTION: actions[idx], "action_is_pad": pad}
        torch.manual_seed(seed + i)  # the same dropout / CVAE draws both ways
        loss = policy.forward(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    return time.perf_counter() - t0, first


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="pixio_vittiny")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(a.frames, 3, a.image_size, a.image_size, generator=g)
    states = torch.randn(a.frames, 2, generator=g)
    actions = torch.randn(a.frames, a.chunk, 2, generator=g)
    base = build(a.encoder, a.image_size, a.chunk)
    t0 = time.perf_counter()
    maps = encode_act_frames(base, frames)
    t_encode = time.perf_counter() - t0
    times = {"re-encode (LeRobot)": [], "cached maps": []}
    firsts = {}
    for r in range(a.repeats):
        p = copy.deepcopy(base)
        dt, firsts["re-encode (LeRobot)"] = epoch(p, frames, states, actions, a.batch_size, r)
        times["re-encode (LeRobot)"].append(dt)
        p = copy.deepcopy(base)
        with act_reads_cached_maps(p):
            dt, firsts["cached maps"] = epoch(p, maps, states, actions, a.batch_size, r)
        times["cached maps"].append(dt)
    a_, b_ = firsts.values()
    if abs(a_ - b_) > 1e-4 * max(1.0, abs(a_)):
        raise SystemExit(f"the two paths disagree: first-batch loss {a_} vs {b_}")
    print(f"pixio_act, frozen {a.encoder} @ {a.image_size}px, {a.frames} frames, batch {a.batch_size}, "
          f"{a.threads} threads, map {tuple(maps.shape[1:])}; first-batch loss {a_:.6f} both ways")
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    for k in times:
        print(f"  {k:22s} epoch best {best[k]:7.3f} s, median {med[k]:7.3f} s  "
              f"(runs: {', '.join(f'{x:.3f}' for x in times[k])})")
    print(f"  encoding every frame once for the cache: {t_encode:.3f} s")
    ratio = {k: v["re-encode (LeRobot)"] / v["cached maps"] for k, v in (("best", best), ("median", med))}
    print(f"  ratio re-encode / cached: {ratio['best']:.2f}x (best of {a.repeats}; the least disturbed by other "
          f"load), {ratio['median']:.2f}x (median)")


if __name__ == "__main__":
    main()
