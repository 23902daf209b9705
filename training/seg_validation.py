"""Held-out Dice of the organ segmenter (``--stage seg`` validation; also what the shipped model records).

Measured where the evaluation uses the model: each study on its own (PET) grid, predicted
through the evaluation's ``model:PATH`` segmenter (resampling round trip included) and compared
with the study's stored label map as the ``labels`` segmenter reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from petct_pipeline.errors import InputError
from petct_pipeline.evaluation.inputs import discover_inputs, load_subject
from petct_pipeline.evaluation.segmenters import LabelsSegmenter, ModelSegmenter
from petct_pipeline.models import OrganSegmentationModel
from petct_pipeline.organs import EVALUATION_ORGANS, organ_mask

__all__ = ["dice_scores", "held_out_dice"]


def dice_scores(predicted: np.ndarray, truth: np.ndarray, organs: Sequence[str] = EVALUATION_ORGANS
                ) -> dict[str, float]:
    """Dice per organ (groups as unions) between two TotalSegmentator-id label maps; NaN if absent in both."""
    out = {}
    for organ in organs:
        p, t = organ_mask(predicted, organ), organ_mask(truth, organ)
        total = int(p.sum()) + int(t.sum())
        out[organ] = float(2 * np.count_nonzero(p & t) / total) if total else float("nan")
    return out


def _finite_summary(values: list[float], reducer: Callable[[list[float]], float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return round(float(reducer(finite)), 4) if finite else None


def held_out_dice(model: OrganSegmentationModel, data_dir: str | os.PathLike,
                  organs: Sequence[str] = EVALUATION_ORGANS, max_studies: int | None = None) -> dict[str, Any]:
    """Mean Dice per organ of ``model`` against the stored label maps of the studies in ``data_dir``.

    Returns ``{"dice": {organ: mean}, "dice_std": {...}, "studies": n, "data_dir": ...}``; an organ
    absent from every study and every prediction is None.
    """
    cohort = discover_inputs(data_dir, "validation")
    subjects = [s for s in cohort.subjects if s.labels is not None][: max_studies or None]
    if not subjects:
        raise InputError(f"no study in {str(data_dir)!r} has an organs.nii.gz label map to measure Dice against")
    truth_segmenter, model_segmenter = LabelsSegmenter(), ModelSegmenter(model)
    scores: dict[str, list[float]] = {organ: [] for organ in organs}
    for subject in subjects:
        volumes = load_subject(subject)
        truth = truth_segmenter.segment(subject, volumes)
        predicted = model_segmenter.segment(subject, volumes)
        for organ, value in dice_scores(predicted, truth, organs).items():
            scores[organ].append(value)
    return {
        "dice": {organ: _finite_summary(v, np.mean) for organ, v in scores.items()},
        "dice_std": {organ: _finite_summary(v, np.std) for organ, v in scores.items()},
        "studies": len(subjects),
        "data_dir": str(data_dir),
    }
