"""Benchmark grid: resume skips finished cells, failures are recorded and retried; reports."""

import csv
import json

import numpy as np
import pytest

from pixio_robot.evaluation.grid import Cell, cell_path, collect_records, make_cells, run_grid
from pixio_robot.evaluation.metrics import wilson_interval
from pixio_robot.evaluation.report import aggregate, markdown_table, write_report


def fake_result(cell):
    """Deterministic 'training' outcome so aggregation can be checked by hand."""
    base = {"pixio": 0.8, "random": 0.4}[cell.encoder]
    return {"best_success": base + 0.1, "final_success": base - (0.1 if cell.seed == 2 else 0.0),
            "n_eval_episodes": 10}


def test_resume_skips_done_and_retries_failed(tmp_path):
    cells = make_cells(["metaworld/drawer-open-v3", "metaworld/hammer-v3"], ["pixio", "random"], [1, 2])
    assert len(cells) == 8 and cells[0] == Cell("metaworld/drawer-open-v3", "pixio", 1)
    calls = []

    def flaky(cell):
        calls.append(cell.key)
        if cell.task.endswith("hammer-v3") and cell.encoder == "random" and cell.seed == 2:
            raise RuntimeError("out of memory")
        return fake_result(cell)

    recs = run_grid(cells, flaky, tmp_path)
    assert len(calls) == 8
    assert [r["status"] for r in recs].count("failed") == 1
    failed = json.loads(cell_path(tmp_path, cells[-1]).read_text())
    assert failed["status"] == "failed" and "out of memory" in failed["error"]

    calls.clear()
    recs = run_grid(cells, flaky, tmp_path)  # only the failed cell runs again
    assert calls == [cells[-1].key]
    calls.clear()
    recs = run_grid(cells, fake_result, tmp_path)
    assert calls == [] and all(r["status"] == "done" for r in recs)
    assert len(collect_records(tmp_path)) == 8
    # a torn / partial file never counts as done
    cell_path(tmp_path, cells[0]).write_text("{not json")
    ran = []
    run_grid(cells, lambda c: ran.append(c.key) or fake_result(c), tmp_path)
    assert ran == [cells[0].key]


def _recording_cell_fn():
    """A cell function that records which cells ran."""
    ran = []

    def cell_fn(c):
        ran.append(c.key)
        return fake_result(Cell(c.task, "pixio", c.seed))

    return ran, cell_fn


def test_changed_settings_rerun_the_cell(tmp_path):
    cells = make_cells(["t"], ["e"], [1, 2])
    ran, cell_fn = _recording_cell_fn()
    run_grid(cells, cell_fn, tmp_path, fingerprint=lambda c: "protocol-a")
    run_grid(cells, cell_fn, tmp_path, fingerprint=lambda c: "protocol-a")
    assert len(ran) == 2  # same settings: skipped
    run_grid(cells, cell_fn, tmp_path, fingerprint=lambda c: "protocol-b" if c.seed == 2 else "protocol-a")
    assert ran[2:] == [cells[1].key]
    assert json.loads(cell_path(tmp_path, cells[1]).read_text())["fingerprint"] == "protocol-b"
    # nothing overwritten: the earlier record of the re-run cell is kept, byte for byte, under previous/
    kept = list((tmp_path / "previous").glob(f"*/cells/{cells[1].key}.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["fingerprint"] == "protocol-a"
    assert not list((tmp_path / "previous").glob(f"*/cells/{cells[0].key}.json"))  # unchanged cell stays


def test_resume_false_moves_every_finished_cell_aside(tmp_path):
    cells = make_cells(["t"], ["e"], [1, 2])
    ran, cell_fn = _recording_cell_fn()
    run_grid(cells, cell_fn, tmp_path)
    before = {c.key: cell_path(tmp_path, c).read_bytes() for c in cells}
    run_grid(cells, cell_fn, tmp_path, resume=False)
    assert ran == [c.key for c in cells] * 2
    (prev,) = (tmp_path / "previous").iterdir()
    assert {c.key: (prev / "cells" / f"{c.key}.json").read_bytes() for c in cells} == before


def test_bad_grid_messages():
    with pytest.raises(ValueError, match="empty grid"):
        make_cells([], ["a"], [1])
    with pytest.raises(ValueError, match="unique"):
        make_cells(["t"], ["a/b", "a_b"], [1])


def test_report_numbers_and_files(tmp_path):
    cells = make_cells(["metaworld/drawer-open-v3", "metaworld/hammer-v3"], ["pixio", "random"], [1, 2])
    recs = run_grid(cells, fake_result, tmp_path)
    rows = aggregate(recs)
    by = {(r["encoder"], r["task"], r["which"]): r for r in rows}
    r = by[("pixio", "metaworld/hammer-v3", "final")]
    assert r["score"] == pytest.approx(75.0) and r["n_seeds"] == 2 and r["n_episodes"] == 20
    assert r["ci"] == "bootstrap95 over 2 seeds x episodes" and r["lo"] < 75.0 < r["hi"]
    one_seed = aggregate([x for x in recs if x["seed"] == 1])
    r1 = next(x for x in one_seed if (x["encoder"], x["task"], x["which"]) == ("pixio", "metaworld/hammer-v3", "final"))
    k = round(r1["score"] / 10)  # successes of 10 episodes
    lo, hi = wilson_interval(k, 10)  # one seed: Wilson on its episodes
    assert (r1["lo"], r1["hi"]) == pytest.approx((100 * lo, 100 * hi)) and r1["ci"].startswith("wilson95")
    assert by[("pixio", "average", "best")]["score"] == pytest.approx(90.0)
    assert by[("random", "average", "final")]["score"] == pytest.approx(35.0)
    assert by[("random", "average", "final")]["n_episodes"] == 40
    paths = write_report(recs, tmp_path / "report", title="toy")
    md = paths["markdown"].read_text()
    assert "| **average** | 90.0 [" in md and "Final checkpoint" in md
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 12  # 2 encoders x (2 tasks + average) x (best, final)
    for which in ("best", "final"):
        assert paths[which].stat().st_size > 5000 and paths[which].read_bytes()[:4] == b"\x89PNG"
    # cells missing (a failed cell, another seed count): the average keeps inside its interval and says so
    partial = [r for r in recs if not (r["encoder"] == "random" and r["task"] == "metaworld/hammer-v3")]
    partial = [r for r in partial if not (r["encoder"] == "pixio" and r["task"] == "metaworld/hammer-v3"
                                          and r["seed"] == 2)]
    for row in aggregate(partial):
        assert row["lo"] <= row["score"] <= row["hi"], row
    md = write_report(partial, tmp_path / "partial", title="partial")["markdown"].read_text()
    assert "(1/2 tasks)" in md and "seeds per cell: 1-2 (some cells missing or failed)" in md


def test_return_metric():
    recs = [{"task": "dmc/walker-walk", "encoder": "e", "seed": s, "best_return": v + 50, "final_return": v,
             "status": "done"} for s, v in ((1, 400.0), (2, 600.0))]
    rows = aggregate(recs, metric="return", return_scale=1000.0)
    final = next(r for r in rows if r["task"] == "dmc/walker-walk" and r["which"] == "final")
    # two seeds (0.4, 0.6): resampled means are 0.4 / 0.5 / 0.6 with probability 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% percentiles are exactly 40 and 60
    assert final["score"] == pytest.approx(50.0) and (final["lo"], final["hi"]) == (pytest.approx(40.0), pytest.approx(60.0))
    assert final["ci"] == "bootstrap95 over 2 seeds"
    one = aggregate(recs[:1], metric="return", return_scale=1000.0)  # one seed: no zero-width "interval"
    assert all(np.isnan(r["lo"]) for r in one) and "[n/a]" in markdown_table(one)
