"""Finding and checking the two cohorts (evaluation/inputs.py): both layouts, and errors that name the problem."""

from __future__ import annotations

import pytest

from petct_pipeline.evaluation import discover_inputs, evaluate, make_segmenter
from petct_pipeline.evaluation.segmenters import SegmenterUnavailableError
from petct_pipeline.io import load_nifti, save_nifti, write_json
from tests.helpers.evaluation_cohorts import DEMOGRAPHICS, write_generated


def test_both_layouts_are_discovered_with_demographics(tmp_path, reference_dir):
    reference = discover_inputs(reference_dir, "reference")
    assert reference.layout == "autopet" and len(reference) == len(DEMOGRAPHICS) and reference.has_labels
    assert {s.demographics for s in reference.subjects} == set(DEMOGRAPHICS)
    generated = discover_inputs(write_generated(tmp_path / "gen", DEMOGRAPHICS[:2]), "generated")
    assert generated.layout == "generated" and [s.key for s in generated.subjects] == ["s000", "s001"]
    assert generated.subjects[1].demographics == DEMOGRAPHICS[1]

def test_missing_and_mismatched_inputs_give_clear_errors(tmp_path, reference_dir):
    with pytest.raises(FileNotFoundError, match="generated folder .* does not exist"):
        evaluate(tmp_path / "nope", reference_dir, out=tmp_path / "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a generated cohort"):
        discover_inputs(tmp_path / "empty", "reference")
    broken = write_generated(tmp_path / "broken", DEMOGRAPHICS[:1])
    (broken / "s000" / "pet_suv.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing pet_suv\.nii\.gz"):
        discover_inputs(broken, "generated")
    bad_meta = write_generated(tmp_path / "meta", DEMOGRAPHICS[:1])
    write_json({"seed": 1}, bad_meta / "s000" / "metadata.json")
    with pytest.raises(ValueError, match="field 'demographics' is missing"):
        discover_inputs(bad_meta, "generated")
    mismatched = write_generated(tmp_path / "grid", DEMOGRAPHICS[:1])
    ct, affine = load_nifti(mismatched / "s000" / "ct.nii.gz")
    save_nifti(ct[:-2], affine, mismatched / "s000" / "ct.nii.gz")
    with pytest.raises(ValueError, match="not on the same grid"):
        evaluate(mismatched, reference_dir, out=tmp_path / "r2")
    unlabelled = write_generated(tmp_path / "nolabels", DEMOGRAPHICS[:2], with_labels=False)
    with pytest.raises(SegmenterUnavailableError, match="needs a label map beside every generated subject"):
        evaluate(unlabelled, reference_dir, out=tmp_path / "r3", segmenter="labels")
    with pytest.raises(ValueError, match="segmenter must be one of"):
        make_segmenter("nnunet")
    with pytest.raises(FileNotFoundError, match="not a segmentation model|does not exist"):
        make_segmenter(f"model:{tmp_path / 'no_model'}")
