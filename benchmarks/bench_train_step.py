"""Time one Pixio pretraining step (forward, backward, AdamW) on CPU or GPU, variant by variant.

Prints images/s, GFLOP per image (FlopCounterMode, 1 multiply-add = 2 FLOPs, fwd + bwd), MFU against a peak
(989 TFLOP/s dense bf16 for H100/H200 by default on CUDA; pass --peak-tflops on CPU), peak GPU
memory, and whether the step waited on the device (CUDA sync debug mode). Variants run one after
another in one process on the same synthetic data, so their ratios are meaningful:

  reference      the public loop's habits: eager, the model's own masking, bf16 autocast,
                 default (foreach) AdamW, `loss.item()` every step
  eager          the project's `Engine.step` (uint8 -> normalise on device, masks from noise,
                 fused AdamW, skip-on-non-finite on device, no host read), eager
  compile        + `torch.compile` of every transformer block (train.py's `compile=true`)
  compile_model  + `torch.compile(fullgraph=True)` of the whole MAE forward instead
  bf16w          compile + FSDP2 on a one-rank group: bf16 compute copies of fp32 master
                 weights (train.py's `parallel=fsdp`, amp bf16)
  bf16w_max      bf16w with compile mode max-autotune-no-cudagraphs (Triton matmuls, fused epilogues)
  pure_bf16      compile + every weight and AdamW state in bf16 (an upper bound; not a default)
  compile_model_cg  compile_model with mode reduce-overhead: forward and backward replayed as CUDA
                 graphs (static shapes: the masks keep a fixed count), no per-kernel launch cost
  pure_bf16_cg   pure_bf16 + compile_model_cg: every lever that keeps the loss at once
  ac             compile + activation checkpointing of every block (memory for compute)
  bf16w_ac       bf16w + ac: how 1B / 5B train on one GPU
  offload        bf16w_ac + FSDP2 CPU offload (fp32 weights, grads, AdamW on the host)

  python benchmarks/bench_train_step.py                                  # CPU, pixio_mae_tiny
  python benchmarks/bench_train_step.py --model pixio_mae_vitb16 --batch 256 --img-size 256 \\
      --bf16 --variants reference,compile,bf16w --json out.json
  python benchmarks/bench_train_step.py --variants compile --profile prof/  # + torch.profiler summary
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from pixio_robot.models import IMAGENET_MEAN, IMAGENET_STD, create_model
from pixio_robot.pretrain.config import OptimConfig
from pixio_robot.pretrain.distributed import checkpoint_blocks, compile_blocks, wrap_model
from pixio_robot.pretrain.engine import Engine, build_optimizer
from pixio_robot.pretrain.plan import flops_per_image
from pixio_robot.utils import dist as udist

VARIANTS = {  # name -> how the project's step is set up (reference: the public loop instead)
    "reference": {},
    "eager": {},
    "compile": {"compile": "blocks"},
    "compile_model": {"compile": "model"},
    "bf16w": {"compile": "blocks", "fsdp": True},
    "bf16w_max": {"compile": "blocks", "fsdp": True, "mode": "max-autotune-no-cudagraphs"},
    "pure_bf16": {"compile": "blocks", "pure_bf16": True},
    "compile_model_cg": {"compile": "model", "mode": "reduce-overhead"},
    "pure_bf16_cg": {"compile": "model", "mode": "reduce-overhead", "pure_bf16": True},
    "ac": {"compile": "blocks", "ac": True},
    "bf16w_ac": {"compile": "blocks", "fsdp": True, "ac": True},
    "offload": {"compile": "blocks", "fsdp": True, "ac": True, "offload": True},
}


def make_model(args, device):
    torch.manual_seed(0)  # every variant starts from the same weights
    with torch.device(device):
        return create_model(args.model, img_size=args.img_size, **({"depth": args.depth} if args.depth else {}))


def flop_split(args) -> dict[str, float]:
    return flops_per_image(make_model(args, torch.device("meta")).config)


def synthetic_batch(batch: int, img: int, num_blocks: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"images": torch.randint(0, 256, (batch, 3, img, img), dtype=torch.uint8, generator=g).to(device),
            "noise": torch.rand(batch, num_blocks, generator=g).to(device)}


def build(args, variant: str, device):
    """Return (step_fn, model) for a variant; step_fn() runs one optimizer step, returns the loss."""
    model = make_model(args, device).train()
    amp = "bf16" if args.bf16 else "none"
    batch = synthetic_batch(args.batch, args.img_size, model.masking.num_blocks, device)
    if variant == "reference":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        x = (batch["images"].float() / 255.0 - mean) / std

        def ref_step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss, _, _ = model(x)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()  # the reference loop reads the loss (a device sync) every step
            return loss.detach()

        return ref_step, model
    spec = dict(VARIANTS[variant])
    if args.no_compile:
        spec.pop("compile", None)
    if spec.get("ac"):
        checkpoint_blocks(model)
    if spec.get("compile") == "blocks":
        compile_blocks(model, spec.get("mode"))
    if spec.get("pure_bf16"):
        model.to(torch.bfloat16)
        amp = "bf16"  # autocast still casts the fp32 input and runs norms / softmax in fp32
    wrapped = model
    if spec.get("fsdp"):
        udist.init_single_process_group(device)
        wrapped = wrap_model(model, device, "fsdp", amp, cpu_offload=bool(spec.get("offload")))
    if spec.get("compile") == "model":
        wrapped = torch.compile(model, fullgraph=True, mode=spec.get("mode"))
    opt = build_optimizer(model, OptimConfig(lr=1e-4, warmup_steps=0), 1e-4)
    engine = Engine(wrapped, model, opt, device=device, amp=amp, clip_grad=0.0, accum=1)

    def engine_step():
        return engine.step([batch], 1e-4).loss

    return engine_step, model


def sync_check(step) -> str:
    """Run one step with CUDA's sync debug mode set to error: 'none' if it never waited."""
    if not torch.cuda.is_available():
        return "n/a (cpu)"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        return "none"
    except RuntimeError as e:
        return f"synced: {str(e).splitlines()[0][:160]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()


def profile(step, variant: str, out_dir: Path, device, trace: bool, steps: int = 3) -> dict:
    """torch.profiler over a few steps: the top ops table and time by kind of op."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with tprofile(activities=acts, record_shapes=False) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    out_dir.mkdir(parents=True, exist_ok=True)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    ev = prof.key_averages()
    (out_dir / f"{variant}_ops.txt").write_text(ev.table(sort_by=sort, row_limit=40))
    if trace:
        prof.export_chrome_trace(str(out_dir / f"{variant}_trace.json"))
    kinds = {"matmul": ("mm", "addmm", "bmm", "linear", "matmul", "gemm", "cutlass", "sm90", "xmma", "cublas"),
             "attention": ("attention", "flash", "sdpa", "fmha", "cudnn"),
             "norm": ("layer_norm", "layernorm"),
             "optimizer": ("adam",),
             "copy/cast": ("copy", "to_copy", "cast", "memcpy", "convert")}
    by_kind: dict[str, float] = {}
    total = 0.0
    for e in ev:
        t = (e.self_device_time_total if device.type == "cuda" else e.self_cpu_time_total)
        if device.type == "cuda" and getattr(e, "device_type", None) is not None and str(e.device_type).endswith("CPU"):
            continue
        if t <= 0:
            continue
        name = e.key.lower()
        kind = next((k for k, keys in kinds.items() if any(s in name for s in keys)), "elementwise/other")
        by_kind[kind] = by_kind.get(kind, 0.0) + t
        total += t
    share = {k: round(v / total, 4) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])} if total else {}
    (out_dir / f"{variant}_kinds.json").write_text(json.dumps(share, indent=1))
    return share


def run_variant(args, variant: str, device, flops: dict) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step, model = build(args, variant, device)
    t_warm = time.perf_counter()
    for _ in range(max(1, args.warmup)):  # compiles, creates the AdamW state
        loss = step()
    float(loss)
    warm_s = time.perf_counter() - t_warm
    sync = sync_check(step) if variant != "reference" else "every step (loss.item())"
    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(args.repeats):
        wait()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        wait()
        times.append((time.perf_counter() - t0) / args.steps)
    med = statistics.median(times)
    ips = args.batch / med
    gflop = flops["total"] / 1e9
    peak = args.peak_tflops or (989.0 if device.type == "cuda" else 0.0)
    out = {"variant": variant, "model": args.model, "batch": args.batch, "img_size": args.img_size,
           "bf16": args.bf16, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "images_per_s": round(ips, 2), "step_ms": round(med * 1e3, 2), "gflop_per_image": round(gflop, 3),
           "decoder_flop_share": round(flops["decoder_blocks"] / flops["total"], 3),
           "achieved_tflops": round(ips * gflop / 1e3, 3), "mfu": round(ips * gflop / 1e3 / peak, 4) if peak else None,
           "final_loss": round(float(loss), 5), "warmup_s": round(warm_s, 1), "host_syncs_in_step": sync}
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if args.profile:
        out["time_by_kind"] = profile(step, variant, Path(args.profile), device, args.trace)
    del step, model
    if udist.is_dist():
        torch.distributed.destroy_process_group()
    return out


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="pixio_mae_tiny")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--depth", type=int, default=0, help="override encoder depth (0 = model default)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast / bf16 compute weights")
    p.add_argument("--variants", default="reference,eager", help=f"comma list of: {', '.join(VARIANTS)}")
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--profile", default="", help="directory for torch.profiler tables, traces, time by kind")
    p.add_argument("--no-compile", action="store_true", help="smoke runs: every variant eager")
    p.add_argument("--trace", action="store_true", help="with --profile: also write chrome traces (large)")
    p.add_argument("--json", default="")
    args = p.parse_args()
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {bad}; choose from {VARIANTS}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flops = flop_split(args)
    print(f"{args.model} {args.img_size}px: {flops['total'] / 1e9:.1f} GFLOP per image (fwd+bwd), decoder blocks "
          f"{flops['decoder_blocks'] / flops['total']:.0%}, encoder {flops['encoder'] / flops['total']:.0%}", flush=True)
    rows = []
    for v in variants:
        try:
            rows.append(run_variant(args, v, device, flops))
        except torch.OutOfMemoryError as e:  # report and go on: the other variants still count
            rows.append({"variant": v, "model": args.model, "batch": args.batch, "error": f"OOM: {e}"[:300]})
            if udist.is_dist():
                torch.distributed.destroy_process_group()
            torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), flush=True)
        if args.json:  # written after every variant: a killed run keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=2))
    ok = [r for r in rows if "images_per_s" in r]
    if ok:
        base_ips = ok[0]["images_per_s"]
        print(f"\n{'variant':<17} {'img/s':>9} {'ratio':>6} {'MFU':>6} {'GiB':>6}  host syncs")
        for r in ok:
            r["ratio_vs_first"] = round(r["images_per_s"] / base_ips, 3)
            mfu = f"{r['mfu'] * 100:.1f}%" if r.get("mfu") is not None else "-"
            print(f"{r['variant']:<17} {r['images_per_s']:9.1f} {r['ratio_vs_first']:5.2f}x {mfu:>6} "
                  f"{r.get('peak_gib', '-'):>6}  {r['host_syncs_in_step']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
