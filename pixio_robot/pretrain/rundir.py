"""The pretraining run directory's guard: before anything is written, `resume=false` moves
earlier checkpoints aside (never deletes them), and resuming checkpoints of a run with other
settings (model, data, batch, seed, curation, distillation) is refused with the differences."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from pixio_robot.pretrain.checkpoint import list_checkpoints
from pixio_robot.pretrain.config import PretrainConfig
from pixio_robot.utils import dist as udist
from pixio_robot.utils.logging import get_logger
from pixio_robot.utils.run import to_plain

log = get_logger("pixio_robot.pretrain.loop")


# what makes a run this run: resuming checkpoints written with other values would mix two runs
_IDENTITY = ("model", "seed", "batch_size", "data.sources", "data.crop_scale", "data.crop_ratio", "data.mix_chunk",
             "curation.entropy_threshold", "curation.min_resolution", "curation.scores", "curation.tau", "distill")


def _flat(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): json.loads(json.dumps(tree, default=str))}


def _identity(plain: dict) -> dict:
    out = {}
    for key in _IDENTITY:
        node = plain
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if key == "distill" and not (node or {}).get("teacher"):
            continue  # MAE runs (also those saved before distillation existed) have no distill identity
        out.update(_flat(node, key + "."))
    return out


def check_run_dir(cfg: PretrainConfig, run_dir: Path, ckpt_root: Path, model_config) -> None:
    """Before anything is written: `resume=false` moves earlier checkpoints aside (never deletes
    them); resuming checkpoints of a run with other settings (model, data, batch, seed, curation)
    is refused with the differences and what to do."""
    existing = list_checkpoints(ckpt_root)
    if not existing:
        return
    if not cfg.resume:
        if udist.is_main():
            aside = run_dir / f"checkpoints.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(ckpt_root, aside)
            log.warning("resume=false: moved the %d earlier checkpoint(s) to %s; starting over", len(existing), aside)
        udist.barrier()
        return
    try:
        saved = json.loads((existing[-1] / "state.json").read_text())
    except (OSError, ValueError):
        return  # unreadable: loading falls back to an older checkpoint, or stops and says so
    if "run_config" in saved:
        old, new = _identity(saved["run_config"]), _identity(to_plain(cfg))
    else:  # checkpoints from before run_config was saved: the architecture at least
        old = _flat(saved.get("model_config", {}), "model architecture ")
        new = _flat(dataclasses.asdict(model_config(cfg)), "model architecture ") if old else {}
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        more = f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else ""
        raise ValueError(f"{run_dir} holds checkpoints of a run with other settings: {'; '.join(diffs[:6])}{more}. "
                         "Resuming would mix two runs: set run_dir=<new dir> (or name=...), or resume=false to "
                         "start over here (the old checkpoints are moved aside, not deleted)")
