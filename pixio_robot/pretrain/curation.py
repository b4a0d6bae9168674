"""Self-curation (PIXIO.md): colour-histogram entropy and minimum-resolution filters, and
loss-based soft sampling from a scores file.

- Entropy: Shannon entropy in bits of each channel's 256-bin histogram, averaged over R, G, B
  (0 for a flat image, 8 for uniform noise). The paper drops images at or below 4.5 (text-heavy
  documents); it does not spell out the histogram, this is the project's reading. Computed on a
  strided view of at most ~160 px per side (the histogram barely changes, the cost does).
- Loss-based sampling: keep a sample with probability min(loss / tau, 1). The draw is a hash of
  (seed, pass, sample id), so it is re-drawn on every pass, independent of ranks and workers, and
  reproducible. Samples missing from the scores file are kept (and counted as unscored).
"""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import numpy as np

from pixio_robot.pretrain.config import CurationConfig

STAT_KEYS = ("seen", "kept", "corrupt", "low_entropy", "low_resolution", "loss_dropped", "unscored",
             "corrupt_shards")


ENTROPY_SIDE = 256  # the entropy filter reads a JPEG decoded with its longer side >= this, never smaller


def entropy_draft(w: int, h: int) -> tuple[int, int]:
    """The reduced JPEG decode the entropy filter reads: a function of the image's own size only,
    so an image's entropy (and whether it is dropped) is the same on every pass, whatever crop the
    pass draws (PIL decodes at the largest 1/2-1/8 reduction keeping at least this size)."""
    f = max(1.0, max(w, h) / ENTROPY_SIDE)
    return math.ceil(w / f), math.ceil(h / f)


def histogram_entropy(img: np.ndarray, max_side: int = 160) -> float:
    """Mean per-channel 256-bin histogram entropy (bits) of an RGB uint8 image [H, W, 3], read on
    a grid of at most ~`max_side` pixels a side (every k-th pixel)."""
    h, w = img.shape[:2]
    step = max(1, -(-max(h, w) // max_side))  # ceil: at most ~max_side samples per side
    x = img[::step, ::step].reshape(-1, 3).astype(np.int64) + np.array([0, 256, 512])  # (P, 3) offset per channel
    counts = np.bincount(x.ravel(), minlength=768).reshape(3, 256).astype(np.float64)  # (3, 256)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)  # (3,)
    return float(ent.mean())


def uniform_hash(seed: int, pass_: int, sample_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, pass, id)."""
    digest = hashlib.blake2b(f"{seed}:{pass_}:{sample_id}".encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0] / 2.0**64


class ScoreTable:
    """Per-sample reconstruction losses (parquet written by the score command), id -> loss."""

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"curation.scores file {path} does not exist; write it with "
                                    "`python -m pixio_robot.pretrain.score checkpoint=<run> scores={path}`")
        table = pq.read_table(path, columns=["id", "loss"])
        if table.num_rows == 0:
            raise ValueError(f"curation.scores file {path} holds no rows")
        self.path = path
        self.losses: dict[str, float] = dict(zip(table.column("id").to_pylist(),
                                                 table.column("loss").to_pylist()))

    def get(self, sample_id: str) -> float | None:
        return self.losses.get(sample_id)


def write_scores(path: str | Path, ids: list[str], losses: list[float], metadata: dict | None = None) -> Path:
    """Write a scores parquet file (columns `id`, `loss`) atomically."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pixio_robot.utils.io import atomic_save_file

    table = pa.table({"id": pa.array(ids, pa.string()), "loss": pa.array(losses, pa.float32())})
    if metadata:
        table = table.replace_schema_metadata({"pixio_robot": json.dumps(metadata)})
    atomic_save_file(path, lambda p: pq.write_table(table, p))
    return Path(path)


class Curator:
    """Applies the configured filters to one sample at a time and counts the outcomes."""

    def __init__(self, cfg: CurationConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.scores = ScoreTable(cfg.scores) if cfg.scores else None
        self.stats = dict.fromkeys(STAT_KEYS, 0)

    def keep_by_loss(self, sample_id: str, pass_: int) -> bool:
        """Loss-based soft sampling (no decoding needed). Counts into `stats`."""
        self.stats["seen"] += 1
        if self.scores is None:
            return True
        loss = self.scores.get(sample_id)
        if loss is None:
            self.stats["unscored"] += 1
            return True
        p = min(max(loss, 0.0) / self.cfg.tau, 1.0)
        if uniform_hash(self.seed, pass_, sample_id) < p:
            return True
        self.stats["loss_dropped"] += 1
        return False

    def keep_image(self, img: np.ndarray, orig_hw: tuple[int, int] | None = None,
                   entropy: float | None = None) -> bool:
        """Resolution and entropy filters on a decoded image (`orig_hw`: its size before a reduced
        JPEG decode, for the resolution filter; `entropy`: read at the canonical scale, see
        `entropy_draft`, else computed from `img`). Counts into `stats`."""
        if self.cfg.min_resolution and min(orig_hw or img.shape[:2]) < self.cfg.min_resolution:
            self.stats["low_resolution"] += 1
            return False
        if entropy is None and self.cfg.entropy_threshold:
            entropy = histogram_entropy(img)
        if self.cfg.entropy_threshold and entropy <= self.cfg.entropy_threshold:
            self.stats["low_entropy"] += 1
            return False
        return True

    def summary(self) -> str:
        s = self.stats
        return ", ".join(f"{k}={s[k]}" for k in STAT_KEYS if s[k] or k in ("seen", "kept"))


def keep_rate(stats: dict) -> float:
    """Share of the samples drawn that reached a batch."""
    return stats["kept"] / max(stats["seen"], 1)
