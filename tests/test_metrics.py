"""Metric functions against hand-computed values."""
import math

import numpy as np
import pytest

from coincast import metrics

A = np.array([100.0, 102.0, 101.0, 105.0])
F = np.array([101.0, 101.0, 103.0, 104.0])
N = np.array([99.0, 100.0, 102.0, 101.0])  # naive = previous actual
LAST = N


def test_mae_rmse_mape():
    assert metrics.mae(A, F) == pytest.approx((1 + 1 + 2 + 1) / 4)
    assert metrics.rmse(A, F) == pytest.approx(math.sqrt((1 + 1 + 4 + 1) / 4))
    assert metrics.mape(A, F) == pytest.approx(100 * (1 / 100 + 1 / 102 + 2 / 101 + 1 / 105) / 4)


def test_rel_mae_and_mase():
    naive_mae = (1 + 2 + 1 + 4) / 4
    assert metrics.rel_mae(A, F, N) == pytest.approx(1.25 / naive_mae)
    assert metrics.rel_mae(A, N, N) == 1.0
    assert metrics.mase(A, F, 2.5) == pytest.approx(1.25 / 2.5)


def test_directional_accuracy():
    # moves: +1, +2, -1, +4 ; forecast moves: +2, +1, +1, +3 -> right, right, wrong, right
    assert metrics.directional_accuracy(A, F, LAST) == pytest.approx(3 / 4)
    assert math.isnan(metrics.directional_accuracy(A, LAST, LAST))  # naive never moves


def test_coverage_and_width():
    lo, hi = F - 1.5, F + 1.5
    assert metrics.coverage(A, lo, hi) == pytest.approx(3 / 4)  # 101 vs [101.5, 104.5] is out
    assert metrics.mean_width(lo, hi) == pytest.approx(3.0)


def test_nan_rows_are_ignored():
    a = np.array([1.0, np.nan, 3.0])
    f = np.array([2.0, 5.0, 3.0])
    assert metrics.mae(a, f) == pytest.approx(0.5)
    assert math.isnan(metrics.mae([np.nan], [1.0]))


def test_diebold_mariano_by_hand():
    # losses a (the challenger) and b (naive) at 5 origins: d = a - b = [-1, 0, -2, 1, -3], mean -1,
    # deviations e = [0, 1, -1, 2, -2]
    a, b = [1.0, 2.0, 0.0, 3.0, 1.0], [2.0, 2.0, 2.0, 2.0, 4.0]
    n = 5
    gamma0 = (0 + 1 + 1 + 4 + 4) / n  # = 2
    # h = 1: no lag; V = γ0 / n = 0.4, DM = -1 / √0.4, HLN factor √((n + 1 - 2h + h(h-1)/n) / n) = √0.8
    dm1 = -1 / math.sqrt(gamma0 / n) * math.sqrt((n + 1 - 2) / n)
    assert dm1 == pytest.approx(-math.sqrt(2))
    # Student's t with 4 degrees of freedom, in closed form: F(t) = 1/2 + (3/4) u (1 - u²/3), u = t / √(4 + t²)
    def t4_cdf(t: float) -> float:
        u = t / math.sqrt(4 + t * t)
        return 0.5 + 0.75 * u * (1 - u * u / 3)

    got = metrics.diebold_mariano(a, b)
    assert got.statistic == pytest.approx(dm1) and got.p_value == pytest.approx(t4_cdf(dm1)) and got.n == n
    assert got.p_value == pytest.approx(0.1151, abs=1e-4)
    # h = 2: one Newey-West lag, Bartlett weight 1 - 1/2: γ1 = (1·0 + (-1)·1 + 2·(-1) + (-2)·2) / n = -1.4,
    # V = (γ0 + 2 · 0.5 · γ1) / n = 0.12 (the unweighted DM sum would give a negative variance here, -0.16)
    gamma1 = (1 * 0 + (-1) * 1 + 2 * (-1) + (-2) * 2) / n
    v2 = (gamma0 + 2 * 0.5 * gamma1) / n
    dm2 = -1 / math.sqrt(v2) * math.sqrt((n + 1 - 4 + 2 * 1 / n) / n)
    assert dm2 == pytest.approx(-2.0)
    two = metrics.diebold_mariano(a, b, horizon=2)
    assert two.statistic == pytest.approx(dm2) and two.p_value == pytest.approx(t4_cdf(dm2))
    # one-sided: swapped, the same statistic with the other sign and the other tail
    swapped = metrics.diebold_mariano(b, a)
    assert swapped.statistic == pytest.approx(-dm1) and swapped.p_value == pytest.approx(1 - got.p_value)


def test_diebold_mariano_edges():
    nan = float("nan")
    # rows with a missing loss are left out of both
    assert metrics.diebold_mariano([1.0, 2.0, nan, 0.0, 3.0, 1.0], [2.0, 2.0, 5.0, 2.0, 2.0, 4.0]) == \
        metrics.diebold_mariano([1.0, 2.0, 0.0, 3.0, 1.0], [2.0, 2.0, 2.0, 2.0, 4.0])
    same = metrics.diebold_mariano([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (same.statistic, same.p_value) == (0.0, 0.5)  # equal losses: no evidence either way
    shifted = metrics.diebold_mariano([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert shifted.statistic == -math.inf and shifted.p_value == 0.0  # lower by 1 on every row
    with pytest.raises(ValueError, match="needs more than 1 paired losses at horizon 1, got 1"):
        metrics.diebold_mariano([1.0, nan], [2.0, 2.0])
    with pytest.raises(ValueError, match="horizon must be a whole number of hours >= 1, got 0"):
        metrics.diebold_mariano([1.0, 2.0], [2.0, 2.0], horizon=0)
