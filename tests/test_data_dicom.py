"""Demographics from DICOM headers: a real Siemens CT series (JPEG 2000, empty UIDs) and a written PET header."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")

from petct_pipeline.cli import main  # noqa: E402
from petct_pipeline.data.dicom_demographics import read_dicom_demographics  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "example_ct_dicom"
STUDY = "12-08-2022-NA-PET-CT Ganzkoerper  primaer mit KM-12345"


def copy_ct_series(root: Path, subject: str = "PETCT_0123456789") -> Path:
    series = root / "FDG-PET-CT-Lesions" / subject / STUDY / "2.000000-CT-01234"
    series.mkdir(parents=True)
    for path in sorted(FIXTURE.glob("CT.*")):
        shutil.copy(path, series / path.name)
    return series.parent


def write_pet_header(folder: Path, **overrides) -> Path:
    """A header-only PET DICOM file like a Siemens Biograph writes (no pixel data)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = PositronEmissionTomographyImageStorage
    ds.SOPClassUID = PositronEmissionTomographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "PT"
    ds.PatientID = ""
    ds.PatientAge = "063Y"
    ds.PatientSex = "M"
    ds.PatientWeight = "80"
    ds.PatientSize = "1.82"
    ds.StudyDate = ds.SeriesDate = "20221208"
    ds.SeriesTime = "101500.000000"
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    item = Dataset()
    item.RadiopharmaceuticalStartTime = "091000.000000"
    item.RadionuclideTotalDose = "314700000"
    item.RadionuclideHalfLife = "6586.2"
    ds.RadiopharmaceuticalInformationSequence = [item]
    for key, value in overrides.items():
        setattr(ds, key, value)
    path = folder / "PT.0001.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_real_ct_series_headers_without_decoding_pixels(tmp_path):
    ts = pydicom.dcmread(next(FIXTURE.glob("CT.*")), stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert ts == "1.2.840.10008.1.2.4.90"  # JPEG 2000: reading must not need a decoder
    copy_ct_series(tmp_path)
    result = read_dicom_demographics(tmp_path)
    assert len(result.rows) == 1
    row = result.rows[0]
    # PatientID is empty in these files: the subject comes from the folder above the study
    assert row["subject"] == "PETCT_0123456789" and row["study"] == STUDY
    assert row["weight"] == 79.0
    assert row["height"] is None and row["age"] is None and row["sex"] is None
    problems = result.problems[f"PETCT_0123456789/{STUDY}"]
    assert any("PatientSize missing" in p for p in problems)
    assert any("PatientAge missing" in p for p in problems)
    assert any("PatientSex missing" in p for p in problems)
    assert "1 studies" in result.summary_text()


def test_flat_folder_without_uids(tmp_path):
    flat = tmp_path / "example_ct_dicom"
    shutil.copytree(FIXTURE, flat)  # README.md and LICENSE are not DICOM and are ignored
    result = read_dicom_demographics(flat)
    assert [(r["subject"], r["weight"]) for r in result.rows] == [("example_ct_dicom", 79.0)]
    assert result.files_read == 2  # a couple of headers per series folder, not every slice


def test_pet_header_gives_all_fields_and_dose(tmp_path):
    study_dir = copy_ct_series(tmp_path)
    write_pet_header(study_dir / "3.000000-PET corr.-56789")
    row = read_dicom_demographics(tmp_path).rows[0]
    assert row["age"] == 63.0 and row["sex"] == "M"
    assert row["weight"] == 80.0  # the PET series' weight wins (SUV was computed with it)
    assert row["height"] == 182.0  # PatientSize is metres in DICOM
    assert row["injected_dose_bq"] == 314700000.0
    assert row["uptake_time_s"] == 3900.0  # 09:10 -> 10:15
    assert row["modalities"] == "CT+PT"


def test_messy_values(tmp_path):
    write_pet_header(
        tmp_path / "S1" / "study" / "pet",
        PatientAge="", PatientBirthDate="19600101", PatientSex="O", PatientSize="175", PatientWeight="0",
    )
    result = read_dicom_demographics(tmp_path)
    row = result.rows[0]
    assert row["age"] == pytest.approx(62.93, abs=0.01)  # from birth date and study date
    assert row["sex"] is None and row["weight"] is None
    assert row["height"] == 175.0  # cm entered in a metres field: kept as cm, reported
    problems = " | ".join(result.problems["S1/study"])
    assert "PatientSex='O'" in problems and "looks like cm" in problems and "PatientWeight missing" in problems


def test_prepare_dicom_command_writes_csv(tmp_path, capsys):
    study_dir = copy_ct_series(tmp_path / "dicom")
    write_pet_header(study_dir / "3.000000-PET corr.-56789")
    out = tmp_path / "demographics.csv"
    assert main(["prepare", "--dicom-root", str(tmp_path / "dicom"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["subject"] == "PETCT_0123456789" and rows[0]["weight"] == "80" and rows[0]["height"] == "182"
    assert rows[0]["age"] == "63" and rows[0]["injected_dose_bq"] == "314700000"
    assert "1 studies" in capsys.readouterr().err

    assert main(["prepare", "--dicom-root", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", "--dicom-root", str(empty), "--out", str(out)]) == 2
    assert "no DICOM files" in capsys.readouterr().err
