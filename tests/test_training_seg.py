"""The segmentation stage: objective, held-out Dice and random training boxes (seg_loss, seg_validation, stages/seg)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from petct_pipeline.organs import LABEL_IDS
from training.seg_loss import segmentation_loss
from training.seg_validation import dice_scores
from training.stages.seg import SegOptions, random_box


def test_loss_is_low_for_confident_right_answers_and_high_for_wrong_ones():
    target = torch.zeros(2, 4, 4, 4, dtype=torch.int64)
    target[:, :2] = 1
    target[:, 2:, :2] = 2
    right = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 20.0
    wrong = torch.roll(right, shifts=1, dims=1)
    loss, parts = segmentation_loss(right, target)
    assert parts["soft_dice"] == pytest.approx(1.0, abs=1e-4) and float(loss) < 1e-3
    bad, bad_parts = segmentation_loss(wrong, target)
    assert bad_parts["soft_dice"] < 0.01 and float(bad) > 10.0
    # without Dice the loss is the cross-entropy alone
    ce_only, _ = segmentation_loss(wrong, target, dice_weight=0.0)
    assert float(ce_only) == pytest.approx(bad_parts["ce"], rel=1e-6)


def test_dice_scores_per_organ_and_group():
    truth = np.zeros((6, 6, 6), np.int16)
    truth[:3] = LABEL_IDS["liver"]
    truth[3:, :3] = LABEL_IDS["lung_upper_lobe_left"]
    predicted = truth.copy()
    predicted[:3, :3] = 0  # half the liver missed
    scores = dice_scores(predicted, truth, ("liver", "lungs", "spleen"))
    assert scores["liver"] == pytest.approx(2 * 54 / (54 + 108))
    assert scores["lungs"] == 1.0
    assert math.isnan(scores["spleen"])  # absent in both: undefined, not perfect


def test_random_training_boxes_stay_inside_the_grid_and_the_scanned_slices():
    # the cache's z runs inferior -> superior with the body's top in the last slice: the 250 scanned
    # slices are indices 54..303, the ones below are padding
    rng = np.random.default_rng(0)
    boxes = [random_box((112, 112, 304), (96, 96, 128), 250, rng) for _ in range(200)]
    for box in boxes:
        assert [s.stop - s.start for s in box] == [96, 96, 128]
        assert box[0].stop <= 112 and box[1].stop <= 112 and box[2].start >= 304 - 250 and box[2].stop <= 304
    starts = {box[2].start for box in boxes}
    assert min(starts) < 54 + 10 and max(starts) == 304 - 128  # the top of the body (the head) is reached
    # fewer scanned slices than the crop: the crop ends at the top
    assert random_box((112, 112, 304), (96, 96, 128), 90, rng)[2] == slice(176, 304)


def test_seg_options_check_crop_and_stride():
    assert SegOptions(crop=[96, 96, 128], input_stride=2).crop == (96, 96, 128)
    with pytest.raises(ValueError, match="seg.crop must be three positive integers"):
        SegOptions(crop=[96, 96])
    with pytest.raises(ValueError, match="seg.input_stride"):
        SegOptions(input_stride=0)
