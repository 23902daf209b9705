"""AutoPET / nnU-Net layout readers and SUV, on small studies written in those layouts (tests/helpers/autopet.py)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from petct_pipeline.data import scan_autopet, scan_dataset, scan_nnunet
from petct_pipeline.data.study import check_nifti
from petct_pipeline.data.suv import F18_HALF_LIFE_S, activity_to_suv, decay_factor, suv_scale_factor, suv_to_activity
from petct_pipeline.io import load_nifti, save_nifti
from tests.helpers.autopet import (
    DEFAULT_SUBJECTS,
    DOSE_BQ,
    UPTAKE_S,
    synthetic_body,
    truncate_gzip,
    write_autopet_population,
    write_autopet_study,
)


@pytest.fixture()
def autopet_root(tmp_path):
    root = write_autopet_population(tmp_path / "autopet", DEFAULT_SUBJECTS)
    truncate_gzip(next((root / "PETCT_0000000003").iterdir()) / "SUV.nii.gz")
    return root


# ------------------------------------------------------------------------------ tests


def test_scan_autopet_keeps_good_studies_and_explains_skipped(autopet_root):
    result = scan_autopet(autopet_root)
    assert [s.subject_id for s in result.studies] == ["PETCT_0000000000", "PETCT_0000000001"]
    first = result.studies[0]
    assert first.demographics.age == 63.0  # "063Y" in Metadata.csv
    assert first.demographics.sex == "M" and first.demographics.weight == 82.0 and first.demographics.height == 180.0
    assert first.diagnosis == "NEGATIVE"
    assert first.injected_dose_bq == DOSE_BQ and first.uptake_time_s == UPTAKE_S  # acquisition.json
    assert first.ctres.name == "CTres.nii.gz" and first.organs.name == "organs.nii.gz"
    assert first.study_id.startswith("09-13-2001-NA-PET-CT")

    reasons = {s.path.split("/")[0]: s.reason for s in result.skipped}
    assert set(reasons) == {"PETCT_0000000002", "PETCT_0000000003", "PETCT_0000000004"}
    assert "missing demographic field(s) ['weight']" in reasons["PETCT_0000000002"]
    assert reasons["PETCT_0000000003"].startswith("images: truncated")
    assert "SUV.nii.gz" in reasons["PETCT_0000000003"]
    assert "height" in reasons["PETCT_0000000004"] and "out of range" in reasons["PETCT_0000000004"]
    summary = result.summary()
    assert summary["studies"] == 2 and summary["skipped"] == 3
    assert summary["skipped_by_reason"] == {"demographics": 2, "images": 1}
    assert "PETCT_0000000002" in result.summary_text()


def test_demographics_csv_overrides_and_study_matching(autopet_root, tmp_path):
    table = tmp_path / "demo.csv"
    table.write_text(
        "Subject,Study,Age,Sex,Weight,Height\n"
        "PETCT_0000000002,,070Y,F,66.5,158\n"  # subject-only row supplies the missing weight
        "PETCT_0000000000,09-13-2001-NA-PET-CT ganzkoerper primaer mit km-10000,64,M,83,181\n"
    )
    result = scan_autopet(autopet_root, demographics_csv=table)
    by_subject = {s.subject_id: s for s in result.studies}
    assert by_subject["PETCT_0000000002"].demographics.weight == 66.5
    # whitespace/case differences in the study name still match; CSV values win over Metadata.csv
    assert by_subject["PETCT_0000000000"].demographics.age == 64.0
    assert by_subject["PETCT_0000000000"].demographics.weight == 83.0


def test_sex_o_and_unknown_are_skipped(tmp_path):
    root = write_autopet_population(tmp_path / "d", [{"age": 50, "sex": "O", "weight": 70.0, "height": 170.0}])
    result = scan_autopet(root)
    assert not result.studies
    assert "sex='O'" in result.skipped[0].reason


def test_lps_file_comes_out_ras(tmp_path):
    ras = write_autopet_study(tmp_path, "PETCT_aaaaaaaaaa", 1)
    lps = write_autopet_study(tmp_path, "PETCT_bbbbbbbbbb", 1, lps=True)
    assert nib.aff2axcodes(nib.load(lps / "CT.nii.gz").affine) == ("L", "P", "S")
    for name in ("CT", "SUV", "organs"):
        a, affine_a = load_nifti(ras / f"{name}.nii.gz")
        b, affine_b = load_nifti(lps / f"{name}.nii.gz")
        assert nib.aff2axcodes(affine_b) == ("R", "A", "S")
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(affine_a, affine_b)


def test_suv_recomputed_from_pet_equals_suv_file(autopet_root):
    study = scan_autopet(autopet_root).studies[1]  # the LPS one
    pet, pet_affine = load_nifti(study.pet)
    suv, suv_affine = load_nifti(study.suv)
    recomputed = activity_to_suv(pet, study.injected_dose_bq, study.uptake_time_s, study.demographics.weight)
    np.testing.assert_allclose(recomputed, suv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pet_affine, suv_affine)
    assert float(suv.max()) == pytest.approx(20.0, rel=1e-5)


def test_suv_formula_values():
    # 1 h after injecting 350 MBq, a 70 kg patient; 5000 Bq/mL -> SUV
    expected = 5000.0 * 70.0 * 1000.0 / (350e6 * 2 ** (-3600.0 / 6586.2))
    assert activity_to_suv(5000.0, 350e6, 3600.0, 70.0) == pytest.approx(expected)
    assert F18_HALF_LIFE_S == 6586.2 and decay_factor(F18_HALF_LIFE_S) == pytest.approx(0.5)
    assert suv_to_activity(activity_to_suv(1234.0, 3e8, 4000.0, 80.0), 3e8, 4000.0, 80.0) == pytest.approx(1234.0)
    with pytest.raises(ValueError, match="injected_dose_bq"):
        suv_scale_factor(0.0, 3600.0, 70.0)
    with pytest.raises(ValueError, match="uptake_time_s"):
        suv_scale_factor(3e8, -5.0, 70.0)
    with pytest.raises(TypeError, match="weight_kg"):
        suv_scale_factor(3e8, 3600.0, "70")


def test_check_nifti_cheap_and_full(tmp_path):
    path = tmp_path / "x.nii.gz"
    save_nifti(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32), np.eye(4), path)
    assert check_nifti(path) is None and check_nifti(path, full=True) is None
    truncate_gzip(path, 0.8)
    assert "truncated" in check_nifti(path)
    (tmp_path / "garbage.nii.gz").write_bytes(gzip.compress(b"not a nifti at all" * 30))
    assert check_nifti(tmp_path / "garbage.nii.gz").startswith("unreadable NIfTI")


def test_pet_without_suv_needs_dose(tmp_path):
    root = write_autopet_population(tmp_path / "d", [{"age": 50, "sex": "F", "weight": 70.0, "height": 170.0}])
    study_dir = next((root / "PETCT_0000000000").iterdir())
    (study_dir / "SUV.nii.gz").unlink()
    assert scan_autopet(root).studies[0].suv is None  # dose and time from demographics.csv: usable
    no_dose = root / "no_dose.csv"
    no_dose.write_text("subject,age,sex,weight,height\nPETCT_0000000000,50,F,70,170\n")
    assert scan_autopet(root, demographics_csv=no_dose).studies[0].injected_dose_bq == 3.147e8  # acquisition.json
    (study_dir / "acquisition.json").unlink()
    result = scan_autopet(root, demographics_csv=no_dose)
    assert not result.studies and "injected_dose_bq" in result.skipped[0].reason


def test_scan_errors_name_the_problem(tmp_path):
    with pytest.raises(NotADirectoryError, match="not found"):
        scan_autopet(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="PETCT_"):
        scan_autopet(tmp_path / "empty")
    with pytest.raises(ValueError, match="layout must be one of"):
        scan_dataset(tmp_path, layout="bids")


def test_nnunet_layout(tmp_path):
    root = tmp_path / "Dataset221_autoPETII"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    ct, suv, _, affine = synthetic_body()
    for case in ("PETCT_0011f3deaf_0", "PETCT_00aa_1", "fdg_0003"):
        save_nifti(ct, affine, root / "imagesTr" / f"{case}_0000.nii.gz", dtype=np.int16)
        if case != "fdg_0003":
            save_nifti(suv, affine, root / "imagesTr" / f"{case}_0001.nii.gz", dtype=np.float32)
    save_nifti((suv > 15).astype(np.uint8), affine, root / "labelsTr" / "PETCT_0011f3deaf_0.nii.gz")
    (root / "demographics.csv").write_text(
        "subject,study,age,sex,weight,height\nPETCT_0011f3deaf,,063Y,M,80,178\nPETCT_00aa,,40,F,,165\n"
    )
    result = scan_dataset(root)
    assert result.layout == "nnunet"
    assert [s.study_id for s in result.studies] == ["PETCT_0011f3deaf_0"]
    study = result.studies[0]
    assert study.subject_id == "PETCT_0011f3deaf" and study.demographics.age == 63.0
    assert study.ctres.name.endswith("_0000.nii.gz") and study.suv.name.endswith("_0001.nii.gz")
    assert study.seg is not None and study.ct is None
    reasons = {s.path: s.reason for s in result.skipped}
    assert "weight" in reasons["PETCT_00aa_1"]
    assert "fdg_0003_0001.nii.gz" in reasons["fdg_0003"]
    assert scan_nnunet(root).summary()["studies"] == 1
