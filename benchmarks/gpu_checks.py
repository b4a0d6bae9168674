"""Correctness of the fast pretraining step on a GPU (torch + timm only; part of gpu_pretrain_suite.sh).

For one model, the same weights, images and masks:
  1. the eager fp32 step's loss vs the fast step's (compiled blocks, bf16 autocast), and vs FSDP2's
     bf16 compute copies on a one-rank group: relative difference, and gradient cosine similarity;
  2. the project's `Engine.step` never waits on the device (CUDA sync debug mode set to error),
     for plain, compiled and FSDP2 models, with gradient clipping on;
  3. a non-finite loss skips the update on the device (weights unchanged) without a host sync.
Prints one JSON object and writes it to --json. Runs on CPU too (checks 2-3 then only run the code).

  python benchmarks/gpu_checks.py --model pixio_mae_vitb16 --batch 16 --json checks.json
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from pixio_robot.models import create_model
from pixio_robot.pretrain.config import OptimConfig
from pixio_robot.pretrain.distributed import compile_blocks, wrap_model
from pixio_robot.pretrain.engine import Engine, build_optimizer
from pixio_robot.utils import dist as udist


def grads_of(model) -> torch.Tensor:
    return torch.cat([(p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).float().flatten()
                      for p in model.parameters()])


def loss_and_grads(model, x, ids, amp: bool, device) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss, _, _ = model(x, ids_keep=ids)
    loss.backward()
    return float(loss.detach()), grads_of(model)


def compare(ref: tuple[float, torch.Tensor], other: tuple[float, torch.Tensor]) -> dict:
    (l0, g0), (l1, g1) = ref, other
    return {"loss_rel_diff": abs(l1 - l0) / abs(l0),
            "grad_cosine": float(torch.nn.functional.cosine_similarity(g0, g1, dim=0)),
            "grad_rel_err": float((g1 - g0).norm() / g0.norm())}


def no_sync(engine: Engine, batch: dict, device) -> str:
    engine.step([batch], 1e-4, want_norm=True)  # state created, kernels compiled
    if device.type != "cuda":
        engine.step([batch], 1e-4, want_norm=True)
        return "n/a (cpu)"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        engine.step([batch], 1e-4, want_norm=True)
        return "none"
    except RuntimeError as e:
        return f"synced: {str(e).splitlines()[0][:200]}"
    finally:
        torch.cuda.set_sync_debug_mode(0)


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pixio_mae_test")
    ap.add_argument("--img-size", type=int, default=0, help="0: the model's")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kw = {"img_size": args.img_size} if args.img_size else {}
    torch.manual_seed(0)
    with torch.device(device):
        ref = create_model(args.model, **kw)
    size = ref.config.encoder.img_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch, 3, *size), dtype=torch.uint8, generator=g).to(device)
    noise = torch.rand(args.batch, ref.masking.num_blocks, generator=g).to(device)
    batch = {"images": images, "noise": noise}
    opt0 = build_optimizer(ref, OptimConfig(), 1e-4)
    x, ids = Engine(ref, ref, opt0, device=device, amp="none", clip_grad=0.0, accum=1).prepare(batch)
    out: dict = {"model": args.model, "batch": args.batch, "img_size": list(size),
                 "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}

    fp32 = loss_and_grads(ref, x, ids, False, device)
    fast = copy.deepcopy(ref)
    compile_blocks(fast)
    out["compiled_bf16_vs_eager_fp32"] = compare(fp32, loss_and_grads(fast, x, ids, True, device))
    sharded = copy.deepcopy(ref)
    udist.init_single_process_group(device)
    wrap_model(sharded, device, "fsdp", "bf16")
    out["fsdp_bf16_weights_vs_eager_fp32"] = compare(fp32, loss_and_grads(sharded, x, ids, True, device))

    syncs = {}
    for name, model in (("eager", copy.deepcopy(ref)), ("compiled", fast), ("fsdp_bf16", sharded)):
        opt = build_optimizer(model, OptimConfig(), 1e-4)
        engine = Engine(model, model, opt, device=device, amp="bf16", clip_grad=1.0, accum=1)
        syncs[name] = no_sync(engine, batch, device)
    out["host_syncs_in_step"] = syncs

    model = copy.deepcopy(ref)
    opt = build_optimizer(model, OptimConfig(), 1e-4)
    engine = Engine(model, model, opt, device=device, amp="bf16", clip_grad=0.0, accum=1)
    engine.step([batch], 1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    hook = model.decoder_pred.register_forward_hook(lambda m, i, o: o * float("nan"))
    res = engine.step([batch], 1e-4)
    hook.remove()
    out["nonfinite_step_skipped"] = (not bool(res.finite)) and all(
        torch.equal(a, b) for a, b in zip(before, model.parameters()))
    udist.cleanup()
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
