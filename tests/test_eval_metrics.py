"""Wilson / t / bootstrap intervals against published values and basic invariants."""

import math

import pytest

from pixio_robot.evaluation.metrics import (
    bootstrap_interval,
    mean_interval,
    pooled_success,
    t_quantile,
    wilson_interval,
)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I (Wilson, no CC)
@pytest.mark.parametrize("s,n,lo,hi", [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (8, 10, 0.4902, 0.9433),
    (50, 100, 0.4038, 0.5962),
])
def test_wilson_known_values(s, n, lo, hi):
    got = wilson_interval(s, n)
    assert got[0] == pytest.approx(lo, abs=1e-4)
    assert got[1] == pytest.approx(hi, abs=1e-4)


def test_wilson_edges_and_symmetry():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73  # 10/10 -> (0.7225, 1)
    a, b = wilson_interval(3, 25)
    c, d = wilson_interval(22, 25)
    assert a == pytest.approx(1 - d) and b == pytest.approx(1 - c)
    # higher confidence -> wider interval
    w95 = wilson_interval(5, 20)
    w99 = wilson_interval(5, 20, confidence=0.99)
    assert w99[0] < w95[0] and w99[1] > w95[1]


def test_wilson_bad_input_message():
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(5, 3)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 3, confidence=95)


def test_t_interval_matches_tables():
    assert t_quantile(0.95, 9) == pytest.approx(2.2622, abs=1e-4)
    assert t_quantile(0.95, 2) == pytest.approx(4.3027, abs=1e-4)
    lo, hi = mean_interval([1, 2, 3, 4, 5])
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)
    assert lo == pytest.approx(3 - half, abs=1e-3) and hi == pytest.approx(3 + half, abs=1e-3)
    assert mean_interval([4.0]) == (4.0, 4.0)


def test_bootstrap_is_seeded_and_brackets_mean():
    x = [0.0, 1.0, 2.0, 3.0, 10.0]
    a = bootstrap_interval(x, seed=1)
    assert a == bootstrap_interval(x, seed=1)
    assert a[0] < 3.2 < a[1]


def test_pooled_success():
    out = pooled_success([3, 5], [10, 10])
    assert out["rate"] == pytest.approx(0.4) and out["n"] == 20
    assert out["ci"] == pytest.approx(list(wilson_interval(8, 20)))
