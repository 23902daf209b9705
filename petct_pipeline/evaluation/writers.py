"""Writing an evaluation's tables and figures: CSV, JSON, text and the PNG plots, each file atomically.

CSV cells: empty for None and non-finite floats, ``true``/``false`` for booleans, floats with
10 significant digits. JSON: non-finite floats become ``null``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, write_json
from .cohort import CohortMeasurement
from .cohort_checks import pooled_histograms
from .comparison import (
    ANOVA_COLUMNS,
    SIDES,
    SUBJECT_COLUMNS,
    SUBJECT_METRICS,
    SUMMARY_COLUMNS,
    TREND_COLUMNS,
    EvaluationResult,
    band_column,
    subgroup_members,
    trend_data,
)
from .image_checks import HU_EDGES, SUV_EDGES
from .memorisation import MEMORISATION_COLUMNS
from .metrics import BODY, BODY_METRICS
from .plots import box_plot, histogram_plot, trend_plot
from .subgroups import SubgroupScheme

__all__ = ["BOX_METRICS", "TREND_PLOTS", "format_cell", "json_safe", "write_csv", "write_text", "write_tables",
           "write_plots"]

#: metrics drawn as box plots by subgroup (plus the body's fat fraction)
BOX_METRICS = ("volume_ml", "suv_mean", "suv_max", "suv_peak", "hu_mean")
#: (metric, predictor) of the trend scatter plots
TREND_PLOTS = (("volume_ml", "height"), ("volume_ml", "weight"), ("suv_mean", "age"), ("suv_mean", "bmi"))


def format_cell(value: Any) -> str:
    """One CSV cell (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else f"{float(value):.10g}"
    return str(value)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and numpy floats as floats, for strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """``rows`` as CSV with a header of ``columns`` (missing keys give empty cells)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([format_cell(row.get(c)) for c in columns])
    return path


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_tables(result: EvaluationResult, out_dir: Path, scheme: SubgroupScheme) -> dict[str, Path]:
    """subjects.csv, summary.csv, anova.csv, trends.csv, image_checks.json (and memorisation.csv when the audit
    ran); file name -> path."""
    band_columns = tuple(band_column(f) for f in scheme.families if f != "all")
    subject_columns = (*SUBJECT_COLUMNS, *band_columns, "organ", *SUBJECT_METRICS)
    files = {
        "subjects.csv": write_csv(out_dir / "subjects.csv", subject_columns, result.subjects),
        "summary.csv": write_csv(out_dir / "summary.csv", SUMMARY_COLUMNS, result.summary),
        "anova.csv": write_csv(out_dir / "anova.csv", ANOVA_COLUMNS, result.anova),
        "trends.csv": write_csv(out_dir / "trends.csv", TREND_COLUMNS, result.trends),
        "image_checks.json": write_json(json_safe(result.image_checks), out_dir / "image_checks.json"),
    }
    if result.memorisation:
        files["memorisation.csv"] = write_csv(out_dir / "memorisation.csv", MEMORISATION_COLUMNS, result.memorisation)
    return files


def write_plots(generated: CohortMeasurement, reference: CohortMeasurement, scheme: SubgroupScheme,
                organs: Sequence[str], plot_dir: Path) -> dict[str, Path]:
    """Box plots per metric, trend scatter plots and intensity histograms; ``plots/NAME.png`` -> path."""
    members = subgroup_members(generated, reference, scheme)
    cohorts = dict(zip(SIDES, (generated, reference)))
    subgroups = scheme.names()

    def box(metric: str, panel_organs: Sequence[str]) -> Path:
        values = {
            (side, subgroup, organ, metric): cohorts[side].values(organ, metric, members[side].get(subgroup, set()))
            for side in SIDES for subgroup in subgroups for organ in panel_organs
        }
        return box_plot(values, panel_organs, subgroups, metric, plot_dir / f"box_{metric}.png")

    files: dict[str, Path] = {}
    for metric in BOX_METRICS:
        files[f"plots/box_{metric}.png"] = box(metric, (*organs, BODY) if metric in BODY_METRICS else tuple(organs))
    files["plots/box_fat_fraction.png"] = box("fat_fraction", (BODY,))
    for metric, predictor in TREND_PLOTS:
        points = {}
        for side in SIDES:
            for organ in organs:
                y, x = trend_data(cohorts[side], organ, metric, (predictor,))
                points[(side, organ)] = (x[predictor], y)
        name = f"trend_{metric}_vs_{predictor}.png"
        files[f"plots/{name}"] = trend_plot(points, organs, metric, predictor, plot_dir / name)
    histograms = {}
    for side in SIDES:
        hu, suv = pooled_histograms(cohorts[side])
        histograms[side] = (hu, HU_EDGES, suv, SUV_EDGES)
    files["plots/histograms.png"] = histogram_plot(histograms, plot_dir / "histograms.png")
    return files
