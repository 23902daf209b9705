"""``petct export``: nnU-Net v2, AutoPET layout and DICOM, each checked by the software that reads it.

Inputs are small (8 mm): a phantom population in the AutoPET layout and a "generated" cohort written in the
layout ``petct generate --cohort`` writes, from the same phantoms, one subject with lesions inserted by
``insert_lesions`` (as ``petct generate --diagnosis`` does) and two without. External checks skip with the
reason when the tool is missing: nnU-Net v2's dataset integrity check (``pip install nnunetv2``), dicom3tools'
``dciodvfy`` and ``dcm2niix`` (``apt-get install dicom3tools dcm2niix``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from petct_pipeline.cli import main
from petct_pipeline.data.suv import activity_to_suv
from petct_pipeline.evaluation.inputs import discover_inputs, load_subject
from petct_pipeline.export import MANIFEST, export_dataset
from petct_pipeline.io import load_nifti, save_nifti, write_json
from petct_pipeline.organs import LABEL_IDS, LABELS

SPACING = 8.0


# ----------------------------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from petct_pipeline.phantom import sample_population, write_population

    root = tmp_path_factory.mktemp("export_phantoms")
    write_population(sample_population(3, seed=1), root, seed=1, spacing=SPACING)
    return root


@pytest.fixture(scope="module")
def generated(phantoms, tmp_path_factory) -> Path:
    """The phantoms' CT, SUV and organs in the generate layout; g0 with LYMPHOMA lesions (instance ids)."""
    from petct_pipeline.lesions import insert_lesions

    root = tmp_path_factory.mktemp("export_generated")
    rows = []
    for index, subject in enumerate(discover_inputs(phantoms).subjects):
        folder = root / f"g{index}"
        ct, affine = load_nifti(subject.ct)
        suv, _ = load_nifti(subject.pet)
        organs, _ = load_nifti(subject.labels)
        metadata = {"demographics": subject.demographics.to_dict(), "seed": index, "synthetic": True}
        if index == 0:
            result = insert_lesions(ct, suv, affine, organs.astype(np.int16), diagnosis="LYMPHOMA", generator=3)
            ct, suv = result.ct, result.suv
            result.save(folder, volumes=False)
            metadata.update(diagnosis="LYMPHOMA", lesion_spec=None, lesion_seed=3)
        save_nifti(np.rint(ct).astype(np.int16), affine, folder / "ct.nii.gz")
        save_nifti(suv.astype(np.float32), affine, folder / "pet_suv.nii.gz")
        save_nifti(organs.astype(np.uint8), affine, folder / "organs.nii.gz")
        write_json(dict(LABEL_IDS), folder / "organs.json")
        write_json(metadata, folder / "metadata.json")
        d = subject.demographics
        rows.append([f"g{index}", f"{d.age:g}", d.sex, f"{d.weight:g}", f"{d.height:g}", index])
    with open(root / "cohort.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "age", "sex", "weight", "height", "seed"], *rows])
    assert (root / "g0" / "lesions.nii.gz").is_file() and load_nifti(root / "g0" / "lesions.nii.gz")[0].max() >= 1
    return root


def _volume(path: Path) -> np.ndarray:
    return load_nifti(path)[0]


def _export(capture, *args: str) -> tuple[int, str, str]:
    """``petct export ARGS`` -> (exit code, stdout, stderr); ``capture`` is pytest's capsys or capfd."""
    code = main(["export", *args])
    captured = capture.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------------------------- nnU-Net


def test_nnunet_datasets_pass_nnunets_integrity_check(generated, tmp_path, capfd):
    out = tmp_path / "nnUNet_raw"
    assert _export(capfd, "--format", "nnunet", "--input", str(generated), "--out", str(out), "--labels",
                   "lesions", "--dataset-id", "501", "--dataset-name", "Lesions")[0] == 0
    assert _export(capfd, "--format", "nnunet", "--input", str(generated), "--out", str(out), "--labels", "organs",
                   "--dataset-id", "502", "--dataset-name", "Organs")[0] == 0
    lesions, organs = out / "Dataset501_Lesions", out / "Dataset502_Organs"
    for root in (lesions, organs):
        dataset = json.loads((root / "dataset.json").read_text())
        assert dataset["channel_names"] == {"0": "CT", "1": "CT"} and dataset["file_ending"] == ".nii.gz"
        assert dataset["numTraining"] == 3
        for case in ("g0", "g1", "g2"):
            ct, ct_affine = load_nifti(root / "imagesTr" / f"{case}_0000.nii.gz")
            suv, suv_affine = load_nifti(root / "imagesTr" / f"{case}_0001.nii.gz")
            label, label_affine = load_nifti(root / "labelsTr" / f"{case}.nii.gz")
            assert ct.shape == suv.shape == label.shape
            assert np.allclose(ct_affine, label_affine) and np.allclose(suv_affine, label_affine)
            np.testing.assert_array_equal(ct, _volume(generated / case / "ct.nii.gz"))
            np.testing.assert_allclose(suv, _volume(generated / case / "pet_suv.nii.gz"), rtol=1e-6)
    # lesions: 0/1 as autoPET, the lesion-free subjects all zero
    assert json.loads((lesions / "dataset.json").read_text())["labels"] == {"background": 0, "tumor": 1}
    instances = _volume(generated / "g0" / "lesions.nii.gz")
    np.testing.assert_array_equal(_volume(lesions / "labelsTr" / "g0.nii.gz"), (instances > 0).astype(np.float32))
    for negative in ("g1", "g2"):
        assert not _volume(lesions / "labelsTr" / f"{negative}.nii.gz").any()
    # organs: TotalSegmentator names of the organs present, consecutive ids in TotalSegmentator order
    dataset = json.loads((organs / "dataset.json").read_text())
    present = sorted({int(v) for case in ("g0", "g1", "g2") for v in np.unique(_volume(generated / case /
                                                                                         "organs.nii.gz")) if v})
    assert list(dataset["labels"].values()) == list(range(len(present) + 1))
    assert list(dataset["labels"])[1:] == [LABELS[i] for i in present]
    assert dataset["totalsegmentator_ids"] == {LABELS[i]: i for i in present}
    exported = _volume(organs / "labelsTr" / "g1.nii.gz")
    source = _volume(generated / "g1" / "organs.nii.gz")
    for name, label_id in list(dataset["labels"].items())[1:]:
        assert np.array_equal(exported == label_id, source == LABEL_IDS[name]), name

    verify = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity",
                                 reason="nnU-Net v2 is not installed (pip install 'petct-diffusion[export]')")
    capfd.readouterr()
    for root in (lesions, organs):
        verify.verify_dataset_integrity(str(root), 1)  # raises on any problem
    printed = capfd.readouterr().out
    assert "verify_dataset_integrity Done" in printed
    assert "Error" not in printed and "Warning" not in printed, printed


def test_nnunet_export_reads_back_through_the_projects_nnunet_reader(generated, tmp_path):
    result = export_dataset(generated, tmp_path, "nnunet", labels="lesions")
    back = discover_inputs(result.root)
    assert back.layout == "nnunet" and len(back) == 3
    source = {s.subject_id: s for s in discover_inputs(generated).subjects}
    for subject in back.subjects:
        assert subject.demographics == source[subject.subject_id].demographics
        np.testing.assert_allclose(load_subject(subject).suv, load_subject(source[subject.subject_id]).suv, rtol=1e-6)


# ----------------------------------------------------------------------------------------------- AutoPET


def test_autopet_round_trip_through_discover_inputs_and_prepare(generated, tmp_path, capsys):
    out = tmp_path / "autopet"
    code, printed, _ = _export(capsys, "--format", "autopet", "--input", str(generated), "--out", str(out))
    assert code == 0 and printed.strip() == str(out)
    back = discover_inputs(out)
    assert back.layout == "autopet" and len(back) == 3 and not back.skipped
    with open(out / "demographics.csv", newline="") as handle:
        cohort_ids = {(row["subject"], row["study"]): row["cohort_id"] for row in csv.DictReader(handle)}
    source = {s.subject_id: s for s in discover_inputs(generated).subjects}
    for subject in back.subjects:
        original = source[cohort_ids[(subject.subject_id, subject.study_id)]]
        assert subject.demographics == original.demographics  # age, sex, weight, height
        assert subject.injected_dose_bq == pytest.approx(314.7e6) and subject.uptake_time_s == pytest.approx(3600)
        exported, expected = load_subject(subject), load_subject(original)
        assert np.allclose(exported.affine, expected.affine)
        body = expected.suv > 0.1
        assert np.max(np.abs(exported.suv[body] / expected.suv[body] - 1)) < 0.01
        np.testing.assert_array_equal(exported.ct, expected.ct)
        # PET.nii.gz in Bq/mL with the recorded dose and uptake gives the same SUV
        from dataclasses import replace

        from_activity = load_subject(replace(subject, pet=subject.directory / "PET.nii.gz", pet_is_suv=False))
        assert np.max(np.abs(from_activity.suv[body] / expected.suv[body] - 1)) < 0.01
        seg = _volume(subject.directory / "SEG.nii.gz")
        lesions = original.lesions
        np.testing.assert_array_equal(seg, (_volume(lesions) > 0) if lesions else np.zeros_like(seg))
        np.testing.assert_array_equal(_volume(subject.labels), _volume(original.labels))
        assert subject.diagnosis == ("LYMPHOMA" if lesions else "NEGATIVE")
        if lesions:
            assert (subject.directory / "lesions.json").read_text() == lesions.with_name("lesions.json").read_text()
    assert main(["prepare", "--data-dir", str(out)]) == 0
    assert "3 usable studies, 0 skipped" in capsys.readouterr().err


def test_phantom_population_keeps_its_autopet_names_and_pet(phantoms, tmp_path):
    result = export_dataset(phantoms, tmp_path / "copy", "autopet", labels="organs")
    source = discover_inputs(phantoms)
    back = discover_inputs(result.root)
    assert [s.key for s in back.subjects] == [s.key for s in source.subjects]
    for original, copy in zip(source.subjects, back.subjects):
        assert copy.demographics == original.demographics
        assert copy.injected_dose_bq == pytest.approx(original.injected_dose_bq, rel=1e-8)
        pet = _volume(copy.directory / "PET.nii.gz")
        expected = _volume(original.directory / "PET.nii.gz")
        assert np.max(np.abs(pet - expected)) <= 1e-4 * np.max(expected)


# ----------------------------------------------------------------------------------------------- DICOM


@pytest.fixture(scope="module")
def dicom_export(generated, tmp_path_factory) -> Path:
    pytest.importorskip("highdicom", reason="highdicom is not installed (pip install 'petct-diffusion[export]')")
    out = tmp_path_factory.mktemp("dicom")
    export_dataset(generated, out, "dicom", labels="lesions")
    return out


def _study_folder(root: Path, patient: str) -> Path:
    (study,) = (root / patient).iterdir()
    return study


def test_dicom_series_pass_the_iod_validator(dicom_export):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed: apt-get install dicom3tools")
    study = _study_folder(dicom_export, "g0")
    for path in (study / "CT" / "0010.dcm", study / "PET" / "0010.dcm", study / "SEG" / "0001.dcm"):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        lines = (report.stdout + report.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        assert errors == [], f"{path.relative_to(dicom_export)}: {errors}"
        assert lines[0] in ("CTImage", "PETImage", "Segmentation")  # it recognised the IOD it checked


def test_dicom_reads_back_with_the_same_geometry_suv_and_demographics(generated, dicom_export):
    from petct_pipeline.data.dicom_demographics import read_dicom_demographics
    from tests.helpers.dicom_series import read_series, suv_from_pet_headers

    rows = {row["subject"]: row for row in read_dicom_demographics(dicom_export).rows}
    assert sorted(rows) == ["g0", "g1", "g2"]
    sop_uids: set[str] = set()
    for subject in discover_inputs(generated).subjects:
        study = _study_folder(dicom_export, subject.subject_id)
        expected = load_subject(subject)
        ct, ct_affine, ct_datasets = read_series(study / "CT")
        pet, pet_affine, pet_datasets = read_series(study / "PET")
        np.testing.assert_allclose(ct_affine, expected.affine, atol=1e-3)
        np.testing.assert_allclose(pet_affine, expected.affine, atol=1e-3)
        np.testing.assert_array_equal(ct, expected.ct)
        body = expected.suv > 0.1
        suv = suv_from_pet_headers(pet, pet_datasets[0])
        assert np.max(np.abs(suv[body] / expected.suv[body] - 1)) < 0.01
        assert np.max(np.abs(suv - expected.suv)) <= 0.01 * expected.suv.max()
        # the project's DICOM reader: demographics, dose and uptake time give the same SUV
        row, d = rows[subject.subject_id], subject.demographics
        assert (row["sex"], row["weight"], row["height"], row["age"]) == (d.sex, d.weight, d.height, int(d.age))
        assert row["injected_dose_bq"] == pytest.approx(314.7e6) and row["uptake_time_s"] == pytest.approx(3600)
        reread = activity_to_suv(pet.astype(np.float32), row["injected_dose_bq"], row["uptake_time_s"], row["weight"])
        assert np.max(np.abs(reread[body] / expected.suv[body] - 1)) < 0.01
        # one Frame of Reference and study for CT, PET and SEG; synthetic everywhere; per-slice rescale
        import pydicom

        seg = pydicom.dcmread(study / "SEG" / "0001.dcm")
        for ds in (*ct_datasets, *pet_datasets, seg):
            assert ds.FrameOfReferenceUID == ct_datasets[0].FrameOfReferenceUID
            assert ds.StudyInstanceUID == ct_datasets[0].StudyInstanceUID
            assert str(ds.PatientName).startswith("SYNTHETIC") and ds.SeriesDescription.startswith("SYNTHETIC")
            assert ds.PatientID == subject.subject_id
            sop_uids.add(ds.SOPInstanceUID)
        assert len({float(ds.RescaleSlope) for ds in pet_datasets}) > 1
        assert {float(ds.RescaleIntercept) for ds in pet_datasets} == {0.0}
        assert {float(ds.RescaleIntercept) for ds in ct_datasets} == {-1024.0}
        assert float(pet_datasets[0].RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife) == 6586.2
        assert float(pet_datasets[0].PatientWeight) == pytest.approx(d.weight, rel=1e-9)
        assert float(pet_datasets[0].PatientSize) == pytest.approx(d.height / 100, rel=1e-9)
    assert len(sop_uids) == sum(len(list(_study_folder(dicom_export, p).rglob("*.dcm"))) for p in rows)


def test_dicom_seg_holds_the_lesion_labels(generated, dicom_export):
    import highdicom as hd

    from tests.helpers.dicom_series import read_series

    for patient in ("g0", "g1"):
        study = _study_folder(dicom_export, patient)
        _, _, ct_datasets = read_series(study / "CT")
        seg = hd.seg.segread(study / "SEG" / "0001.dcm")
        assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lesion"]
        frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in ct_datasets], segment_numbers=[1],
                                                   assert_missing_frames_are_empty=True)[..., 0]
        # back to (x, y, z) RAS+ as read_series orders the CT: frames are (slice, row, column) in L, P, S
        mask = np.transpose(frames, (2, 1, 0))[::-1, ::-1, :]
        lesions = generated / patient / "lesions.nii.gz"
        expected = (_volume(lesions) > 0) if lesions.is_file() else np.zeros(mask.shape, bool)
        np.testing.assert_array_equal(mask.astype(bool), expected)
        assert mask.any() == (patient == "g0")


def test_dicom_organ_seg_names_and_codes_every_organ(generated, tmp_path):
    pytest.importorskip("highdicom", reason="highdicom is not installed (pip install 'petct-diffusion[export]')")
    import highdicom as hd

    from tests.helpers.dicom_series import read_series

    subject = tmp_path / "in" / "g1"
    shutil.copytree(generated / "g1", subject)
    export_dataset(tmp_path / "in", tmp_path / "out", "dicom", labels="organs")
    study = _study_folder(tmp_path / "out", "g1")
    _, _, ct_datasets = read_series(study / "CT")
    seg = hd.seg.segread(study / "SEG" / "0001.dcm")
    organs = _volume(subject / "organs.nii.gz")
    present = [int(v) for v in np.unique(organs) if v]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [LABELS[i] for i in present]
    liver = next(s for s in seg.SegmentSequence if s.SegmentLabel == "liver")
    kidney = next(s for s in seg.SegmentSequence if s.SegmentLabel == "kidney_left")
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SNOMED CT liver
    assert (kidney.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
            kidney.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("99PETCTTS", str(LABEL_IDS["kidney_left"]))
    frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in ct_datasets],
                                               segment_numbers=[int(liver.SegmentNumber)],
                                               assert_missing_frames_are_empty=True)[..., 0]
    mask = np.transpose(frames, (2, 1, 0))[::-1, ::-1, :]
    np.testing.assert_array_equal(mask.astype(bool), organs == LABEL_IDS["liver"])


def test_dcm2niix_converts_the_dicom_back_to_the_same_volumes(generated, dicom_export, tmp_path):
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed: apt-get install dcm2niix")
    study = _study_folder(dicom_export, "g0")
    expected = load_subject(discover_inputs(generated).subjects[0])
    for series, values in (("CT", expected.ct), ("PET", None)):
        out = tmp_path / series
        out.mkdir()
        subprocess.run(["dcm2niix", "-z", "y", "-f", "volume", "-o", str(out), str(study / series)], check=True,
                       capture_output=True)
        volume, affine = load_nifti(out / "volume.nii.gz")
        np.testing.assert_allclose(affine, expected.affine, atol=1e-3)
        if values is not None:
            np.testing.assert_array_equal(volume, values)
        else:
            sidecar = json.loads((out / "volume.json").read_text())
            assert sidecar["Units"] == "BQML" and sidecar["RadionuclideTotalDose"] == pytest.approx(314.7e6)
            suv = activity_to_suv(volume, 314.7e6, 3600.0, discover_inputs(generated).subjects[0].demographics.weight)
            body = expected.suv > 0.1
            assert np.max(np.abs(suv[body] / expected.suv[body] - 1)) < 0.01


def test_lps_slices_place_every_voxel_where_the_affine_does():
    from petct_pipeline.export.dicom import lps_slices

    # an LAS-stored volume with anisotropic voxels: not the canonical order the exporter usually sees
    affine = np.array([[-2.0, 0, 0, 40], [0, 3.0, 0, -60], [0, 0, 5.0, -200], [0, 0, 0, 1]])
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    frames, geometry = lps_slices(volume, affine)
    row, column = np.array(geometry.orientation[:3]), np.array(geometry.orientation[3:])
    for i, j, k in ((0, 0, 0), (3, 4, 5), (1, 2, 3)):
        ras = affine @ [i, j, k, 1]
        lps = ras[:3] * [-1, -1, 1]
        # find the pixel of the DICOM slices whose LPS position is that point
        pixels = np.ndindex(*frames.shape)
        found = [(s, r, c) for s, r, c in pixels
                 if np.allclose(geometry.positions[s] + c * geometry.pixel_spacing[1] * row
                                + r * geometry.pixel_spacing[0] * column, lps)]
        assert len(found) == 1 and frames[found[0]] == volume[i, j, k]
    assert geometry.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # columns toward L, rows toward P
    assert geometry.positions[1, 2] > geometry.positions[0, 2]  # slices inferior to superior


def test_dicom_codes_are_dicoms_own():
    from pydicom.sr.codedict import codes

    from petct_pipeline.export.dicom import RADIONUCLIDE_CODE, RADIOPHARMACEUTICAL_CODE, dicom_uid, organ_code

    fluorine = "_18Fluorine"  # pydicom's keyword: a name cannot start with the digit of "18F"
    for ours, theirs in ((RADIONUCLIDE_CODE, getattr(codes.SCT, fluorine)),
                         (RADIOPHARMACEUTICAL_CODE, codes.SCT.FluorodeoxyglucoseF18)):
        assert ours == (theirs.value, theirs.scheme_designator, theirs.meaning)
    assert organ_code(LABEL_IDS["liver"])[:2] == ("10200004", "SCT")
    assert organ_code(LABEL_IDS["rib_left_3"]) == (str(LABEL_IDS["rib_left_3"]), "99PETCTTS", "rib_left_3")
    uid = dicom_uid("g0", "content", "CT")
    assert uid == dicom_uid("g0", "content", "CT") != dicom_uid("g0", "other content", "CT")
    assert uid.startswith("2.25.") and len(uid) <= 64


# ----------------------------------------------------------------------------------------------- bad input


def _copy(generated: Path, tmp_path: Path) -> Path:
    target = tmp_path / "in"
    shutil.copytree(generated, target)
    return target


def _crop(path: Path) -> None:
    array, affine = load_nifti(path)
    save_nifti(array[:, :, :-2].astype(np.uint8), affine, path)


BAD_INPUTS = {
    "unknown format": (["--format", "nifti"], None, ["--format 'nifti'", "nnunet, autopet, dicom"]),
    "unknown label set": (["--format", "nnunet", "--labels", "tumours"], None, ["--labels 'tumours'"]),
    "dataset id 0": (["--format", "nnunet", "--dataset-id", "0"], None, ["--dataset-id 0", "1..999"]),
    "dataset id 1000": (["--format", "nnunet", "--dataset-id", "1000"], None, ["--dataset-id 1000", "1..999"]),
    "dataset id not a number": (["--format", "nnunet", "--dataset-id", "x1"], None, ["--dataset-id 'x1'"]),
    "dataset id for dicom": (["--format", "dicom", "--dataset-id", "5"], None, ["--format nnunet only"]),
    "no organ labels": (["--format", "nnunet", "--labels", "organs"],
                        lambda root: (root / "g1" / "organs.nii.gz").unlink(), ["subject g1", "no organ labels"]),
    "lesions recorded, file missing": (["--format", "autopet"],
                                       lambda root: (root / "g0" / "lesions.nii.gz").unlink(),
                                       ["subject g0", "LYMPHOMA", "lesions.nii.gz is missing"]),
    "organs on another grid": (["--format", "dicom", "--labels", "organs"],
                               lambda root: _crop(root / "g2" / "organs.nii.gz"),
                               ["subject g2", "organs.nii.gz", "not on the grid"]),
    "lesions on another grid": (["--format", "nnunet"], lambda root: _crop(root / "g0" / "lesions.nii.gz"),
                                ["subject g0", "lesions.nii.gz", "not on the grid"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, generated, tmp_path, capsys):
    arguments, damage, expected = BAD_INPUTS[case]
    source = _copy(generated, tmp_path) if damage else generated
    if damage:
        damage(source)
    out = tmp_path / "out"
    code, printed, error = _export(capsys, *arguments, "--input", str(source), "--out", str(out))
    assert code == 2 and printed == ""
    assert len(error.strip().splitlines()) == 1, error
    for fragment in expected:
        assert fragment in error, error
    assert not out.exists()


def test_autopet_study_without_seg_is_named(phantoms, tmp_path, capsys):
    source = tmp_path / "in"
    shutil.copytree(phantoms, source)
    study = sorted(source.glob("PETCT_*/*"))[1]
    (study / "SEG.nii.gz").unlink()
    code, _, error = _export(capsys, "--format", "autopet", "--input", str(source), "--out", str(tmp_path / "out"))
    assert code == 2 and len(error.strip().splitlines()) == 1
    assert f"subject {study.parent.name}/{study.name}" in error and "no lesion labels (SEG.nii.gz" in error
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------- output folder


def test_non_empty_output_is_refused_unless_overwrite(generated, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, error = _export(capsys, "--format", "autopet", "--input", str(generated), "--out", str(out))
    assert code == 2 and "is not empty" in error and "--overwrite" in error and len(error.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert _export(capsys, "--format", "autopet", "--input", str(generated), "--out", str(out), "--overwrite")[0] == 0
    assert not (out / "notes.txt").exists() and len(discover_inputs(out)) == 3
    # another export (other labels) into the finished one is refused too, naming what differs
    code, _, error = _export(capsys, "--format", "autopet", "--labels", "organs", "--input", str(generated),
                             "--out", str(out))
    assert code == 2 and "holds another export (different labels)" in error
    # and the output may not be the input or contain it
    code, _, error = _export(capsys, "--format", "dicom", "--input", str(generated), "--out", str(generated.parent))
    assert code == 2 and "overlap" in error


def test_an_interrupted_export_resumes_with_the_unfinished_subjects(generated, tmp_path, capsys, monkeypatch):
    from petct_pipeline.export.autopet import AutopetWriter

    source = _copy(generated, tmp_path)
    out = tmp_path / "out"
    original = AutopetWriter.write

    def crash_on_g2(self, subject, volumes, staging):
        if subject.key == "g2":
            original(self, subject, volumes, staging)  # g2's files are written, but never put in place
            raise KeyboardInterrupt
        return original(self, subject, volumes, staging)

    monkeypatch.setattr(AutopetWriter, "write", crash_on_g2)
    assert main(["export", "--format", "autopet", "--input", str(source), "--out", str(out)]) == 130
    monkeypatch.undo()
    studies = sorted(out.glob("PETCT_*/*"))
    assert len(studies) == 2 and not list(out.glob(".export-staging-*")) and not (out / "Metadata.csv").exists()
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    mtimes = {p: p.stat().st_mtime_ns for study in studies for p in study.iterdir()}

    result = export_dataset(source, out, "autopet")
    assert result.written == ["g2"] and result.skipped == ["g0", "g1"]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # finished subjects were not rewritten
    assert len(discover_inputs(out)) == 3 and json.loads((out / MANIFEST).read_text())["complete"] is True

    # a second run finds everything in place; a subject whose input changed is exported again
    assert export_dataset(source, out, "autopet").skipped == ["g0", "g1", "g2"]
    suv, affine = load_nifti(source / "g1" / "pet_suv.nii.gz")
    save_nifti(suv * 1.1, affine, source / "g1" / "pet_suv.nii.gz")
    os.utime(source / "g1" / "pet_suv.nii.gz", ns=(1, 1))
    again = export_dataset(source, out, "autopet")
    assert again.written == ["g1"]
    (study,) = [s for s in discover_inputs(out).subjects if s.demographics == discover_inputs(source).subjects[1]
                .demographics]
    np.testing.assert_allclose(_volume(study.directory / "SUV.nii.gz"), suv * 1.1, rtol=1e-6)
    code, _, error = _export(capsys, "--format", "autopet", "--input", str(source), "--out", str(out))
    assert code == 0 and "(3 already there)" in error


def test_a_damaged_volume_stops_at_its_subject_with_the_others_complete(generated, tmp_path, capsys):
    from tests.helpers.autopet import truncate_gzip

    source = _copy(generated, tmp_path)
    truncate_gzip(source / "g2" / "pet_suv.nii.gz")
    out = tmp_path / "out"
    code, _, error = _export(capsys, "--format", "nnunet", "--input", str(source), "--out", str(out))
    assert code == 2 and len(error.strip().splitlines()) == 1 and "subject g2: cannot read" in error
    dataset = out / "Dataset500_PETCTSynthetic"
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == [
        "g0_0000.nii.gz", "g0_0001.nii.gz", "g1_0000.nii.gz", "g1_0001.nii.gz"]
    assert not (dataset / "dataset.json").exists() and not list(dataset.glob(".export-staging-*"))


def test_the_default_dose_and_uptake_time_are_the_options_and_recorded(generated, tmp_path, capsys):
    source = tmp_path / "in"
    shutil.copytree(generated / "g1", source / "g1")
    out = tmp_path / "out"
    assert _export(capsys, "--format", "autopet", "--input", str(source), "--out", str(out),
                   "--injected-dose-mbq", "250", "--uptake-time-min", "75")[0] == 0
    (study,) = out.glob("PETCT_*/*")
    record = json.loads((study / "acquisition.json").read_text())
    assert (record["injected_dose_bq"], record["uptake_time_s"], record["dose_source"]) == (250e6, 4500.0, "default")
    weight = discover_inputs(source).subjects[0].demographics.weight
    suv = activity_to_suv(_volume(study / "PET.nii.gz"), 250e6, 4500.0, weight)
    np.testing.assert_allclose(suv, _volume(source / "g1" / "pet_suv.nii.gz"), rtol=1e-5, atol=1e-6)
    code, _, error = _export(capsys, "--format", "autopet", "--input", str(source), "--out", str(tmp_path / "o2"),
                             "--injected-dose-mbq", "0")
    assert code == 2 and "--injected-dose-mbq 0 is out of range" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "o2").exists()


def test_an_nnunet_dataset_id_already_taken_by_another_dataset_is_refused(generated, tmp_path, capsys):
    out = tmp_path / "nnUNet_raw"
    assert _export(capsys, "--format", "nnunet", "--input", str(generated), "--out", str(out), "--dataset-id", "42",
                   "--dataset-name", "First")[0] == 0
    code, _, error = _export(capsys, "--format", "nnunet", "--input", str(generated), "--out", str(out),
                             "--dataset-id", "42", "--dataset-name", "Second")
    assert code == 2 and "--dataset-id 42 is already used by" in error and "Dataset042_First" in error
    assert sorted(p.name for p in out.iterdir()) == ["Dataset042_First"]
