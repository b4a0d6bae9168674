"""Statistics that can rank encoders: stratified bootstrap over training seeds x episodes, the
interquartile mean and the probability of improvement (the rliable protocol, with the `rliable`
package's estimators), paired comparisons, and a rank correlation with its interval.

Data model: a *cell* is one (encoder, task, seed) run with a success rate over `n` evaluation
episodes (or a return score, which has no episode level). Per task the uncertainty has two
sources: which training seeds were drawn and which episodes each seed was evaluated on. The
two-level ("stratified") bootstrap resamples both, within each task (tasks are the strata and are
never resampled): seeds with replacement, then that seed's episodes with replacement. Resampling
the `n` episodes of a seed with `k` successes is a Binomial(n, k/n) draw, so it is done exactly
and vectorised.

Comparisons are paired by seed and task: encoder A and B trained with seed s on task t share the
demonstrations and the evaluation seeds, so their difference is resampled with the same seed
indices on both sides. A difference is called *resolved* when its 95% interval excludes 0 (and
the probability of improvement's excludes 0.5).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from rliable import metrics as rl_metrics
from scipy import stats as sps


@dataclass
class TaskCells:
    """One encoder's runs on one task: per seed, a score in [0, 1] and its episode count (0: a
    score with no episode level, e.g. a normalised return)."""

    seeds: list[int]
    scores: np.ndarray  # (S,)
    episodes: np.ndarray  # (S,) int

    def resample(self, rng: np.random.Generator, reps: int, seed_idx: np.ndarray | None = None) -> np.ndarray:
        """(reps, S) bootstrap replicates of the per-seed scores (seeds, then episodes)."""
        s = len(self.seeds)
        idx = rng.integers(0, s, size=(reps, s)) if seed_idx is None else seed_idx  # (reps, S)
        p, n = self.scores[idx], self.episodes[idx]
        has_eps = n > 0
        draws = np.where(has_eps, rng.binomial(np.maximum(n, 1), np.clip(p, 0, 1)) / np.maximum(n, 1), p)
        return draws


def cells_from_records(records: list[dict], which: str = "final", metric: str = "success",
                       return_scale: float = 1.0) -> dict[str, dict[str, TaskCells]]:
    """encoder -> task -> TaskCells from benchmark cell records (finished cells only)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        if r.get("status", "done") == "done":
            groups[(r["encoder"], r["task"])].append(r)
    out: dict[str, dict[str, TaskCells]] = defaultdict(dict)
    for (enc, task), recs in groups.items():
        recs = sorted(recs, key=lambda r: int(r.get("seed", 0)))
        if metric == "success":
            scores = [float(r[f"{which}_success"]) for r in recs]
            eps = [int(r.get("n_eval_episodes", 0)) for r in recs]
        else:
            scores = [float(r[f"{which}_return"]) / return_scale for r in recs]
            eps = [0] * len(recs)
        out[enc][task] = TaskCells([int(r.get("seed", 0)) for r in recs], np.asarray(scores, float),
                                   np.asarray(eps, int))
    return dict(out)


def _percentile(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1 - confidence) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all run x task scores (rliable's `aggregate_iqm`)."""
    return float(rl_metrics.aggregate_iqm(np.asarray(scores, float).reshape(-1)))


def _iqm_rows(m: np.ndarray) -> np.ndarray:
    """The IQM of each row of (reps, runs): the same trimmed mean rliable's `aggregate_iqm` takes
    (scipy's trim_mean, 25% cut each side), vectorised over bootstrap replicates."""
    return sps.trim_mean(m, proportiontocut=0.25, axis=1)


def summarize(cells: dict[str, TaskCells], reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Per task: mean over seeds with its two-level bootstrap interval; overall: the mean over tasks
    and the IQM over all runs, each with the stratified bootstrap interval."""
    rng = np.random.default_rng(seed)
    tasks = list(cells)
    per_task, task_reps, flat_reps = {}, [], []
    for t in tasks:
        c = cells[t]
        r = c.resample(rng, reps)  # (reps, S)
        lo, hi = _percentile(r.mean(1), confidence)
        per_task[t] = {"mean": float(c.scores.mean()), "lo": lo, "hi": hi, "n_seeds": len(c.seeds),
                       "n_episodes": int(c.episodes.sum())}
        task_reps.append(r.mean(1))
        flat_reps.append(r)
    mean_reps = np.mean(task_reps, axis=0)  # (reps,)
    all_scores = np.concatenate([cells[t].scores for t in tasks])
    iqm_reps = _iqm_rows(np.concatenate(flat_reps, axis=1))
    return {"tasks": per_task,
            "mean": float(np.mean([cells[t].scores.mean() for t in tasks])),
            "mean_ci": _percentile(mean_reps, confidence),
            "iqm": iqm(all_scores), "iqm_ci": _percentile(iqm_reps, confidence),
            "n_tasks": len(tasks), "n_runs": int(all_scores.size)}


def _poi(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's probability of improvement of X over Y, (runs x tasks) each."""
    return float(rl_metrics.probability_of_improvement(x, y))


def compare(a: dict[str, TaskCells], b: dict[str, TaskCells], reps: int = 2000, confidence: float = 0.95,
            seed: int = 0) -> dict:
    """Paired comparison of encoder A vs B on the (task, seed) cells both have: mean difference,
    IQM difference and probability of improvement P(A > B), each with a paired stratified
    bootstrap interval, and whether each is resolved."""
    rng = np.random.default_rng(seed)
    tasks = [t for t in a if t in b]
    diffs, iqm_a, iqm_b, xa, xb, n_pairs = [], [], [], [], [], 0
    for t in tasks:
        common = sorted(set(a[t].seeds) & set(b[t].seeds))
        if not common:
            continue
        ca, cb = (_subset(c, common) for c in (a[t], b[t]))
        idx = rng.integers(0, len(common), size=(reps, len(common)))  # the same seeds on both sides
        ra, rb = ca.resample(rng, reps, idx), cb.resample(rng, reps, idx)
        diffs.append(ra.mean(1) - rb.mean(1))
        iqm_a.append(ra)
        iqm_b.append(rb)
        xa.append(ca.scores)
        xb.append(cb.scores)
        n_pairs += len(common)
    if not diffs:
        return {"tasks": [], "n_pairs": 0, "resolved": False, "summary": "no (task, seed) cell in common"}
    diff_reps = np.mean(diffs, axis=0)
    point = float(np.mean([x.mean() for x in xa]) - np.mean([x.mean() for x in xb]))
    iqm_diff = iqm(np.concatenate(xa)) - iqm(np.concatenate(xb))
    iqm_reps = _iqm_rows(np.concatenate(iqm_a, axis=1)) - _iqm_rows(np.concatenate(iqm_b, axis=1))
    out = {"tasks": [t for t in tasks], "n_pairs": n_pairs,
           "mean_diff": point, "mean_diff_ci": _percentile(diff_reps, confidence),
           "iqm_diff": float(iqm_diff), "iqm_diff_ci": _percentile(iqm_reps, confidence)}
    if all(len(x) == len(xa[0]) for x in xa):  # rliable's PoI wants a runs x tasks matrix
        ma, mb = np.stack(xa, 1), np.stack(xb, 1)  # (S, T)
        poi_reps = []
        for i in range(min(reps, 200)):
            poi_reps.append(_poi(np.stack([r[i] for r in iqm_a], 1), np.stack([r[i] for r in iqm_b], 1)))
        out["poi"], out["poi_ci"] = _poi(ma, mb), _percentile(np.asarray(poi_reps), confidence)
    lo, hi = out["mean_diff_ci"]
    out["resolved"] = bool(lo > 0 or hi < 0)
    return out


def _subset(c: TaskCells, seeds: list[int]) -> TaskCells:
    pos = [c.seeds.index(s) for s in seeds]
    return TaskCells(list(seeds), c.scores[pos], c.episodes[pos])


def describe(name_a: str, name_b: str, cmp: dict, unit: str = "points") -> str:
    """One sentence: which way the difference goes and whether the interval resolves it."""
    if not cmp.get("n_pairs"):
        return f"{name_a} vs {name_b}: no paired cells, not compared."
    d, (lo, hi) = 100 * cmp["mean_diff"], (100 * cmp["mean_diff_ci"][0], 100 * cmp["mean_diff_ci"][1])
    poi = f"; P({name_a} > {name_b}) = {cmp['poi']:.2f} [{cmp['poi_ci'][0]:.2f}, {cmp['poi_ci'][1]:.2f}]" \
        if "poi" in cmp else ""
    head = f"{name_a} vs {name_b}: {d:+.1f} {unit} [{lo:+.1f}, {hi:+.1f}] over {cmp['n_pairs']} paired runs{poi}"
    if cmp["resolved"]:
        better = name_a if d > 0 else name_b
        return f"{head}: resolved, {better} is better."
    return f"{head}: not resolved (the interval contains 0); more seeds or episodes are needed to rank them."


def spearman_interval(x, y, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Spearman rank correlation of paired values (e.g. probe score vs policy success across
    encoders) with a percentile bootstrap interval over the pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size != y.size or x.size < 3:
        raise ValueError(f"need >= 3 paired values, got {x.size} and {y.size}")
    rho = float(sps.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, x.size, size=(reps, x.size))
    rx, ry = sps.rankdata(x[i], axis=1), sps.rankdata(y[i], axis=1)  # Spearman = Pearson of (tied) ranks
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    ok = den > 0  # a resample with all-equal values has no rank order
    boot = (rx * ry).sum(1)[ok] / den[ok]
    lo, hi = _percentile(boot, confidence) if boot.size else (float("nan"), float("nan"))
    return {"rho": rho, "ci": (lo, hi), "n": int(x.size)}
