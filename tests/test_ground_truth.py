"""Generated subjects with known truth: lesions inserted on the output grid, written beside the volumes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from petct_pipeline.cli import main
from petct_pipeline.demographics import Demographics
from petct_pipeline.ground_truth import add_lesions, check_lesion_request, lesion_seed
from petct_pipeline.lesions import parse_lesion_specs
from petct_pipeline.phantom import generate_phantom
from petct_pipeline.pipeline_output import PETCTPipelineOutput

FAST = ["--steps", "2", "--sr-steps", "2"]


def _phantom_output() -> PETCTPipelineOutput:
    """A pipeline output holding a phantom (with its true organ labels), as if generated."""
    demographics = Demographics(age=58, sex="M", weight=80, height=178)
    phantom = generate_phantom(demographics, seed=3, spacing=8.0)
    return PETCTPipelineOutput(ct=[phantom.ct_hu.astype(np.float32)], pet=[phantom.suv.astype(np.float32)],
                               affines=[phantom.affine], spacing=(8.0, 8.0, 8.0), demographics=[demographics],
                               metadata=[{"seed": 3}], organs=[phantom.organs.astype(np.uint8)])


def test_lesions_written_beside_a_subject_match_its_volumes(tmp_path):
    output = _phantom_output()
    before = output.pet[0].copy()
    specs = parse_lesion_specs([{"organ": "liver", "diameter_mm": 30, "suv_max": 12.0}])
    add_lesions(output, None, specs, [3])
    folder = output.save(tmp_path / "subject")[0]
    truth = json.loads((folder / "lesions.json").read_text())
    instances = nib.load(folder / "lesions.nii.gz")
    pet = np.asarray(nib.load(folder / "pet_suv.nii.gz").dataobj)
    assert instances.shape == pet.shape and np.allclose(instances.affine, nib.load(folder / "ct.nii.gz").affine)
    mask = np.asarray(instances.dataobj) == 1
    record = truth["lesions"][0]
    assert record["organ"] == "liver" and mask.any() and not np.array_equal(pet, before)
    assert float(pet[mask].max()) == pytest.approx(record["suv_max"], rel=1e-4)
    assert abs(record["suv_max"] - 12.0) <= 1.2  # within 10 % of the request (>= 10 mm)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["files"]["lesions"] == "lesions.nii.gz" and meta["lesion_spec"][0]["suv_max"] == 12.0
    assert meta["diagnosis"] == truth["diagnosis"] and meta["lesion_seed"] == 3


def test_a_diagnosis_samples_lesions_fixed_by_the_seed():
    first, second, other = _phantom_output(), _phantom_output(), _phantom_output()
    for output, seed in ((first, 5), (second, 5), (other, 6)):
        add_lesions(output, "LYMPHOMA", None, [seed])
    assert first.lesions[0].records and np.array_equal(first.lesions[0].instances, second.lesions[0].instances)
    assert np.array_equal(first.pet[0], second.pet[0]) and not np.array_equal(first.pet[0], other.pet[0])
    assert first.metadata[0]["diagnosis"] == "LYMPHOMA"


def test_lesion_requests_are_checked_before_sampling():
    assert check_lesion_request("lymphoma", None)[0] == "LYMPHOMA"
    with pytest.raises(ValueError, match="not both"):
        check_lesion_request("LYMPHOMA", [{"organ": "liver", "diameter_mm": 20, "suv_max": 8}])
    with pytest.raises(ValueError, match="diagnosis"):
        check_lesion_request("FLU", None)
    import torch

    generator = torch.Generator().manual_seed(7)
    assert lesion_seed(generator, 2, shared=False) == 7 and lesion_seed(generator, 2, shared=True) == 9


@pytest.mark.parametrize("args,fragment", [
    (["--diagnosis", "FLU"], "diagnosis"),
    (["--diagnosis", "LYMPHOMA", "--no-labels"], "--no-labels"),
])
def test_generate_refuses_bad_lesion_requests_and_writes_nothing(tiny_pipeline_dir, tmp_path, capsys, args,
                                                                 fragment):
    out = tmp_path / "out"
    base = ["generate", "--model", str(tiny_pipeline_dir), *FAST, "--age", "58", "--sex", "M", "--weight", "80",
            "--height", "178", "--out", str(out)]
    assert main([*base, *args]) == 2
    assert fragment in capsys.readouterr().err and not out.exists()


def test_generate_refuses_a_bad_lesion_spec_file(tiny_pipeline_dir, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([{"organ": "liver", "diameter_mm": 200, "suv_max": 8}]))
    out = tmp_path / "out"
    code = main(["generate", "--model", str(tiny_pipeline_dir), *FAST, "--age", "58", "--sex", "M", "--weight",
                 "80", "--height", "178", "--lesions", str(spec), "--out", str(out)])
    assert code == 2 and "lesion 0" in capsys.readouterr().err and not out.exists()


def test_cohort_diagnosis_column_is_checked(tiny_pipeline_dir, tmp_path, capsys):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("id,age,sex,weight,height,diagnosis\na,40,F,60,165,LYMPHOMA\nb,50,M,80,178,COLD\n")
    out = tmp_path / "out"
    code = main(["generate", "--model", str(tiny_pipeline_dir), *FAST, "--cohort", str(cohort), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "line 3" in err and "diagnosis" in err and not out.exists()
