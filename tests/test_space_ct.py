"""The Space's "PET from your CT" tab: an uploaded CT gives a PET on its grid; a file that is no CT is one message."""

from __future__ import annotations

import app  # space/app.py (pytest's pythonpath has space/)
import gradio as gr
import nibabel as nib
import numpy as np
import pytest

from tests.helpers.pipelines import make_tiny_pipeline
from tests.helpers.synthetic_ct import synthetic_ct

DEMOGRAPHICS = (60, "F", 70, 165)


@pytest.fixture()
def space(tmp_path, monkeypatch):
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    monkeypatch.setattr(app, "_PIPE", pipe)
    monkeypatch.setattr(app, "OUTPUT_ROOT", tmp_path / "space-out")
    return app


def test_an_uploaded_ct_gives_the_pet_on_its_grid(space, tmp_path):
    path = tmp_path / "chest.nii.gz"
    nib.save(synthetic_ct(spacing=(2.0, 2.0, 4.0), orientation="LPS"), path)
    fused, mip, files, status = space.pet_from_uploaded_ct(str(path), *DEMOGRAPHICS, 0, 2, 1, None, 8.0, 0.6)
    assert fused.size[0] > 50 and mip.size[0] > 50
    pet = nib.load(next(f for f in files if f.endswith("pet_suv.nii.gz")))
    given = nib.load(path)
    assert pet.shape == given.shape
    np.testing.assert_allclose(pet.affine, given.affine, atol=1e-5)
    assert "LPS" in status and "estimated" in status


def test_a_file_that_is_no_ct_is_one_message(space, tmp_path):
    path = tmp_path / "pet.nii.gz"
    nib.save(nib.Nifti1Image(np.full((40, 40, 40), 1.5, np.float32), np.diag([4, 4, 4, 1.0])), path)
    with pytest.raises(gr.Error, match="The uploaded file: not a CT"):
        space.pet_from_uploaded_ct(str(path), *DEMOGRAPHICS, 0, 2, 1, None, 8.0, 0.6)
    with pytest.raises(gr.Error, match="Upload a CT first"):
        space.pet_from_uploaded_ct(None, *DEMOGRAPHICS, 0, 2, 1, None, 8.0, 0.6)
