"""Organ statistics do not depend on the field of view or the voxel size (issue 20, part 1).

Two small phantoms, each written whole-body at 4 mm, cropped to the cascade's field of view (the
same voxels) and whole-body at 2 mm, measured with the shipped segmenter and with their true
labels. ``benchmarks/bench_fov_invariance.py`` measures the same on 50 phantoms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from petct_pipeline.demographics import Demographics
from petct_pipeline.evaluation import ModelSegmenter
from petct_pipeline.evaluation.invariance import (
    INVARIANCE_METRICS,
    INVARIANCE_ORGANS,
    StudyVersion,
    crop_to_model_fov,
    measure_version,
    percent_difference,
)
from petct_pipeline.phantom import generate_phantom

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "petct-phantom-seg"
SMALL_SUBJECTS = (Demographics(age=34, sex="F", weight=52, height=156), Demographics(age=71, sex="M", weight=64,
                                                                                       height=166))


def _version(demographics: Demographics, seed: int, spacing: float) -> StudyVersion:
    phantom = generate_phantom(demographics, seed=seed, spacing=spacing)
    return StudyVersion(f"whole_body_{spacing:g}mm", phantom.ct_hu, phantom.suv, phantom.organs, phantom.affine)


def test_crop_to_model_fov_keeps_the_vertex_and_the_voxels():
    demographics = SMALL_SUBJECTS[0]
    whole = _version(demographics, 0, 8.0)
    cropped = crop_to_model_fov(whole, demographics.height)
    assert cropped.ct.shape[:2] == whole.ct.shape[:2] and cropped.ct.shape[2] < whole.ct.shape[2]
    start = whole.ct.shape[2] - cropped.ct.shape[2]
    assert np.array_equal(cropped.suv, whole.suv[..., start:])
    # voxel (0, 0, 0) of the crop is voxel (0, 0, start) of the whole body, in mm
    assert np.allclose(cropped.affine @ [0, 0, 0, 1], whole.affine @ [0, 0, start, 1])
    # the crop is what `petct phantom --fov model` writes: the same number of slices
    assert cropped.ct.shape == generate_phantom(demographics, seed=0, spacing=8.0, fov="model").ct_hu.shape


def test_true_labels_measure_the_same_organs_in_either_field_of_view():
    demographics = SMALL_SUBJECTS[0]
    whole = _version(demographics, 0, 8.0)
    difference = percent_difference(measure_version(crop_to_model_fov(whole, demographics.height), None),
                                    measure_version(whole, None))
    for organ in INVARIANCE_ORGANS:
        for metric in INVARIANCE_METRICS:
            assert difference[organ][metric] == pytest.approx(0.0, abs=1e-9), (organ, metric)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SMALL_SUBJECTS)))
def test_shipped_segmenter_gives_the_same_organ_statistics_across_fov_and_spacing(index):
    demographics = SMALL_SUBJECTS[index]
    segmenter = ModelSegmenter(SHIPPED)
    whole_4mm = _version(demographics, 100 + index, 4.0)
    versions = {"whole_body_4mm": whole_4mm, "model_fov_4mm": crop_to_model_fov(whole_4mm, demographics.height),
                "whole_body_2mm": _version(demographics, 100 + index, 2.0)}
    measured = {name: measure_version(version, segmenter, demographics.height) for name, version in versions.items()}
    truth = {name: measure_version(version, None) for name, version in versions.items()}
    checks = {
        "model FOV vs whole body": percent_difference(measured["model_fov_4mm"], measured["whole_body_4mm"]),
        "2 mm vs 4 mm": percent_difference(measured["whole_body_2mm"], measured["whole_body_4mm"]),
    }
    failures = [(check, organ, metric, round(value, 2))
                for check, table in checks.items() for organ, metrics in table.items()
                for metric, value in metrics.items() if not abs(value) <= TOLERANCE_PCT[check][metric]]
    assert not failures, failures
    # the measurement itself is sound: the true labels give the same organs in either field of view
    assert percent_difference(truth["model_fov_4mm"], truth["whole_body_4mm"])["liver"]["volume_ml"] == 0.0


#: per-subject tolerances (%), from benchmarks/results/fov_invariance.md (50 phantoms: SUVmean p90 <= 1.8 %
#: across the field of view and <= 6.7 % across spacing, where the 2 mm study is a new simulation, not the same
#: voxels; volumes p90 <= 4.9 % and <= 13.6 %; single subjects reach 3 % and 13 % across the field of view).
#: The 2 % claim is on cohort means,
#: the organ table, which the benchmark measures.
TOLERANCE_PCT = {"model FOV vs whole body": {"suv_mean": 5.0, "volume_ml": 15.0},
                 "2 mm vs 4 mm": {"suv_mean": 8.0, "volume_ml": 15.0}}
