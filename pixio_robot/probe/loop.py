"""The probe loop: encoders x tasks cells, each fitting heads on frozen features of a cached probe
set and scoring them on held-out episodes; plus cross-task transfer cells; then a report.

Per (encoder, task) cell, with the last `test_episodes` episodes held out:
- `state_cls@n` / `state_patch@n`: ridge from the mean class token (or the flattened patch
  tokens) to each state group (hand, objects, joints), trained on the first n episodes for every
  n in `train_sizes`: a data-efficiency curve. R^2 per group and their mean, each with an interval
  over resampled test episodes.
- `depth` (AbsRel, delta1) and `seg` (mIoU) from the dense linear probe, trained on the largest n.
Per (encoder, held-out task) transfer cell: fit on the other tasks, test on this one (the robot's
hand and joints, depth, segmentation; object positions mean different things across tasks).
Floors beside every encoder: `pixels` (raw pixels: a downsampled image for the state probes, the
raw 16x16 pixel patches as "tokens") and, for a trained encoder, `random_init(<label>)` (the same
architecture re-initialised).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pixio_robot.evaluation.grid import Cell, collect_records, run_grid
from pixio_robot.probe import heads
from pixio_robot.probe.sets import SEG_CLASSES, ensure_set, load_set, set_key
from pixio_robot.utils.device import resolve_device
from pixio_robot.utils.io import save_json
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)
STATE_GROUPS = ("hand", "objects", "joints")
TRANSFER_GROUPS = ("hand", "joints")
PIXELS = "pixels"


class PixelFeatures:
    """The raw-pixel floor: 'class token' = the image at `side` px, 'patch tokens' = raw patches."""

    label = PIXELS

    def __init__(self, side: int = 16, patch: int = 16) -> None:
        self.side, self.patch = side, patch

    def features(self, rgb: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255  # (F, 3, H, W)
        small = F.interpolate(x, size=(self.side, self.side), mode="area").flatten(1).numpy()
        p = self.patch
        gh, gw = x.shape[2] // p, x.shape[3] // p
        patches = x.unfold(2, p, p).unfold(3, p, p)  # (F, 3, gh, gw, p, p)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], gh * gw, 3 * p * p).numpy()
        return small, patches, (gh, gw)

    def digest(self) -> str:
        return f"pixels-{self.side}-{self.patch}"


class EncoderFeatures:
    """Frozen features of an encoder the project can load (through the policies' adapter)."""

    def __init__(self, spec, *, reinit_seed: int | None = None, device: str = "cpu") -> None:
        from pixio_robot.policies import build_adapter

        cfg = spec.adapter_config()
        self.adapter = build_adapter(dataclasses.replace(cfg, embedding="mean_cls")).to(device).eval()
        self.label = spec.label if reinit_seed is None else f"random_init({spec.label})"
        if reinit_seed is not None:  # the floor: the same architecture, re-initialised
            model = self.adapter.backbone.model
            torch.manual_seed(reinit_seed)
            (model.reset_parameters if hasattr(model, "reset_parameters") else model.init_weights)()
        self.device = device

    @torch.no_grad()
    def features(self, rgb: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        a = self.adapter
        cls, patch = [], []
        for i in range(0, len(rgb), batch_size):
            x = a.preprocess(torch.from_numpy(rgb[i:i + batch_size]).to(self.device))
            c, p = a.backbone.tokens(x)  # (B,K,D) or None, (B,N,D)
            cls.append((c.mean(1) if c is not None else a.backbone.global_embedding(x)).cpu().numpy())
            patch.append(p.cpu().numpy())
        return np.concatenate(cls), np.concatenate(patch), a.backbone.grid_for(a.image_size)

    def digest(self) -> str:
        return self.adapter.encoder_digest()


def _split(episode: np.ndarray, test_episodes: int) -> tuple[np.ndarray, np.ndarray]:
    eps = np.unique(episode)
    if eps.size <= test_episodes:
        raise ValueError(f"the probe set has {eps.size} episodes; test_episodes={test_episodes} leaves none to "
                         "train on: raise episodes")
    return eps[:-test_episodes], eps[-test_episodes:]


def _scored(frame_sums: np.ndarray, finalize, episodes: np.ndarray, reps: int) -> dict:
    lo, hi = heads.sums_bootstrap(frame_sums, finalize, episodes, reps=reps)
    return {"value": finalize(frame_sums.sum(0)), "lo": lo, "hi": hi}


def state_scores(x_tr, ys_tr: dict, x_te, ys_te: dict, ep_te: np.ndarray, groups, reps: int) -> dict:
    """Ridge per state group; R^2 per group and their mean, with intervals over test episodes."""
    preds = {g: heads.Ridge().fit(x_tr, ys_tr[g]).predict(x_te) for g in groups}
    var = {g: ys_te[g].reshape(len(ys_te[g]), -1).var(0) for g in groups}  # the test set's scale, fixed
    sums = {g: heads.r2_sums(ys_te[g], preds[g]) for g in groups}
    fins = {g: heads.r2_finalize(var[g]) for g in groups}
    out = {g: _scored(sums[g], fins[g], ep_te, reps) for g in groups}
    widths = np.cumsum([0] + [sums[g].shape[1] for g in groups])
    stacked = np.concatenate([sums[g] for g in groups], 1)

    def mean_fin(t: np.ndarray) -> float:
        return float(np.nanmean([fins[g](t[widths[i]:widths[i + 1]]) for i, g in enumerate(groups)]))

    out["mean"] = _scored(stacked, mean_fin, ep_te, reps)
    return out


def dense_scores(p_tr, d_tr, s_tr, p_te, d_te, s_te, ep_te, grid, reps: int, stride: int) -> dict:
    hw = d_te.shape[1:3]
    # Pixels that show no geometry read MuJoCo's far clipping plane (~100 m here, the max of every
    # depth map): they are left out of the metrics, and capped at the farthest real depth in the
    # targets (else a few 100 m values dominate the least-squares fit).
    clip = float(max(d_tr.max(), d_te.max())) * 0.98
    near_tr = d_tr[d_tr < clip]
    cap = float(near_tr.max()) if near_tr.size else clip
    dmask_te = d_te < clip
    depth = heads.DenseProbe(1, stride).fit(p_tr, np.minimum(d_tr, cap), grid)
    dp = depth.predict(p_te, grid, hw)[..., 0]
    k = len(SEG_CLASSES)
    seg = heads.DenseProbe(k, stride).fit(p_tr, np.eye(k, dtype=np.float32)[s_tr], grid)
    sp = seg.predict(p_te, grid, hw).argmax(-1)
    dsums = heads.depth_sums(dp, d_te, dmask_te)
    return {"depth_absrel": _scored(dsums, lambda t: float(t[0] / t[2]), ep_te, reps),
            "depth_delta1": _scored(dsums, lambda t: float(t[1] / t[2]), ep_te, reps),
            "seg_miou": _scored(heads.miou_sums(sp, s_te, k), heads.miou_finalize, ep_te, reps)}


def probe_cell(feats, data: dict, cfg) -> dict:
    """All probes of one encoder on one task's set."""
    cls, patch, grid = feats
    ep = data["episode"]
    train_eps, test_eps = _split(ep, cfg.test_episodes)
    te = np.isin(ep, test_eps)
    ys = {g: data[g] for g in STATE_GROUPS}
    out: dict = {"train_sizes": [], "n_test_frames": int(te.sum())}
    flat = patch.reshape(len(patch), -1)
    for n in cfg.train_sizes:
        if n > train_eps.size:
            log.warning("train size %d > %d training episodes in the set: skipped", n, train_eps.size)
            continue
        tr = np.isin(ep, train_eps[:n])
        out["train_sizes"].append(n)
        out[f"state_cls@{n}"] = state_scores(cls[tr], {g: y[tr] for g, y in ys.items()}, cls[te],
                                             {g: y[te] for g, y in ys.items()}, ep[te], STATE_GROUPS, cfg.bootstrap_reps)
        out[f"state_patch@{n}"] = state_scores(flat[tr], {g: y[tr] for g, y in ys.items()}, flat[te],
                                               {g: y[te] for g, y in ys.items()}, ep[te], STATE_GROUPS,
                                               cfg.bootstrap_reps)
    n = out["train_sizes"][-1]
    tr = np.isin(ep, train_eps[:n])
    out["dense"] = dense_scores(patch[tr], data["depth"][tr], data["seg"][tr], patch[te], data["depth"][te],
                                data["seg"][te], ep[te], grid, cfg.bootstrap_reps, cfg.dense_stride)
    out["dense"]["train_episodes"] = n
    return out


def transfer_cell(feats_by_task: dict, data_by_task: dict, held_out: str, cfg) -> dict:
    """Fit on every other task's training episodes, test on the held-out task's test episodes."""
    tr_c, tr_p, tr_y, tr_d, tr_s = [], [], {g: [] for g in TRANSFER_GROUPS}, [], []
    for task, data in data_by_task.items():
        if task == held_out:
            continue
        cls, patch, grid = feats_by_task[task]
        train_eps, _ = _split(data["episode"], cfg.test_episodes)
        m = np.isin(data["episode"], train_eps)
        tr_c.append(cls[m]), tr_p.append(patch[m]), tr_d.append(data["depth"][m]), tr_s.append(data["seg"][m])
        for g in TRANSFER_GROUPS:
            tr_y[g].append(data[g][m])
    data = data_by_task[held_out]
    cls, patch, grid = feats_by_task[held_out]
    _, test_eps = _split(data["episode"], cfg.test_episodes)
    te = np.isin(data["episode"], test_eps)
    ys_tr = {g: np.concatenate(v) for g, v in tr_y.items()}
    out = {"fit_on": [t for t in data_by_task if t != held_out]}
    out["state_cls"] = state_scores(np.concatenate(tr_c), ys_tr, cls[te], {g: data[g][te] for g in TRANSFER_GROUPS},
                                    data["episode"][te], TRANSFER_GROUPS, cfg.bootstrap_reps)
    out["dense"] = dense_scores(np.concatenate(tr_p), np.concatenate(tr_d), np.concatenate(tr_s), patch[te],
                                data["depth"][te], data["seg"][te], data["episode"][te], grid,
                                cfg.bootstrap_reps, cfg.dense_stride)
    return out


def build_encoders(cfg) -> list:
    out: list = []
    device = str(resolve_device(cfg.device))
    for spec in cfg.encoders:
        out.append(EncoderFeatures(spec, device=device))
        if cfg.floors and spec.source != "pixio":  # a source=pixio encoder is a random init already
            out.append(EncoderFeatures(spec, reinit_seed=spec.init_seed, device=device))
    if cfg.floors:
        out.append(PixelFeatures(cfg.pixels_side))
    labels = [e.label for e in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"encoder labels must be unique: {labels}")
    return out


def run_probe(cfg, run_dir: str | Path | None = None) -> dict:
    """Render (once) the probe set, run every cell not done yet, write the report. A second
    process on the same run_dir is refused (run-dir lock); cells resume as the benchmark's."""
    from pixio_robot.utils.rundir import run_dir_lock

    out = Path(run_dir or cfg.run_dir).expanduser()
    with run_dir_lock(out):
        return _run_probe(cfg, out)


# keys a re-run may change without making it another probe run (the cells' fingerprints decide what re-runs)
PROBE_FREE_KEYS = ("run_dir", "resume", "device", "batch_size", "set_root", "progress")


def _run_probe(cfg, out: Path) -> dict:
    from pixio_robot.probe.report import write_report
    from pixio_robot.utils.run import prepare_run_dir, to_plain
    from pixio_robot.utils.rundir import keep_previous_records

    aside = keep_previous_records(out, to_plain(cfg), PROBE_FREE_KEYS, "probe")
    prepare_run_dir(out, cfg)

    tasks = [t.removeprefix("metaworld/") for t in cfg.envs]
    set_args = dict(episodes=cfg.n_episodes, steps=cfg.steps, every=cfg.every, size=cfg.image_size,
                    camera=cfg.camera, noise=cfg.noise, seed=cfg.seed)
    set_dir = ensure_set(tasks, root=cfg.set_root, progress=cfg.progress, **set_args)
    data = {t: load_set(set_dir, t) for t in tasks}
    encoders = build_encoders(cfg)
    protocol = json.dumps({"v": 3, "set": set_key(tasks, **set_args), "test_episodes": cfg.test_episodes,
                           "train_sizes": list(cfg.train_sizes), "stride": cfg.dense_stride,
                           "reps": cfg.bootstrap_reps}, sort_keys=True)
    by_label = {e.label: e for e in encoders}
    digests = {e.label: e.digest() for e in encoders}
    feats: dict = {}  # (label, task) -> features, for this run only

    def features(label: str, task: str):
        if (label, task) not in feats:
            feats[(label, task)] = by_label[label].features(data[task]["rgb"], cfg.batch_size)
        return feats[(label, task)]

    cells = [Cell(t, e.label, 0) for t in tasks for e in encoders]
    if cfg.transfer and len(tasks) > 1:
        cells += [Cell(f"transfer-to-{t}", e.label, 0) for t in tasks for e in encoders]

    def run_cell(cell: Cell) -> dict:
        if cell.task.startswith("transfer-to-"):
            held = cell.task.removeprefix("transfer-to-")
            return {"kind": "transfer", "task_": held,
                    **transfer_cell({t: features(cell.encoder, t) for t in tasks}, data, held, cfg)}
        return {"kind": "task", "task_": cell.task, **probe_cell(features(cell.encoder, cell.task), data[cell.task], cfg)}

    from tqdm import tqdm

    bar = tqdm(total=len(cells), desc="probe cells", disable=not cfg.progress, unit="cell")

    def tracked(cell: Cell) -> dict:
        try:
            return run_cell(cell)
        finally:
            bar.update(1)

    records = run_grid(cells, tracked, out, resume=cfg.resume, aside=aside,
                       fingerprint=lambda c: f"{protocol}|{digests[c.encoder]}")
    bar.close()
    failed = [r["key"] for r in records if r.get("status") == "failed"]
    paths = write_report(collect_records(out, cells), out / "report", train_sizes=list(cfg.train_sizes))
    save_json(out / "results.json", {"cells": len(cells), "failed": failed, "set_dir": str(set_dir),
                                     "report": {k: str(v) for k, v in paths.items()}})
    log.info("probe report: %s", paths["markdown"])
    return {"cells": len(cells), "failed": failed, "records": records, "report": paths}
