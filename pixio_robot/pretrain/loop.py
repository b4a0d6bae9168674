"""`run_pretrain(cfg) -> dict`: the pretraining loop (single process, DDP or FSDP2 under torchrun)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pixio_robot.models import create_model, save_encoder
from pixio_robot.models.train_checkpoint import find_resumable, load_checkpoint, save_checkpoint
from pixio_robot.pretrain.config import PretrainConfig
from pixio_robot.pretrain.curation import keep_rate
from pixio_robot.pretrain.distributed import checkpoint_blocks, compile_blocks, wrap_model
from pixio_robot.pretrain.engine import Engine, build_optimizer, lr_at, scaled_lr
from pixio_robot.pretrain.rundir import check_run_dir
from pixio_robot.pretrain.runstats import file_stats, reduce_stats, report_files
from pixio_robot.pretrain.sources import build_sources
from pixio_robot.pretrain.stream import LaneTracker, PretrainStream
from pixio_robot.pretrain.viz import ScalarLogger, reconstruction_grid, save_png
from pixio_robot.utils import dist as udist
from pixio_robot.utils.cli import RunError
from pixio_robot.utils.io import save_json
from pixio_robot.utils.logging import get_logger
from pixio_robot.utils.run import prepare_run_dir, to_plain
from pixio_robot.utils.seed import rng_state, seed_everything, set_rng_state

log = get_logger(__name__)


class NonFiniteLossError(RunError):
    pass


def _plan_kwargs(cfg: PretrainConfig, device: torch.device, world: int) -> dict:
    """`plan_memory` settings of this run (hsdp shards over a group of ranks only)."""
    from pixio_robot.pretrain.distributed import bf16_params, hsdp_shard_size

    ranks = hsdp_shard_size(cfg.hsdp_shard_size, world) if cfg.parallel == "hsdp" else world
    return {"world": ranks, "bf16": bf16_params(device, cfg.amp), "fsdp": cfg.parallel != "ddp",
            "ac": cfg.activation_checkpointing, "offload": cfg.fsdp_cpu_offload}


def build_model(cfg: PretrainConfig, teacher=None) -> torch.nn.Module:
    """The module a run trains: the configured MAE, or with `distill.teacher` a `PixioDistill`
    (the student encoder named by `model` + a projector; the teacher loaded frozen)."""
    if not cfg.distill.teacher:
        return create_model(cfg.model.name, **cfg.model.create_kwargs())
    from pixio_robot.models import load_encoder
    from pixio_robot.models.distill import PixioDistill

    if teacher is None:
        try:
            teacher = load_encoder(cfg.distill.teacher)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"distill.teacher: {e}; give a pretraining run, an encoder directory "
                                    "(save_encoder) or an official .pth file") from None
    return PixioDistill(create_model(**_student_kwargs(cfg, teacher.num_cls_tokens)), teacher,
                        mask_ratio=cfg.distill.mask_ratio, mask_block=cfg.distill.mask_block,
                        cls_weight=cfg.distill.cls_weight, projector_hidden=cfg.distill.projector_hidden)


def _student_kwargs(cfg: PretrainConfig, num_cls_tokens: int) -> dict:
    """`create_model` arguments of a distillation student (its class tokens follow the teacher's
    unless `model.num_cls_tokens` says otherwise)."""
    from pixio_robot.models.distill import student_name

    m = cfg.model
    return {"name": student_name(m.name), "img_size": m.image_size, "drop_path_rate": m.drop_path_rate,
            "num_cls_tokens": m.num_cls_tokens if m.num_cls_tokens is not None else num_cls_tokens}


def _model_config(cfg: PretrainConfig):
    with torch.device("meta"):
        return create_model(cfg.model.name, **cfg.model.create_kwargs()).config


def auto_micro_batch(cfg: PretrainConfig, world: int, device_gib: float | None, plan_kw: dict) -> int:
    """`micro_batch_size=0`: the largest divisor of the per-rank batch whose memory plan fits the
    device (no limit on CPU: the whole per-rank batch)."""
    from pixio_robot.pretrain.plan import fits_message, max_micro_batch, plan_memory

    per_rank = cfg.batch_size // world
    if device_gib is None:
        return per_rank
    mcfg = _model_config(cfg)
    micro = max_micro_batch(mcfg, device_gib, [d for d in range(1, per_rank + 1) if per_rank % d == 0], **plan_kw)
    if micro:
        return micro
    raise ValueError("micro_batch_size=0 (auto): not even a micro-batch of 1 fits; "
                     + fits_message(plan_memory(mcfg, 1, **plan_kw), device_gib))


def _device_gib(cfg: PretrainConfig, device: torch.device) -> float | None:
    if cfg.plan_device_gib:
        return cfg.plan_device_gib
    return torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else None


def _batch_math(cfg: PretrainConfig, world: int, device: torch.device | None = None) -> tuple[int, int]:
    micro = cfg.micro_batch_size if cfg.micro_batch_size is not None else cfg.batch_size // world
    if micro == 0:
        device = device or torch.device("cpu")
        gib = _device_gib(cfg, device)
        micro = auto_micro_batch(cfg, world, gib, _plan_kwargs(cfg, device, world))
        log.info("micro_batch_size=0 (auto): micro-batch %d per rank", micro)
    if micro < 1 or cfg.batch_size % (micro * world):
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of micro_batch_size {micro} x "
                         f"world size {world}; change batch_size or micro_batch_size")
    return micro, cfg.batch_size // (micro * world)


def _device(cfg: PretrainConfig) -> torch.device:
    device = udist.init_distributed()
    if cfg.device != "auto":
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={cfg.device}, but torch sees no CUDA GPU here; use device=auto (or cpu)")
    return device


def _set_threads(cfg: PretrainConfig, device: torch.device) -> None:
    """CPU threads per process: `num_threads`, or (cores / local ranks) - loader workers, at least 1.
    Oversubscribed OpenMP threads spin against each other: on a busy 2-core machine a tiny step
    took ~10 s with 2 threads and ~1.5 s with 1."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, cores // local - cfg.data.num_workers))


def run_pretrain(cfg: PretrainConfig) -> dict:
    """Pretrain a Pixio MAE as configured; resumes from `<run_dir>/checkpoints` when present.
    Returns a summary (losses, throughput, curation counts, paths)."""
    device = _device(cfg)
    _set_threads(cfg, device)
    world, main = udist.world_size(), udist.is_main()
    if cfg.plan_only:
        return plan_run(cfg, device, world)
    run_dir = Path(cfg.run_dir)
    if not main:  # only rank 0 writes the run directory, so only it holds the lock
        return _pretrain(cfg, device, run_dir)
    from pixio_robot.utils.rundir import run_dir_lock

    with run_dir_lock(run_dir):
        return _pretrain(cfg, device, run_dir)


def _pretrain(cfg: PretrainConfig, device: torch.device, run_dir: Path) -> dict:
    rank, world, main = udist.rank(), udist.world_size(), udist.is_main()
    ckpt_root = run_dir / "checkpoints"
    check_run_dir(cfg, run_dir)
    micro, accum = _batch_math(cfg, world, device)
    distill = bool(cfg.distill.teacher)
    if not distill:  # the memory model covers MAE pretraining
        _log_memory_plan(cfg, device, micro, world)
    raw, model, optimizer, engine, sources, peak_lr = _build(cfg, device, run_dir, accum, distill)
    start, saved_data, loss_start, prior = _resume(cfg, ckpt_root, raw, model, optimizer)
    num_workers = cfg.data.num_workers
    streaming = [i for i, s in enumerate(sources) if not s.indexed]
    tracker = LaneTracker(world * max(num_workers, 1), len(streaming), saved_data, sources=sources)
    tracker.corrupt_files.update(dict.fromkeys(prior["corrupt_files"]))
    tracker.converted = [dict.fromkeys(prior["converted"].get(src.name, [])) for src in sources]
    if tracker.restarted:
        log.warning("the saved data position is for another rank / worker layout; continuing after it")
    stream = PretrainStream(sources, cfg.data, cfg.curation, seed=cfg.seed, img_size=cfg.model.image_size,
                            batch_size=micro, noise_dim=raw.masking.num_blocks, rank=rank, world_size=world,
                            lane_states=tracker.states,
                            worker_offset=0 if tracker.restarted else start * accum % max(num_workers, 1))
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=device.type == "cuda",
                        prefetch_factor=cfg.data.prefetch_factor if num_workers else None)
    logger = ScalarLogger(run_dir, cfg.logger.tensorboard, cfg.logger.wandb, cfg.logger.wandb_project,
                          to_plain(cfg), enabled=main)
    _log_model(cfg, raw, world, micro, accum, peak_lr, device, distill)

    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=start, disable=not (main and cfg.logger.progress), desc="pretrain",
               unit="step", dynamic_ncols=True)
    zero = torch.zeros((), device=device)
    nan = torch.full((), float("nan"), device=device)
    loss_sum, n_finite, consec, max_consec, skipped = zero.clone(), zero.clone(), zero.clone(), zero.clone(), zero.clone()
    reports = _ScalarReports(cfg, logger, bar, ckpt_root, loss_start)
    reports.history = [tuple(h) for h in prior["history"] if h[0] <= start]
    t_log, img_log, last_batch = time.time(), 0, None
    it = iter(loader) if start < cfg.steps else None
    t_train, imgs_train = time.time(), 0
    saved_step = start
    try:
        for step in range(start, cfg.steps):
            micro_batches = [next(it) for _ in range(accum)]
            for b in micro_batches:
                tracker.update(b)
            last_batch = micro_batches[-1]
            log_now = (step + 1) % cfg.logger.log_every == 0 or step == start or step + 1 == cfg.steps
            lr = lr_at(step, cfg.steps, peak_lr, cfg.optim.warmup_steps, cfg.optim.min_lr)
            out = engine.step(micro_batches, lr, want_norm=log_now)
            loss_sum += torch.where(out.finite, out.loss, zero)
            n_finite += out.finite.float()
            consec = (consec + 1) * (~out.finite).float()
            max_consec = torch.maximum(max_consec, consec)
            skipped += (~out.finite).float()
            img_log += cfg.batch_size
            imgs_train += cfg.batch_size
            bar.update()
            if log_now:  # device scalars leave for the host without stalling the step (read when landed)
                norm = out.grad_norm.float() if out.grad_norm is not None else nan
                vals = torch.stack([loss_sum, n_finite, max_consec, skipped, norm])
                if udist.is_dist():  # the loss of the global batch: average the ranks' sums
                    torch.distributed.all_reduce(vals)
                    vals = vals / world
                dt = max(time.time() - t_log, 1e-9)
                reports.push(step + 1, vals, {"train/lr": lr, "train/images_per_s": img_log / dt,
                                              "data/keep_rate": keep_rate(tracker.totals)})
                loss_sum.zero_(), n_finite.zero_(), max_consec.zero_(), skipped.zero_()
                t_log, img_log = time.time(), 0
                reports.drain(wait=reports.loss_start is None or step + 1 == cfg.steps)
            if cfg.logger.recon_every and (step + 1) % cfg.logger.recon_every == 0 and not distill:
                _recon(raw, engine, last_batch, cfg, run_dir, logger, step + 1)
            if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
                reports.drain(wait=True)  # the checkpoint syncs anyway
                _checkpoint(ckpt_root, step + 1, model, raw, optimizer, tracker, cfg, reports, prior["curation"], device)
                saved_step = step + 1
    except KeyboardInterrupt:
        bar.close()
        log.warning("interrupted at step %d of %d; the last checkpoint is step %d in %s (ckpt_every=%d)", step, cfg.steps,
                    saved_step, ckpt_root, cfg.ckpt_every)
        raise
    reports.drain(wait=True)
    loss_start, loss_end, history = reports.loss_start, reports.loss_end, reports.history
    bar.close()
    train_seconds = time.time() - t_train

    del loader, it  # the workers stop before the export and the collective cleanup
    return _finish(cfg, device, run_dir, raw, model, engine, optimizer, tracker, prior, logger, last_batch,
                   {"loss_start": loss_start, "loss_end": loss_end, "history": history, "start": start,
                    "images": imgs_train, "seconds": train_seconds, "distill": distill, "world": world})

def _build(cfg: PretrainConfig, device: torch.device, run_dir: Path, accum: int, distill: bool):
    """The model (seeded alike on every rank), its sources (rendered / indexed by rank 0 first),
    the run's records (written only once the inputs load), the wrapped model, optimizer and engine."""
    rank, main = udist.rank(), udist.is_main()
    seed_everything(cfg.seed)  # the same initial weights on every rank (FSDP2 does not broadcast them)
    raw = build_model(cfg).to(device)
    if distill and cfg.amp != "none" and device.type == "cuda":  # inference only: bf16 weights, half the memory
        raw.teacher.to(torch.bfloat16)
    seed_everything(cfg.seed + rank)  # then per-rank randomness (drop path)
    if main:  # render / index the sources once before the other ranks open them
        sources = build_sources(cfg.data.sources, seed=cfg.seed, progress=cfg.logger.progress)
    udist.barrier()
    if not main:
        sources = build_sources(cfg.data.sources, seed=cfg.seed, progress=False)
    if main:  # only now: a launch that fails on its inputs leaves the run's records as they were
        prepare_run_dir(run_dir, cfg)
        total = sum(src.weight for src in sources)
        log.info("data: %s", "; ".join(
            f"{src.describe()}, {f'{len(src):,} samples' if src.indexed else 'streamed'}, {src.weight / total:.0%} of "
            "the mix" for src in sources))
    if cfg.activation_checkpointing:
        checkpoint_blocks(raw)
    if cfg.compile:
        compile_blocks(raw, cfg.compile_mode)
        if distill:  # the teacher's forward is most of a distillation step's FLOPs
            for blk in raw.teacher.blocks:
                blk.compile(mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
    if cfg.parallel != "ddp" and not udist.is_dist():  # FSDP2 on one device: a one-rank group
        udist.init_single_process_group(device)
    model = wrap_model(raw, device, cfg.parallel, cfg.amp, cpu_offload=cfg.fsdp_cpu_offload,
                       shard_size=cfg.hsdp_shard_size)
    peak_lr = scaled_lr(cfg.optim, cfg.batch_size)
    optimizer = build_optimizer(raw, cfg.optim, peak_lr)
    engine = Engine(model, raw, optimizer, device=device, amp=cfg.amp, clip_grad=cfg.optim.clip_grad, accum=accum)
    return raw, model, optimizer, engine, sources, peak_lr


def _resume(cfg: PretrainConfig, ckpt_root: Path, raw, model, optimizer):
    """(start step, saved data position, loss at start, prior totals) from the newest loadable
    checkpoint; a damaged one falls back to the one before; none loadable is an error."""
    start, saved_data, loss_start = 0, None, None
    prior = {"curation": None, "history": [], "corrupt_files": [], "converted": {}}
    candidates = find_resumable(ckpt_root) if cfg.resume else []
    for ckpt in candidates:
        try:
            state = load_checkpoint(ckpt, raw if udist.world_size() == 1 else model, optimizer)
        except Exception as e:  # a damaged checkpoint: fall back to the one before
            log.warning("could not load %s (%s); trying an older checkpoint", ckpt, str(e).splitlines()[0][:300])
            continue
        start, saved_data, loss_start = state["step"], state["data"], state.get("loss_start")
        prior = {"curation": state.get("curation_totals"), "history": state.get("loss_history", []),
                 "corrupt_files": state.get("corrupt_files", []), "converted": state.get("high_bit_depth_files", {})}
        if state["rng"] is not None:
            set_rng_state(state["rng"])
        log.info("resumed from %s (step %d)", ckpt, start)
        break
    else:
        if candidates:  # never start over on top of a run's checkpoints without being asked
            raise RunError(f"none of the {len(candidates)} checkpoint(s) in {ckpt_root} could be loaded (see the "
                           "warnings above); repair or remove them, or pass resume=false to start over (they are "
                           "then moved aside, not deleted)")
    return start, saved_data, loss_start, prior


def _log_model(cfg: PretrainConfig, raw, world: int, micro: int, accum: int, peak_lr: float, device, distill: bool):
    n_params = sum(p.numel() for p in raw.parameters())  # trained ones (a distillation teacher is not among them)
    if distill:
        log.info("distilling %s (%.2fM params) into %s (%.2fM params + %.2fM projector), student mask ratio %.2f",
                 cfg.distill.teacher, sum(p.numel() for p in raw.teacher.parameters()) / 1e6,
                 _student_kwargs(cfg, raw.num_cls_tokens)["name"],
                 sum(p.numel() for p in raw.student.parameters()) / 1e6,
                 sum(p.numel() for p in raw.projector.parameters()) / 1e6, cfg.distill.mask_ratio)
    log.info("%s %s (%.2fM params) | %d rank(s) x micro-batch %d x %d accumulation = batch %d | peak lr %.3g "
             "| steps %d | device %s", "distilling into" if distill else "model",
             _student_kwargs(cfg, raw.num_cls_tokens)["name"] if distill else cfg.model.name, n_params / 1e6,
             world, micro, accum, cfg.batch_size, peak_lr, cfg.steps, device)


def _finish(cfg: PretrainConfig, device, run_dir: Path, raw, model, engine, optimizer, tracker, prior: dict, logger,
            last_batch, run: dict) -> dict:
    """Curation totals over the ranks, the encoder export, the last reconstruction grid and results.json."""
    main, distill, start = udist.is_main(), run["distill"], run["start"]
    loss_start, loss_end, history = run["loss_start"], run["loss_end"], run["history"]
    imgs_train, train_seconds, world = run["images"], run["seconds"], run["world"]
    totals = reduce_stats(tracker.totals, device, prior["curation"])
    encoder_dir = _export(raw, model, cfg, run_dir) if cfg.export_encoder else None
    if last_batch is not None and not distill:
        _recon(raw, engine, last_batch, cfg, run_dir, logger, cfg.steps)
    summary = {"loss_start": loss_start, "loss_end": loss_end, "steps": cfg.steps, "resumed_from": start,
               "images_per_s": imgs_train / max(train_seconds, 1e-9) if imgs_train else None,
               "curation": totals, "keep_rate": keep_rate(totals), "run_dir": str(run_dir),
               "encoder_dir": str(encoder_dir) if encoder_dir else None, "loss_history": history,
               "world_size": world}
    files = file_stats(tracker)
    if main:
        summary.update(report_files(files, totals["corrupt"], run_dir))
        log.info("curation: %s (keep rate %.3f)", ", ".join(f"{k}={v}" for k, v in totals.items()), keep_rate(totals))
        if loss_start is not None and loss_end is not None:
            log.info("loss: start %.4f -> end %.4f", loss_start, loss_end)
        elif start >= cfg.steps:
            log.info("nothing to do: %s already finished %d steps (raise steps=... to train on, or start "
                     "again with run_dir=<new dir> or resume=false)", run_dir, start)
        save_json(run_dir / "results.json", summary)
    logger.close()
    udist.cleanup(model, engine, optimizer)
    return summary


class _ScalarReports:
    """Device scalars to the log without stalling the GPU: at a log step the values are copied to
    pinned host memory behind a CUDA event and read once the copy has landed (by a later log step,
    or at a checkpoint / the end), so the host never waits for the device between steps. On CPU
    they are read at once. Reading raises NonFiniteLossError when training diverged."""

    def __init__(self, cfg: PretrainConfig, logger, bar, ckpt_root: Path, loss_start: float | None) -> None:
        self.cfg, self.logger, self.bar, self.ckpt_root = cfg, logger, bar, ckpt_root
        self.pending: deque = deque()
        self.loss_start, self.loss_end = loss_start, None
        self.history: list[tuple[int, float]] = []

    def push(self, step: int, vals: torch.Tensor, host_scalars: dict) -> None:
        event = None
        if vals.is_cuda:
            host = torch.empty(vals.shape, dtype=vals.dtype, pin_memory=True)
            host.copy_(vals, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = vals.detach().clone()
        self.pending.append((step, host, event, host_scalars))

    def drain(self, wait: bool = False) -> None:
        while self.pending and (wait or self.pending[0][2] is None or self.pending[0][2].query()):
            step, host, event, scalars = self.pending.popleft()
            if event is not None:
                event.synchronize()
            self._report(step, host.tolist(), scalars)

    def _report(self, step: int, vals: list[float], scalars: dict) -> None:
        loss_sum, n_finite, max_consec, skipped, norm = vals
        if skipped > 0:
            log.warning("skipped %d step(s) with a non-finite loss up to step %d", int(skipped), step)
        if max_consec >= self.cfg.max_nonfinite:
            raise NonFiniteLossError(
                f"{int(max_consec)} non-finite losses in a row at step {step}: training diverged. Lower "
                f"optim.lr (now {self.cfg.optim.lr}), set optim.clip_grad (e.g. 1.0), or use amp=none; "
                f"last checkpoint: {self.ckpt_root}")
        if n_finite > 0:
            self.loss_end = loss_sum / n_finite
            if self.loss_start is None:
                self.loss_start = self.loss_end
                log.info("loss at start (step %d): %.4f", step, self.loss_end)
            self.history.append((step, self.loss_end))
        scalars = {"train/loss": self.loss_end if self.loss_end is not None else float("nan"), **scalars}
        if norm == norm:  # not NaN: computed at this step
            scalars["train/grad_norm"] = norm
        self.logger.scalars(step, scalars)
        self.bar.set_postfix(loss=f"{scalars['train/loss']:.4f}", lr=f"{scalars['train/lr']:.2e}",
                             ips=f"{scalars['train/images_per_s']:.0f}")


def plan_run(cfg: PretrainConfig, device: torch.device, world: int) -> dict:
    """`plan_only=true`: what this configuration needs, without data, weights or a run directory:
    micro-batch and accumulation, memory per device (against `plan_device_gib` or this GPU), FLOPs
    per image and step time on paper at 40% MFU of an H100 / H200."""
    from pixio_robot.pretrain.plan import fits_message, flops_per_image, plan_memory, step_time_on_paper

    world = cfg.plan_world_size or world
    if cfg.plan_device_gib:  # planning for a GPU card from any machine: amp=auto means bf16 there
        device = torch.device("cuda")
    micro, accum = _batch_math(cfg, world, device)
    mcfg = _model_config(cfg)
    plan = plan_memory(mcfg, micro, **_plan_kwargs(cfg, device, world))
    flops = flops_per_image(mcfg)["total"]
    paper = step_time_on_paper(mcfg, flops, cfg.batch_size, world, ac=cfg.activation_checkpointing,
                               hybrid=cfg.parallel == "hsdp", micro_batch=micro)
    gib = _device_gib(cfg, device)
    advice = fits_message(plan, gib) if gib else None
    out = {"model": cfg.model.name, "world_size": world, "micro_batch": micro, "accumulation": accum,
           "memory": plan.as_dict(), "device_gib": gib, "fits": advice is None if gib else None, "advice": advice,
           "gflop_per_image": flops / 1e9, "step_s_on_paper": paper["step_s"],
           "images_per_s_on_paper": paper["images_per_s"]}
    lines = [f"plan for {cfg.model.name} ({plan.params / 1e6:.0f}M params), {world} rank(s), parallel={cfg.parallel}, "
             f"amp={cfg.amp}, activation_checkpointing={cfg.activation_checkpointing}",
             f"  batch {cfg.batch_size} = {world} rank(s) x micro-batch {micro} x {accum} accumulation",
             f"  per device: {plan.total_gib:.1f} GiB (states {plan.device_states_gib:.1f}, bf16 copies "
             f"{plan.compute_copies_gib:.1f}, activations {plan.activations_gib:.1f})"
             + (f" + {plan.host_gib:.1f} GiB host" if plan.host_gib else "")
             + (f" of {gib:.0f} GiB: {'fits' if advice is None else 'does NOT fit'}" if gib else ""),
             f"  {flops / 1e9:.1f} GFLOP per image; on paper (40% MFU, 989 TFLOP/s per GPU): "
             f"{paper['step_s']:.2f} s per step, {paper['images_per_s']:.0f} images/s"
             + (f" ({paper['scaling_efficiency']:.0%} of it computing, the rest waiting on "
                f"{'gradient all-reduces' if cfg.parallel == 'ddp' else 'weight all-gathers'})" if world > 1 else "")]
    if advice:
        lines.append("  " + advice)
    if udist.is_main():
        print("\n".join(lines), flush=True)
    return out


def _log_memory_plan(cfg: PretrainConfig, device: torch.device, micro: int, world: int) -> None:
    """Say what the step will need per device before building it; warn (with what to change)
    when it will not fit the GPU."""
    from pixio_robot.pretrain.plan import fits_message, plan_memory

    plan = plan_memory(_model_config(cfg), micro, **_plan_kwargs(cfg, device, world))
    if udist.is_main():
        log.info("memory plan per device: %.1f GiB (states %.1f, bf16 copies %.1f, activations %.1f at micro-batch "
                 "%d)%s", plan.total_gib, plan.device_states_gib, plan.compute_copies_gib, plan.activations_gib,
                 micro, f" + {plan.host_gib:.1f} GiB pinned host memory" if plan.host_gib else "")
        gib = _device_gib(cfg, device)
        msg = fits_message(plan, gib) if gib else None
        if msg:
            log.warning(msg)


def _recon(raw, engine: Engine, batch: dict, cfg: PretrainConfig, run_dir: Path, logger, step: int) -> None:
    n = min(cfg.logger.recon_images, batch["images"].shape[0])
    imgs, ids_keep = engine.prepare({"images": batch["images"][:n], "noise": batch["noise"][:n]})
    grid = reconstruction_grid(raw, imgs.float(), ids_keep)  # collective under FSDP2: every rank runs it
    if not udist.is_main():
        return
    save_png(run_dir / "recon" / f"step_{step:08d}.png", grid)
    logger.image(step, "recon", grid)


def _checkpoint(ckpt_root: Path, step: int, model, raw, optimizer, tracker: LaneTracker, cfg: PretrainConfig,
                reports: _ScalarReports, prior_totals: dict | None, device: torch.device) -> None:
    lanes: dict[str, list[int]] = {}
    for part in udist.all_gather_object(tracker.state_dict(udist.rank(), udist.world_size())["states"]):
        lanes.update(part)
    data = {"num_lanes": tracker.num_lanes, "states": lanes}
    rngs = udist.all_gather_object(rng_state())
    target = raw if udist.world_size() == 1 else model
    save_checkpoint(ckpt_root, step, target, optimizer, rngs,
                    {"data": data, "loss_start": reports.loss_start, "model_name": cfg.model.name,
                     "objective": "distill" if cfg.distill.teacher else "mae",
                     **({"distill_dims": raw.dims} if cfg.distill.teacher else {}),
                     "model_config": dataclasses.asdict(raw.config), "run_config": to_plain(cfg),
                     "loss_history": reports.history,
                     "curation_totals": reduce_stats(tracker.totals, device, prior_totals),
                     **file_stats(tracker)}, cfg.keep_last,
                    sharded=cfg.ckpt_format == "sharded")


def _export(raw, model, cfg: PretrainConfig, run_dir: Path) -> Path | None:
    """Write `<run_dir>/encoder/` (save_encoder format) from the full weights (gathered under FSDP2)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    target = raw if udist.world_size() == 1 else model
    sd = get_model_state_dict(target, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not udist.is_main():
        return None
    if cfg.distill.teacher:  # the student alone
        student = create_model(**_student_kwargs(cfg, raw.num_cls_tokens))
        student.load_state_dict({k[len("student."):]: v for k, v in sd.items() if k.startswith("student.")})
        return save_encoder(student, run_dir / "encoder")
    fresh = create_model(cfg.model.name, **cfg.model.create_kwargs())
    fresh.load_state_dict(sd)
    return save_encoder(fresh.encoder, run_dir / "encoder")
