"""Statistics comparing a generated sample with a reference sample of one metric.

* :func:`describe`: n, mean, median, quartiles, IQR, SD (NaN values are left out).
* :func:`compare`: relative deviation of the means, ``deviation_pct = 100 * (gen_mean -
  ref_mean) / ref_mean``, with its 95 % bootstrap confidence interval (:func:`deviation_ci`);
  Welch's t-test and the Mann-Whitney U test (two-sided, scipy); effect sizes Cohen's d
  (pooled SD) and Cliff's delta (P(gen > ref) - P(gen < ref)).
* :func:`deviation_ci`: percentile bootstrap (``scipy.stats.bootstrap``) resampling the subjects
  of each side independently, :data:`BOOTSTRAP_RESAMPLES` resamples from the fixed seed
  :data:`BOOTSTRAP_SEED`, so a report is reproducible; a deviation is ``resolvable`` when its
  interval excludes 0, and :func:`resolution_pct` (half the interval's width) is about the
  smallest deviation the two sample sizes can tell apart from 0. The percentile bootstrap is
  too narrow in small samples (the resampled means vary less than the sample mean does: with 2
  subjects a side it calls a third of null differences resolved), so a side with fewer than
  :data:`BOOTSTRAP_MIN_N` values gets no interval and nothing is resolvable there.
* :func:`spread_ratio`: generated SD / reference SD of one :func:`compare` row (below 1 the
  generated subjects are more alike than the reference ones: under-dispersion).
* :func:`anova`: one-way ANOVA of one side across the subgroups of a family; the report
  checks that the generated data reproduce the reference's subgroup differences.
* :func:`fit_ols` / :func:`compare_coefficients`: trend regressions fitted on each side and
  compared coefficient by coefficient (z = difference / sqrt(se_gen^2 + se_ref^2)).

Undefined results (too few values, zero variance) are NaN, never an exception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "TREND_MODELS",
    "describe",
    "deviation_pct",
    "relative_deviation",
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "BOOTSTRAP_MIN_N",
    "deviation_ci",
    "resolution_pct",
    "cohens_d",
    "cliffs_delta",
    "compare",
    "spread_ratio",
    "anova",
    "Regression",
    "fit_ols",
    "compare_coefficients",
]

#: trend regressions: response metric -> demographic predictors (Demographics.quantity names; sex M=1, F=0)
TREND_MODELS: dict[str, tuple[str, ...]] = {
    "volume_ml": ("height", "weight", "sex", "age"),
    "suv_mean": ("age", "bmi"),
}

#: bootstrap resamples per confidence interval (Monte Carlo error of a 95 % percentile bound ~0.1 SE)
BOOTSTRAP_RESAMPLES = 2000
#: every interval starts from this seed: the same two samples always give the same interval
BOOTSTRAP_SEED = 0
#: confidence level of :func:`deviation_ci`
CONFIDENCE = 0.95
#: fewest values on each side for an interval (below, the percentile bootstrap's interval is far too narrow)
BOOTSTRAP_MIN_N = 5

_NAN = float("nan")


def _clean(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def describe(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """n, mean, median, q1, q3, iqr, std (ddof=1) of the finite values."""
    x = _clean(values)
    if x.size == 0:
        return {"n": 0, "mean": _NAN, "median": _NAN, "q1": _NAN, "q3": _NAN, "iqr": _NAN, "std": _NAN}
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "std": float(x.std(ddof=1)) if x.size > 1 else _NAN,
    }


def relative_deviation(generated_mean: np.ndarray, reference_mean: np.ndarray) -> np.ndarray:
    """Elementwise 100 * (generated - reference) / reference; NaN where the reference is 0 or undefined."""
    g, r = np.asarray(generated_mean, dtype=np.float64), np.asarray(reference_mean, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * (g - r) / r
    return np.where(np.isfinite(g) & np.isfinite(r) & (r != 0), out, np.nan)


def deviation_pct(generated_mean: float, reference_mean: float) -> float:
    """100 * (generated - reference) / reference; NaN when the reference mean is 0 or undefined."""
    return float(relative_deviation(generated_mean, reference_mean))


def _mean_deviation(generated: np.ndarray, reference: np.ndarray, axis: int = -1) -> np.ndarray:
    return relative_deviation(generated.mean(axis=axis), reference.mean(axis=axis))


def deviation_ci(generated: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """:data:`CONFIDENCE` percentile-bootstrap interval of ``deviation_pct`` of the means (finite values).

    Each side's subjects are resampled with replacement independently (the sides are different
    people). NaN bounds with fewer than :data:`BOOTSTRAP_MIN_N` values on a side or when a resampled
    reference mean is 0.
    """
    g, r = _clean(generated), _clean(reference)
    if g.size < BOOTSTRAP_MIN_N or r.size < BOOTSTRAP_MIN_N:
        return _NAN, _NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (constant) samples: the interval is that constant
        result = stats.bootstrap((g, r), _mean_deviation, n_resamples=BOOTSTRAP_RESAMPLES, paired=False,
                                 vectorized=True, confidence_level=CONFIDENCE, method="percentile",
                                 rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (_NAN, _NAN)


def resolution_pct(row: Mapping[str, float | None]) -> float:
    """Half the width of a :func:`compare` row's deviation interval: deviations smaller than this cannot be
    told apart from 0 with these sample sizes; NaN without an interval."""
    low, high = row.get("deviation_ci_low"), row.get("deviation_ci_high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return _NAN
    return (high - low) / 2.0


def cohens_d(generated: Sequence[float], reference: Sequence[float]) -> float:
    """(mean_gen - mean_ref) / pooled SD; 0 for identical constant samples, NaN if undefined."""
    g, r = _clean(generated), _clean(reference)
    if g.size < 2 or r.size < 2:
        return _NAN
    difference = g.mean() - r.mean()
    pooled = math.sqrt(((g.size - 1) * g.var(ddof=1) + (r.size - 1) * r.var(ddof=1)) / (g.size + r.size - 2))
    if pooled == 0:
        return 0.0 if difference == 0 else _NAN
    return float(difference / pooled)


def cliffs_delta(generated: Sequence[float], reference: Sequence[float]) -> float:
    """P(gen > ref) - P(gen < ref) over all pairs, in [-1, 1]; NaN for an empty side."""
    g, r = _clean(generated), np.sort(_clean(reference))
    if g.size == 0 or r.size == 0:
        return _NAN
    less = np.searchsorted(r, g, side="left")  # reference values below each generated value
    greater = r.size - np.searchsorted(r, g, side="right")
    return float((less.sum() - greater.sum()) / (g.size * r.size))


def _p_value(test, *args, **kwargs) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            p = float(test(*args, **kwargs).pvalue)
        except ValueError:
            return _NAN
    return p if math.isfinite(p) else _NAN


def compare(generated: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """Descriptive statistics of both sides plus deviation (with its interval and whether it is
    ``resolvable``: the interval excludes 0), tests and effect sizes (one summary row)."""
    g, r = _clean(generated), _clean(reference)
    dg, dr = describe(g), describe(r)
    row: dict[str, float] = {"n_generated": dg["n"], "n_reference": dr["n"]}
    for key in ("mean", "median", "q1", "q3", "iqr", "std"):
        row[f"generated_{key}"] = dg[key]
        row[f"reference_{key}"] = dr[key]
    row["deviation_pct"] = deviation_pct(dg["mean"], dr["mean"])
    row["median_deviation_pct"] = deviation_pct(dg["median"], dr["median"])
    row["deviation_ci_low"], row["deviation_ci_high"] = deviation_ci(g, r)
    row["resolvable"] = bool(row["deviation_ci_low"] > 0 or row["deviation_ci_high"] < 0)  # False for NaN
    enough = g.size >= 2 and r.size >= 2
    if enough and np.array_equal(np.sort(g), np.sort(r)):
        row["p_welch"] = row["p_mannwhitney"] = 1.0  # identical samples (scipy gives NaN when both are constant)
    else:
        row["p_welch"] = _p_value(stats.ttest_ind, g, r, equal_var=False) if enough else _NAN
        row["p_mannwhitney"] = (
            _p_value(stats.mannwhitneyu, g, r, alternative="two-sided") if g.size and r.size else _NAN
        )
    row["cohens_d"] = cohens_d(g, r)
    row["cliffs_delta"] = cliffs_delta(g, r)
    return row


def spread_ratio(row: Mapping[str, float | None]) -> float:
    """Generated SD / reference SD of one :func:`compare` row; NaN when the reference does not vary or is missing."""
    generated, reference = row.get("generated_std"), row.get("reference_std")
    if generated is None or reference is None or not (math.isfinite(generated) and math.isfinite(reference)):
        return _NAN
    return generated / reference if reference > 0 else _NAN


def anova(groups: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """One-way ANOVA across the groups that have >= 2 finite values: F, p, number of groups used."""
    samples = [x for x in (_clean(v) for v in groups.values()) if x.size >= 2]
    if len(samples) < 2:
        return {"F": _NAN, "p": _NAN, "groups": len(samples)}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = stats.f_oneway(*samples)
    f, p = float(result.statistic), float(result.pvalue)
    return {"F": f if math.isfinite(f) else _NAN, "p": p if math.isfinite(p) else _NAN, "groups": len(samples)}


@dataclass(frozen=True)
class Regression:
    """Ordinary least squares fit: coefficients (intercept first), standard errors, p-values, R^2."""

    terms: tuple[str, ...]
    coef: tuple[float, ...]
    se: tuple[float, ...]
    p: tuple[float, ...]
    r2: float
    n: int

    def coefficient(self, term: str) -> tuple[float, float, float]:
        i = self.terms.index(term)
        return self.coef[i], self.se[i], self.p[i]


def fit_ols(response: Sequence[float], predictors: Mapping[str, Sequence[float]]) -> Regression:
    """OLS of ``response`` on an intercept plus ``predictors``; rows with a non-finite value are dropped.

    Undefined fits (fewer rows than terms + 1, or a constant predictor) give NaN coefficients.
    """
    names = ("intercept", *predictors)
    y = np.asarray(response, dtype=np.float64)
    columns = [np.ones_like(y)] + [np.asarray(predictors[name], dtype=np.float64) for name in predictors]
    X = np.column_stack(columns) if y.size else np.zeros((0, len(names)))
    keep = np.isfinite(y) & np.all(np.isfinite(X), axis=1)
    y, X = y[keep], X[keep]
    n, k = X.shape
    nan_fit = Regression(names, (_NAN,) * k, (_NAN,) * k, (_NAN,) * k, _NAN, int(n))
    if n <= k or np.linalg.matrix_rank(X) < k:
        return nan_fit
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    residuals = y - X @ coef
    dof = n - k
    sigma2 = float(residuals @ residuals) / dof
    covariance = sigma2 * np.linalg.inv(X.T @ X)
    se = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = coef / se
    p = np.where(se > 0, 2.0 * stats.t.sf(np.abs(t), dof), np.where(coef == 0, 1.0, 0.0))
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(residuals @ residuals) / total if total > 0 else _NAN
    return Regression(names, tuple(map(float, coef)), tuple(map(float, se)), tuple(map(float, p)), r2, int(n))


def compare_coefficients(generated: Regression, reference: Regression) -> list[dict[str, float | str]]:
    """Per term: both coefficients and SEs, difference, relative difference (%), z-test p of the difference."""
    rows: list[dict[str, float | str]] = []
    for term in reference.terms:
        bg, sg, pg = generated.coefficient(term)
        br, sr, pr = reference.coefficient(term)
        difference = bg - br
        spread = math.sqrt(sg**2 + sr**2) if math.isfinite(sg) and math.isfinite(sr) else _NAN
        if math.isfinite(spread) and spread > 0:
            p_difference = float(2.0 * stats.norm.sf(abs(difference) / spread))
        elif math.isfinite(difference):
            p_difference = 1.0 if difference == 0 else 0.0
        else:
            p_difference = _NAN
        rows.append({
            "term": term,
            "generated_coef": bg, "generated_se": sg, "generated_p": pg,
            "reference_coef": br, "reference_se": sr, "reference_p": pr,
            "difference": difference,
            "difference_pct": deviation_pct(bg, br),
            "p_difference": p_difference,
        })
    return rows
