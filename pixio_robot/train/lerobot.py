"""The train entry's loop for LeRobot's own policies (`policy=pixio_act|pixio_diffusion`; `policy.type=act|
diffusion`: LeRobot's built-in ones with their ResNet-18 trunk).

Called by `pixio_robot.train._run_train` inside its run-dir lock and guard. LeRobot's processors
normalise the batch, LeRobot's policy computes the loss (`policy.forward(batch) -> (loss, info)`),
LeRobot's optimizer / scheduler presets (`policy.options.optimizer_lr=...`) train it. A frozen ACT
trunk encodes every frame once into the project's FeatureCache (maps [N,C,h,w]); epochs read the
maps back and the trunk is not run again. The result is saved with `save_pretrained` (policy and
processors) into `<run_dir>/policy`, loadable by `lerobot-eval --policy.path=` and LeRobot's
`get_policy_class(type).from_pretrained`.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch
from lerobot.utils.constants import ACTION as ACTION_KEY

from pixio_robot.utils.logging import get_logger

log = get_logger("pixio_robot.train")


def _cameras(cfg, demo) -> list[str]:
    """dataset.image_key (one) or dataset.cameras (a subset) when set, else every camera of the dataset
    (LeRobot's policies use all); `load_demos` resolved them."""
    return list(demo.image_keys)


def _frames(cfg, demo, cams, policy, cache) -> tuple[dict[str, np.ndarray], bool, bool | None]:
    """Per camera: cached trunk maps (frozen pixio_act, use_cache) or decoded uint8 frames."""
    from pixio_robot.data.feature_cache import LeRobotFrames
    from pixio_robot.policies.lerobot.training import TrunkCacheEncoder

    mode = getattr(policy.config, "pixio_mode", None)  # None: LeRobot's built-in act / diffusion (ResNet trained)
    cached = cfg.use_cache and policy.config.type == "pixio_act" and mode == "frozen"
    if cfg.use_cache and not cached and mode == "frozen":
        log.info("train: %s re-encodes frames every step (its random crop changes the input; the cache serves "
                 "pixio_act)", policy.config.type)
    out, hits = {}, []
    for cam in cams:
        source = LeRobotFrames(demo.dataset, cam)
        if cached:
            hw = tuple(int(v) for v in policy.config.image_features[cam].shape[1:])
            out[cam], hit = cache.get(TrunkCacheEncoder(policy, hw), source, batch_size=cfg.encode_batch_size,
                                      progress=cfg.progress)
            hits.append(hit)
        else:
            out[cam] = cache.frames(source, progress=cfg.progress)
    return out, cached, (all(hits) if cached else None)


def run_lerobot_train(cfg, run_dir: Path, demo, t_start: float) -> dict:
    """Train `cfg.policy` (a LeRobotPolicyChoice) on `demo`; returns the results dict."""
    from tqdm.auto import tqdm

    from pixio_robot.data.feature_cache import FeatureCache
    from pixio_robot.policies.lerobot.cache import act_reads_cached_maps
    from pixio_robot.policies.lerobot.training import (
        LeRobotBatcher,
        build_lerobot_policy,
        save_lerobot_policy,
    )
    from pixio_robot.utils.device import resolve_device
    from pixio_robot.utils.io import save_json

    device = resolve_device(cfg.device)
    cams = _cameras(cfg, demo)
    policy, pre, post = build_lerobot_policy(cfg.policy, cfg.encoder, demo, cams, device)
    if cfg.eval.env and cfg.eval.n_episodes > 0:
        log.info("train: %s rolls out with lerobot-eval --policy.path=%s or python -m pixio_robot.evaluate "
                 "policy=%s (no rollouts during training)", cfg.policy.type, run_dir / "policy", run_dir / "policy")
    cache = FeatureCache(cfg.cache_dir, dtype=cfg.cache_dtype)
    frames, cached, cache_hit = _frames(cfg, demo, cams, policy, cache)
    batcher = LeRobotBatcher(demo, frames, policy, cached=cached)
    train_rows, val_rows = demo.split(cfg.dataset.val_fraction, cfg.seed)
    opt_cfg = policy.config.get_optimizer_preset()
    opt = opt_cfg.build(policy.get_optim_params())
    steps_per_epoch = math.ceil(len(train_rows) / cfg.optim.batch_size)
    sched_cfg = policy.config.get_scheduler_preset()
    sched = sched_cfg.build(opt, cfg.optim.epochs * steps_per_epoch) if sched_cfg is not None else None
    clip = cfg.optim.clip_grad if cfg.optim.clip_grad else getattr(opt_cfg, "grad_clip_norm", None)
    n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    log.info("train: %s (LeRobot's), cameras %s, %d train / %d val rows, %d trainable params, frames %s",
             cfg.policy.type, cams, len(train_rows), len(val_rows), n_params,
             "from cached trunk maps" if cached else "re-encoded")
    reads_maps = act_reads_cached_maps(policy) if cached else contextlib.nullcontext()
    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    rng = np.random.default_rng(cfg.seed)
    step, history, train_loss = 0, [], float("nan")
    policy.train()
    bar = tqdm(range(cfg.optim.epochs), desc="train", unit="epoch", disable=not cfg.progress)
    with reads_maps:
        for epoch in bar:
            t_epoch, total, count = time.perf_counter(), 0.0, 0
            for raw in batcher.iterate(train_rows, cfg.optim.batch_size, rng):
                loss, _ = policy.forward(pre(raw))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {float(loss)} at epoch {epoch} step {step}: lower "
                                             "policy.options.optimizer_lr, or check the dataset for NaN/inf values")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.detach()) * len(raw[ACTION_KEY])
                count += len(raw[ACTION_KEY])
                step += 1
            train_loss = total / max(count, 1)
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": _val_loss(policy, pre, batcher, val_rows,
                                                                                        cfg.optim.batch_size),
                   "epoch_s": time.perf_counter() - t_epoch}
            history.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and v is not None:
                        writer.add_scalar(f"train/{k}", v, epoch + 1)
            bar.set_postfix(loss=f"{train_loss:.4f}")
    bar.close()
    if writer is not None:
        writer.close()
    policy_dir = run_dir / "policy"
    save_lerobot_policy(policy, pre, post, policy_dir)
    results = {
        "run_dir": str(run_dir), "policy_dir": str(policy_dir), "policy_type": cfg.policy.type,
        "format": "lerobot", "best_policy_dir": None, "best_success": None, "best_epoch": None,
        "final_success": None, "final_success_ci": None, "final_train_loss": train_loss,
        "final_val_loss": history[-1]["val_loss"], "cameras": cams,
        "cache": "hit" if cache_hit else ("miss" if cached else "off"), "features_cached": cached,
        "n_frames": len(demo), "n_episodes": int(len(demo.episodes)), "n_train": int(len(train_rows)),
        "n_val": int(len(val_rows)), "steps": step, "trainable_params": n_params,
        "wall_s": time.perf_counter() - t_start, "history": history,
    }
    save_json(run_dir / "results.json", results)
    log.info("train: done in %.1fs; final loss %.5f -> %s (LeRobot format)", results["wall_s"], train_loss,
             policy_dir)
    return results


@torch.no_grad()
def _val_loss(policy, pre, batcher, rows, batch_size) -> float | None:
    """LeRobot's training loss on held-out episodes (train mode, no gradients: ACT's CVAE needs the
    action chunk, which only its training forward encodes)."""
    if len(rows) == 0:
        return None
    total, n = 0.0, 0
    for raw in batcher.iterate(rows, batch_size):
        loss, _ = policy.forward(pre(raw))
        total += float(loss) * len(raw[ACTION_KEY])
        n += len(raw[ACTION_KEY])
    return total / max(n, 1)
