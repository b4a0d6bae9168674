"""Probe report: per-task tables (data-efficiency of the state probes, dense probes), the transfer
table, a data-efficiency plot, and one probe score per encoder for ranking."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from pixio_robot.utils.io import atomic_write_text, save_json


def _fmt(s: dict | None, pct: bool = False) -> str:
    if not s:
        return "-"
    k = 100 if pct else 1
    v, lo, hi = (k * s["value"], k * s["lo"], k * s["hi"])
    if np.isnan(lo):
        return f"{v:.2f}"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def probe_scores(records: list[dict], train_size: int | None = None) -> dict[str, float]:
    """One number per encoder: the mean over tasks of the class-token state probe's mean R^2 at
    `train_size` episodes (default: the middle of the curve)."""
    acc: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.get("status") != "done" or r.get("kind") != "task":
            continue
        sizes = r["train_sizes"]
        n = train_size if train_size in sizes else sizes[len(sizes) // 2]
        acc[r["encoder"]].append(r[f"state_cls@{n}"]["mean"]["value"])
    return {e: float(np.mean(v)) for e, v in acc.items()}


def markdown(records: list[dict], train_sizes: list[int]) -> str:
    done = [r for r in records if r.get("status") == "done"]
    tasks = list(dict.fromkeys(r["task_"] for r in done if r["kind"] == "task"))
    encoders = list(dict.fromkeys(r["encoder"] for r in done))
    out = ["# Probes on simulator ground truth", "",
           "R^2 of ridge probes (mean over hand / objects / joints), trained on n episodes, tested on held-out "
           "episodes; depth AbsRel (lower is better) and delta<1.25, segmentation mIoU (scene / robot / object) "
           "from a linear dense probe. Brackets: 95% interval over resampled test episodes.", ""]
    for task in tasks:
        recs = {r["encoder"]: r for r in done if r["kind"] == "task" and r["task_"] == task}
        sizes = [n for n in train_sizes if any(f"state_cls@{n}" in r for r in recs.values())]
        head = ([f"cls n={n}" for n in sizes] + [f"patch n={sizes[-1]}" if sizes else "patch"]
                + ["depth AbsRel", "depth delta1", "seg mIoU"])
        out += [f"## {task}", "", "| encoder | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
        for enc in encoders:
            r = recs.get(enc)
            if r is None:
                continue
            cells = [_fmt(r.get(f"state_cls@{n}", {}).get("mean")) for n in sizes]
            cells.append(_fmt(r.get(f"state_patch@{sizes[-1]}", {}).get("mean")) if sizes else "-")
            d = r["dense"]
            cells += [_fmt(d["depth_absrel"]), _fmt(d["depth_delta1"]), _fmt(d["seg_miou"])]
            out.append(f"| {enc} | " + " | ".join(cells) + " |")
        out.append("")
    transfer = [r for r in done if r["kind"] == "transfer"]
    if transfer:
        out += ["## Across tasks (fit on the other tasks, test on this one)", "",
                "| held-out task | encoder | hand R^2 | joints R^2 | depth AbsRel | seg mIoU |", "|---|---|---|---|---|---|"]
        for r in transfer:
            s, d = r["state_cls"], r["dense"]
            out.append(f"| {r['task_']} | {r['encoder']} | {_fmt(s['hand'])} | {_fmt(s['joints'])} | "
                       f"{_fmt(d['depth_absrel'])} | {_fmt(d['seg_miou'])} |")
        out.append("")
    scores = probe_scores(done)
    if scores:
        out += ["Probe score (mean class-token state R^2 over tasks, middle train size): "
                + ", ".join(f"{e} {v:.3f}" for e, v in scores.items()), ""]
    failed = [r["key"] for r in records if r.get("status") == "failed"]
    if failed:
        out.append(f"Failed cells (re-run to retry): {', '.join(failed)}")
    return "\n".join(out) + "\n"


def plot(records: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in records if r.get("status") == "done" and r["kind"] == "task"]
    tasks = list(dict.fromkeys(r["task_"] for r in done))
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(4.5 * max(len(tasks), 1), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        for r in (r for r in done if r["task_"] == task):
            n = r["train_sizes"]
            v = [r[f"state_cls@{k}"]["mean"]["value"] for k in n]
            lo = [r[f"state_cls@{k}"]["mean"]["lo"] for k in n]
            hi = [r[f"state_cls@{k}"]["mean"]["hi"] for k in n]
            ax.plot(n, v, marker="o", label=r["encoder"])
            ax.fill_between(n, lo, hi, alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("training episodes")
        ax.set_ylabel("state R^2 (class token)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(records: list[dict], out_dir: str | Path, train_sizes: list[int]) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "probes.md", "json": out_dir / "probes.json", "plot": out_dir / "probes.png"}
    atomic_write_text(paths["markdown"], markdown(records, train_sizes))
    save_json(paths["json"], {"records": records, "probe_scores": probe_scores(records)})
    plot(records, paths["plot"])
    return paths
