"""Fuzzing the DICOM demographics reader (``petct prepare --dicom-root``): missing tags, empty or shared UIDs,
mixed series and modalities in one folder, odd values, truncated and non-DICOM files.

The property: a result whose CSV and summary can be written, or a user error naming the file or
field; ``petct prepare`` exits 0 or 2 with one line.
"""

from __future__ import annotations

import csv

import pytest
from hypothesis import strategies as st

pydicom = pytest.importorskip("pydicom")

from petct_pipeline.cli import main  # noqa: E402
from petct_pipeline.data.dicom_demographics import read_dicom_demographics  # noqa: E402
from tests.helpers.fuzz import PROFILES, fuzz, junk_text, record, user_error_or_result  # noqa: E402

#: header fields the reader uses, with the VR they are written as and plausible values
FIELDS = {
    "PatientAge": ("AS", ["063Y", "011M", "3W", "", "999Y", "Y"]),
    "PatientSex": ("CS", ["M", "F", "O", ""]),
    "PatientWeight": ("DS", ["80", "0", "-5", "1e9", "nan", ""]),
    "PatientSize": ("DS", ["1.82", "182", "0", ""]),
    "PatientBirthDate": ("DA", ["19590101", "20991231", "1959", ""]),
    "StudyDate": ("DA", ["20221208", "20220230", ""]),
    "SeriesDate": ("DA", ["20221208", ""]),
    "SeriesTime": ("TM", ["101500.000000", "1015", "250000", ""]),
    "AcquisitionTime": ("TM", ["101500", ""]),
    "StudyInstanceUID": ("UI", ["1.2.3", "", "1.2.3.4"]),
    "SeriesInstanceUID": ("UI", ["1.2.3.1", "", "1.2.3.2"]),
    "PatientID": ("LO", ["PETCT_0123456789", "", "../x"]),
    "Modality": ("CS", ["PT", "CT", "MR", ""]),
    "Units": ("CS", ["BQML", "CNTS", ""]),
}
DOSE = {"RadiopharmaceuticalStartTime": ("TM", ["091000.000000", "", "2500"]),
        "RadionuclideTotalDose": ("DS", ["314700000", "0", "-1", ""]),
        "RadionuclideHalfLife": ("DS", ["6586.2", "0", ""])}


@st.composite
def headers(draw):
    """Tag -> (VR, value) of one file: each tag present with a plausible or junk value, or absent."""
    chosen = {}
    for name, (vr, plausible) in {**FIELDS, **DOSE}.items():
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue  # missing
        junk = draw(junk_text)[:16].encode("ascii", "replace").decode()  # DICOM's default character set
        chosen[name] = (vr, draw(st.sampled_from(plausible)) if choice < 3 else junk)
    return chosen


@st.composite
def folders(draw):
    """Files of one folder: 0-4 headers (maybe of different series), maybe garbage or a truncated file."""
    files = [("header", draw(headers())) for _ in range(draw(st.integers(0, 4)))]
    if draw(st.booleans()):
        files.append(draw(st.sampled_from([("garbage", None), ("truncated", None), ("empty", None)])))
    return files, draw(st.booleans())  # whether the folder sits in the TCIA layout


def _write(folder, files):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage

    folder.mkdir(parents=True, exist_ok=True)
    last = None
    for index, (kind, tags) in enumerate(files):
        path = folder / f"F{index:03d}.dcm"
        if kind == "garbage":
            path.write_bytes(b"not a dicom file" * 3)
            continue
        if kind == "empty":
            path.write_bytes(b"")
            continue
        if kind == "truncated":
            path.write_bytes(last[: len(last) // 2] if last else b"DICM")
            continue
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = PositronEmissionTomographyImageStorage
        ds.SOPClassUID = PositronEmissionTomographyImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.{index + 1}"
        item = Dataset()
        try:
            for name, (vr, value) in tags.items():
                (item if name in DOSE else ds).add_new(pydicom.datadict.tag_for_keyword(name), vr, value)
            if len(item):
                ds.RadiopharmaceuticalInformationSequence = [item]
            ds.save_as(path, enforce_file_format=True)
        except (TypeError, ValueError, OverflowError):  # a value pydicom cannot encode at all: a broken file
            path.write_bytes(b"DICM" + repr(tags).encode()[:64])
        last = path.read_bytes()


@pytest.fixture()
def lenient_writing():
    """Write the odd values as given (pydicom would refuse some on writing; a scanner's files may hold them)."""
    from pydicom import config

    before = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    yield
    config.settings.writing_validation_mode = before


@pytest.mark.parametrize("profile", PROFILES)
def test_dicom_folders_of_any_content(profile, tmp_path, lenient_writing):
    runs = iter(range(10**9))

    def check(case):
        files, tcia = case
        root = tmp_path / f"r{next(runs)}"
        folder = root / "FDG-PET-CT-Lesions" / "PETCT_0123456789" / "12-08-2022-NA-PET-CT-1" / "1.0-PET" if tcia \
            else root / "series"
        if files:
            _write(folder, files)
        else:
            folder.mkdir(parents=True)
        error = user_error_or_result(lambda: read_dicom_demographics(root), names=lambda m: str(root) in m)
        if error is None:
            result = read_dicom_demographics(root)
            result.write_csv(root / "demographics.csv")
            assert result.summary_text()
            with open(root / "demographics.csv", newline="") as handle:
                list(csv.DictReader(handle))

    fuzz(profile, 50, folders(), check)


@pytest.mark.parametrize("profile", PROFILES)
def test_petct_prepare_dicom_root_of_any_content(profile, tmp_path, capsys, lenient_writing):
    runs = iter(range(10**9))

    def check(case):
        files, _ = case
        root = tmp_path / f"r{next(runs)}"
        _write(root / "series", files or [("empty", None)])
        out = root / "out" / "demographics.csv"
        capsys.readouterr()
        code = main(["prepare", "--dicom-root", str(root), "--out", str(out)])
        error = capsys.readouterr().err
        assert code in (0, 2), error
        record(f"exit code {code}")
        if code == 2:
            assert error.strip().splitlines()[-1].startswith("petct prepare: error: ") and not out.exists(), error

    fuzz(profile, 20, folders(), check)
