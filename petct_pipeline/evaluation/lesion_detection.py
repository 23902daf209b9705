"""Lesion segmentation scores as the autoPET challenge reads them: Dice, and lesion-wise detection.

A lesion is a connected component (26-connectivity) of a binary mask. A true lesion is detected
when any predicted voxel touches it; a predicted component that touches no true lesion is a false
positive (the autoPET "false positive volume" counts the voxels of exactly these components).
Counts add over subjects, so a cohort's F1 is computed from the summed counts, not averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["LesionScores", "lesion_scores", "combine_scores"]

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class LesionScores:
    """Voxel and lesion counts of one subject (or a sum of subjects)."""

    intersection: int  # voxels predicted and true
    predicted_voxels: int
    true_voxels: int
    detected: int  # true lesions touched by the prediction
    missed: int  # true lesions not touched
    false_positives: int  # predicted components touching no true lesion
    false_positive_voxels: int

    @property
    def dice(self) -> float | None:
        """Voxel Dice; None when neither mask has a voxel (nothing to score)."""
        total = self.predicted_voxels + self.true_voxels
        return 2.0 * self.intersection / total if total else None

    @property
    def f1(self) -> float | None:
        """Lesion-wise F1 = 2 TP / (2 TP + FP + FN); None when there is no lesion on either side."""
        total = 2 * self.detected + self.false_positives + self.missed
        return 2.0 * self.detected / total if total else None

    @property
    def sensitivity(self) -> float | None:
        lesions = self.detected + self.missed
        return self.detected / lesions if lesions else None


def lesion_scores(predicted: np.ndarray, truth: np.ndarray) -> LesionScores:
    """Scores of a predicted mask against the true lesions (a mask or an instance map; any value > 0 is lesion)."""
    predicted = np.asarray(predicted) > 0
    truth = np.asarray(truth) > 0
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {predicted.shape} and true {truth.shape} masks must have the same shape")
    true_components, n_true = ndimage.label(truth, structure=_CONNECTIVITY)
    predicted_components, n_predicted = ndimage.label(predicted, structure=_CONNECTIVITY)
    detected = np.unique(true_components[predicted & truth])
    touching = np.unique(predicted_components[predicted & truth])
    false_positive = np.setdiff1d(np.arange(1, n_predicted + 1), touching)
    return LesionScores(
        intersection=int((predicted & truth).sum()),
        predicted_voxels=int(predicted.sum()),
        true_voxels=int(truth.sum()),
        detected=int(np.count_nonzero(detected)),
        missed=int(n_true - np.count_nonzero(detected)),
        false_positives=int(false_positive.size),
        false_positive_voxels=int(np.isin(predicted_components, false_positive).sum()) if false_positive.size else 0,
    )


def combine_scores(scores: list[LesionScores]) -> LesionScores:
    """The sum of subjects' counts: a cohort's pooled Dice and F1."""
    fields = LesionScores.__dataclass_fields__
    return LesionScores(**{name: sum(getattr(s, name) for s in scores) for name in fields})
