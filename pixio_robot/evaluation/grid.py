"""The benchmark grid: task x encoder x seed cells, each an independent, resumable job.

A finished cell leaves `<results_dir>/cells/<key>.json` (written atomically) with
`status: done`; re-running skips it. A failing cell is recorded with `status: failed` and its
error, and is retried on the next run. Nothing is overwritten: a finished cell recorded under other
settings (another fingerprint), and every finished cell with `resume=false`, is moved to
`previous/<time>/cells/` with the report of those results (the run-dir convention of every entry,
`utils.rundir.move_aside`) before it runs again. Cells share only the demo datasets and the feature
cache (both guarded by file locks), so a cluster launcher (hydra multirun, `cell=<i>`) can
spread them.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pixio_robot.utils.io import save_json
from pixio_robot.utils.logging import get_logger
from pixio_robot.utils.rundir import move_aside

log = get_logger(__name__)


def slug(text: str) -> str:
    """File-name-safe form of an env or encoder name (`metaworld/drawer-open-v3` -> `metaworld_drawer-open-v3`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


@dataclass(frozen=True)
class Cell:
    """One job of the grid."""

    task: str
    encoder: str
    seed: int

    @property
    def key(self) -> str:
        return f"{slug(self.task)}__{slug(self.encoder)}__s{self.seed}"


def make_cells(tasks: list[str], encoders: list[str], seeds: list[int]) -> list[Cell]:
    """Cells in a fixed order (task, encoder, seed), so `cell=<index>` is stable across runs."""
    if not tasks or not encoders or not seeds:
        raise ValueError(f"an empty grid: tasks={tasks}, encoders={encoders}, seeds={seeds}; give at least one of each")
    if len(set(map(slug, encoders))) != len(encoders):
        raise ValueError(f"encoder labels must be unique (after making them file-safe): {encoders}")
    return [Cell(t, e, int(s)) for t in tasks for e in encoders for s in seeds]


def cell_path(results_dir: str | Path, cell: Cell) -> Path:
    return Path(results_dir) / "cells" / f"{cell.key}.json"


def load_cell(results_dir: str | Path, cell: Cell) -> dict | None:
    """The recorded result of a cell, or None when absent or unreadable."""
    path = cell_path(results_dir, cell)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_done(results_dir: str | Path, cell: Cell) -> bool:
    rec = load_cell(results_dir, cell)
    return bool(rec) and rec.get("status") == "done"


def run_grid(cells: list[Cell], run_cell: Callable[[Cell], dict], results_dir: str | Path, *,
             resume: bool = True, raise_errors: bool = False,
             fingerprint: Callable[[Cell], str] | None = None, aside: Path | None = None) -> list[dict]:
    """Run every cell not already done; return all cell records (done, failed or skipped-done).

    `fingerprint(cell)` digests the settings that change a cell's result (suite protocol, encoder
    weights reference, ...): a finished cell recorded under another fingerprint is moved aside
    (`previous/<time>/cells/`, or `aside`: where the caller moved that run's records) and run again;
    `resume=false` does that to every finished cell.
    """
    fps = {c.key: fingerprint(c) if fingerprint else None for c in cells}
    prevs = {c.key: load_cell(results_dir, c) for c in cells}
    stale = [c for c in cells if prevs[c.key] and prevs[c.key].get("status") == "done"
             and (not resume or (fps[c.key] is not None and prevs[c.key].get("fingerprint") != fps[c.key]))]
    if stale:
        dest = move_aside(Path(results_dir), [f"cells/{c.key}.json" for c in stale] + ["report"], aside)
        log.warning("%d finished cell(s) %s: moved to %s and run again: %s", len(stale),
                    "by resume=false" if not resume else "were run with other settings", dest,
                    ", ".join(c.key for c in stale[:5]) + (" ..." if len(stale) > 5 else ""))
        for c in stale:
            prevs[c.key] = None
    records = []
    for i, cell in enumerate(cells):
        prev, fp = prevs[cell.key], fps[cell.key]
        if prev and prev.get("status") == "done":
            log.info("[%d/%d] %s: done already, skipped", i + 1, len(cells), cell.key)
            records.append(prev)
            continue
        log.info("[%d/%d] %s: running", i + 1, len(cells), cell.key)
        t0 = time.perf_counter()
        rec = {**asdict(cell), "key": cell.key, **({"fingerprint": fp} if fp else {})}
        try:
            rec.update(run_cell(cell))
            rec["status"] = "done"
        except Exception as exc:  # noqa: BLE001 - one failing cell must not end the grid
            if raise_errors:
                raise
            log.error("%s failed: %s", cell.key, exc)
            rec.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        rec["wall_s"] = time.perf_counter() - t0
        save_json(cell_path(results_dir, cell), rec)
        records.append(rec)
    return records


def collect_records(results_dir: str | Path, cells: list[Cell] | None = None) -> list[dict]:
    """All recorded cells in `results_dir` (only those of `cells` when given)."""
    if cells is not None:
        return [r for r in (load_cell(results_dir, c) for c in cells) if r]
    out = []
    for p in sorted((Path(results_dir) / "cells").glob("*.json")):
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(p.read_text()))
    return out


