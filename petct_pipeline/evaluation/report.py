"""``evaluate()``: generated cohort vs reference cohort, organ by organ and subgroup by subgroup.

Plain steps: discover both cohorts (and the training cohort, ``train_reference``), measure every
subject (``cohort``; with the encoder features of ``encoder_features``), compare the cohorts
(``comparison``) and check image-level realism (``realism``), write the tables and plots
(``writers``) and render the Markdown (``markdown``). Writes into ``out`` (these formats are an
interface; other tools read them; a CSV names each column once):

==================  ==========================================================================
subjects.csv        one row per cohort x subject x organ (``body`` = whole body): demographics
                    (``age, sex, weight, height, bmi``), one ``<family>_band`` per subgroup family
                    (``sex_age_band``, ``bmi_band``), ``volume_ml, suv_mean, suv_max, suv_peak,
                    hu_mean, fat_fraction``
summary.csv         one row per subgroup x organ x metric: ``subgroup, family, organ, metric,
                    n_generated, n_reference, generated_mean, reference_mean, generated_median,
                    reference_median, deviation_pct, p_welch, p_mannwhitney, deviation_ci_low,
                    deviation_ci_high, resolvable, status, generated_subjects,
                    reference_subjects`` + quartiles, IQR, SD, median deviation, Cohen's d,
                    Cliff's delta. ``n_*`` count the subjects with the organ measured, ``*_subjects``
                    the subgroup's; ``status`` says why a side has none (``coverage``: e.g.
                    ``outside_generated_fov``); the interval is a 95 % bootstrap of the deviation
summary.md          the same as Markdown tables, one per subgroup
anova.csv           one-way ANOVA across the subgroups of each family, on each side
trends.csv          trend regressions per organ, both sides, compared coefficient by coefficient
image_checks.json   non-finite voxels, HU/SUV histogram Wasserstein distances, sample diversity
memorisation.csv    with ``train_reference`` only: one row per generated subject: ``subject,
                    nearest_training_subject, distance, flagged`` (near copy of a training subject)
evaluation.json     inputs, segmenter, subgroup scheme, timing, versions, file list, and ``realism``:
                    Fréchet distance of encoder features with its floor, MS-SSIM diversity, the
                    memorisation audit's counts, each with its seconds per subject
plots/*.png         box plots per metric, trend scatter plots, intensity histograms
report.md           the readable report embedding tables and plots, with the evaluation time, the
                    organs outside a cohort's field of view and, in words, the deviations the
                    sample sizes cannot resolve
==================  ==========================================================================
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy

from .. import __version__
from ..checkpoints import default_segmenter
from ..errors import InputError
from ..io import relative_name, write_json
from ..models.organ_segmentation import OrganSegmentationModel
from ..organs import EVALUATION_ORGANS, organ_ids
from .cohort import CohortMeasurement, measure_cohort
from .cohort_checks import thumbnail_keys
from .comparison import EvaluationResult, compare_cohorts
from .encoder_features import FeatureExtractor, cohort_features
from .inputs import EvaluationInput, discover_inputs
from .markdown import report_markdown, summary_markdown
from .metrics import BODY
from .realism import TrainingFeatures, realism_checks
from .segmenters import Segmenter, make_segmenter
from .subgroups import SubgroupScheme
from .writers import json_safe, write_plots, write_tables, write_text

__all__ = ["evaluate", "run_info", "feature_extractor"]

FeatureModel = str | os.PathLike | OrganSegmentationModel | FeatureExtractor

logger = logging.getLogger(__name__)


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
    train_reference: str | os.PathLike | None = None,
    feature_model: FeatureModel | None = None,
    realism: bool = True,
) -> EvaluationResult:
    """Compare the generated cohort with the reference cohort and write the report into ``out``.

    ``segmenter`` segments both cohorts unless ``reference_segmenter`` is given (e.g. the phantoms'
    own ``labels`` for the reference and ``model:PATH`` for generated volumes without labels).
    ``train_reference``: the cohort the model was trained on (any layout ``discover_inputs`` reads)
    for the memorisation audit; the reference then plays the held-out cohort. ``feature_model``:
    the organ segmenter whose encoder features the Fréchet distance and the audit use (default the
    shipped one, see :func:`feature_extractor`); ``realism=False`` skips the image-level realism checks.
    """
    started = time.perf_counter()
    scheme = scheme or SubgroupScheme()
    organs = tuple(organs)
    for organ in organs:
        organ_ids(organ)  # ValueError naming the organ if unknown
    if BODY in organs:
        raise InputError(f"'{BODY}' is measured always; list only organs in organs=")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {str(out_dir)!r} exists and is not a folder")

    generated_input = discover_inputs(generated, "generated")
    reference_input = discover_inputs(reference, "reference")
    if generated_input.root.resolve() == reference_input.root.resolve():
        logger.warning("generated and reference are the same folder: every deviation will be 0")
    train_input = discover_inputs(train_reference, "--train-reference") if train_reference is not None else None
    extractor = feature_extractor(feature_model) if realism else None
    if train_input is not None and extractor is None:
        raise InputError("--train-reference needs encoder features for the memorisation audit, but "
                         + ("--no-realism (realism=False) turns them off" if not realism else
                            "no feature model is here (the shipped checkpoints/petct-phantom-seg is missing): "
                            "pass --feature-model PATH"))
    gen_segmenter = make_segmenter(segmenter)
    ref_segmenter = make_segmenter(reference_segmenter) if reference_segmenter is not None else gen_segmenter
    gen_segmenter.check(generated_input, "generated")
    ref_segmenter.check(reference_input, "reference")
    out_dir.mkdir(parents=True, exist_ok=True)

    # compute
    keep_generated = thumbnail_keys(generated_input, duplicates=True)
    keep_reference = thumbnail_keys(reference_input, duplicates=True)
    generated_m = measure_cohort(generated_input, gen_segmenter, "generated", organs, workers, keep_generated,
                                 extractor)
    reference_m = measure_cohort(reference_input, ref_segmenter, "reference", organs, workers, keep_reference,
                                 extractor)
    training = None
    if train_input is not None:
        keys, features, seconds = cohort_features(train_input, extractor, "train-reference")
        training = TrainingFeatures(relative_name(train_input.root, out_dir), keys, features, seconds)
    # aggregate
    result = compare_cohorts(generated_m, reference_m, scheme, organs)
    result.out_dir = out_dir
    if realism:
        result.realism, result.memorisation = realism_checks(
            generated_m, reference_m, extractor.describe() if extractor is not None else None, training)
    # save
    files = write_tables(result, out_dir, scheme)
    files["summary.md"] = write_text(out_dir / "summary.md", summary_markdown(result, scheme))
    if plots:
        files.update(write_plots(generated_m, reference_m, scheme, organs, out_dir / "plots"))
    result.seconds = time.perf_counter() - started
    info = run_info(generated_input, reference_input, gen_segmenter, ref_segmenter, scheme, organs, workers,
                    generated_m, reference_m, result.seconds, out_dir)
    if train_input is not None:
        info["train_reference"] = {"path": relative_name(train_input.root, out_dir), "layout": train_input.layout,
                                   "subjects": len(train_input), "seconds": round(training.seconds, 3)}
    info["realism"] = json_safe(result.realism) if realism else {"run": False, "reason": "realism=False"}
    files["evaluation.json"] = write_json({**info, "files": sorted(files)}, out_dir / "evaluation.json")
    files["report.md"] = write_text(out_dir / "report.md", report_markdown(result, info, scheme, organs, files))
    result.files = files
    logger.info("evaluation of %d + %d subjects took %.1f s; report in %s", len(generated_m.subjects),
                len(reference_m.subjects), result.seconds, out_dir)
    return result


def run_info(generated: EvaluationInput, reference: EvaluationInput, gen_segmenter: Segmenter,
             ref_segmenter: Segmenter, scheme: SubgroupScheme, organs: Sequence[str], workers: int,
             generated_m: CohortMeasurement, reference_m: CohortMeasurement, seconds: float,
             out_dir: Path) -> dict[str, Any]:
    """evaluation.json (without its file list): inputs, segmenters, subgroups, timing and platform.

    Inputs are named relative to ``out_dir`` (skipped studies relative to their cohort), so a report
    carries no local absolute paths and stays valid when the folders move together.
    """
    n = len(generated_m.subjects) + len(reference_m.subjects)
    return {
        "petct_diffusion_version": __version__,
        "generated": cohort_info(generated, generated_m, gen_segmenter, out_dir),
        "reference": cohort_info(reference, reference_m, ref_segmenter, out_dir),
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


def cohort_info(cohort: EvaluationInput, measurement: CohortMeasurement, segmenter: Segmenter,
                out_dir: Path) -> dict[str, Any]:
    """One side of evaluation.json: where it lies (relative to the report), layout, size, skips, segmenter."""
    return {"path": relative_name(cohort.root, out_dir), "layout": cohort.layout, "subjects": len(cohort),
            "skipped": [{"path": relative_name(path, cohort.root), "reason": why} for path, why in cohort.skipped],
            "segmenter": segmenter.describe(), "seconds": round(measurement.seconds, 3)}


def feature_extractor(feature_model: FeatureModel | None = None) -> FeatureExtractor | None:
    """The encoder features of ``feature_model`` (a segmenter folder or model); by default the shipped segmenter
    (``$PETCT_SEGMENTER`` or ``checkpoints/petct-phantom-seg``), None when there is none."""
    if isinstance(feature_model, FeatureExtractor):
        return feature_model
    if feature_model is None:
        path = default_segmenter()
        if path is None:
            logger.warning("no feature model (checkpoints/petct-phantom-seg missing): the Fréchet distance and the "
                           "memorisation audit are not run")
            return None
        feature_model = path
    return FeatureExtractor(feature_model)
