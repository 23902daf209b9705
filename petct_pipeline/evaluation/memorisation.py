"""Memorisation audit: is a generated subject a near copy of a training subject?

A generative model that memorises returns (nearly) its training volumes. For every generated
subject we find its nearest training subject and compare that distance with the distances of
held-out subjects (the reference, which the model never saw) to *their* nearest training
subject: held-out subjects show how close two different patients of this population come.

Distance: Euclidean distance between encoder feature vectors (the ones the Fréchet distance
uses, :mod:`~petct_pipeline.evaluation.encoder_features`), each feature standardised by its SD
over the training set (floored at 1e-3 of the median SD, so a near-constant feature cannot
dominate), divided by sqrt(number of features): an RMS difference in training SDs. An exact
copy has distance 0.

Flag: a generated subject is a near copy when its nearest distance is below
:data:`NEAR_COPY_FRACTION` (one half) of the smallest held-out nearest distance. Below the
held-out minimum alone would flag, by chance, about 1 in (held-out + 1) of the generated
subjects; the half margin keeps that out while an exact or lightly perturbed copy (distance near
0) is still caught. How many generated subjects fall below the held-out minimum is reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import InputError

__all__ = ["NEAR_COPY_FRACTION", "MEMORISATION_COLUMNS", "feature_scale", "nearest_training",
           "memorisation_audit"]

NEAR_COPY_FRACTION = 0.5
MEMORISATION_COLUMNS = ("subject", "nearest_training_subject", "distance", "flagged")
#: a held-out distance at most this counts as an identical subject: the reference is not held out
_IDENTICAL = 1e-9


def feature_scale(training: np.ndarray) -> np.ndarray:
    """Per-feature SD over the training set, floored at 1e-3 of the median SD (and at 1e-12)."""
    sd = np.asarray(training, np.float64).std(axis=0)
    floor = max(1e-3 * float(np.median(sd)), 1e-12)
    return np.maximum(sd, floor)


def nearest_training(queries: np.ndarray, training: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest training row, its distance) for every query row (see the module docstring)."""
    q = np.atleast_2d(np.asarray(queries, np.float64)) / scale
    t = np.atleast_2d(np.asarray(training, np.float64)) / scale
    if q.shape[1] != t.shape[1]:
        raise InputError(f"queries have {q.shape[1]} features and training subjects {t.shape[1]}; they must match")
    distances = cdist(q, t) / np.sqrt(q.shape[1])  # exact: an identical vector is at 0, not at rounding noise
    index = distances.argmin(axis=1)
    return index, distances[np.arange(len(q)), index]


def memorisation_audit(generated_keys: Sequence[str], generated: np.ndarray, held_out_keys: Sequence[str],
                       held_out: np.ndarray, training_keys: Sequence[str], training: np.ndarray
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(memorisation.csv rows, summary) of the audit; each side's features are (n, D) arrays."""
    if len(training_keys) < 1 or len(held_out_keys) < 1 or len(generated_keys) < 1:
        raise InputError("the memorisation audit needs at least one training, one held-out (reference) and one "
                         f"generated subject, got {len(training_keys)}, {len(held_out_keys)}, {len(generated_keys)}")
    scale = feature_scale(training)
    gen_index, gen_distance = nearest_training(generated, training, scale)
    _, held_distance = nearest_training(held_out, training, scale)
    identical = held_distance <= _IDENTICAL
    usable = held_distance[~identical]
    held_min = float(usable.min()) if usable.size else float("nan")
    threshold = NEAR_COPY_FRACTION * held_min if usable.size else 0.0
    flagged = gen_distance < threshold
    rows = [{"subject": key, "nearest_training_subject": training_keys[i], "distance": float(d),
             "flagged": bool(f)} for key, i, d, f in zip(generated_keys, gen_index, gen_distance, flagged)]
    summary = {
        "n_generated": len(generated_keys),
        "n_training": len(training_keys),
        "n_held_out": len(held_out_keys),
        "threshold": threshold,
        "rule": f"flagged: nearest training distance < {NEAR_COPY_FRACTION:g} x the smallest held-out nearest "
                "training distance",
        "flagged": int(flagged.sum()),
        "flagged_subjects": [row["subject"] for row in rows if row["flagged"]][:20],
        "below_held_out_min": int((gen_distance < held_min).sum()) if usable.size else 0,
        "generated_nearest_median": float(np.median(gen_distance)),
        "generated_nearest_min": float(gen_distance.min()),
        "held_out_nearest_median": float(np.median(held_distance)),
        "held_out_nearest_min": held_min,
        "held_out_identical_to_training": int(identical.sum()),
        "distance": "RMS difference of encoder features in training-set SDs",
    }
    return rows, summary
