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


# --- probabilistic scores ---------------------------------------------------------------------------------
def test_interval_score_by_hand():
    # IS = (u - l) + (2/alpha)(l - y)1{y < l} + (2/alpha)(y - u)1{y > u}
    lo, hi = F - 1.5, F + 1.5  # [99.5, 102.5], [99.5, 102.5], [101.5, 104.5], [102.5, 105.5]: width 3
    # only row 3 misses: y = 101 is 0.5 below l = 101.5
    assert metrics.interval_score(A, lo, hi, 0.8) == pytest.approx((3 + 3 + (3 + 10 * 0.5) + 3) / 4)  # 2/0.2 = 10
    assert metrics.interval_score(A, lo, hi, 0.95) == pytest.approx((3 + 3 + (3 + 40 * 0.5) + 3) / 4)  # 2/0.05 = 40
    # naive +- 2: [97, 101], [98, 102], [100, 104], [99, 103]: width 4, only row 4 misses (105 is 2 above 103)
    base = (4 + 4 + 4 + (4 + 10 * 2)) / 4
    assert metrics.rel_interval_score(A, lo, hi, N - 2, N + 2, 0.8) == pytest.approx(4.25 / base)
    assert metrics.rel_interval_score(A, N - 2, N + 2, N - 2, N + 2, 0.8) == 1.0
    # an interval without an upper bound (too few errors to calibrate) is left out, as in mean_width
    assert metrics.interval_score(A, lo, np.where(A == 105, np.inf, hi), 0.8) == pytest.approx((3 + 3 + 8) / 3)


def test_crps_is_the_pinball_average_by_hand():
    # CRPS ~ (2/K) sum_k QS_tau_k(q_k, y),  QS_tau(q, y) = (1{y < q} - tau)(q - y)
    q = {0.1: [8.0, 8.0], 0.5: [11.0, 11.0], 0.9: [12.0, 12.0]}
    # y = 10: 0.1*(10-8) + 0.5*(11-10) + 0.1*(12-10) = 0.9 ; y = 13: 0.1*5 + 0.5*2 + 0.9*1 = 2.4
    assert metrics.crps([10.0, 13.0], q) == pytest.approx((2 / 3 * 0.9 + 2 / 3 * 2.4) / 2)
    # a point forecast (every quantile the same number) on symmetric levels scores its absolute error:
    # (2/3) * (0.9 + 0.5 + 0.1) * |y - f| whichever side y falls
    assert metrics.crps(A, {0.1: F, 0.5: F, 0.9: F}) == pytest.approx(metrics.mae(A, F))
    with pytest.raises(ValueError, match="quantile levels must lie in"):
        metrics.crps(A, {1.5: F})


def test_crps_of_intervals_is_the_weighted_interval_score():
    """From a forecast (the median) and 80 % / 95 % intervals: WIS = (|y - m|/2 + sum_k (alpha_k/2) IS_k) / (K + 1/2)."""
    intervals = {0.8: (F - 1.5, F + 1.5), 0.95: (F - 3, F + 3)}
    q = metrics.interval_quantiles(F, intervals)
    assert list(q) == [0.025, 0.1, 0.5, 0.9, 0.975]
    assert q[0.1] is intervals[0.8][0] and q[0.975] is intervals[0.95][1] and q[0.5] is F
    # mean |y - m| = 1.25 ; IS_80 = 4.25 (above) ; F +- 3 holds every actual: IS_95 = 6
    wis = (0.5 * 1.25 + 0.2 / 2 * 4.25 + 0.05 / 2 * 6) / (2 + 0.5)
    assert metrics.crps(A, q) == pytest.approx(wis)
    assert wis == pytest.approx(0.48)
    base = metrics.interval_quantiles(N, {0.8: (N - 2, N + 2), 0.95: (N - 4, N + 4)})
    assert metrics.rel_crps(A, q, base) == pytest.approx(wis / metrics.crps(A, base))
    assert metrics.rel_crps(A, base, base) == 1.0
    with pytest.raises(ValueError, match="same quantile levels"):
        metrics.rel_crps(A, q, {0.5: N})


def test_directional_p_value_is_the_one_sided_binomial_test():
    # 3 of 4 moves called right: P(X >= 3), X ~ Binomial(4, 1/2) = (C(4,3) + C(4,4)) / 2^4
    assert metrics.directional_p_value(A, F, LAST) == pytest.approx(5 / 16)
    assert metrics.direction_hits(A, F, LAST).tolist() == [True, True, False, True]
    ups = np.arange(1.0, 11.0)  # ten rises, all called: 1 / 2^10
    assert metrics.directional_p_value(ups + 1, ups + 0.5, ups) == pytest.approx(1 / 1024)
    # ties left out: a forecast that does not move and a price that does not move are no trial
    # rows 1 and 2 are ties (the forecast, then the price stays at 1); row 3 is called wrong: P(X >= 0 of 1) = 1
    assert metrics.direction_hits([2.0, 1.0, 0.5], [1.0, 3.0, 2.0], [1.0, 1.0, 1.0]).tolist() == [False]
    assert metrics.directional_p_value([2.0, 1.0, 0.5], [1.0, 3.0, 2.0], [1.0, 1.0, 1.0]) == 1.0
    assert math.isnan(metrics.directional_p_value(A, LAST, LAST))  # naive never moves


def test_the_p_values_are_scipy_stats_own():
    """metrics uses scipy.special (lighter to import) for the two distributions: the same numbers as scipy.stats'
    binomtest (alternative "greater") and Student t CDF, every hit count and both infinite statistics included."""
    from scipy import stats

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 40):
        for hits in range(n + 1):
            last = np.ones(n)
            actual = last + 1.0
            forecast = np.where(np.arange(n) < hits, 2.0, 0.5)  # the first `hits` call the move up, the rest down
            expected = stats.binomtest(hits, n, 0.5, alternative="greater").pvalue
            assert metrics.directional_p_value(actual, forecast, last) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    for _ in range(20):
        a, b = rng.normal(1, 0.3, 50), rng.normal(1.1, 0.3, 50)
        got = metrics.diebold_mariano(a, b, horizon=3)
        assert got.p_value == pytest.approx(stats.t.cdf(got.statistic, df=got.n - 1), rel=1e-12)
    assert metrics.diebold_mariano([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]).p_value == stats.t.cdf(-np.inf, df=2) == 0.0
