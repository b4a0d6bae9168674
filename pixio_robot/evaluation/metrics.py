"""Statistics for evaluation results: Wilson score intervals for success rates, t intervals for
mean returns, and a percentile bootstrap for anything else.

Success rates of robot policies are estimated from few episodes (10-50), often near 0 or 1,
where the normal ("Wald") interval collapses to a width of zero. The Wilson score interval
stays inside [0, 1] and keeps honest coverage there, so it is the one reported everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np


def _z(confidence: float) -> float:
    """Two-sided standard-normal quantile, e.g. 1.95996 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}; use e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion `successes / n`.

    Returns `(lo, hi)` with 0 <= lo <= p <= hi <= 1. With `n == 0` nothing is known: (0, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # Exact endpoints at the boundaries (avoid 1e-17 round-off below p).
    if successes == 0:
        lo = 0.0
    if successes == n:
        hi = 1.0
    return lo, hi


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t quantile. Uses scipy when installed, else the Cornish-Fisher
    expansion (Abramowitz & Stegun 26.7.5; error < 1e-3 for dof >= 3)."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    try:
        from scipy.stats import t as student_t

        return float(student_t.ppf(0.5 + confidence / 2.0, dof))
    except ImportError:  # pragma: no cover - scipy ships with the pinned set
        z = _z(confidence)
        v = float(dof)
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
        return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean. One value (or none) gives a degenerate interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean
    half = t_quantile(confidence, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean - half, mean + half


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0, statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (seeded, so reports are reproducible)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))  # (R, n)
    stats = np.asarray([statistic(x[row]) for row in idx])
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def pooled_success(successes: Sequence[int], totals: Sequence[int],
                   confidence: float = 0.95) -> dict:
    """Pool several success counts (e.g. seeds of one task) into one rate with a Wilson interval."""
    s, n = int(sum(successes)), int(sum(totals))
    lo, hi = wilson_interval(s, n, confidence)
    return {"successes": s, "n": n, "rate": (s / n) if n else float("nan"), "ci": [lo, hi]}
