"""Imitation learning on a Pixio backbone: `python -m pixio_robot.train` (hydra).

    python -m pixio_robot.train dataset.root=data/metaworld-drawer-open eval.env=metaworld/drawer-open-v3
    python -m pixio_robot.train policy=pixio_act dataset.root=demos/pusht +policy.options.chunk_size=16
    python -m pixio_robot.train encoder.source=checkpoint encoder.path=runs/pretrain/x/encoder ...

Frozen encoders train from the feature cache (every frame encoded once, memory-mapped);
fine-tuned ones from a decoded-frame memmap. Periodic rollouts go through
`pixio_robot.evaluation.evaluate_policy`; the best and the final success are both recorded.
The run directory gets config.yaml, git.txt, TensorBoard events, `policy/` (final),
`policy_best/` (best rollout success) and results.json. `run_train(cfg)` is the hydra-free API.
`policy=pixio_act|pixio_diffusion` trains LeRobot's own ACT / Diffusion Policy instead
(`pixio_robot.train.lerobot`), saved in LeRobot's pretrained format in `policy/`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import MISSING

from pixio_robot.policies.lerobot.training import LEROBOT_POLICIES
from pixio_robot.train.config import RETIRED_POLICIES, OptimConfig, TrainConfig, retired_policy_message
from pixio_robot.utils.device import resolve_device
from pixio_robot.utils.logging import get_logger

log = get_logger("pixio_robot.train")


def _optimizer(policy, cfg: OptimConfig) -> torch.optim.Optimizer:
    enc = [p for p in policy.adapter.backbone.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in enc}
    head = [p for p in policy.parameters() if p.requires_grad and id(p) not in enc_ids]
    groups = [{"params": head, "lr": cfg.lr}]
    if enc:
        groups.append({"params": enc, "lr": cfg.encoder_lr if cfg.encoder_lr is not None else cfg.lr / 10})
    if cfg.weight_decay > 0:
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.lr)  # CortexBench: plain Adam


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def _val_loss(policy, batcher, rows: np.ndarray, batch_size: int, device) -> float | None:
    if len(rows) == 0:
        return None
    policy.eval()
    total, n = 0.0, 0
    for batch in batcher.iterate(rows, batch_size):
        loss, _ = policy(_to_device(batch, device))
        total += float(loss) * len(batch["action"])
        n += len(batch["action"])
    policy.train()
    return total / max(n, 1)


def _rollouts(policy, cfg: TrainConfig, spec, video_dir: Path | None = None) -> dict | None:
    """`eval.n_episodes` rollouts through the rollout loop; with `video_dir` (the final evaluation)
    the first `eval.n_videos` episodes are also written there as mp4."""
    e = cfg.eval
    if not e.env or e.n_episodes < 1:
        return None
    from pixio_robot.evaluation import evaluate_policy

    n_videos = e.n_videos if video_dir is not None else 0
    res = evaluate_policy(policy, e.env, n_episodes=e.n_episodes, n_envs=e.n_envs, seed=e.seed,
                          image_size=e.image_size or spec.image_size or 128, camera=e.camera,
                          max_episode_steps=e.max_episode_steps, progress=cfg.progress,
                          vector_mode=e.vector_mode, env_options=dict(e.env_options),
                          stop_on_success=e.stop_on_success, video_dir=video_dir if n_videos else None,
                          n_videos=n_videos)
    policy.train()
    out = res.summary()
    out["videos"] = [ep.video for ep in res.episodes if getattr(ep, "video", None)]
    return out


def _check_eval_env(policy, cfg: TrainConfig, spec) -> None:
    """Build the rollout env once before training: an unknown name or an env whose action / state
    sizes do not fit the demos fails now, not after the first `eval.every_epochs` epochs."""
    e = cfg.eval
    if not e.env or e.n_episodes < 1:
        return
    from pixio_robot.envs import make_env
    from pixio_robot.evaluation.rollout import camera_options, fit_problems

    options = {"image_size": e.image_size or spec.image_size or 128, "camera": e.camera, **dict(e.env_options)}
    if e.max_episode_steps is not None:
        options["max_episode_steps"] = e.max_episode_steps
    env = make_env(e.env, **camera_options(policy, e.env, options))
    try:
        problems = fit_problems(policy, e.env, env.observation_space, env.action_space)
    finally:
        env.close()
    if problems:
        raise ValueError(f"policy and env do not fit: {'; '.join(problems)}. The policy is trained on the demos of "
                         f"dataset {spec.dataset}, and the rollout env eval.env={e.env} does not fit them: "
                         "set eval.env to the env the demos were recorded in, or eval.n_episodes=0 to train "
                         "without rollouts")


def _defaults_from_collection(cfg: TrainConfig, root) -> None:
    """Datasets written by `python -m pixio_robot.collect` record their env and camera: use them
    for rollouts when `eval.env` / `eval.camera` are left null."""
    try:
        from pixio_robot.data.lerobot_io import read_collect_info

        info = read_collect_info(root)
    except (ImportError, OSError, ValueError):
        return
    if cfg.eval.env is None and info.get("env"):
        cfg.eval.env = info["env"]
        log.info("train: rollouts in %s (the env the demos were collected in)", cfg.eval.env)
    if cfg.eval.camera is None and info.get("camera"):
        cfg.eval.camera = info["camera"]


def _log_dataset(demo) -> None:
    """One line saying which camera(s) / state / action features training reads."""
    cams = list(demo.dataset.meta.camera_keys)
    state = f"{demo.state_key} ({demo.states.shape[1]}-d)" if demo.state_key else "none"
    read = f"camera {demo.image_key}" if len(demo.image_keys) == 1 else f"cameras {demo.image_keys}"
    log.info("dataset %s: %s (of %s), state %s, action %s (%d-d), %d episodes, %d frames, fps %s",
             demo.dataset.root, read, cams, state, demo.action_key, demo.actions.shape[1],
             len(demo.episodes), len(demo), demo.fps)


# config keys that may change between runs into one run_dir (speed and logging knobs); every other
# key decides the result, and a finished run with other values is not overwritten
TRAIN_FREE_KEYS = ("run_dir", "resume", "progress", "tensorboard", "device", "num_threads", "encode_batch_size",
                   "cache_dir", "use_cache", "eval.n_envs", "eval.vector_mode", "eval.n_videos")
# what a run writes into its directory (moved aside by resume=false; hydra's own files stay)
TRAIN_ARTIFACTS = ("policy", "policy_best", "results.json", "tb", "videos", "config.yaml", "git.txt", "command.txt")


def train_run_dir(cfg: TrainConfig, run_dir: Path):
    from pixio_robot.utils.rundir import RunDir

    return RunDir(run_dir, "train", artifacts=TRAIN_ARTIFACTS, finished=("results.json", "policy/model.safetensors"),
                  free_keys=TRAIN_FREE_KEYS)


def check_train_dir(cfg: TrainConfig, run_dir: Path) -> dict | None:
    """The run-dir guard (`RunDir`), before anything is written: returns the saved results when the
    same run already finished there (nothing to do), None to train. Outputs of a run with other
    settings are refused with the differences; `resume=false` moves them to `previous/<time>/`; an
    unfinished run with the same settings (training has no checkpoints) is moved aside and trained
    again."""
    import json

    from pixio_robot.utils.run import to_plain

    rd = train_run_dir(cfg, run_dir)
    state = rd.check(to_plain(cfg), resume=cfg.resume)
    if state == "done":
        log.info("train: %s already holds this finished run: nothing to do (resume=false trains it again)", run_dir)
        return json.loads((run_dir / "results.json").read_text())
    if state == "resume":
        rd.restart("an unfinished run with these settings (no checkpoints to resume)")
    return None


def run_train(cfg: TrainConfig) -> dict:
    """Train an imitation policy; returns best/final success, losses and the saved policy dirs.
    The run directory is locked and guarded (`check_train_dir`)."""
    from pixio_robot.utils.rundir import run_dir_lock

    run_dir = Path(cfg.run_dir or Path("runs/train") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    with run_dir_lock(run_dir):
        return _run_train(cfg, run_dir)


def _run_train(cfg: TrainConfig, run_dir: Path) -> dict:
    from pixio_robot.policies.demos import load_demos
    from pixio_robot.utils.run import prepare_run_dir
    from pixio_robot.utils.seed import seed_everything

    if cfg.policy is MISSING or cfg.policy is None:
        from pixio_robot.policies import MLPConfig

        cfg.policy = MLPConfig()  # the CortexBench head
    if isinstance(cfg.policy, dict) and cfg.policy.get("type") in RETIRED_POLICIES:
        raise ValueError(retired_policy_message(cfg.policy["type"]))
    if not hasattr(cfg.policy, "type"):
        raise ValueError(f"cfg.policy must be a policy config (MLPConfig, LeRobotPolicyChoice), got "
                         f"{cfg.policy!r}; with hydra pick policy=mlp|pixio_act|pixio_diffusion")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    done = check_train_dir(cfg, run_dir)
    if done is not None:
        return done
    prepare_run_dir(run_dir, cfg)
    device = resolve_device(cfg.device)

    d = cfg.dataset
    if cfg.policy.type in LEROBOT_POLICIES:
        from pixio_robot.train.lerobot import run_lerobot_train

        demo = load_demos(d.root, d.repo_id, d.image_key, state_key=d.state_key, action_key=d.action_key,
                          video_backend=d.video_backend, cameras=d.cameras)
        _log_dataset(demo)
        return run_lerobot_train(cfg, run_dir, demo, t_start)
    demo = load_demos(d.root, d.repo_id, d.image_key, state_key=d.state_key, action_key=d.action_key,
                      video_backend=d.video_backend, cameras=d.cameras)
    _log_dataset(demo)
    _defaults_from_collection(cfg, demo.dataset.root)
    setup = _build(cfg, demo, device)
    fit = _fit(cfg, run_dir, setup, device)
    return _write_results(cfg, run_dir, demo, setup, fit, t_start)


def _build(cfg: TrainConfig, demo, device) -> dict:
    """The policy for `demo`, its frames (cached features or decoded frames) and the row split."""
    from pixio_robot.data.feature_cache import FeatureCache, LeRobotFrames
    from pixio_robot.policies import PolicySpec, make_policy
    from pixio_robot.policies.demos import DemoBatcher

    d = cfg.dataset
    spec = PolicySpec(state_dim=demo.states.shape[1], action_dim=demo.actions.shape[1], stats=demo.stats(),
                      env_name=cfg.eval.env, image_size=int(demo.image_shape[0]), camera=cfg.eval.camera,
                      image_key=demo.image_key, image_keys=list(demo.image_keys), fps=demo.fps, state_key=demo.state_key,
                      action_key=demo.action_key, dataset=str(d.root if d.root is not None else d.repo_id))
    policy = make_policy(cfg.policy.type, cfg.policy, cfg.encoder, spec).to(device)
    _check_eval_env(policy, cfg, spec)
    cache = FeatureCache(cfg.cache_dir, dtype=cfg.cache_dtype)
    cached = policy.adapter.frozen and cfg.use_cache
    cache_hit = None
    frames = []  # one array per camera (one cache entry per camera)
    for key in demo.image_keys:
        source = LeRobotFrames(demo.dataset, key)
        if cached:
            feats, hit = cache.get(policy.adapter, source, batch_size=cfg.encode_batch_size, progress=cfg.progress)
            frames.append(feats)
            cache_hit = hit if cache_hit is None else (cache_hit and hit)
        else:
            frames.append(cache.frames(source, progress=cfg.progress))
    batcher = DemoBatcher(demo, frames, history=policy.n_obs_steps,
                          chunk=getattr(cfg.policy, "chunk_size", 1), cached=cached)
    train_rows, val_rows = demo.split(d.val_fraction, cfg.seed)
    if d.val_fraction > 0 and len(val_rows) == 0:
        log.warning("train: dataset.val_fraction=%s of %d episode(s) is no whole episode: no validation loss "
                    "(collect more episodes, or raise val_fraction)", d.val_fraction, len(demo.episodes))
    n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    log.info("train: %d frames (%d episodes), %d train / %d val rows, %s policy, %d trainable params, "
             "features %s", len(demo), len(demo.episodes), len(train_rows), len(val_rows), policy.policy_type,
             n_params, "cached" if cached else "re-encoded")
    return {"spec": spec, "policy": policy, "batcher": batcher, "train_rows": train_rows, "val_rows": val_rows,
            "cached": cached, "cache_hit": cache_hit, "n_params": n_params}


def _epoch(policy, batcher, rows, opt, cfg: TrainConfig, rng, device, epoch: int, step: int) -> tuple[float, int]:
    """One pass over `rows`; returns (mean train loss, optimizer steps so far)."""
    total, count = 0.0, 0
    for batch in batcher.iterate(rows, cfg.optim.batch_size, rng):
        if len(batch["action"]) < 2:  # BatchNorm needs 2 rows; a 1-row tail is skipped
            continue
        loss, _ = policy(_to_device(batch, device))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss)} at epoch {epoch} step {step}: lower "
                                     "optim.lr, or check the dataset for NaN/inf actions or states")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.clip_grad:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.optim.clip_grad)
        opt.step()
        total += float(loss.detach()) * len(batch["action"])
        count += len(batch["action"])
        step += 1
    return total / max(count, 1), step


def _fit(cfg: TrainConfig, run_dir: Path, setup: dict, device) -> dict:
    """The epochs, with rollouts every `eval.every_epochs` (and after the last): `policy/` holds the
    newest weights, `policy_best/` those of the best rollout success."""
    from tqdm.auto import tqdm

    from pixio_robot.policies import save_policy

    policy, batcher = setup["policy"], setup["batcher"]
    opt = _optimizer(policy, cfg.optim)
    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    rng = np.random.default_rng(cfg.seed)
    out: dict[str, Any] = {"step": 0, "history": [], "best": {"success": None, "epoch": None}, "final_eval": None,
                           "train_loss": float("nan")}
    policy.train()
    bar = tqdm(range(cfg.optim.epochs), desc="train", unit="epoch", disable=not cfg.progress)
    for epoch in bar:
        t_epoch = time.perf_counter()
        out["train_loss"], out["step"] = _epoch(policy, batcher, setup["train_rows"], opt, cfg, rng, device, epoch,
                                                out["step"])
        val_loss = _val_loss(policy, batcher, setup["val_rows"], cfg.optim.batch_size, device)
        row = {"epoch": epoch + 1, "train_loss": out["train_loss"], "val_loss": val_loss,
               "epoch_s": time.perf_counter() - t_epoch}
        last = epoch + 1 == cfg.optim.epochs
        every = cfg.eval.every_epochs
        if last or (every > 0 and (epoch + 1) % every == 0):
            if cfg.eval.env and cfg.eval.n_episodes > 0:  # the weights are safe whatever the rollouts do
                save_policy(policy, run_dir / "policy", extra={"epoch": epoch + 1, "eval": None})
            ev = _rollouts(policy, cfg, setup["spec"], video_dir=run_dir / "videos" if last else None)
            if ev is not None:
                row["success"] = ev["success_rate"]
                row["mean_return"] = ev["mean_return"]
                if out["best"]["success"] is None or ev["success_rate"] > out["best"]["success"]:
                    out["best"] = {"success": ev["success_rate"], "epoch": epoch + 1, "eval": ev}
                    save_policy(policy, run_dir / "policy_best", extra={"epoch": epoch + 1, "eval": ev})
                if last:
                    out["final_eval"] = ev
        out["history"].append(row)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and v is not None:
                    writer.add_scalar(f"train/{k}" if "loss" in k or k == "epoch_s" else f"eval/{k}", v, epoch + 1)
        bar.set_postfix(loss=f"{out['train_loss']:.4f}",
                        **({"succ": f"{row['success']:.2f}"} if "success" in row else {}))
    bar.close()
    if writer is not None:
        writer.close()
    return out


def _write_results(cfg: TrainConfig, run_dir: Path, demo, setup: dict, fit: dict, t_start: float) -> dict:
    from pixio_robot.policies import save_policy
    from pixio_robot.utils.io import save_json

    policy, final_eval, best = setup["policy"], fit["final_eval"], fit["best"]
    policy_dir = save_policy(policy, run_dir / "policy", extra={"epoch": cfg.optim.epochs, "eval": final_eval})
    cached, cache_hit = setup["cached"], setup["cache_hit"]
    results = {
        "run_dir": str(run_dir), "policy_dir": str(policy_dir),
        "best_policy_dir": str(run_dir / "policy_best") if best["success"] is not None else None,
        "best_success": best["success"], "best_epoch": best["epoch"],
        "final_success": final_eval["success_rate"] if final_eval else None,
        "final_success_ci": final_eval["success_ci"] if final_eval else None,
        "final_videos": final_eval.get("videos", []) if final_eval else [],
        "final_train_loss": fit["train_loss"], "final_val_loss": fit["history"][-1]["val_loss"],
        "cache": "hit" if cache_hit else ("miss" if cached else "off"), "features_cached": cached,
        "n_frames": len(demo), "n_episodes": int(len(demo.episodes)), "n_train": int(len(setup["train_rows"])),
        "n_val": int(len(setup["val_rows"])), "cameras": list(demo.image_keys), "steps": fit["step"],
        "trainable_params": setup["n_params"], "encoder_digest": policy.adapter.encoder_digest(),
        "wall_s": time.perf_counter() - t_start, "history": fit["history"],
    }
    if not math.isfinite(fit["train_loss"]):
        log.warning("training ended with a non-finite mean loss")
    save_json(run_dir / "results.json", results)
    log.info("train: done in %.1fs; final loss %.5f, best success %s, final success %s -> %s",
             results["wall_s"], fit["train_loss"], results["best_success"], results["final_success"], policy_dir)
    return results


