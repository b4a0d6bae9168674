"""Write docs/results.md (and docs/results/*.png) from a finished `scripts/headline.sh` run.

    python scripts/headline_report.py runs/headline      # reads pretrain_*/, probe/, bc/ under it
    python scripts/headline_report.py runs/headline --shorter runs/headline_2k
        # also: how much lower the final losses are than a shorter run's (more compute, same recipe)
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _smooth(history: list, window: int = 50) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([s for s, _ in history], float)
    loss = np.array([v for _, v in history], float)
    k = min(window, len(loss))
    return steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid")


def loss_plot(runs: dict[str, dict], flops: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, res in runs.items():
        s, v = _smooth(res["loss_history"])
        ax.plot(s * 32 * flops[label] / 1e3, v, label=f"{label} ({res['steps']} steps)")
    ax.set_xlabel("pretraining compute (TFLOP, fwd+bwd)")
    ax.set_ylabel("loss (50-step mean)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _end(res: dict) -> float:
    return float(_smooth(res["loss_history"])[1][-1])


def scaling(runs: dict[str, dict], shorter: dict[str, dict]) -> str:
    """The final loss against a shorter run of the same recipe: what the extra compute still bought."""
    parts = [f"{k} {_end(shorter[k]):.3f} at {shorter[k]['steps']} steps -> {_end(r):.3f} at {r['steps']} "
             f"({100 * (_end(r) / _end(shorter[k]) - 1):+.1f}% for {r['steps'] / shorter[k]['steps']:.1f}x the compute)"
             for k, r in runs.items() if k in shorter]
    return ("- More compute, same recipe (final 50-step mean loss): " + "; ".join(parts)
            + ". A loss that still drops this much with more compute has not converged.")


def _bc_average(out: Path) -> dict[str, dict]:
    res = out / "bc" / "report" / "results.json"
    rows = json.loads(res.read_text())["rows"] if res.is_file() else []
    return {r["encoder"]: r for r in rows if r["task"] == "average" and r["which"] == "final"}


def bc_scaling(out: Path, shorter_dir: Path) -> str:
    """Average final BC success of the shorter run beside this one's, per encoder, with intervals."""
    a, b = _bc_average(shorter_dir), _bc_average(out)
    if not a or not b:
        return ""
    parts = [f"{k} {a[k]['score']:.1f} [{a[k]['lo']:.1f}, {a[k]['hi']:.1f}] -> {r['score']:.1f} "
             f"[{r['lo']:.1f}, {r['hi']:.1f}]" for k, r in b.items() if k in a]
    return ("- Average final BC success, shorter run -> this run (%, same seeds and episodes; random_init is "
            "not pretrained: the same seeds give it the same runs in both): " + "; ".join(parts) + ".")


def reading(out: Path, runs: dict[str, dict], flops: dict[str, float],
            shorter_dir: Path | None = None) -> list[str]:
    """What the run says and what it does not, from its own numbers (no hand-typed figures)."""
    lines = ["## What this says, and what it does not", ""]
    res = out / "bc" / "report" / "results.json"
    if res.is_file():
        bc = json.loads(res.read_text())
        final = [c for c in bc["comparisons"] if c["which"] == "final"]
        won = [c for c in final if c["resolved"]]
        lines.append(f"- Of {len(final)} paired encoder comparisons on final success, {len(won)} resolved at 95%: "
                     + ("; ".join(f"{c['a']} vs {c['b']} {100 * c['mean_diff']:+.1f} points "
                                  f"[{100 * c['mean_diff_ci'][0]:+.1f}, {100 * c['mean_diff_ci'][1]:+.1f}]"
                                  for c in won) or "none") + ". The others are not resolved: their intervals "
                     "contain 0, and this run cannot say which of those encoders is better.")
        rows = [r for r in bc["rows"] if r["task"] != "average"]
        seeds = {r["n_seeds"] for r in rows}
        lines.append(f"- Seeds per cell: {sorted(seeds)}; episodes per evaluation: "
                     f"{sorted({r['n_episodes'] // r['n_seeds'] for r in bc['rows']})} per seed. Best and final "
                     "checkpoint coincide when the last evaluation was also the best one.")
        if bc.get("probes"):
            p = bc["probes"]
            lines.append(f"- Probe score vs policy success: Spearman {p['rho']:+.2f} "
                         f"[{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}] over {p['n']} encoders, so the probes do not rank "
                         "these encoders the way the policies do at this scale (or the ranking is noise: with 3 "
                         "encoders the interval spans the whole range).")
    pro = ""
    if res.is_file():
        pre = [c for c in final if c["resolved"] and (c["b"] == "random_init") == (c["mean_diff"] > 0)]
        pro = ("; here no resolved comparison favours a pretrained encoder over random init" if not pre else
               "; here " + ", ".join(f"{c['a']} vs {c['b']}" for c in pre) + " resolved in favour of pretraining")
    drops = {}
    for k, r in runs.items():  # the last tenth / quarter of the logged losses against the span before it
        v = [x for _, x in r["loss_history"]]
        drops[k] = tuple(float(np.mean(v[-n:]) / np.mean(v[-2 * n:-n]) - 1) for n in
                         (max(1, len(v) // 10), max(1, len(v) // 4)))
    flat = {k: abs(d10) < 0.01 and abs(d25) < 0.03 for k, (d10, d25) in drops.items()}
    verdict = ("both curves have flattened by that rule" if all(flat.values()) else
               ", ".join(k for k, f in flat.items() if not f) + " still falling by that rule: not trained to "
               "convergence, and a longer run is the first thing to change")
    lines.append("- Flattening (rule: the mean loss moved < 1% over the last tenth of the steps and < 3% over the "
                 "last quarter, each against the span before it): "
                 + ", ".join(f"{k} {100 * d10:+.1f}% / {100 * d25:+.1f}%" for k, (d10, d25) in drops.items())
                 + f"; {verdict}. The cosine schedule ends near its floor, so a flat end is necessary, not "
                 "sufficient: a longer schedule could still reach a lower loss.")
    if shorter_dir:
        shorter = {k: json.loads((shorter_dir / f"pretrain_{k}" / "results.json").read_text()) for k in runs}
        lines += [x for x in (scaling(runs, shorter), bc_scaling(out, shorter_dir)) if x]
    total = {k: r["steps"] * 32 * flops[k] / 1e3 for k, r in runs.items()}
    imgs = {k: r["steps"] * 32 for k, r in runs.items()}
    lines += [f"- Compute: {', '.join(f'{k} {t:.0f} TFLOP ({imgs[k]} images seen)' for k, t in total.items())} "
              "on 2 CPU cores, ViT-Tiny at 128 px on frames rendered from 9 MuJoCo / MetaWorld tasks (`data=sim`). The paper pretrains ViT-H/16 "
              "and larger on 2B web images for ~10^6x this compute; an encoder this small and this briefly "
              "trained is expected to be near random init" + pro + ".",
              "- What would change at paper scale: the released Pixio weights (`source: transformers` or "
              "`source: pixio` with `path:`) in place of these tiny checkpoints, the cortexbench suites "
              "(`suite=cortexbench_metaworld`, 5 tasks x 3 seeds x 25 episodes) and a GPU. The pipeline that "
              "produced this page is the one that would run there; only the encoders and the budget differ.", ""]
    return lines


def main(out: Path, shorter_dir: Path | None = None) -> None:
    docs = ROOT / "docs" / "results"
    docs.mkdir(parents=True, exist_ok=True)
    flops = {"pixio": 1.188, "mae": 0.773}  # GFLOP per image, FlopCounterMode (scripts/headline.sh)
    runs = {k: json.loads((out / f"pretrain_{k}" / "results.json").read_text()) for k in ("pixio", "mae")}
    loss_plot(runs, flops, docs / "pretrain_loss.png")
    lines = ["# Headline result: does pretraining on the simulator's frames help, and is Pixio's recipe better "
             "than vanilla MAE's?", "",
             f"Reproduce: `PIXIO_STEPS={runs['pixio']['steps']} OUT=runs/headline bash scripts/headline.sh && "
             "python scripts/headline_report.py runs/headline`",
             "(2 CPU cores; each stage resumes)."
             + (f" The shorter run compared below: `PIXIO_STEPS={json.loads((shorter_dir / 'pretrain_pixio' / 'results.json').read_text())['steps']} "
                "OUT=runs/headline_short bash scripts/headline.sh`, then `--shorter runs/headline_short`."
                if shorter_dir else ""), "",
             "## Pretraining at equal compute", "",
             "| model | recipe | steps x batch | GFLOP / image | total TFLOP | loss start -> end (50-step mean) | "
             "images/s |", "|---|---|---|---|---|---|---|"]
    recipe = {"pixio": "8 class tokens, 2x2-patch block masking (tiny size), 4-block decoder",
              "mae": "1 class token, single-patch masking, 2-block decoder"}
    for k, r in runs.items():
        _, v = _smooth(r["loss_history"])
        lines.append(f"| {k} | {recipe[k]} | {r['steps']} x 32 | {flops[k]:.3f} | "
                     f"{r['steps'] * 32 * flops[k] / 1e3:.1f} | {r['loss_start']:.3f} -> {v[-1]:.3f} | "
                     f"{r['images_per_s']:.0f} |")
    lines += ["", "The two losses are not comparable with each other (other masks: Pixio hides 2x2 blocks, MAE single "
              "patches); each curve says whether its own run had flattened.", "",
              "![pretraining loss](results/pretrain_loss.png)", ""]
    probe = out / "probe" / "report"
    if (probe / "probes.md").is_file():
        shutil.copy(probe / "probes.png", docs / "probes.png")
        body = (probe / "probes.md").read_text().split("\n", 1)[1]
        lines += ["## Probes on simulator ground truth (`python -m pixio_robot.probe`)", body.replace("# ", "### "),
                  "![probe curves](results/probes.png)", ""]
    bc = out / "bc" / "report"
    if (bc / "results.md").is_file():
        for name in ("final.png", "best.png"):
            shutil.copy(bc / name, docs / f"bc_{name}")
        body = (bc / "results.md").read_text().split("\n", 1)[1]
        lines += ["## Behaviour cloning on MetaWorld (quick suite, 3 training seeds)", body.replace("# ", "### "),
                  "![final success](results/bc_final.png)", ""]
    lines += reading(out, runs, flops, shorter_dir)
    (ROOT / "docs" / "results.md").write_text("\n".join(lines) + "\n")
    print(ROOT / "docs" / "results.md")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", type=Path, default=Path("runs/headline"), help="OUT of scripts/headline.sh")
    ap.add_argument("--shorter", type=Path, help="OUT of a shorter run of the same script (PIXIO_STEPS lower)")
    args = ap.parse_args()
    main(args.out, args.shorter)
