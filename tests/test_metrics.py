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
