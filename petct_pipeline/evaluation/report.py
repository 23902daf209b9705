"""``evaluate()``: generated cohort vs reference cohort, organ by organ and subgroup by subgroup.

Writes into ``out`` (these formats are an interface; other tools read them):

==================  ==========================================================================
subjects.csv        one row per cohort x subject x organ (``body`` = whole body): demographics,
                    subgroups, ``volume_ml, suv_mean, suv_max, suv_peak, hu_mean, fat_fraction``
summary.csv         one row per subgroup x organ x metric: ``subgroup, family, organ, metric,
                    n_generated, n_reference, generated_mean, reference_mean, generated_median,
                    reference_median, deviation_pct, p_welch, p_mannwhitney`` + quartiles, IQR,
                    SD, median deviation, Cohen's d, Cliff's delta
summary.md          the same as Markdown tables, one per subgroup
anova.csv           one-way ANOVA across the subgroups of each family, on each side
trends.csv          trend regressions per organ, both sides, compared coefficient by coefficient
image_checks.json   non-finite voxels, HU/SUV histogram Wasserstein distances, sample diversity
evaluation.json     inputs, segmenter, subgroup scheme, timing, versions, file list
plots/*.png         box plots per metric, trend scatter plots, intensity histograms
report.md           the readable report embedding tables and plots, with the evaluation time
==================  ==========================================================================
"""

from __future__ import annotations

import csv
import logging
import math
import os
import platform
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..io import atomic_path, write_json
from ..organs import EVALUATION_ORGANS, organ_ids
from .cohort import CohortMeasurement, measure_cohort
from .image_checks import HU_EDGES, SUV_EDGES, histogram_distance, mean_pairwise_distance
from .inputs import EvaluationInput, discover_inputs
from .metrics import BODY, BODY_METRICS, METRICS
from .segmenters import Segmenter, make_segmenter
from .statistics import TREND_MODELS, anova, compare, compare_coefficients, fit_ols, spread_ratio
from .subgroups import SubgroupScheme

__all__ = ["SUMMARY_COLUMNS", "SUBJECT_COLUMNS", "EvaluationResult", "evaluate", "compare_cohorts"]

logger = logging.getLogger(__name__)

SIDES = ("generated", "reference")
#: summary.csv columns, in order (the first 13 are the documented interface)
SUMMARY_COLUMNS = (
    "subgroup", "family", "organ", "metric", "n_generated", "n_reference",
    "generated_mean", "reference_mean", "generated_median", "reference_median",
    "deviation_pct", "p_welch", "p_mannwhitney",
    "generated_q1", "generated_q3", "generated_iqr", "generated_std",
    "reference_q1", "reference_q3", "reference_iqr", "reference_std",
    "median_deviation_pct", "cohens_d", "cliffs_delta",
)
SUBJECT_METRICS = ("volume_ml", "suv_mean", "suv_max", "suv_peak", "hu_mean", "fat_fraction")
SUBJECT_COLUMNS = ("cohort", "subject", "study", "age", "sex", "weight", "height", "bmi")
ANOVA_COLUMNS = ("family", "organ", "metric", "groups", "generated_F", "generated_p", "reference_F",
                 "reference_p", "same_conclusion")
TREND_COLUMNS = ("organ", "metric", "term", "generated_coef", "generated_se", "generated_p", "reference_coef",
                 "reference_se", "reference_p", "difference", "difference_pct", "p_difference", "generated_r2",
                 "reference_r2", "n_generated", "n_reference")
ALPHA = 0.05
_BOX_METRICS = ("volume_ml", "suv_mean", "suv_max", "suv_peak", "hu_mean")
_TREND_PLOTS = (("volume_ml", "height"), ("volume_ml", "weight"), ("suv_mean", "age"), ("suv_mean", "bmi"))
_DIVERSITY_BASELINE = 20


@dataclass
class EvaluationResult:
    out_dir: Path
    summary: list[dict[str, Any]]
    subjects: list[dict[str, Any]]
    anova: list[dict[str, Any]]
    trends: list[dict[str, Any]]
    image_checks: dict[str, Any]
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    def row(self, subgroup: str, organ: str, metric: str) -> dict[str, Any]:
        """The summary row of (subgroup, organ, metric); KeyError if absent."""
        for row in self.summary:
            if (row["subgroup"], row["organ"], row["metric"]) == (subgroup, organ, metric):
                return row
        raise KeyError(f"no summary row for subgroup={subgroup!r}, organ={organ!r}, metric={metric!r}")


# ---------------------------------------------------------------------------------- entry point


def evaluate(
    generated: str | os.PathLike,
    reference: str | os.PathLike,
    out: str | os.PathLike,
    segmenter: str | Segmenter = "labels",
    reference_segmenter: str | Segmenter | None = None,
    workers: int = 1,
    scheme: SubgroupScheme | None = None,
    organs: Sequence[str] = EVALUATION_ORGANS,
    plots: bool = True,
) -> EvaluationResult:
    """Compare the generated cohort with the reference cohort and write the report into ``out``.

    ``segmenter`` segments both cohorts unless ``reference_segmenter`` is given (e.g. the phantoms'
    own ``labels`` for the reference and ``model:PATH`` for generated volumes without labels).
    """
    started = time.perf_counter()
    scheme = scheme or SubgroupScheme()
    organs = tuple(organs)
    for organ in organs:
        organ_ids(organ)  # ValueError naming the organ if unknown
    if BODY in organs:
        raise ValueError(f"'{BODY}' is measured always; list only organs in organs=")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {str(out_dir)!r} exists and is not a folder")

    generated_input = discover_inputs(generated, "generated")
    reference_input = discover_inputs(reference, "reference")
    if generated_input.root.resolve() == reference_input.root.resolve():
        logger.warning("generated and reference are the same folder: every deviation will be 0")
    gen_segmenter = make_segmenter(segmenter)
    ref_segmenter = make_segmenter(reference_segmenter) if reference_segmenter is not None else gen_segmenter
    gen_segmenter.check(generated_input, "generated")
    ref_segmenter.check(reference_input, "reference")
    out_dir.mkdir(parents=True, exist_ok=True)

    keep_generated = _thumbnail_keys(generated_input, duplicates=True)
    keep_reference = _thumbnail_keys(reference_input, duplicates=False)
    generated_m = measure_cohort(generated_input, gen_segmenter, "generated", organs, workers, keep_generated)
    reference_m = measure_cohort(reference_input, ref_segmenter, "reference", organs, workers, keep_reference)

    result = compare_cohorts(generated_m, reference_m, scheme, organs)
    result.out_dir = out_dir
    files = _write_tables(result, out_dir, scheme)
    if plots:
        files.update(_write_plots(generated_m, reference_m, scheme, organs, out_dir / "plots"))
    result.seconds = time.perf_counter() - started
    info = _run_info(generated_input, reference_input, gen_segmenter, ref_segmenter, scheme, organs, workers,
                     generated_m, reference_m, result.seconds)
    files["evaluation.json"] = write_json({**info, "files": sorted(files)}, out_dir / "evaluation.json")
    files["report.md"] = _write_text(out_dir / "report.md", _report_markdown(result, info, scheme, organs, files))
    result.files = files
    logger.info("evaluation of %d + %d subjects took %.1f s; report in %s", len(generated_m.subjects),
                len(reference_m.subjects), result.seconds, out_dir)
    return result


def _demographic_key(subject) -> tuple:
    d = subject.demographics
    return (d.sex, round(d.age, 1), round(d.weight, 1), round(d.height, 1))


def _thumbnail_keys(cohort: EvaluationInput, duplicates: bool) -> set[str]:
    keys = {s.key for s in cohort.subjects[:_DIVERSITY_BASELINE]}
    if duplicates:
        groups: dict[tuple, list[str]] = defaultdict(list)
        for subject in cohort.subjects:
            groups[_demographic_key(subject)].append(subject.key)
        keys |= {key for members in groups.values() if len(members) > 1 for key in members[:_DIVERSITY_BASELINE]}
    return keys


# ---------------------------------------------------------------------------------- comparison


def _subject_rows(measurement: CohortMeasurement, scheme: SubgroupScheme) -> list[dict[str, Any]]:
    rows = []
    for m in measurement.subjects:
        d = m.subject.demographics
        base = {"cohort": measurement.role, "subject": m.subject.subject_id, "study": m.subject.study_id,
                "age": d.age, "sex": d.sex, "weight": d.weight, "height": d.height, "bmi": round(d.bmi, 3)}
        groups = {family: name for family, name in scheme.assign(d).items() if family != "all"}
        for organ, values in m.organs.items():
            rows.append({**base, **groups, "organ": organ,
                         **{metric: values.get(metric, math.nan) for metric in SUBJECT_METRICS}})
    return rows


def _metrics_of(organ: str) -> tuple[str, ...]:
    return BODY_METRICS if organ == BODY else METRICS


def _grouped(measurement: CohortMeasurement, scheme: SubgroupScheme) -> dict[str, set[str]]:
    """subgroup -> keys of the subjects in it."""
    members: dict[str, set[str]] = defaultdict(set)
    for m in measurement.subjects:
        for name in scheme.assign(m.subject.demographics).values():
            members[name].add(m.subject.key)
    return members


def compare_cohorts(generated: CohortMeasurement, reference: CohortMeasurement, scheme: SubgroupScheme,
                    organs: Sequence[str] = EVALUATION_ORGANS) -> EvaluationResult:
    """Summary, ANOVA, trend and image-check tables from two measured cohorts (nothing is written)."""
    all_organs = (*organs, BODY)
    members = {"generated": _grouped(generated, scheme), "reference": _grouped(reference, scheme)}
    cohorts = {"generated": generated, "reference": reference}

    summary = []
    for family in scheme.families:
        for subgroup in scheme.subgroups(family):
            keys = {side: members[side].get(subgroup, set()) for side in SIDES}
            if not keys["generated"] and not keys["reference"]:
                continue
            for organ in all_organs:
                for metric in _metrics_of(organ):
                    row = compare(generated.values(organ, metric, keys["generated"]),
                                  reference.values(organ, metric, keys["reference"]))
                    summary.append({"subgroup": subgroup, "family": family, "organ": organ, "metric": metric,
                                    **{c: row[c] for c in SUMMARY_COLUMNS[4:]}})

    anova_rows = []
    for family in scheme.families:
        names = scheme.subgroups(family)
        if len(names) < 2:
            continue
        for organ in all_organs:
            for metric in _metrics_of(organ):
                fits = {side: anova({n: cohorts[side].values(organ, metric, members[side].get(n, set()))
                                     for n in names}) for side in SIDES}
                pg, pr = fits["generated"]["p"], fits["reference"]["p"]
                same = "" if not (math.isfinite(pg) and math.isfinite(pr)) else ((pg < ALPHA) == (pr < ALPHA))
                anova_rows.append({"family": family, "organ": organ, "metric": metric,
                                   "groups": min(fits["generated"]["groups"], fits["reference"]["groups"]),
                                   "generated_F": fits["generated"]["F"], "generated_p": pg,
                                   "reference_F": fits["reference"]["F"], "reference_p": pr,
                                   "same_conclusion": same})

    trend_rows = []
    for organ in all_organs:
        for metric, predictors in TREND_MODELS.items():
            fits = {}
            for side in SIDES:
                subjects = [m for m in cohorts[side].subjects if metric in m.organs.get(organ, {})]
                y = [m.organs[organ][metric] for m in subjects]
                if metric == "volume_ml" and organ != BODY:
                    y = [v if v > 0 else math.nan for v in y]  # an organ not found is not a 0 mL organ for a trend
                X = {p: [m.subject.demographics.quantity(p) for m in subjects] for p in predictors}
                fits[side] = fit_ols(y, X)
            for row in compare_coefficients(fits["generated"], fits["reference"]):
                trend_rows.append({"organ": organ, "metric": metric, **row,
                                   "generated_r2": fits["generated"].r2, "reference_r2": fits["reference"].r2,
                                   "n_generated": fits["generated"].n, "n_reference": fits["reference"].n})

    subjects = _subject_rows(generated, scheme) + _subject_rows(reference, scheme)
    checks = image_checks(generated, reference)
    return EvaluationResult(out_dir=Path("."), summary=summary, subjects=subjects, anova=anova_rows,
                            trends=trend_rows, image_checks=checks, seconds=0.0)


def _pooled(measurement: CohortMeasurement) -> tuple[np.ndarray, np.ndarray]:
    hu = np.zeros(len(HU_EDGES) - 1, dtype=np.int64)
    suv = np.zeros(len(SUV_EDGES) - 1, dtype=np.int64)
    for m in measurement.subjects:
        hu += m.hu_counts
        suv += m.suv_counts
    return hu, suv


def image_checks(generated: CohortMeasurement, reference: CohortMeasurement) -> dict[str, Any]:
    out: dict[str, Any] = {"nonfinite": {}}
    for side, measurement in (("generated", generated), ("reference", reference)):
        bad = [m for m in measurement.subjects if m.nonfinite_ct or m.nonfinite_pet]
        out["nonfinite"][side] = {
            "subjects": len(measurement.subjects),
            "subjects_with_nonfinite": len(bad),
            "nonfinite_ct_voxels": int(sum(m.nonfinite_ct for m in measurement.subjects)),
            "nonfinite_pet_voxels": int(sum(m.nonfinite_pet for m in measurement.subjects)),
            "examples": [m.subject.key for m in bad[:10]],
        }
    gen_hu, gen_suv = _pooled(generated)
    ref_hu, ref_suv = _pooled(reference)
    out["wasserstein"] = {
        "hu": histogram_distance(gen_hu, ref_hu, HU_EDGES),
        "suv": histogram_distance(gen_suv, ref_suv, SUV_EDGES),
        "note": "1-Wasserstein distance between pooled body-voxel histograms (HU bins of 8, SUV bins of 0.05)",
    }
    groups: dict[tuple, list] = defaultdict(list)
    for m in generated.subjects:
        if m.thumbnail is not None:
            groups[_demographic_key(m.subject)].append(m)
    within = []
    for key, items in groups.items():
        if len(items) < 2:
            continue
        stats = mean_pairwise_distance([m.thumbnail for m in items])
        within.append({"sex": key[0], "age": key[1], "weight": key[2], "height": key[3], **stats})
    baseline = {
        side: mean_pairwise_distance([m.thumbnail for m in measurement.subjects if m.thumbnail is not None],
                                     max_items=_DIVERSITY_BASELINE)
        for side, measurement in (("generated", generated), ("reference", reference))
    }
    within_hu = [g["hu_mad"] for g in within]
    within_suv = [g["suv_mad"] for g in within]
    out["diversity"] = {
        "same_demographics_groups": within,
        "mean_within_hu_mad": float(np.mean(within_hu)) if within_hu else math.nan,
        "mean_within_suv_mad": float(np.mean(within_suv)) if within_suv else math.nan,
        "between_subjects": baseline,
        "note": "mean absolute voxel difference on ~16 mm thumbnails; within = generated samples sharing "
                "demographics (0 = identical samples, mode collapse); between_subjects = different subjects",
    }
    return out


# ---------------------------------------------------------------------------------- writing


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else f"{float(value):.10g}"
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_format(row.get(c)) for c in columns])
    return path


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _write_tables(result: EvaluationResult, out_dir: Path, scheme: SubgroupScheme) -> dict[str, Path]:
    group_columns = tuple(f for f in scheme.families if f != "all")
    subject_columns = (*SUBJECT_COLUMNS, *group_columns, "organ", *SUBJECT_METRICS)
    files = {
        "subjects.csv": _write_csv(out_dir / "subjects.csv", subject_columns, result.subjects),
        "summary.csv": _write_csv(out_dir / "summary.csv", SUMMARY_COLUMNS, result.summary),
        "anova.csv": _write_csv(out_dir / "anova.csv", ANOVA_COLUMNS, result.anova),
        "trends.csv": _write_csv(out_dir / "trends.csv", TREND_COLUMNS, result.trends),
        "image_checks.json": write_json(_json_safe(result.image_checks), out_dir / "image_checks.json"),
    }
    files["summary.md"] = _write_text(out_dir / "summary.md", _summary_markdown(result, scheme))
    return files


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _write_plots(generated: CohortMeasurement, reference: CohortMeasurement, scheme: SubgroupScheme,
                 organs: Sequence[str], plot_dir: Path) -> dict[str, Path]:
    from . import plots

    members = {"generated": _grouped(generated, scheme), "reference": _grouped(reference, scheme)}
    cohorts = {"generated": generated, "reference": reference}
    subgroups = scheme.names()
    files: dict[str, Path] = {}
    for metric in _BOX_METRICS:
        panel_organs = (*organs, BODY) if metric in BODY_METRICS else tuple(organs)
        values = {
            (side, subgroup, organ, metric): cohorts[side].values(organ, metric, members[side].get(subgroup, set()))
            for side in SIDES for subgroup in subgroups for organ in panel_organs
        }
        name = f"plots/box_{metric}.png"
        files[name] = plots.box_plot(values, panel_organs, subgroups, metric, plot_dir / f"box_{metric}.png")
    values = {(side, subgroup, BODY, "fat_fraction"): cohorts[side].values(BODY, "fat_fraction",
                                                                             members[side].get(subgroup, set()))
              for side in SIDES for subgroup in subgroups}
    files["plots/box_fat_fraction.png"] = plots.box_plot(values, (BODY,), subgroups, "fat_fraction",
                                                         plot_dir / "box_fat_fraction.png")
    for metric, predictor in _TREND_PLOTS:
        points = {}
        for side in SIDES:
            for organ in organs:
                xs, ys = [], []
                for m in cohorts[side].subjects:
                    value = m.organs[organ][metric]
                    if metric == "volume_ml" and value <= 0:
                        continue
                    xs.append(m.subject.demographics.quantity(predictor))
                    ys.append(value)
                points[(side, organ)] = (xs, ys)
        name = f"trend_{metric}_vs_{predictor}.png"
        files[f"plots/{name}"] = plots.trend_plot(points, organs, metric, predictor, plot_dir / name)
    histograms = {}
    for side in SIDES:
        hu, suv = _pooled(cohorts[side])
        histograms[side] = (hu, HU_EDGES, suv, SUV_EDGES)
    files["plots/histograms.png"] = plots.histogram_plot(histograms, plot_dir / "histograms.png")
    return files


def _run_info(generated: EvaluationInput, reference: EvaluationInput, gen_segmenter: Segmenter,
              ref_segmenter: Segmenter, scheme: SubgroupScheme, organs: Sequence[str], workers: int,
              generated_m: CohortMeasurement, reference_m: CohortMeasurement, seconds: float) -> dict[str, Any]:
    import scipy

    n = len(generated_m.subjects) + len(reference_m.subjects)
    return {
        "petct_diffusion_version": __version__,
        "generated": {"path": str(generated.root), "layout": generated.layout, "subjects": len(generated),
                      "skipped": [{"path": p, "reason": r} for p, r in generated.skipped],
                      "segmenter": gen_segmenter.describe(), "seconds": round(generated_m.seconds, 3)},
        "reference": {"path": str(reference.root), "layout": reference.layout, "subjects": len(reference),
                      "skipped": [{"path": p, "reason": r} for p, r in reference.skipped],
                      "segmenter": ref_segmenter.describe(), "seconds": round(reference_m.seconds, 3)},
        "organs": list(organs),
        "subgroups": {"families": list(scheme.families), "age_split": scheme.age_split,
                      "bmi_edges": list(scheme.bmi_edges)},
        "workers": workers,
        "timing": {
            "wall_seconds": round(seconds, 3),
            "subjects": n,
            "seconds_per_subject": round(seconds / n, 3) if n else None,
            "measure_seconds_per_subject": round(
                float(np.mean([m.seconds for m in generated_m.subjects + reference_m.subjects])), 3) if n else None,
        },
        "platform": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                     "machine": platform.machine(), "cpus": os.cpu_count()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ---------------------------------------------------------------------------------- markdown


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int | np.integer):
        return str(int(value))
    value = float(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def _pct(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):+.1f}%"


def _p(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _spread_cells(row: dict[str, Any] | None) -> list[str]:
    if row is None:
        return ["", ""]
    return [_num(spread_ratio(row), 2), _pct(row["median_deviation_pct"])]


def _describe(row: dict[str, Any], side: str) -> str:
    return (f"{_num(row[f'{side}_mean'])} ({_num(row[f'{side}_median'])} "
            f"[{_num(row[f'{side}_q1'])}, {_num(row[f'{side}_q3'])}])")


def _summary_markdown(result: EvaluationResult, scheme: SubgroupScheme) -> str:
    parts = [
        "# Summary: generated vs reference, by subgroup, organ and metric",
        "",
        "Each cell: mean (median [Q1, Q3]). Deviation = 100 x (generated mean - reference mean) / "
        "reference mean. p: Welch's t-test and Mann-Whitney U, two-sided. d: Cohen's d (pooled SD).",
        "Units: volume mL, SUV g/mL, CT HU; `body` is the whole body (fat fraction: share of body voxels "
        "in -190..-30 HU).",
        "",
        "Subgroups: " + "; ".join(f"`{name}` = {rule}" for name, rule in scheme.describe()),
    ]
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in result.summary:
        by_group[row["subgroup"]].append(row)
    for subgroup, rows in by_group.items():
        n_gen = max(r["n_generated"] for r in rows if r["metric"] == "volume_ml")
        n_ref = max(r["n_reference"] for r in rows if r["metric"] == "volume_ml")
        parts += ["", f"## {subgroup} (generated n={n_gen}, reference n={n_ref})", ""]
        parts.append(_table(
            ("organ", "metric", "n gen/ref", "generated", "reference", "deviation", "p Welch", "p MWU", "d"),
            [(r["organ"], r["metric"], f"{r['n_generated']}/{r['n_reference']}", _describe(r, "generated"),
              _describe(r, "reference"), _pct(r["deviation_pct"]), _p(r["p_welch"]), _p(r["p_mannwhitney"]),
              _num(r["cohens_d"], 2)) for r in rows]))
    return "\n".join(parts) + "\n"


def _report_markdown(result: EvaluationResult, info: dict[str, Any], scheme: SubgroupScheme,
                     organs: Sequence[str], files: dict[str, Path]) -> str:
    gen, ref = info["generated"], info["reference"]
    timing = info["timing"]
    lines = [
        "# PET/CT evaluation report: generated vs reference",
        "",
        f"*petct-diffusion {info['petct_diffusion_version']}, {info['finished']}.*",
        "",
        "## What was compared",
        "",
        _table(("", "generated", "reference"), [
            ("folder", f"`{gen['path']}`", f"`{ref['path']}`"),
            ("layout", gen["layout"], ref["layout"]),
            ("subjects", gen["subjects"], ref["subjects"]),
            ("skipped", len(gen["skipped"]), len(ref["skipped"])),
            ("segmenter", gen["segmenter"], ref["segmenter"]),
        ]),
        "",
        f"Organs: {', '.join(organs)}, plus `body` (whole body). Metrics: volume (mL), SUVmean, SUVmax, "
        "SUVpeak (mean SUV of the hottest 1 mL sphere inside the organ), mean CT (HU); for the body also "
        "the fat fraction (share of body voxels in -190..-30 HU).",
        "",
        "Subgroups: " + "; ".join(f"`{name}` = {rule}" for name, rule in scheme.describe()) + ".",
        "",
        f"**Evaluation time: {timing['wall_seconds']:.1f} s for {timing['subjects']} subjects "
        f"({timing['seconds_per_subject']:.2f} s per subject wall time, {info['workers']} worker(s); "
        f"{timing['measure_seconds_per_subject']:.2f} s per subject to load, segment and measure).**",
        "",
        "## Headline: all subjects",
        "",
        "Relative deviation of the generated mean from the reference mean (%), per organ and metric; "
        "`*` marks a difference significant by both Welch's t-test and Mann-Whitney U at p < 0.05.",
        "",
    ]
    all_rows = {(r["organ"], r["metric"]): r for r in result.summary if r["subgroup"] == "all"}
    metrics = (*METRICS, "fat_fraction")
    table_rows = []
    for organ in (*organs, BODY):
        cells = [organ]
        for metric in metrics:
            row = all_rows.get((organ, metric))
            if row is None:
                cells.append("")
                continue
            star = "*" if (row["p_welch"] is not None and row["p_welch"] < ALPHA
                           and row["p_mannwhitney"] is not None and row["p_mannwhitney"] < ALPHA) else ""
            cells.append(_pct(row["deviation_pct"]) + star)
        table_rows.append(cells)
    lines.append(_table(("organ", *metrics), table_rows))
    lines += ["", "Means (generated / reference) for subgroup `all`:", ""]
    lines.append(_table(("organ", *metrics), [
        [organ] + [(f"{_num(all_rows[(organ, m)]['generated_mean'])} / {_num(all_rows[(organ, m)]['reference_mean'])}"
                    if (organ, m) in all_rows else "") for m in metrics]
        for organ in (*organs, BODY)]))

    lines += ["", "## SUVmean and volume by subgroup", "",
              "Deviation (%) of the generated mean per subgroup (rows) and organ (columns).", ""]
    for metric in ("suv_mean", "volume_ml"):
        lines += [f"**{metric}**", ""]
        rows = []
        for subgroup in scheme.names():
            cells = [f"`{subgroup}`"]
            present = False
            for organ in organs:
                match = [r for r in result.summary if r["subgroup"] == subgroup and r["organ"] == organ
                         and r["metric"] == metric]
                if match:
                    present = True
                    cells.append(_pct(match[0]["deviation_pct"]))
                else:
                    cells.append("")
            if present:
                rows.append(cells)
        lines += [_table(("subgroup", *organs), rows), ""]
    lines += ["Full tables: [summary.md](summary.md) (Markdown) and [summary.csv](summary.csv); one row per "
              "subject and organ: [subjects.csv](subjects.csv).", ""]

    lines += ["## Spread across subjects", "",
              "Generated SD / reference SD over all subjects (1 = the generated subjects vary as much as the "
              "reference; below 1 they are more alike) and the deviation of the median. A model that misses a "
              "metric's heavy upper tail shows a spread below 1 and a mean deviation larger than its median "
              "deviation.", ""]
    spread_metrics = ("suv_mean", "volume_ml")
    lines += [_table(("organ", *(f"{m} {column}" for m in spread_metrics for column in ("spread", "median dev."))),
                     [[organ] + [cell for m in spread_metrics for cell in _spread_cells(all_rows.get((organ, m)))]
                      for organ in (*organs, BODY)]), ""]

    flagged = [r for r in result.summary if r["deviation_pct"] is not None and math.isfinite(r["deviation_pct"])
               and abs(r["deviation_pct"]) > 5.0 and r["p_welch"] is not None and math.isfinite(r["p_welch"])
               and r["p_welch"] < ALPHA]
    lines += ["## Largest significant deviations", ""]
    if flagged:
        flagged.sort(key=lambda r: -abs(r["deviation_pct"]))
        lines.append(_table(("subgroup", "organ", "metric", "generated mean", "reference mean", "deviation",
                             "p Welch", "p MWU", "d"),
                            [(r["subgroup"], r["organ"], r["metric"], _num(r["generated_mean"]),
                              _num(r["reference_mean"]), _pct(r["deviation_pct"]), _p(r["p_welch"]),
                              _p(r["p_mannwhitney"]), _num(r["cohens_d"], 2)) for r in flagged[:15]]))
    else:
        lines.append("No deviation larger than 5% with p < 0.05 (Welch).")

    lines += ["", "## Do subgroup differences agree? (one-way ANOVA)", "",
              "Whether a metric differs across the subgroups of a family, tested on each side separately; "
              "`same` means both sides reach the same conclusion at p < 0.05. Full table: [anova.csv](anova.csv).",
              ""]
    anova_rows = [r for r in result.anova if r["metric"] in ("volume_ml", "suv_mean") and r["organ"] != BODY]
    lines.append(_table(("family", "organ", "metric", "generated F (p)", "reference F (p)", "same"),
                        [(r["family"], r["organ"], r["metric"], f"{_num(r['generated_F'])} ({_p(r['generated_p'])})",
                          f"{_num(r['reference_F'])} ({_p(r['reference_p'])})",
                          {True: "yes", False: "**no**", "": "–"}[r["same_conclusion"]]) for r in anova_rows]))

    lines += ["", "## Trends with demographics (regressions fitted on each side)", "",
              "Organ volume ~ height + weight + sex (M=1) + age; SUVmean ~ age + BMI. Coefficients per unit "
              "(cm, kg, year, kg/m^2); p diff: z-test of the difference of the two coefficients. Full table: "
              "[trends.csv](trends.csv).", ""]
    trend_rows = [r for r in result.trends if r["term"] != "intercept" and r["organ"] != BODY]
    lines.append(_table(("organ", "metric", "term", "generated", "reference", "difference", "p diff"),
                        [(r["organ"], r["metric"], r["term"],
                          f"{_num(r['generated_coef'])} ± {_num(r['generated_se'], 2)}",
                          f"{_num(r['reference_coef'])} ± {_num(r['reference_se'], 2)}",
                          _pct(r["difference_pct"]), _p(r["p_difference"])) for r in trend_rows]))

    checks = result.image_checks
    nonfinite = checks["nonfinite"]
    diversity = checks["diversity"]
    lines += ["", "## Image checks", "",
              _table(("check", "generated", "reference"), [
                  ("subjects with NaN/inf voxels", nonfinite["generated"]["subjects_with_nonfinite"],
                   nonfinite["reference"]["subjects_with_nonfinite"]),
                  ("NaN/inf voxels (CT + PET)",
                   nonfinite["generated"]["nonfinite_ct_voxels"] + nonfinite["generated"]["nonfinite_pet_voxels"],
                   nonfinite["reference"]["nonfinite_ct_voxels"] + nonfinite["reference"]["nonfinite_pet_voxels"]),
                  ("mean pairwise distance between subjects, HU / SUV",
                   f"{_num(diversity['between_subjects']['generated']['hu_mad'])} / "
                   f"{_num(diversity['between_subjects']['generated']['suv_mad'])}",
                   f"{_num(diversity['between_subjects']['reference']['hu_mad'])} / "
                   f"{_num(diversity['between_subjects']['reference']['suv_mad'])}"),
              ]),
              "",
              f"Histogram distance of body voxels (1-Wasserstein): CT {_num(checks['wasserstein']['hu'])} HU, "
              f"PET {_num(checks['wasserstein']['suv'])} SUV.",
              ""]
    groups = diversity["same_demographics_groups"]
    if groups:
        lines.append(
            f"Sample diversity: {len(groups)} group(s) of generated samples share demographics; their mean "
            f"pairwise distance is {_num(diversity['mean_within_hu_mad'])} HU / "
            f"{_num(diversity['mean_within_suv_mad'])} SUV (0 would mean identical samples: mode collapse; "
            "compare with the distance between different subjects above).")
    else:
        lines.append("Sample diversity: no two generated samples share demographics, so within-demographics "
                     "diversity was not measured (generate several seeds per demographic tuple to check it).")
    lines += ["", "Details: [image_checks.json](image_checks.json).", "", "## Plots", ""]
    captions = {
        "box": "Box plots by subgroup (orange: generated, blue: reference)",
        "trend": "Trends (points: subjects; lines: least squares per side)",
        "histograms": "Intensity histograms of body voxels",
    }
    for name in sorted(p for p in files if p.startswith("plots/")):
        stem = Path(name).stem
        kind = stem.split("_")[0]
        lines += [f"**{captions.get(kind, stem)}: {stem.partition('_')[2] or stem}**", "", f"![{stem}]({name})", ""]
    lines += ["## How to read this report", "",
              "- A good generator has deviations near 0% and large p-values in every subgroup, reproduces "
              "the reference's subgroup differences (ANOVA `same`) and trends (coefficients close, p diff "
              "large), has no NaN/inf voxels, small histogram distances and non-zero sample diversity.",
              "- With small subgroups p-values are weak evidence either way; look at deviations and effect "
              "sizes (Cohen's d around 0.2 is small, 0.8 large).",
              "- Organ metrics depend on the segmenter; compare like with like (the same segmenter on both "
              "sides where possible).", ""]
    return "\n".join(lines)
