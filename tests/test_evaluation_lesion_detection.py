"""Lesion-wise detection scores: connected components, hits, misses and false positives."""

from __future__ import annotations

import numpy as np
import pytest

from petct_pipeline.evaluation.lesion_detection import combine_scores, lesion_scores


def _mask(*boxes: tuple[slice, slice, slice], shape=(20, 20, 20)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        mask[box] = True
    return mask


def test_detection_counts_hits_misses_and_false_positives():
    first, second = np.s_[2:5, 2:5, 2:5], np.s_[10:14, 10:14, 10:14]
    truth = _mask(first, second)
    predicted = _mask(np.s_[3:6, 3:6, 3:6], np.s_[15:18, 0:2, 0:2])  # overlaps the first, one stray blob
    scores = lesion_scores(predicted, truth)
    assert (scores.detected, scores.missed, scores.false_positives) == (1, 1, 1)
    assert scores.false_positive_voxels == 3 * 2 * 2
    assert scores.intersection == 8 and scores.dice == pytest.approx(2 * 8 / (27 + 12 + 27 + 64))
    assert scores.f1 == pytest.approx(2 / (2 + 1 + 1))
    assert scores.sensitivity == pytest.approx(0.5)


def test_a_perfect_prediction_and_an_empty_pair():
    truth = _mask(np.s_[2:5, 2:5, 2:5])
    perfect = lesion_scores(truth, truth * 3)  # instance ids count as lesion
    assert perfect.dice == 1.0 and perfect.f1 == 1.0
    empty = lesion_scores(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)))
    assert empty.dice is None and empty.f1 is None
    pooled = combine_scores([perfect, empty, lesion_scores(np.zeros_like(truth), truth)])
    assert pooled.detected == 1 and pooled.missed == 1 and pooled.f1 == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same shape"):
        lesion_scores(np.zeros((3, 3, 3)), truth)
