"""The pretraining run directory's guard, through the shared `pixio_robot.utils.rundir.RunDir`:
before anything is written, `resume=false` moves the earlier run's outputs to `previous/<time>/`
(never deletes them), and resuming a run with other settings (model, data, batch, seed, curation,
distillation) is refused with the differences. Settings outside `_IDENTITY` (steps, schedule,
logging, threads, ...) may change between a run and its resume."""

from __future__ import annotations

import json
from pathlib import Path

from pixio_robot.models.train_checkpoint import list_checkpoints
from pixio_robot.pretrain.config import PretrainConfig
from pixio_robot.utils import dist as udist
from pixio_robot.utils.run import to_plain
from pixio_robot.utils.rundir import RunDir, flat, read_config

# what makes a run this run: resuming checkpoints written with other values would mix two runs
_IDENTITY = ("model", "seed", "batch_size", "data.sources", "data.crop_scale", "data.crop_ratio", "data.mix_chunk",
             "curation.entropy_threshold", "curation.min_resolution", "curation.scores", "curation.tau", "distill")
# what a pretraining run writes into its directory (moved aside together by resume=false)
PRETRAIN_ARTIFACTS = ("checkpoints", "encoder", "results.json", "recon", "tb", "corrupt_files.txt", "loss.png",
                      "config.yaml", "git.txt", "command.txt")


def _identity(plain: dict) -> dict:
    out = {}
    for key in _IDENTITY:
        node = plain
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if key == "distill" and not (node or {}).get("teacher"):
            continue  # MAE runs (also those saved before distillation existed) have no distill identity
        out.update(flat(node, key + "."))
    return out


def _saved_config(run_dir: Path) -> dict | None:
    """The settings the newest checkpoint was written with (else the run's config.yaml)."""
    existing = list_checkpoints(run_dir / "checkpoints")
    if existing:
        try:
            saved = json.loads((existing[-1] / "state.json").read_text())
        except (OSError, ValueError):
            saved = {}  # unreadable: loading falls back to an older checkpoint, or stops and says so
        if "run_config" in saved:
            return saved["run_config"]
    return read_config(run_dir)


def pretrain_run_dir(run_dir: Path) -> RunDir:
    return RunDir(run_dir, "pretrain", artifacts=PRETRAIN_ARTIFACTS, identity=_identity,
                  previous_config=_saved_config, lock=False)  # run_pretrain holds the lock (rank 0)


def check_run_dir(cfg: PretrainConfig, run_dir: Path) -> None:
    """Before anything is written (see the module doc). On several ranks only rank 0 moves files."""
    rd = pretrain_run_dir(run_dir)
    if not cfg.resume:
        if udist.is_main():
            rd.restart("resume=false")
        udist.barrier()
        return
    rd.check(to_plain(cfg), resume=True)  # "fresh" | "resume" | "done": the loop resumes from checkpoints
