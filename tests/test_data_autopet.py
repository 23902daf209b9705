"""AutoPET / nnU-Net layout readers and SUV, on small studies written in those layouts.

The helpers at the top (``write_autopet_study``, ``write_autopet_population``) are also used
by the preprocessing-cache and training tests: tiny synthetic bodies (trunk, lungs, spine,
liver, brain, bladder, a patient table) on a coarse grid, written exactly like AutoPET.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from petct_pipeline.data import scan_autopet, scan_dataset, scan_nnunet
from petct_pipeline.data.study import check_nifti
from petct_pipeline.data.suv import F18_HALF_LIFE_S, activity_to_suv, decay_factor, suv_scale_factor, suv_to_activity
from petct_pipeline.io import load_nifti, save_nifti

STUDY_NAME = "09-13-2001-NA-PET-CT Ganzkoerper  primaer mit KM-{:05d}"
METADATA_COLUMNS = [
    "Subject ID", "Study UID", "Study Description", "Study Date", "Series Description",
    "diagnosis", "age", "sex", "Modality", "File Location",
]
DOSE_BQ = 3.147e8
UPTAKE_S = 3600.0


# ------------------------------------------------------------------------------ fixture writers


def synthetic_body(
    shape: tuple[int, int, int] = (24, 24, 40),
    spacing: tuple[float, float, float] = (8.0, 8.0, 8.0),
    height_cm: float = 175.0,
    liver_suv: float = 2.3,
    table: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(CT in HU, SUV, organ labels, RAS affine) of a crude body whose vertex sits 2 voxels below the top."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    sx, sy, sz = spacing
    x = (np.arange(nx) - (nx - 1) / 2) * sx
    y = (np.arange(ny) - (ny - 1) / 2) * sy
    top = (nz - 3) * sz  # vertex height (mm above slice 0)
    z = np.arange(nz) * sz
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    depth = top - Z  # mm below the vertex
    length = min(2.0 * (146.629 * height_cm / 100 + 110.419), top)
    head = (X**2 + Y**2) / 80.0**2 + (depth - 100.0) ** 2 / 110.0**2 <= 1.0
    trunk = (X / 150.0) ** 2 + (Y / 100.0) ** 2 <= 1.0
    trunk &= (depth > 200.0) & (depth <= length)
    body = head | trunk
    ct = np.full(shape, -1000.0, np.float32)
    suv = np.zeros(shape, np.float32)
    organs = np.zeros(shape, np.uint8)
    ct[body], suv[body] = 40.0, 0.8
    lungs = trunk & ((np.abs(X) - 60.0) ** 2 / 45.0**2 + Y**2 / 55.0**2 <= 1.0) & (depth > 260) & (depth < 480)
    ct[lungs], suv[lungs] = -800.0, 0.4
    organs[lungs] = 10  # lung_upper_lobe_left (TotalSegmentator id)
    liver = trunk & ((X + 60.0) ** 2 + Y**2 + (depth - 540.0) ** 2 <= 60.0**2)
    ct[liver], suv[liver] = 110.0, liver_suv
    organs[liver] = 5
    brain = head & ((X**2 + Y**2) / 65.0**2 + (depth - 100.0) ** 2 / 90.0**2 <= 1.0)
    ct[brain], suv[brain] = 35.0, 8.0
    organs[brain] = 90
    spine = trunk & (X**2 + (Y + 60.0) ** 2 <= 20.0**2)
    ct[spine] = 700.0
    bladder = trunk & (X**2 + Y**2 + (depth - (length - 60.0)) ** 2 <= 35.0**2)
    suv[bladder] = 20.0
    organs[bladder] = 21
    if table:  # a patient table touching the back of the body: not part of the body
        ct[:, 0:2, :] = np.where(np.abs(X[:, 0:2, :]) < 200.0, 150.0, ct[:, 0:2, :])
    ct[body] += rng.normal(0.0, 5.0, int(body.sum())).astype(np.float32)
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [x[0], y[0], -top]
    return ct, suv, organs, affine


def to_lps(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored left-posterior: x and y flipped in the data and in the affine."""
    nx, ny, _ = array.shape
    flip = np.array([[-1, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    return array[::-1, ::-1, :].copy(), affine @ flip


def write_autopet_study(
    root: Path,
    subject: str,
    index: int,
    *,
    height_cm: float = 175.0,
    shape: tuple[int, int, int] = (24, 24, 40),
    spacing: tuple[float, float, float] = (8.0, 8.0, 8.0),
    lps: bool = False,
    with_ctres: bool = True,
    weight_kg: float = 75.0,
    seed: int = 0,
) -> Path:
    """One study folder with CT, CTres, PET (Bq/mL), SUV, SEG, organs and acquisition.json."""
    study_dir = root / subject / STUDY_NAME.format(index)
    study_dir.mkdir(parents=True, exist_ok=True)
    ct, suv, organs, affine = synthetic_body(shape, spacing, height_cm, seed=seed)
    pet = suv_to_activity(suv, DOSE_BQ, UPTAKE_S, weight_kg)
    seg = (suv > 15).astype(np.uint8)
    images = {"CT": (ct, np.int16), "PET": (pet, np.float32), "SUV": (suv, np.float32),
              "SEG": (seg, np.uint8), "organs": (organs, np.uint8)}
    if with_ctres:
        images["CTres"] = (ct, np.int16)
    for name, (array, dtype) in images.items():
        data, aff = to_lps(array, affine) if lps else (array, affine)
        save_nifti(data, aff, study_dir / f"{name}.nii.gz", dtype=dtype)
    (study_dir / "acquisition.json").write_text(
        json.dumps({"injected_dose_bq": DOSE_BQ, "uptake_time_s": UPTAKE_S, "weight_kg": weight_kg})
    )
    return study_dir


def write_autopet_population(root: Path, subjects: list[dict], **study_kwargs) -> Path:
    """Studies plus Metadata.csv (age as "063Y") and demographics.csv; dict keys: age, sex, weight, height."""
    root.mkdir(parents=True, exist_ok=True)
    meta_rows, demo_rows = [], []
    for i, subject in enumerate(subjects):
        sid = subject.get("id", f"PETCT_{i:010x}")
        study_dir = write_autopet_study(
            root, sid, 10000 + i, height_cm=subject.get("height") or 175.0,
            weight_kg=subject.get("weight") or 75.0, seed=i, lps=subject.get("lps", False), **study_kwargs
        )
        for modality, series in (("CT", "CT"), ("PT", "PET corr.")):
            meta_rows.append({
                "Subject ID": sid, "Study UID": f"1.2.3.{i}", "Study Description": "PET-CT Ganzkoerper",
                "Study Date": "09-13-2001", "Series Description": series, "diagnosis": "NEGATIVE",
                "age": f"{int(subject['age']):03d}Y", "sex": subject["sex"], "Modality": modality,
                "File Location": f"./FDG-PET-CT-Lesions/{sid}/{study_dir.name}/{i}.000000-{series}-{i:05d}",
            })
        demo_rows.append({"subject": sid, "study": study_dir.name, "age": subject["age"], "sex": subject["sex"],
                          "weight": subject.get("weight") or "", "height": subject.get("height") or "",
                          "injected_dose_bq": DOSE_BQ, "uptake_time_s": UPTAKE_S})
    with open(root / "Metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(meta_rows)
    with open(root / "demographics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["subject", "study", "age", "sex", "weight", "height",
                                                    "injected_dose_bq", "uptake_time_s"])
        writer.writeheader()
        writer.writerows(demo_rows)
    return root


def truncate_gzip(path: Path, keep_fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


DEFAULT_SUBJECTS = [
    {"age": 63, "sex": "M", "weight": 82.0, "height": 180.0},
    {"age": 41, "sex": "F", "weight": 61.0, "height": 164.0, "lps": True},
    {"age": 70, "sex": "F", "weight": None, "height": 158.0},  # missing weight
    {"age": 55, "sex": "M", "weight": 90.0, "height": 185.0},  # SUV.nii.gz truncated below
    {"age": 35, "sex": "M", "weight": 80.0, "height": 1.80},  # height in metres: implausible
]


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
