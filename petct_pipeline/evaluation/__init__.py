"""Evaluation: organ-wise volume and SUV of generated vs reference PET/CT, by demographic subgroup.

    from petct_pipeline.evaluation import evaluate
    result = evaluate("generated/", "phantoms/", out="report/", segmenter="labels")
    result.row("all", "liver", "suv_mean")["deviation_pct"]

The command line is ``petct evaluate`` (see ``petct_pipeline/commands/evaluate.py``).
"""

from .cohort import CohortMeasurement, SubjectMeasurement, measure_cohort, measure_subject
from .comparison import SUMMARY_COLUMNS, EvaluationResult, compare_cohorts
from .inputs import EvaluationInput, SubjectInput, SubjectVolumes, discover_inputs, load_subject
from .metrics import BODY, BODY_METRICS, METRICS, body_mask, body_metrics, measure_organs, sphere_kernel, suv_peak
from .report import evaluate
from .segmenters import (
    SEGMENTER_SPECS,
    LabelsSegmenter,
    ModelSegmenter,
    Segmenter,
    SegmenterUnavailableError,
    TotalSegmentatorSegmenter,
    make_segmenter,
)
from .statistics import TREND_MODELS, anova, cliffs_delta, cohens_d, compare, describe, fit_ols, spread_ratio
from .subgroups import SubgroupScheme

__all__ = [
    "evaluate",
    "compare_cohorts",
    "EvaluationResult",
    "SUMMARY_COLUMNS",
    "discover_inputs",
    "load_subject",
    "EvaluationInput",
    "SubjectInput",
    "SubjectVolumes",
    "measure_cohort",
    "measure_subject",
    "CohortMeasurement",
    "SubjectMeasurement",
    "METRICS",
    "BODY_METRICS",
    "BODY",
    "measure_organs",
    "body_mask",
    "body_metrics",
    "sphere_kernel",
    "suv_peak",
    "SubgroupScheme",
    "describe",
    "compare",
    "anova",
    "cohens_d",
    "cliffs_delta",
    "fit_ols",
    "TREND_MODELS",
    "spread_ratio",
    "Segmenter",
    "LabelsSegmenter",
    "TotalSegmentatorSegmenter",
    "ModelSegmenter",
    "SegmenterUnavailableError",
    "SEGMENTER_SPECS",
    "make_segmenter",
]
