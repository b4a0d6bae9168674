"""Memory and step time of Pixio pretraining on paper: what fits one GPU, and how it scales.

Counted with `pixio_robot.pretrain.plan` (parameters and FLOPs on the meta device, activation bytes
as measured per block): no GPU needed. Check the model against BENCHMARKS.md's measured peaks
(printed side by side), then read the 1B / 5B single-GPU settings and the N-GPU table.

  python benchmarks/plan_pretrain.py
  python benchmarks/plan_pretrain.py --mfu 0.45 --ib-gbps 50 --json plan.json
"""

from __future__ import annotations

import argparse
import json

import torch

from pixio_robot.models import create_model
from pixio_robot.pretrain.plan import flops_per_image, max_micro_batch, plan_memory, step_time_on_paper

# BENCHMARKS.md: the reference loop's measured peaks on one H200 (bf16 autocast, 256 px)
MEASURED = {("pixio_mae_vitb16", 256): 47.7, ("pixio_mae_vitl16", 128): 32.8, ("pixio_mae_vith16", 64): 26.1,
            ("pixio_mae_vitb16", 512): 90.8}
SIZES = ["pixio_mae_vitb16", "pixio_mae_vitl16", "pixio_mae_vith16", "pixio_mae_vit1b16", "pixio_mae_vit5b16"]
SETTINGS = {"plain (one process)": {}, "fsdp2 + ac": {"fsdp": True, "ac": True},
            "fsdp2 + ac + offload": {"fsdp": True, "ac": True, "offload": True}}


def config(name: str):
    with torch.device("meta"):
        return create_model(name, img_size=256).config


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mfu", type=float, default=0.40, help="assumed model-FLOPs utilisation")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--nvlink-gbps", type=float, default=450.0, help="per-GPU bandwidth inside a node, GB/s")
    ap.add_argument("--ib-gbps", type=float, default=50.0, help="per-GPU bandwidth across nodes, GB/s")
    ap.add_argument("--micro-batch", type=int, default=32, help="per-GPU micro-batch for the scaling table")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    out: dict = {"check": [], "models": [], "single_gpu": [], "scaling": []}

    print("Model vs measured peaks (reference loop, bf16 autocast, one H200; BENCHMARKS.md)")
    print(f"{'model':<20} {'batch':>5} {'predicted GiB':>14} {'measured GiB':>13} {'error':>7}")
    for (name, b), meas in MEASURED.items():
        pred = plan_memory(config(name), b).total_gib
        out["check"].append({"model": name, "batch": b, "predicted_gib": pred, "measured_gib": meas})
        print(f"{name:<20} {b:5d} {pred:14.1f} {meas:13.1f} {pred / meas - 1:+7.1%}")

    print(f"\nPer image at 256 px (fwd + bwd); images/s per GPU at {args.mfu:.0%} MFU of {args.peak_tflops:g} TFLOP/s")
    print(f"{'model':<20} {'params':>8} {'GFLOP':>7} {'decoder':>8} {'img/s':>7}")
    flops = {}
    for name in SIZES:
        cfg = config(name)
        f = flops_per_image(cfg)
        flops[name] = f["total"]
        ips = args.mfu * args.peak_tflops * 1e12 / f["total"]
        p = plan_memory(cfg, 1)
        out["models"].append({"model": name, "params": p.params, "gflop_per_image": f["total"] / 1e9,
                              "decoder_flop_share": f["decoder_blocks"] / f["total"], "images_per_s_at_mfu": ips})
        print(f"{name:<20} {p.params / 1e6:7.0f}M {f['total'] / 1e9:7.1f} {f['decoder_blocks'] / f['total']:8.0%} {ips:7.0f}")

    print("\nOne GPU, bf16: the largest power-of-two micro-batch that fits (92% of the card), and its memory")
    print(f"{'model':<20} {'setting':<22} {'card':>5} {'max mb':>6} {'GiB':>6} {'states':>7} {'act':>6} {'host':>6}")
    for name in SIZES[3:]:
        cfg = config(name)
        for label, kw in SETTINGS.items():
            for card in (80, 141):
                mb = max_micro_batch(cfg, card, **kw)
                p = plan_memory(cfg, max(mb, 1), **kw)
                out["single_gpu"].append({"model": name, "setting": label, "card_gib": card, "max_micro_batch": mb,
                                          **p.as_dict()})
                fit = f"{mb:6d}" if mb else "  none"
                print(f"{name:<20} {label:<22} {card:5d} {fit} {p.total_gib:6.1f} {p.device_states_gib:7.1f} "
                      f"{p.activations_gib:6.1f} {p.host_gib:6.1f}")

    print(f"\nOver N GPUs (micro-batch {args.micro_batch} per GPU, activation checkpointing; {args.nvlink_gbps:g} GB/s "
          f"in a node of 8, {args.ib_gbps:g} GB/s across nodes). fsdp: shard over all N; hsdp: shard in a node,")
    print("replicate across nodes (FSDP2 with a 2-D mesh). GiB/GPU is for the sharding on its row.")
    print(f"{'model':<20} {'N':>5} {'shard':>6} {'GiB/GPU':>8} {'compute s':>9} {'comm s':>7} {'img/s':>9} "
          f"{'per GPU':>8} {'eff':>5}")
    for name in SIZES[3:]:
        cfg = config(name)
        for n in (1, 8, 64, 512):
            for hybrid in ((False, True) if n > 8 else (False,)):
                p = plan_memory(cfg, args.micro_batch, world=min(n, 8) if hybrid else n, fsdp=True, ac=True)
                t = step_time_on_paper(cfg, flops[name], args.micro_batch * n, n, mfu=args.mfu,
                                       peak_tflops=args.peak_tflops, nvlink_gbps=args.nvlink_gbps,
                                       ib_gbps=args.ib_gbps, ac=True, hybrid=hybrid)
                out["scaling"].append({"model": name, **t, "gib_per_gpu": p.total_gib})
                print(f"{name:<20} {n:5d} {t['sharding']:>6} {p.total_gib:8.1f} {t['compute_s']:9.3f} "
                      f"{t['comm_s']:7.3f} {t['images_per_s']:9.0f} {t['images_per_s_per_gpu']:8.0f} "
                      f"{t['scaling_efficiency']:5.0%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
