"""Benchmark reports: aggregate cell records into per-task / per-encoder scores with intervals,
then write a markdown table, a long-format CSV and grouped bar charts (matplotlib, Agg).

Two numbers per (task, encoder), as PIXIO.md asks: `best` = the best success seen during
training (CortexBench's convention; optimistic, it picks the max over checkpoints) and `final` =
the success of the last checkpoint. Scores are percentages. Per task, with two or more training
seeds the interval is the two-level stratified bootstrap over seeds x episodes
(`pixio_robot.evaluation.stats`); with one seed it is Wilson 95% on that seed's episodes (a
bootstrap of 0/10 successes would claim [0, 0]). Return-based suites (DMC: score = return /
return_scale * 100) bootstrap seeds only. The average over tasks carries the stratified bootstrap
interval of that mean (tasks are strata: seeds and episodes are resampled within each task), and
the report adds the interquartile mean and paired encoder comparisons (probability of
improvement, rliable's protocol) with a sentence on whether each difference is resolved.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from pixio_robot.evaluation import stats
from pixio_robot.evaluation.metrics import wilson_interval
from pixio_robot.utils.io import atomic_write_text, save_json

WHICH = ("best", "final")
AVERAGE = "average"


def _score(rec: dict, which: str, metric: str, return_scale: float) -> float:
    if metric == "success":
        return 100.0 * float(rec[f"{which}_success"])
    return 100.0 * float(rec[f"{which}_return"]) / return_scale


def _interval(recs: list[dict], cells: stats.TaskCells | None, summary: dict | None, metric: str
              ) -> tuple[float, float, str]:
    n_seeds = len(recs)
    if metric == "success" and n_seeds < 2:
        n = sum(int(r.get("n_eval_episodes", 0)) for r in recs)
        s = round(float(cells.scores.sum() * cells.episodes.sum())) if cells is not None else 0
        lo, hi = wilson_interval(min(s, n), n)
        return 100 * lo, 100 * hi, f"wilson95 over {n} episodes (1 seed)"
    if metric != "success" and n_seeds < 2:  # seeds are the only level: one seed gives no interval
        return float("nan"), float("nan"), "bootstrap needs >= 2 seeds"
    lo, hi = summary["lo"], summary["hi"]
    level = "seeds x episodes" if metric == "success" else "seeds"
    return 100 * lo, 100 * hi, f"bootstrap95 over {n_seeds} {level}"


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
    for which in WHICH:
        cells = stats.cells_from_records(done, which, metric, return_scale)
        for enc in encoders:
            summary = stats.summarize(cells[enc])
            all_recs = []
            for task in tasks:
                recs = groups.get((enc, task), [])
                if not recs:
                    continue
                lo, hi, method = _interval(recs, cells[enc][task], summary["tasks"][task], metric)
                scores = 100 * cells[enc][task].scores
                rows.append({"encoder": enc, "task": task, "which": which, "score": float(scores.mean()),
                             "lo": lo, "hi": hi, "seed_std": float(np.std(scores)), "n_seeds": len(recs),
                             "n_episodes": sum(int(r.get("n_eval_episodes", 0)) for r in recs), "ci": method})
                all_recs += recs
            lo, hi = summary["mean_ci"]
            single = metric != "success" and len(all_recs) == summary["n_tasks"]  # one seed per task: no interval
            rows.append({"encoder": enc, "task": AVERAGE, "which": which, "score": 100 * summary["mean"],
                         "lo": float("nan") if single else 100 * lo, "hi": float("nan") if single else 100 * hi,
                         "iqm": 100 * summary["iqm"], "iqm_lo": 100 * summary["iqm_ci"][0],
                         "iqm_hi": 100 * summary["iqm_ci"][1], "seed_std": float("nan"),
                         "n_seeds": len(all_recs),
                         "n_episodes": sum(int(r.get("n_eval_episodes", 0)) for r in all_recs),
                         "ci": "stratified bootstrap95 over tasks' seeds x episodes",
                         "n_tasks": summary["n_tasks"], "of_tasks": len(tasks)})
    order = {(e, w): i for i, (e, w) in enumerate((e, w) for e in encoders for w in WHICH)}
    return sorted(rows, key=lambda r: order[(r["encoder"], r["which"])])


def comparisons(records: list[dict], metric: str = "success", return_scale: float = 1.0) -> list[dict]:
    """Every pair of encoders, best and final: paired differences, PoI, and a sentence each."""
    done = [r for r in records if r.get("status", "done") == "done"]
    encoders = list(dict.fromkeys(r["encoder"] for r in done))
    out = []
    for which in WHICH:
        cells = stats.cells_from_records(done, which, metric, return_scale)
        for i, a in enumerate(encoders):
            for b in encoders[i + 1:]:
                cmp = stats.compare(cells[a], cells[b])
                out.append({"which": which, "a": a, "b": b, **cmp, "text": stats.describe(a, b, cmp)})
    return out


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
    iqm_rows = [r for r in rows if r["task"] == AVERAGE and "iqm" in r]
    if iqm_rows:
        out += ["## Interquartile mean over all runs (rliable)", "", "| encoder | best | final |", "|---|---|---|"]
        for enc in encoders:
            cell = {r["which"]: f"{r['iqm']:.1f} [{r['iqm_lo']:.1f}, {r['iqm_hi']:.1f}]"
                    for r in iqm_rows if r["encoder"] == enc}
            out.append(f"| {enc} | {cell.get('best', '-')} | {cell.get('final', '-')} |")
        out.append("")
    methods = sorted({r["ci"].split(" over")[0] for r in rows if r["task"] != AVERAGE})
    seeds = sorted({r["n_seeds"] for r in rows if r["task"] != AVERAGE})
    seeds_txt = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} (some cells missing or failed)"
    out.append(f"Scores in %, 95% intervals ({', '.join(methods)}; the average row: the mean over tasks with its "
               f"stratified bootstrap interval); seeds per cell: {seeds_txt if seeds else 0}.")
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


def probe_section(rows: list[dict], probe_scores: dict[str, float]) -> tuple[str, dict]:
    """Probe score beside final success per encoder, and their Spearman rank correlation."""
    final = {r["encoder"]: r["score"] for r in rows if r["task"] == AVERAGE and r["which"] == "final"}
    both = [e for e in final if e in probe_scores]
    lines = ["", "## Probes vs policy success", "", "| encoder | probe score (state R^2) | final success (%) |",
             "|---|---|---|"]
    lines += [f"| {e} | {probe_scores[e]:.3f} | {final[e]:.1f} |" for e in both]
    missing = [e for e in final if e not in probe_scores]
    if missing:
        lines.append(f"\nNo probe score for: {', '.join(missing)} (probe them with the same labels).")
    out: dict = {"encoders": both}
    if len(both) >= 3:
        sp = stats.spearman_interval([probe_scores[e] for e in both], [final[e] for e in both])
        out.update(sp)
        lo, hi = sp["ci"]
        verdict = ("the interval excludes 0" if lo > 0 or hi < 0 else
                   "the interval contains 0: with this many encoders the ranking is not resolved")
        lines.append(f"\nSpearman rank correlation, probe score vs final success over {len(both)} encoders: "
                     f"{sp['rho']:.2f} [{lo:.2f}, {hi:.2f}] (bootstrap over encoders; {verdict}).")
    else:
        lines.append(f"\nA rank correlation needs >= 3 encoders with both numbers; {len(both)} here.")
    return "\n".join(lines) + "\n", out


def write_report(records: list[dict], out_dir: str | Path, *, title: str = "Benchmark", metric: str = "success",
                 return_scale: float = 1.0, probe_scores: dict[str, float] | None = None) -> dict[str, Path]:
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
    cmps = comparisons(records, metric, return_scale)
    if cmps:
        md += "\n## Paired comparisons (by seed and task; 95% paired stratified bootstrap)\n\n"
        md += "".join(f"- {c['which']}: {c['text']}\n" for c in cmps)
    probes = None
    if probe_scores:
        text, probes = probe_section(rows, probe_scores)
        md += text
    if failed:
        md += f"\nFailed cells (re-run to retry): {', '.join(failed)}\n"
    atomic_write_text(paths["markdown"], md)
    atomic_write_text(paths["csv"], buf.getvalue())
    save_json(paths["json"], {"rows": rows, "comparisons": cmps, "probes": probes, "failed": failed})
    for which in WHICH:
        paths[which] = bar_chart(rows, which, out_dir / f"{which}.png", f"{title}: {which}")
    return paths
