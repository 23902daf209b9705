"""Image checks of two measured cohorts: non-finite voxels, histogram distances, sample diversity.

The per-subject pieces (histograms, thumbnails, distances) are in ``image_checks``; this module
pools them over each cohort and compares the two. It also decides whose thumbnails
``measure_cohort`` keeps, because diversity is the only use of thumbnails.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from .cohort import CohortMeasurement
from .image_checks import HU_EDGES, SUV_EDGES, histogram_distance, mean_pairwise_distance
from .inputs import EvaluationInput, SubjectInput

__all__ = ["DIVERSITY_BASELINE", "demographic_key", "thumbnail_keys", "pooled_histograms", "cohort_image_checks"]

#: subjects per cohort whose pairwise distance gives the between-subjects scale of diversity
DIVERSITY_BASELINE = 20


def demographic_key(subject: SubjectInput) -> tuple[str, float, float, float]:
    """(sex, age, weight, height), rounded: subjects with equal keys were generated from the same input."""
    d = subject.demographics
    return (d.sex, round(d.age, 1), round(d.weight, 1), round(d.height, 1))


def thumbnail_keys(cohort: EvaluationInput, duplicates: bool) -> set[str]:
    """Keys of the subjects whose thumbnails the diversity check needs (``duplicates``: also same-input groups)."""
    keys = {s.key for s in cohort.subjects[:DIVERSITY_BASELINE]}
    if duplicates:
        groups: dict[tuple, list[str]] = defaultdict(list)
        for subject in cohort.subjects:
            groups[demographic_key(subject)].append(subject.key)
        keys |= {key for members in groups.values() if len(members) > 1 for key in members[:DIVERSITY_BASELINE]}
    return keys


def pooled_histograms(measurement: CohortMeasurement) -> tuple[np.ndarray, np.ndarray]:
    """Body-voxel HU and SUV counts summed over the cohort (bins: ``HU_EDGES``, ``SUV_EDGES``)."""
    hu = np.zeros(len(HU_EDGES) - 1, dtype=np.int64)
    suv = np.zeros(len(SUV_EDGES) - 1, dtype=np.int64)
    for m in measurement.subjects:
        hu += m.hu_counts
        suv += m.suv_counts
    return hu, suv


def cohort_image_checks(generated: CohortMeasurement, reference: CohortMeasurement) -> dict[str, Any]:
    """``{"nonfinite": ..., "wasserstein": ..., "diversity": ...}`` as image_checks.json holds them."""
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
    gen_hu, gen_suv = pooled_histograms(generated)
    ref_hu, ref_suv = pooled_histograms(reference)
    out["wasserstein"] = {
        "hu": histogram_distance(gen_hu, ref_hu, HU_EDGES),
        "suv": histogram_distance(gen_suv, ref_suv, SUV_EDGES),
        "note": "1-Wasserstein distance between pooled body-voxel histograms (HU bins of 8, SUV bins of 0.05)",
    }
    out["diversity"] = _diversity(generated, reference)
    return out


def _diversity(generated: CohortMeasurement, reference: CohortMeasurement) -> dict[str, Any]:
    groups: dict[tuple, list] = defaultdict(list)
    for m in generated.subjects:
        if m.thumbnail is not None:
            groups[demographic_key(m.subject)].append(m)
    within = []
    for key, items in groups.items():
        if len(items) < 2:
            continue
        stats = mean_pairwise_distance([m.thumbnail for m in items])
        within.append({"sex": key[0], "age": key[1], "weight": key[2], "height": key[3], **stats})
    baseline = {
        side: mean_pairwise_distance([m.thumbnail for m in measurement.subjects if m.thumbnail is not None],
                                     max_items=DIVERSITY_BASELINE)
        for side, measurement in (("generated", generated), ("reference", reference))
    }
    within_hu = [g["hu_mad"] for g in within]
    within_suv = [g["suv_mad"] for g in within]
    return {
        "same_demographics_groups": within,
        "mean_within_hu_mad": float(np.mean(within_hu)) if within_hu else math.nan,
        "mean_within_suv_mad": float(np.mean(within_suv)) if within_suv else math.nan,
        "between_subjects": baseline,
        "note": "mean absolute voxel difference on ~16 mm thumbnails; within = generated samples sharing "
                "demographics (0 = identical samples, mode collapse); between_subjects = different subjects",
    }
