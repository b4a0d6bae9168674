"""Time one Pixio pretraining step (forward, backward, AdamW) on CPU or GPU.

Prints images/s, GFLOP per image (FlopCounterMode, 1 multiply-add = 2 FLOPs) and MFU against a
peak (989 TFLOP/s dense bf16 for H100/H200 by default on CUDA; pass --peak-tflops on CPU).
Variants run side by side in one process so their ratio is meaningful:

  python benchmarks/bench_train_step.py                      # CPU, pixio_mae_tiny, eager
  python benchmarks/bench_train_step.py --model pixio_mae_vitb16 --batch 256 --bf16 --compile --fused
  python benchmarks/bench_train_step.py --variants eager,compile --json out.json

The step has no host synchronisation: the loss is read once after the timed loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from pixio_robot.models import create_model


def flops_per_image(model, img: int, device) -> float:
    x = torch.randn(2, 3, img, img, device=device)
    with FlopCounterMode(display=False) as fc:
        loss, _, _ = model(x)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / 2


def make_step(model, opt, bf16: bool, device):
    def step(x):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = model(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def run_variant(args, variant: str, device) -> dict:
    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.img_size, **({"depth": args.depth} if args.depth else {}))
    model.to(device).train()
    gflop = flops_per_image(model, args.img_size, device) / 1e9
    # reference: the public loop's habits (eager, loss.item() + sync every step, unfused AdamW)
    # fast: compiled block stacks, fused AdamW (CUDA), no host sync in the step
    use_compile = variant in ("compile", "fast") or args.compile
    fused = (args.fused or variant == "fast") and device.type == "cuda"
    per_step_sync = variant == "reference"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05,
                            **({"fused": True} if fused else {}))
    step = make_step(model, opt, args.bf16, device)
    if use_compile:
        model.encoder.blocks.compile()
        model.decoder_blocks.compile()
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    for _ in range(args.warmup):
        step(x)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, losses = [], []
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step(x)
            losses.append(loss.item() if per_step_sync else loss)
        sync()
        times.append((time.perf_counter() - t0) / args.steps)
    med = statistics.median(times)
    ips = args.batch / med
    peak = args.peak_tflops or (989.0 if device.type == "cuda" else 0.0)
    out = {"variant": variant, "model": args.model, "batch": args.batch, "img_size": args.img_size,
           "device": str(device), "images_per_s": round(ips, 2), "step_ms": round(med * 1e3, 2),
           "gflop_per_image": round(gflop, 3), "achieved_tflops": round(ips * gflop / 1e3, 3),
           "mfu": round(ips * gflop / 1e3 / peak, 4) if peak else None,
           "final_loss": float(losses[-1])}
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pixio_mae_tiny")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--depth", type=int, default=0, help="override encoder depth (0 = model default)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true", help="compile the block stacks in every variant")
    p.add_argument("--fused", action="store_true", help="fused AdamW (CUDA)")
    p.add_argument("--variants", default="eager", help="comma list of: reference, eager, compile, fast")
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default="")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = [run_variant(args, v, device) for v in args.variants.split(",")]
    base = rows[0]["images_per_s"]
    for r in rows:
        r["ratio_vs_first"] = round(r["images_per_s"] / base, 3)
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
