"""Benchmark reports: aggregate cell records into per-task / per-encoder scores with intervals,
then write a markdown table, a long-format CSV and grouped bar charts (matplotlib, Agg).

Two numbers per (task, encoder), as PIXIO.md asks: `best` = the best success seen during
training (CortexBench's convention; optimistic, it picks the max over checkpoints) and `final` =
the success of the last checkpoint. Scores are percentages. Success intervals are Wilson 95% on
the episodes pooled over seeds; return-based suites (DMC: score = return / return_scale * 100)
use a t interval over seeds (none with one seed). The average over tasks carries the mean of the
tasks' bounds, so it always contains its score, also when cells are missing.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from pixio_robot.evaluation.metrics import mean_interval, wilson_interval
from pixio_robot.utils.io import atomic_write_text, save_json

WHICH = ("best", "final")
AVERAGE = "average"


def _score(rec: dict, which: str, metric: str, return_scale: float) -> float:
    if metric == "success":
        return 100.0 * float(rec[f"{which}_success"])
    return 100.0 * float(rec[f"{which}_return"]) / return_scale


def _interval(recs: list[dict], scores: list[float], which: str, metric: str) -> tuple[float, float, str]:
    if metric == "success":
        n = sum(int(r.get("n_eval_episodes", 0)) for r in recs)
        s = sum(round(float(r[f"{which}_success"]) * int(r.get("n_eval_episodes", 0))) for r in recs)
        lo, hi = wilson_interval(s, n)
        return 100 * lo, 100 * hi, f"wilson95 over {n} episodes"
    if len(scores) < 2:  # a t interval needs two seeds; do not print a zero-width one
        return float("nan"), float("nan"), "t95 needs >= 2 seeds"
    lo, hi = mean_interval(scores)
    return lo, hi, f"t95 over {len(scores)} seeds"


def aggregate(records: list[dict], metric: str = "success", return_scale: float = 1.0) -> list[dict]:
    """Long-format rows: one per (encoder, task incl. 'average', which in best/final)."""
    if metric not in ("success", "return"):
        raise ValueError(f"metric must be 'success' or 'return', got {metric!r}")
    done = [r for r in records if r.get("status", "done") == "done"]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in done:
        groups[(r["encoder"], r["task"])].append(r)
    encoders = list(dict.fromkeys(r["encoder"] for r in done))
    tasks = list(dict.fromkeys(r["task"] for r in done))
    rows = []
    for enc in encoders:
        for which in WHICH:
            task_means, task_los, task_his, all_recs = [], [], [], []
            for task in tasks:
                recs = groups.get((enc, task), [])
                if not recs:
                    continue
                scores = [_score(r, which, metric, return_scale) for r in recs]
                lo, hi, method = _interval(recs, scores, which, metric)
                mean = float(np.mean(scores))
                rows.append({"encoder": enc, "task": task, "which": which, "score": mean, "lo": lo, "hi": hi,
                             "seed_std": float(np.std(scores)), "n_seeds": len(recs),
                             "n_episodes": sum(int(r.get("n_eval_episodes", 0)) for r in recs), "ci": method})
                task_means.append(mean)
                task_los.append(lo)
                task_his.append(hi)
                all_recs += recs
            if task_means:  # the mean over tasks, with the mean of the tasks' bounds (contains it; conservative)
                rows.append({"encoder": enc, "task": AVERAGE, "which": which, "score": float(np.mean(task_means)),
                             "lo": float(np.mean(task_los)), "hi": float(np.mean(task_his)),
                             "seed_std": float("nan"), "n_seeds": len(all_recs),
                             "n_episodes": sum(int(r.get("n_eval_episodes", 0)) for r in all_recs),
                             "ci": f"mean of the tasks' {method.split(' over')[0]} bounds",
                             "n_tasks": len(task_means), "of_tasks": len(tasks)})
    return rows


def markdown_table(rows: list[dict], title: str = "Benchmark") -> str:
    """Two tables (best during training, final checkpoint): tasks x encoders, 'score [lo, hi]'."""
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows) if t != AVERAGE] + [AVERAGE]
    by = {(r["encoder"], r["task"], r["which"]): r for r in rows}
    out = [f"# {title}", ""]
    labels = {"best": "Best success during training (CortexBench convention, optimistic)",
              "final": "Final checkpoint"}
    for which in WHICH:
        out += [f"## {labels[which]}", "", "| task | " + " | ".join(encoders) + " |",
                "|---|" + "---|" * len(encoders)]
        for task in tasks:
            cells = []
            for enc in encoders:
                r = by.get((enc, task, which))
                if r is None:
                    cells.append("-")
                    continue
                ci = "[n/a]" if np.isnan(r["lo"]) else f"[{r['lo']:.1f}, {r['hi']:.1f}]"
                partial = f" ({r['n_tasks']}/{r['of_tasks']} tasks)" if r.get("n_tasks", 0) < r.get("of_tasks", 0) else ""
                cells.append(f"{r['score']:.1f} {ci}{partial}")
            name = f"**{task}**" if task == AVERAGE else task
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    methods = sorted({r["ci"].split(" over")[0] for r in rows if r["task"] != AVERAGE})
    seeds = sorted({r["n_seeds"] for r in rows if r["task"] != AVERAGE})
    seeds_txt = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} (some cells missing or failed)"
    out.append(f"Scores in %, 95% intervals ({', '.join(methods)}; the average row: the mean over tasks with the "
               f"mean of the tasks' bounds); seeds per cell: {seeds_txt if seeds else 0}.")
    return "\n".join(out) + "\n"


def bar_chart(rows: list[dict], which: str, path: str | Path, title: str = "") -> Path:
    """Grouped bars (tasks + average on x, one bar per encoder) with interval error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r["which"] == which]
    encoders = list(dict.fromkeys(r["encoder"] for r in sel))
    tasks = [t for t in dict.fromkeys(r["task"] for r in sel) if t != AVERAGE] + [AVERAGE]
    by = {(r["encoder"], r["task"]): r for r in sel}
    x = np.arange(len(tasks))
    width = 0.8 / max(1, len(encoders))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(tasks) + 2), 3.6))
    for i, enc in enumerate(encoders):
        vals = [by[(enc, t)]["score"] if (enc, t) in by else np.nan for t in tasks]
        lo = [v - by[(enc, t)]["lo"] if (enc, t) in by else 0 for v, t in zip(vals, tasks)]
        hi = [by[(enc, t)]["hi"] - v if (enc, t) in by else 0 for v, t in zip(vals, tasks)]
        err = np.clip(np.nan_to_num(np.array([lo, hi])), 0, None)
        ax.bar(x + (i - (len(encoders) - 1) / 2) * width, vals, width, yerr=err, capsize=3, label=enc)
    ax.set_xticks(x, [t.split("/")[-1] for t in tasks], rotation=20, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title or f"{which} success")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(records: list[dict], out_dir: str | Path, *, title: str = "Benchmark", metric: str = "success",
                 return_scale: float = 1.0) -> dict[str, Path]:
    """Aggregate `records` and write results.md, results.csv, results.json, best.png, final.png."""
    out_dir = Path(out_dir)
    rows = aggregate(records, metric, return_scale)
    if not rows:
        raise ValueError(f"no finished cells to report in {out_dir}; run the grid first")
    buf = io.StringIO()
    fields = ["encoder", "task", "which", "score", "lo", "hi", "seed_std", "n_seeds", "n_episodes", "ci"]
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    failed = [r["key"] for r in records if r.get("status") == "failed"]
    md = markdown_table(rows, title)
    if failed:
        md += f"\nFailed cells (re-run to retry): {', '.join(failed)}\n"
    atomic_write_text(paths["markdown"], md)
    atomic_write_text(paths["csv"], buf.getvalue())
    save_json(paths["json"], {"rows": rows, "failed": failed})
    for which in WHICH:
        paths[which] = bar_chart(rows, which, out_dir / f"{which}.png", f"{title}: {which}")
    return paths
