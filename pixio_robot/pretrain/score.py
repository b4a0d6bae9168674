"""`python -m pixio_robot.pretrain.score`: per-sample reconstruction losses for loss-based curation.

  python -m pixio_robot.pretrain.score checkpoint=runs/pretrain/tiny_cpu scores=scores.parquet [data=...]

Every sample of every configured source is seen once, centre-cropped to a square and resized
(bicubic) to the model's resolution, and scored by the MAE loss averaged over `num_masks` random
block masks (drawn from a generator seeded by the sample id, so scores do not depend on batching).
The output is a parquet file with columns `id` (the same sample ids training uses) and `loss`;
train with `curation.scores=<file> curation.tau=<t>` to keep each sample with probability
min(loss / tau, 1). Corrupt images are skipped and counted.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixio_robot.models import IMAGENET_MEAN, IMAGENET_STD, PixioMAE
from pixio_robot.models.checkpoint import load_mae  # noqa: F401 - the scorer's loader
from pixio_robot.pretrain.config import ScoreConfig
from pixio_robot.pretrain.curation import write_scores
from pixio_robot.pretrain.sources import CorruptSample, Source, build_sources, decode_image
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)


def _square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop + bicubic resize: uint8 [H,W,3] -> uint8 [3,size,size]."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    out = Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + s, top + s))
    return np.asarray(out).transpose(2, 0, 1)


def iter_all(sources: list[Source], seed: int, stats: dict) -> Iterator[tuple[str, np.ndarray]]:
    """(id, image) of every sample of every source once; corrupt ones counted in `stats`."""
    for src in sources:
        if src.indexed:
            for i in range(len(src)):
                try:
                    yield src.sample_id(i), src.load(i)
                except CorruptSample:
                    stats["corrupt"] += 1
        else:
            for sid, raw in src.iter_raw(0, 1, 0, seed, stats):
                try:
                    yield sid, decode_image(raw)
                except CorruptSample:
                    stats["corrupt"] += 1


@torch.no_grad()
def per_sample_loss(model: PixioMAE, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """Masked-patch MSE per sample (B,), the same objective as `PixioMAE.forward_loss`."""
    _, pred, mask = model(imgs, ids_keep=ids_keep)
    target = model.patchify(imgs)  # (B, N, p*p*3)
    if model.config.norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1.0e-6) ** 0.5
    err = (pred.float() - target).pow(2).mean(-1)  # (B, N)
    return (err * mask).sum(1) / mask.sum(1)


def run_score(cfg: ScoreConfig) -> dict:
    """Score every sample; write `cfg.scores`; return a summary."""
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_mae(cfg.checkpoint).to(device).eval()
    if not isinstance(model, PixioMAE):
        raise ValueError(f"{cfg.checkpoint} is a distillation run: scores are MAE reconstruction losses, so "
                         "score with an MAE pretraining run (checkpoint=runs/pretrain/<mae run>)")
    size = cfg.image_size or model.encoder.img_size[0]
    masking = model.masking_for((size // model.patch_size, size // model.patch_size))
    ids_map = masking.block_patch_ids.to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    sources = build_sources(cfg.data.sources, seed=cfg.seed)
    stats = {"corrupt": 0}
    ids: list[str] = []
    losses: list[float] = []
    buf_ids, buf_imgs = [], []

    def flush() -> None:
        imgs = torch.from_numpy(np.stack(buf_imgs)).to(device).float().div(255)
        imgs = (imgs - mean) / std
        total = torch.zeros(len(buf_ids), device=device)
        for j in range(cfg.num_masks):
            noise = torch.from_numpy(np.stack([
                np.random.default_rng([cfg.seed, j, zlib.crc32(s.encode())]).random(masking.num_blocks)
                for s in buf_ids])).to(device)
            keep = noise.argsort(1)[:, : masking.num_keep_blocks]  # (B, kb)
            ids_keep = ids_map[keep].flatten(1).sort(1).values  # (B, kb*g*g)
            total += per_sample_loss(model, imgs, ids_keep)
        ids.extend(buf_ids)
        losses.extend((total / cfg.num_masks).tolist())
        buf_ids.clear(), buf_imgs.clear()

    for sid, img in iter_all(sources, cfg.seed, stats):
        buf_ids.append(sid)
        buf_imgs.append(_square(img, size))
        if len(buf_ids) == cfg.batch_size:
            flush()
        if cfg.max_samples is not None and len(ids) + len(buf_ids) >= cfg.max_samples:
            break
    if buf_ids:
        flush()
    if not ids:
        raise ValueError(f"no sample could be scored ({stats['corrupt']} corrupt) in {[s.path for s in sources]}")
    out = Path(cfg.scores)
    if out.exists():  # no run overwrites another's results: the earlier file goes to previous/<time>/
        from pixio_robot.utils.rundir import move_aside

        log.info("score: %s exists: moved it to %s", out, move_aside(out.parent, [out.name]))
    write_scores(cfg.scores, ids, losses, {"checkpoint": str(cfg.checkpoint), "num_masks": cfg.num_masks,
                                           "img_size": size, "seed": cfg.seed})
    arr = np.asarray(losses)
    summary = {"scores": str(cfg.scores), "scored": len(ids), "corrupt": stats["corrupt"],
               "corrupt_shards": stats.get("corrupt_shards", 0), "loss_mean": float(arr.mean()),
               "loss_median": float(np.median(arr)), "loss_p10": float(np.percentile(arr, 10)),
               "loss_p90": float(np.percentile(arr, 90))}
    log.info("scored %d samples (%d corrupt skipped) -> %s | loss mean %.4f, median %.4f, p10 %.4f, p90 %.4f",
             len(ids), stats["corrupt"], cfg.scores, summary["loss_mean"], summary["loss_median"],
             summary["loss_p10"], summary["loss_p90"])
    return summary


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    from pixio_robot.pretrain.config import register_configs
    from pixio_robot.utils.cli import run_app, to_config, user_errors

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    register_configs()

    @hydra.main(version_base="1.3", config_path="pkg://pixio_robot.configs.pretrain", config_name="score")
    def _app(cfg: DictConfig) -> None:
        with user_errors():
            run_score(to_config(cfg))

    run_app(_app, schema=ScoreConfig)  # hydra's own failures as one error line; --help lists every key


if __name__ == "__main__":
    main()
