"""Generated vs reference tables from two measured cohorts: summary, ANOVA, trends and subject rows.

Plain steps, as nnU-Net evaluates: the cohorts are measured (``cohort``), compared here, then
written (``writers``) and rendered (``markdown``). Nothing here touches the disk. The column
tuples are the order of the CSV files, an interface other tools read; every column name is
used once per file (subjects.csv names a subgroup family's column ``<family>_band``).

A summary row compares the subjects in which the organ was found; ``n_generated`` /
``n_reference`` count them, ``generated_subjects`` / ``reference_subjects`` count the
subgroup, and ``status`` says why a side has none (``coverage``), so an organ outside one
cohort's field of view is reported as such rather than as an undefined number.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..organs import EVALUATION_ORGANS
from .cohort import CohortMeasurement
from .cohort_checks import cohort_image_checks
from .coverage import organ_coverage
from .metrics import BODY, BODY_METRICS, METRICS, organ_found
from .statistics import TREND_MODELS, anova, compare, compare_coefficients, fit_ols
from .subgroups import SubgroupScheme

__all__ = [
    "SIDES",
    "ALPHA",
    "SUMMARY_COLUMNS",
    "SUBJECT_METRICS",
    "SUBJECT_COLUMNS",
    "band_column",
    "ANOVA_COLUMNS",
    "TREND_COLUMNS",
    "EvaluationResult",
    "metrics_of",
    "subgroup_members",
    "trend_data",
    "subject_rows",
    "summary_rows",
    "anova_rows",
    "trend_rows",
    "compare_cohorts",
]

SIDES = ("generated", "reference")
#: significance level of the report's flags and of the ANOVA agreement
ALPHA = 0.05
#: summary.csv columns, in order (the first 19 are the documented interface)
SUMMARY_COLUMNS = (
    "subgroup", "family", "organ", "metric", "n_generated", "n_reference",
    "generated_mean", "reference_mean", "generated_median", "reference_median",
    "deviation_pct", "p_welch", "p_mannwhitney",
    "deviation_ci_low", "deviation_ci_high", "resolvable", "status", "generated_subjects", "reference_subjects",
    "generated_q1", "generated_q3", "generated_iqr", "generated_std",
    "reference_q1", "reference_q3", "reference_iqr", "reference_std",
    "median_deviation_pct", "cohens_d", "cliffs_delta",
)
SUBJECT_METRICS = ("volume_ml", "suv_mean", "suv_max", "suv_peak", "hu_mean", "fat_fraction")
SUBJECT_COLUMNS = ("cohort", "subject", "study", "age", "sex", "weight", "height", "bmi")


def band_column(family: str) -> str:
    """subjects.csv's column of a subgroup family, ``<family>_band`` (``bmi_band``, ``sex_age_band``): the band
    never shares a name with, or overwrites, the demographic it comes from (``bmi`` 27.3, ``bmi_band`` bmi25-30)."""
    return f"{family}_band"


ANOVA_COLUMNS = ("family", "organ", "metric", "groups", "generated_F", "generated_p", "reference_F",
                 "reference_p", "same_conclusion")
TREND_COLUMNS = ("organ", "metric", "term", "generated_coef", "generated_se", "generated_p", "reference_coef",
                 "reference_se", "reference_p", "difference", "difference_pct", "p_difference", "generated_r2",
                 "reference_r2", "n_generated", "n_reference")

Members = dict[str, dict[str, set[str]]]


@dataclass
class EvaluationResult:
    """The tables of one evaluation; ``evaluate`` fills in where they were written and how long it took."""

    out_dir: Path
    summary: list[dict[str, Any]]
    subjects: list[dict[str, Any]]
    anova: list[dict[str, Any]]
    trends: list[dict[str, Any]]
    image_checks: dict[str, Any]
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)
    #: Fréchet distance, MS-SSIM diversity and memorisation audit (``realism.realism_checks``); filled by ``evaluate``
    realism: dict[str, Any] = field(default_factory=dict)
    #: memorisation.csv rows (empty without a training cohort)
    memorisation: list[dict[str, Any]] = field(default_factory=list)

    def row(self, subgroup: str, organ: str, metric: str) -> dict[str, Any]:
        """The summary row of (subgroup, organ, metric); KeyError if absent."""
        for row in self.summary:
            if (row["subgroup"], row["organ"], row["metric"]) == (subgroup, organ, metric):
                return row
        raise KeyError(f"no summary row for subgroup={subgroup!r}, organ={organ!r}, metric={metric!r}")


def metrics_of(organ: str) -> tuple[str, ...]:
    """The metrics reported for ``organ`` (the whole body has its own)."""
    return BODY_METRICS if organ == BODY else METRICS


def subgroup_members(generated: CohortMeasurement, reference: CohortMeasurement, scheme: SubgroupScheme
                     ) -> Members:
    """side -> subgroup -> keys of the subjects in it."""
    members: Members = {}
    for side, measurement in zip(SIDES, (generated, reference)):
        members[side] = defaultdict(set)
        for m in measurement.subjects:
            for name in scheme.assign(m.subject.demographics).values():
                members[side][name].add(m.subject.key)
    return members


def trend_data(measurement: CohortMeasurement, organ: str, metric: str, predictors: Sequence[str]
               ) -> tuple[list[float], dict[str, list[float]]]:
    """Response and predictor values of one trend, over the subjects in which the organ was found."""
    subjects = [m for m in measurement.subjects
                if metric in m.organs.get(organ, {}) and organ_found(m.organs[organ])]
    y = [m.organs[organ][metric] for m in subjects]
    return y, {p: [m.subject.demographics.quantity(p) for m in subjects] for p in predictors}


def subject_rows(measurement: CohortMeasurement, scheme: SubgroupScheme) -> list[dict[str, Any]]:
    """One row per subject and organ: demographics, subgroups and :data:`SUBJECT_METRICS`."""
    rows = []
    for m in measurement.subjects:
        d = m.subject.demographics
        base = {"cohort": measurement.role, "subject": m.subject.subject_id, "study": m.subject.study_id,
                "age": d.age, "sex": d.sex, "weight": d.weight, "height": d.height, "bmi": round(d.bmi, 3)}
        groups = {band_column(family): name for family, name in scheme.assign(d).items() if family != "all"}
        for organ, values in m.organs.items():
            rows.append({**base, **groups, "organ": organ,
                         **{metric: values.get(metric, math.nan) for metric in SUBJECT_METRICS}})
    return rows


def summary_rows(generated: CohortMeasurement, reference: CohortMeasurement, scheme: SubgroupScheme,
                 organs: Sequence[str], members: Members) -> list[dict[str, Any]]:
    """:func:`~.statistics.compare` per subgroup x organ x metric, for the subgroups either side has,
    with the organ's :func:`~.coverage.organ_coverage` in that subgroup."""
    rows = []
    for family in scheme.families:
        for subgroup in scheme.subgroups(family):
            keys = {side: members[side].get(subgroup, set()) for side in SIDES}
            if not keys["generated"] and not keys["reference"]:
                continue
            for organ in organs:
                coverage = organ_coverage(generated, reference, organ, keys["generated"], keys["reference"])
                for metric in metrics_of(organ):
                    row = {"subgroup": subgroup, "family": family, "organ": organ, "metric": metric,
                           "status": coverage.status, "generated_subjects": coverage.generated_subjects,
                           "reference_subjects": coverage.reference_subjects,
                           **compare(generated.values(organ, metric, keys["generated"]),
                                     reference.values(organ, metric, keys["reference"]))}
                    rows.append({c: row[c] for c in SUMMARY_COLUMNS})
    return rows


def anova_rows(generated: CohortMeasurement, reference: CohortMeasurement, scheme: SubgroupScheme,
               organs: Sequence[str], members: Members) -> list[dict[str, Any]]:
    """One-way ANOVA across the subgroups of each family, on each side, and whether both sides agree."""
    cohorts = dict(zip(SIDES, (generated, reference)))
    rows = []
    for family in scheme.families:
        names = scheme.subgroups(family)
        if len(names) < 2:
            continue
        for organ in organs:
            for metric in metrics_of(organ):
                fits = {side: anova({n: cohorts[side].values(organ, metric, members[side].get(n, set()))
                                     for n in names}) for side in SIDES}
                pg, pr = fits["generated"]["p"], fits["reference"]["p"]
                same = "" if not (math.isfinite(pg) and math.isfinite(pr)) else ((pg < ALPHA) == (pr < ALPHA))
                rows.append({"family": family, "organ": organ, "metric": metric,
                             "groups": min(fits["generated"]["groups"], fits["reference"]["groups"]),
                             "generated_F": fits["generated"]["F"], "generated_p": pg,
                             "reference_F": fits["reference"]["F"], "reference_p": pr,
                             "same_conclusion": same})
    return rows


def trend_rows(generated: CohortMeasurement, reference: CohortMeasurement, organs: Sequence[str]
               ) -> list[dict[str, Any]]:
    """The :data:`~.statistics.TREND_MODELS` fitted on each side and compared coefficient by coefficient."""
    rows = []
    for organ in organs:
        for metric, predictors in TREND_MODELS.items():
            fits = {side: fit_ols(*trend_data(measurement, organ, metric, predictors))
                    for side, measurement in zip(SIDES, (generated, reference))}
            for row in compare_coefficients(fits["generated"], fits["reference"]):
                rows.append({"organ": organ, "metric": metric, **row,
                             "generated_r2": fits["generated"].r2, "reference_r2": fits["reference"].r2,
                             "n_generated": fits["generated"].n, "n_reference": fits["reference"].n})
    return rows


def compare_cohorts(generated: CohortMeasurement, reference: CohortMeasurement, scheme: SubgroupScheme,
                    organs: Sequence[str] = EVALUATION_ORGANS) -> EvaluationResult:
    """Summary, ANOVA, trend and image-check tables from two measured cohorts (nothing is written)."""
    all_organs = (*organs, BODY)
    members = subgroup_members(generated, reference, scheme)
    return EvaluationResult(
        out_dir=Path("."),
        summary=summary_rows(generated, reference, scheme, all_organs, members),
        subjects=subject_rows(generated, scheme) + subject_rows(reference, scheme),
        anova=anova_rows(generated, reference, scheme, all_organs, members),
        trends=trend_rows(generated, reference, all_organs),
        image_checks=cohort_image_checks(generated, reference),
        seconds=0.0,
    )
