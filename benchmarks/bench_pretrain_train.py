"""Pretraining step throughput: the project's engine vs a reference-style loop, same model and data.

- project: `pixio_robot.pretrain.engine.Engine.step` - fused AdamW, masks from per-sample noise,
  no host sync in the step (the loss is read once at the end);
- reference-style: the official MAE / Pixio loop shape - `model(x)` with its own masking,
  `loss.item()` every step (a host sync), default (foreach) AdamW.
Both run interleaved in one process, so the ratio is meaningful on a noisy machine.

  python benchmarks/bench_pretrain_train.py                  # the CPU preset: pixio_mae_tiny, 128 px, batch 32
  python benchmarks/bench_pretrain_train.py --model pixio_mae_test --img 64 --batch 64
  python benchmarks/bench_pretrain_train.py --loader         # + a real run_pretrain on the sim corpus
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pixio_robot.models import IMAGENET_MEAN, IMAGENET_STD, create_model
from pixio_robot.pretrain.config import OptimConfig
from pixio_robot.pretrain.engine import Engine, build_optimizer, param_groups


def batches(n: int, b: int, img: int, nb: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"images": torch.randint(0, 256, (b, 3, img, img), dtype=torch.uint8, generator=g),
             "noise": torch.rand(b, nb, generator=g)} for _ in range(n)]


def main() -> None:
    from pixio_robot.utils.logging import setup_logging

    setup_logging()  # the library's INFO records (it installs no handler itself)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pixio_mae_tiny")
    ap.add_argument("--img", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--loader", action="store_true", help="also time a real run_pretrain (loader + step)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    m1 = create_model(args.model, img_size=args.img)
    m2 = create_model(args.model, img_size=args.img)
    m2.load_state_dict(m1.state_dict())
    eng = Engine(m1, m1, build_optimizer(m1, OptimConfig(), 1e-4), device=cpu, amp="none", clip_grad=0.0, accum=1)
    ref_opt = torch.optim.AdamW(param_groups(m2, 0.05), lr=1e-4, betas=(0.9, 0.95))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    data = batches(args.steps, args.batch, args.img, m1.masking.num_blocks)

    def project() -> float:
        t = time.perf_counter()
        for b in data:
            out = eng.step([b], 1e-4)
        float(out.loss)  # one read after the loop
        return args.steps * args.batch / (time.perf_counter() - t)

    def reference() -> float:
        t = time.perf_counter()
        for b in data:
            x = (b["images"].float() / 255 - mean) / std
            loss, _, _ = m2(x)
            loss.backward()
            ref_opt.step()
            ref_opt.zero_grad()
            loss.item()  # the reference loop syncs every step
        return args.steps * args.batch / (time.perf_counter() - t)

    project(), reference()  # warm-up
    p, r = [], []
    for i in range(args.rounds):  # alternate which goes first, against drifting machine load
        if i % 2:
            r.append(reference())
            p.append(project())
        else:
            p.append(project())
            r.append(reference())
    pm, rm = statistics.median(p), statistics.median(r)
    print(f"{args.model} {args.img}px batch {args.batch}, {torch.get_num_threads()} thread(s), median of {args.rounds}:")
    print(f"  project engine step : {pm:7.1f} images/s")
    print(f"  reference-style loop: {rm:7.1f} images/s")
    print(f"  ratio project / reference: {pm / rm:.2f}x")
    if args.loader:
        import tempfile

        from hydra import compose, initialize_config_module
        from omegaconf import OmegaConf

        from pixio_robot.pretrain import run_pretrain
        from pixio_robot.pretrain.config import register_configs

        register_configs()
        with tempfile.TemporaryDirectory() as tmp, initialize_config_module("pixio_robot.configs.pretrain",
                                                                            version_base="1.3"):
            cfg = OmegaConf.to_object(compose("config", overrides=[
                f"run_dir={tmp}", "steps=20", f"batch_size={args.batch}", "logger.progress=false",
                "logger.recon_every=0", "ckpt_every=1000", "export_encoder=false"]))
            out = run_pretrain(cfg)
        print(f"  run_pretrain (sim corpus, loader + step, 20 steps): {out['images_per_s']:.1f} images/s "
              f"({out['images_per_s'] / pm:.2f}x the bare step)")


if __name__ == "__main__":
    main()
