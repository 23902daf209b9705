"""Image-level realism of a generated cohort: Fréchet distance, MS-SSIM diversity, memorisation audit.

This module pools what ``measure_cohort`` kept per subject (encoder features, 8 mm volumes) and
runs the three checks, each with its cost per subject:

* ``frechet``: Fréchet distance of the segmenter's encoder features, generated vs reference,
  with the floor between random halves of the reference (:mod:`.frechet`, :mod:`.encoder_features`);
* ``ms_ssim``: mean pairwise MS-SSIM among generated samples that share demographics, beside
  the reference's value for subjects sharing demographics (where it has any) and between
  different reference subjects (:mod:`.ms_ssim`);
* ``memorisation``: nearest training subject of every generated subject against the
  held-out (reference) subjects' nearest training subjects (:mod:`.memorisation`); runs only
  with a training cohort (``--train-reference``).

A check that cannot run says why in ``reason`` (``run: false``) rather than failing the evaluation.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cohort import CohortMeasurement, SubjectMeasurement
from .cohort_checks import demographic_key
from .frechet import frechet_check
from .memorisation import memorisation_audit
from .ms_ssim import MSSSIM_KERNEL, MSSSIM_MM, MSSSIM_SIGMA, monai_problem, msssim_scales, pairwise_ms_ssim

__all__ = ["MSSSIM_GROUP_MEMBERS", "MSSSIM_MAX_GROUPS", "MSSSIM_BASELINE", "TrainingFeatures", "realism_checks"]

#: samples per same-demographics group compared pairwise (pairs: n(n-1)/2)
MSSSIM_GROUP_MEMBERS = 8
#: same-demographics groups compared (the first ones; a pair costs about 0.1-0.4 s on 2 CPU cores at 8 mm)
MSSSIM_MAX_GROUPS = 16
#: different reference subjects compared pairwise for the between-subjects scale
MSSSIM_BASELINE = 6


@dataclass
class TrainingFeatures:
    """Encoder features of the training cohort (``--train-reference``) and what computing them cost."""

    path: str
    keys: list[str]
    features: np.ndarray
    seconds: float


def realism_checks(generated: CohortMeasurement, reference: CohortMeasurement, feature_model: str | None,
                   training: TrainingFeatures | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(evaluation.json's ``realism`` block, memorisation.csv rows: empty without a training cohort).

    ``feature_model`` describes the extractor whose features the subjects carry (None: none were computed).
    """
    memorisation, rows = _memorisation(generated, reference, feature_model, training)
    return {"frechet": _frechet(generated, reference, feature_model), "ms_ssim": _ms_ssim(generated, reference),
            "memorisation": memorisation}, rows


def _features(measurement: CohortMeasurement) -> np.ndarray:
    return np.array([m.features for m in measurement.subjects], dtype=np.float64)


def _feature_seconds(*measurements: CohortMeasurement) -> float:
    times = [m.feature_seconds for measurement in measurements for m in measurement.subjects]
    return float(np.mean(times)) if times else 0.0


def _no_features(feature_model: str | None, measurements: tuple[CohortMeasurement, ...]) -> str | None:
    if feature_model is None:
        return ("no feature model: the shipped segmenter checkpoints/petct-phantom-seg is not here; pass "
                "feature_model= (--feature-model PATH) to a model trained with training/train.py --stage seg")
    if any(m.features is None for measurement in measurements for m in measurement.subjects):
        return "some subjects were measured without encoder features"
    return None


def _frechet(generated: CohortMeasurement, reference: CohortMeasurement, feature_model: str | None
             ) -> dict[str, Any]:
    problem = _no_features(feature_model, (generated, reference))
    if problem:
        return {"run": False, "reason": problem}
    started = time.perf_counter()
    result = frechet_check(_features(generated), _features(reference))
    n = len(generated.subjects) + len(reference.subjects)
    return {
        "run": result["distance"] is not None,
        "feature_model": feature_model,
        **result,
        "seconds_per_subject": _feature_seconds(generated, reference) + (time.perf_counter() - started) / n,
        "note": "squared Fréchet distance (FID formula) of segmenter-encoder features, standardised by the "
                "reference's SD, on the leading principal components of the two samples pooled; matched_distance: "
                "a random half-size generated subset vs a random half of the reference; floor: one half of the "
                "reference vs the other (means over the splits)",
    }


def _groups(measurement: CohortMeasurement) -> list[list[SubjectMeasurement]]:
    """Subjects with a kept MS-SSIM volume, grouped by identical demographics (groups of 2 or more)."""
    groups: dict[tuple, list[SubjectMeasurement]] = defaultdict(list)
    for m in measurement.subjects:
        if m.diversity_volume is not None:
            groups[demographic_key(m.subject)].append(m)
    return [items[:MSSSIM_GROUP_MEMBERS] for items in groups.values() if len(items) > 1]


def _within(groups: list[list[SubjectMeasurement]], scales: int) -> dict[str, Any] | None:
    if not groups:
        return None
    per_group, values = [], []
    for items in groups[:MSSSIM_MAX_GROUPS]:
        scores = pairwise_ms_ssim([m.diversity_volume for m in items], scales)
        values.append(scores)
        key = demographic_key(items[0].subject)
        per_group.append({"sex": key[0], "age": key[1], "weight": key[2], "height": key[3], "n": len(items),
                          "pairs": len(scores), "ms_ssim": float(scores.mean())})
    scores = np.concatenate(values)
    return {"groups": len(per_group), "groups_found": len(groups), "pairs": len(scores), "mean": float(scores.mean()),
            "ct": float(scores[:, 0].mean()), "pet": float(scores[:, 1].mean()), "per_group": per_group}


def _ms_ssim(generated: CohortMeasurement, reference: CohortMeasurement) -> dict[str, Any]:
    problem = monai_problem()
    if problem:
        return {"run": False, "reason": problem}
    gen_groups, ref_groups = _groups(generated), _groups(reference)
    if not gen_groups:
        return {"run": False, "reason": "no two generated samples share demographics (generate several seeds per "
                                        "demographic tuple to measure it)"}
    distinct: dict[tuple, SubjectMeasurement] = {}
    for m in reference.subjects:
        if m.diversity_volume is not None:
            distinct.setdefault(demographic_key(m.subject), m)
    baseline = list(distinct.values())[:MSSSIM_BASELINE]
    involved = [m for group in gen_groups[:MSSSIM_MAX_GROUPS] + ref_groups[:MSSSIM_MAX_GROUPS] for m in group]
    involved += baseline
    scales = msssim_scales([m.diversity_volume.shape[1:] for m in involved])
    out: dict[str, Any] = {"mm": MSSSIM_MM, "kernel": MSSSIM_KERNEL, "sigma": MSSSIM_SIGMA, "scales": scales}
    if scales == 0:
        smallest = np.min([m.diversity_volume.shape[1:] for m in involved], axis=0).tolist()
        return {"run": False, **out, "reason": f"volumes too small for MS-SSIM: smallest {smallest} voxels at "
                                               f"{MSSSIM_MM:g} mm, the {MSSSIM_KERNEL}-voxel window needs more"}
    started = time.perf_counter()
    generated_within = _within(gen_groups, scales)
    reference_within = _within(ref_groups, scales)
    between = None
    if len(baseline) > 1:
        scores = pairwise_ms_ssim([m.diversity_volume for m in baseline], scales)
        between = {"subjects": len(baseline), "pairs": len(scores), "mean": float(scores.mean()),
                   "ct": float(scores[:, 0].mean()), "pet": float(scores[:, 1].mean())}
    seconds = time.perf_counter() - started
    pairs = sum(part["pairs"] for part in (generated_within, reference_within, between) if part)
    subjects = len({id(m) for m in involved})
    return {
        "run": True,
        **out,
        "generated_within": generated_within,
        "reference_within": reference_within,
        "reference_between": between,
        "seconds": seconds,
        "seconds_per_pair": seconds / pairs if pairs else None,
        "seconds_per_subject": seconds / subjects if subjects else None,
        "note": "mean pairwise MS-SSIM (MONAI) of CT and PET in model space; 1 = identical samples (mode collapse), "
                "lower = more diverse",
    }


def _memorisation(generated: CohortMeasurement, reference: CohortMeasurement, feature_model: str | None,
                  training: TrainingFeatures | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if training is None:
        return {"run": False, "reason": "not run: pass --train-reference DIR (train_reference=), the cohort the "
                                        "model was trained on"}, []
    problem = _no_features(feature_model, (generated, reference))
    if problem:
        return {"run": False, "reason": problem}, []
    started = time.perf_counter()
    rows, summary = memorisation_audit([m.subject.key for m in generated.subjects], _features(generated),
                                       [m.subject.key for m in reference.subjects], _features(reference),
                                       training.keys, training.features)
    audit_seconds = time.perf_counter() - started
    n_train = len(training.keys)
    return {
        "run": True,
        "train_reference": training.path,
        "feature_model": feature_model,
        **summary,
        "seconds": training.seconds + audit_seconds,
        "seconds_per_training_subject": training.seconds / n_train,
        "seconds_per_subject": (training.seconds + audit_seconds) / n_train,
        "note": "generated and held-out (reference) features are those of the Fréchet distance; the cost is the "
                "training cohort's features plus the nearest-neighbour search, per training subject",
    }, rows
