"""Generated vs reference statistics (evaluation/statistics.py): deviation, tests, effect sizes, spread, OLS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from petct_pipeline.evaluation.statistics import (
    BOOTSTRAP_MIN_N,
    cliffs_delta,
    cohens_d,
    compare,
    compare_coefficients,
    deviation_ci,
    fit_ols,
    resolution_pct,
    spread_ratio,
)


def test_statistics_of_identical_and_shifted_samples():
    rng = np.random.default_rng(0)
    a = rng.normal(10, 1, 40)
    same = compare(a, a)
    assert same["deviation_pct"] == 0.0 and same["p_welch"] == 1.0 and same["p_mannwhitney"] == 1.0
    assert same["cohens_d"] == 0.0 and same["cliffs_delta"] == 0.0
    shifted = compare(a * 1.1, a)
    assert shifted["deviation_pct"] == pytest.approx(10.0)
    assert shifted["p_welch"] < 0.05 and shifted["cliffs_delta"] > 0.5
    assert cohens_d([1, 2, 3], [1, 2, 3]) == 0.0
    assert cliffs_delta([3, 4], [1, 2]) == 1.0
    empty = compare([], [1.0, 2.0])
    assert empty["n_generated"] == 0 and math.isnan(empty["deviation_pct"]) and math.isnan(empty["p_welch"])

def test_regression_recovers_coefficients_and_compares_them():
    rng = np.random.default_rng(1)
    height = rng.normal(170, 10, 60)
    weight = rng.normal(75, 12, 60)
    y = 5 + 2.0 * height + 3.0 * weight + rng.normal(0, 1, 60)
    fit = fit_ols(y, {"height": height, "weight": weight})
    assert fit.coefficient("height")[0] == pytest.approx(2.0, abs=0.05)
    assert fit.r2 > 0.99
    other = fit_ols(5 + 2.0 * height + 1.0 * weight + rng.normal(0, 1, 60), {"height": height, "weight": weight})
    rows = {r["term"]: r for r in compare_coefficients(other, fit)}
    assert rows["weight"]["p_difference"] < 1e-6 and rows["height"]["p_difference"] > 0.01
    assert math.isnan(fit_ols([1.0, 2.0], {"a": [1.0, 2.0], "b": [3.0, 4.0]}).r2)  # fewer rows than terms


def test_spread_ratio_of_compare_rows():
    rng = np.random.default_rng(2)
    a = rng.normal(10, 1, 50)
    assert spread_ratio(compare(10 + 0.5 * (a - 10), a)) == pytest.approx(0.5)
    assert math.isnan(spread_ratio(compare(a, np.full(5, 3.0))))  # the reference does not vary
    assert math.isnan(spread_ratio(compare(a, [1.0])))  # one reference value: no SD
    assert math.isnan(spread_ratio({"generated_std": 1.0}))  # reference missing


def test_bootstrap_interval_of_the_deviation():
    rng = np.random.default_rng(3)
    # two samples of one distribution, few subjects: the interval holds the deviation and mostly spans 0
    spans = 0
    for _ in range(200):
        g, r = rng.normal(10, 1, 8), rng.normal(10, 1, 8)
        row = compare(g, r)
        assert row["deviation_ci_low"] <= row["deviation_pct"] <= row["deviation_ci_high"]
        assert row["resolvable"] == (not row["deviation_ci_low"] <= 0 <= row["deviation_ci_high"])
        spans += not row["resolvable"]
    assert spans >= 0.85 * 200  # the nominal level is 95 %; the percentile bootstrap is a little narrow
    # a large shift is resolved, and its interval says by how much
    a = rng.normal(10, 1, 8)
    shifted = compare(a * 1.5, a)
    assert shifted["resolvable"] and 30 < shifted["deviation_ci_low"] < 50 < shifted["deviation_ci_high"] < 70
    assert resolution_pct(shifted) == pytest.approx((shifted["deviation_ci_high"] - shifted["deviation_ci_low"]) / 2)
    # reproducible (fixed seed), and no interval below BOOTSTRAP_MIN_N subjects on a side
    assert deviation_ci(a * 1.5, a) == deviation_ci(a * 1.5, a)
    small = compare(a[: BOOTSTRAP_MIN_N - 1] * 1.5, a)
    assert math.isnan(small["deviation_ci_low"]) and not small["resolvable"] and math.isnan(resolution_pct(small))
    assert compare(a, a)["deviation_ci_low"] < 0 < compare(a, a)["deviation_ci_high"]
