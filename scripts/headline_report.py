"""Write docs/results.md (and docs/results/*.png) from a finished `scripts/headline.sh` run.

    python scripts/headline_report.py runs/headline      # reads pretrain_*/, probe/, bc/ under it
"""

from __future__ import annotations

import json
import shutil
import sys
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


def main(out: Path) -> None:
    docs = ROOT / "docs" / "results"
    docs.mkdir(parents=True, exist_ok=True)
    flops = {"pixio": 1.188, "mae": 0.773}  # GFLOP per image, FlopCounterMode (scripts/headline.sh)
    runs = {k: json.loads((out / f"pretrain_{k}" / "results.json").read_text()) for k in ("pixio", "mae")}
    loss_plot(runs, flops, docs / "pretrain_loss.png")
    lines = ["# Headline result: does pretraining on the simulator's frames help, and is Pixio's recipe better "
             "than vanilla MAE's?", "",
             "Reproduce: `OUT=runs/headline bash scripts/headline.sh && python scripts/headline_report.py runs/headline`",
             "(2 CPU cores; each stage resumes).", "",
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
    (ROOT / "docs" / "results.md").write_text("\n".join(lines) + "\n")
    print(ROOT / "docs" / "results.md")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/headline"))
