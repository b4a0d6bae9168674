"""What a pretraining run counts across ranks: curation totals, distinct corrupt files and distinct
high-bit-depth images per source (kept in checkpoints, reported in results.json)."""

from __future__ import annotations

from pathlib import Path

import torch

from pixio_robot.pretrain.curation import STAT_KEYS
from pixio_robot.pretrain.stream import MAX_TRACKED_IDS, LaneTracker
from pixio_robot.utils import dist as udist
from pixio_robot.utils.logging import get_logger

log = get_logger(__name__)


def file_stats(tracker: LaneTracker) -> dict:
    """Distinct corrupt files and high-bit-depth images per source, of all ranks (collective)."""
    corrupt: dict[str, None] = {}
    for part in udist.all_gather_object(list(tracker.corrupt_files)):
        corrupt.update(dict.fromkeys(part))
    converted: list[dict[str, None]] = [{} for _ in tracker.sources]
    for part in udist.all_gather_object([list(d) for d in tracker.converted]):
        for seen, ids in zip(converted, part):
            seen.update(dict.fromkeys(ids[:MAX_TRACKED_IDS - len(seen)]))
    return {"corrupt_files": list(corrupt),
            "high_bit_depth": {src.name: len(ids) for src, ids in zip(tracker.sources, converted)},
            "high_bit_depth_files": {src.name: list(ids) for src, ids in zip(tracker.sources, converted)}}


def report_files(stats: dict, draws: int, run_dir: Path) -> dict:
    """Log the distinct corrupt files (the first few by name; all in corrupt_files.txt) and the
    high-bit-depth conversions per source; returns the results.json entries."""
    from pixio_robot.utils.io import atomic_write_text

    files = stats["corrupt_files"]
    out = {"corrupt_files": len(files), "corrupt_draws": draws, "high_bit_depth_converted": stats["high_bit_depth"]}
    if files:
        path = run_dir / "corrupt_files.txt"
        atomic_write_text(path, "".join(f"{f}\n" for f in files))
        more = f" (+{len(files) - 5} more)" if len(files) > 5 else ""
        log.warning("%d corrupt file(s) skipped (%d draws of them): %s%s; the full list is in %s", len(files), draws,
                    ", ".join(files[:5]), more, path)
        out["corrupt_files_list"] = str(path)
    for name, n in stats["high_bit_depth"].items():
        if n:
            least = "at least " if n >= MAX_TRACKED_IDS else ""  # counting stops there (checkpoint size)
            log.info("source %r: %s%d distinct high-bit-depth image(s) converted to 8 bits by their range", name,
                     least, n)
    return out


def reduce_stats(totals: dict, device: torch.device, prior: dict | None = None) -> dict:
    """Curation counts of all ranks (collective), plus those of the run before a resume."""
    t = torch.tensor([totals[k] for k in STAT_KEYS], dtype=torch.float64)
    if udist.is_dist():
        t = t.to(device)
        torch.distributed.all_reduce(t)
    prior = prior or {}
    return {k: int(v) + int(prior.get(k, 0)) for k, v in zip(STAT_KEYS, t.tolist())}
