"""Evaluation: organ-wise volume and SUV of generated vs reference PET/CT, by demographic subgroup.

    from petct_pipeline.evaluation import evaluate
    result = evaluate("generated/", "phantoms/", out="report/", segmenter="labels")
    result.row("all", "liver", "suv_mean")["deviation_pct"]

Image-level checks run in the same call: a Fréchet distance of the organ segmenter's encoder
features, MS-SSIM diversity and, with ``train_reference=``, a memorisation audit (``realism``).

The command line is ``petct evaluate`` (see ``petct_pipeline/commands/evaluate.py``). The steps
``evaluate`` runs are public too: ``discover_inputs`` -> ``measure_cohort`` -> ``compare_cohorts``
(tables in memory); writing and rendering are in ``writers`` and ``markdown``. Exported here is
what a user calls or receives; helpers (e.g. ``metrics.sphere_kernel``) stay in their modules.
"""

from .cohort import CohortMeasurement, SubjectMeasurement, measure_cohort
from .comparison import SUMMARY_COLUMNS, EvaluationResult, compare_cohorts
from .encoder_features import FeatureExtractor
from .frechet import frechet_distance
from .inputs import EvaluationInput, SubjectInput, SubjectVolumes, discover_inputs, load_subject
from .memorisation import memorisation_audit
from .metrics import BODY, BODY_METRICS, METRICS, body_metrics, measure_organs, suv_peak
from .ms_ssim import pairwise_ms_ssim
from .realism import realism_checks
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
    # the whole evaluation
    "evaluate",
    "EvaluationResult",
    "SUMMARY_COLUMNS",
    # its steps
    "discover_inputs",
    "load_subject",
    "EvaluationInput",
    "SubjectInput",
    "SubjectVolumes",
    "measure_cohort",
    "CohortMeasurement",
    "SubjectMeasurement",
    "compare_cohorts",
    # what is measured
    "METRICS",
    "BODY_METRICS",
    "BODY",
    "measure_organs",
    "body_metrics",
    "suv_peak",
    # how the cohorts are compared
    "SubgroupScheme",
    "describe",
    "compare",
    "spread_ratio",
    "anova",
    "cohens_d",
    "cliffs_delta",
    "fit_ols",
    "TREND_MODELS",
    # image-level realism, diversity and memorisation
    "FeatureExtractor",
    "frechet_distance",
    "pairwise_ms_ssim",
    "memorisation_audit",
    "realism_checks",
    # segmenters
    "Segmenter",
    "LabelsSegmenter",
    "TotalSegmentatorSegmenter",
    "ModelSegmenter",
    "SegmenterUnavailableError",
    "SEGMENTER_SPECS",
    "make_segmenter",
]
