"""PET from a given CT (``petct generate --ct``, ``pipe.pet_from_ct``): grids, values, placement, refusals.

A tiny random pipeline does the sampling (the figures of the shipped model are the benchmark's,
benchmarks/bench_ct_to_pet.py); what is tested is the contract: the PET lies on exactly the input's
grid in any orientation, spacing and dtype, the CT comes back unchanged, the placement is recorded and
nothing is written outside the model's frame, and every bad input is one line, exit code 2, no files.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from petct_pipeline import Demographics
from petct_pipeline.cli import main
from petct_pipeline.conditional import check_ct_values, read_ct
from petct_pipeline.conditional.placement import AxialProfiles, estimate_offset, fit_at
from petct_pipeline.errors import InputError
from tests.helpers.synthetic_ct import synthetic_ct

DEMOGRAPHICS = ["--age", "60", "--sex", "F", "--weight", "70", "--height", "165"]


def run_generate(tmp_path: Path, model: Path, ct: Path, *extra: str, out_name: str = "out") -> tuple[int, Path]:
    out = tmp_path / out_name
    code = main(["generate", "--ct", str(ct), *DEMOGRAPHICS, "--model", str(model), "--out", str(out), "--steps", "2",
                 "--sr-steps", "1", "--no-labels", *extra])
    return code, out


@pytest.mark.parametrize(("orientation", "spacing", "dtype"), [
    ("RAS", (4.0, 4.0, 4.0), np.int16),
    ("LPS", (1.5, 1.5, 3.0), np.float32),
    ("LAS", (0.9, 1.1, 2.5), np.int32),
])
def test_pet_lies_on_exactly_the_input_grid_and_the_ct_comes_back_unchanged(tmp_path, tiny_pipeline_dir, orientation,
                                                                           spacing, dtype):
    image = synthetic_ct(spacing=spacing, orientation=orientation, dtype=dtype)
    path = tmp_path / "input.nii.gz"
    nib.save(image, path)
    code, out = run_generate(tmp_path, tiny_pipeline_dir, path)
    assert code == 0
    given = nib.load(path)
    pet = nib.load(out / "pet_suv.nii.gz")
    ct = nib.load(out / "ct.nii.gz")
    assert pet.shape == given.shape and ct.shape == given.shape
    np.testing.assert_allclose(pet.affine, given.affine, atol=1e-5)
    assert nib.aff2axcodes(pet.affine) == tuple(orientation)
    assert ct.get_data_dtype() == given.get_data_dtype()
    np.testing.assert_array_equal(np.asarray(ct.dataobj), np.asarray(given.dataobj))
    values = np.asarray(pet.dataobj)
    assert np.isfinite(values).all() and values.min() >= 0
    air = np.asarray(given.dataobj) <= -990  # outside the body the PET is zero
    assert values[air & (np.asarray(given.dataobj) > -2000)].max() == 0.0
    assert values[~air].max() > 0
    metadata = json.loads((out / "metadata.json").read_text())
    record = metadata["ct_to_pet"]
    assert record["input_ct"]["orientation"] == orientation
    assert record["input_ct"]["shape"] == list(given.shape)
    assert record["placement"]["method"] == "profile"
    assert metadata["demographics"]["weight"] == 70


def test_partial_field_of_view_placement_is_recorded_and_nothing_is_written_outside_the_frame(tmp_path,
                                                                                           tiny_pipeline_dir):
    # the tiny pipeline's frame: vertex to 2 * (146.629 * 1.65 + 110.419) = 704.7 mm below it
    path = tmp_path / "abdomen.nii.gz"
    image = synthetic_ct(extent_mm=(360.0, 280.0, 400.0), top_mm=-100.0)
    nib.save(image, path)
    code, out = run_generate(tmp_path, tiny_pipeline_dir, path, "--ct-offset-mm", "500")
    assert code == 0
    record = json.loads((out / "metadata.json").read_text())["ct_to_pet"]
    assert record["placement"]["method"] == "given"
    assert record["placement"]["offset_mm"] == 500.0
    assert record["placement"]["vertex_mm"] == pytest.approx(400.0)  # the CT's top (-100 mm) plus 500 mm
    low, high = record["pet_generated_where"]["z_mm"]
    assert high == pytest.approx(400.0) and 400.0 - 704.7 - 32.0 <= low <= 400.0 - 704.7  # whole 32 mm output slices
    assert 0 < record["pet_generated_where"]["body_fraction_covered"] < 1
    pet = np.asarray(nib.load(out / "pet_suv.nii.gz").dataobj)
    centres_z = image.affine[2, 3] + image.affine[2, 2] * np.arange(image.shape[2])
    below = centres_z < low - 4.0
    assert below.any() and pet[:, :, below].max() == 0.0
    assert pet[:, :, centres_z > low + 40].max() > 0


def test_pipeline_entry_points_give_the_same_pet(tmp_path, tiny_pipeline):
    path = tmp_path / "ct.nii"
    nib.save(synthetic_ct(), path)
    subject = Demographics(age=60, sex="F", weight=70, height=165)
    kwargs = {"num_inference_steps": 2, "sr_num_inference_steps": 1}
    one = tiny_pipeline(subject, ct=path, generator=torch.Generator().manual_seed(3), **kwargs)
    two = tiny_pipeline.pet_from_ct(path, subject, generator=torch.Generator().manual_seed(3), **kwargs)
    np.testing.assert_array_equal(one.pet, two.pet)
    repaint = tiny_pipeline.pet_from_ct(path, subject, generator=torch.Generator().manual_seed(3), method="repaint",
                                        jumps=2, **kwargs)
    assert repaint.pet.shape == one.pet.shape and np.isfinite(repaint.pet).all()
    assert repaint.metadata["ct_to_pet"]["conditioning"] == {**repaint.metadata["ct_to_pet"]["conditioning"],
                                                             "method": "repaint", "jumps": 2}
    with pytest.raises(InputError, match="ct_offset_mm"):
        tiny_pipeline(subject, ct_offset_mm=10.0)


def test_unsigned_hu_convention_is_shifted_and_recorded_and_the_file_kept(tmp_path, tiny_pipeline_dir):
    path = tmp_path / "unsigned.nii.gz"
    nib.save(synthetic_ct(dtype=np.uint16, hu_offset=-1024.0), path)
    code, out = run_generate(tmp_path, tiny_pipeline_dir, path)
    assert code == 0
    record = json.loads((out / "metadata.json").read_text())["ct_to_pet"]
    assert record["input_ct"]["hu_offset_applied"] == -1024.0
    np.testing.assert_array_equal(np.asarray(nib.load(out / "ct.nii.gz").dataobj), np.asarray(nib.load(path).dataobj))


def write_dicom_series(folder: Path, image: nib.Nifti1Image) -> None:
    """A CT series (axial slices, LPS patient frame, stored = HU + 1024) from a canonical RAS image."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir()
    data = np.asarray(image.dataobj).astype(np.int16)
    spacing = image.header.get_zooms()
    series = generate_uid()
    for k in range(data.shape[2]):
        position = image.affine @ np.array([0, 0, k, 1.0])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.Modality = "CT"
        ds.ImagePositionPatient = [float(-position[0]), float(-position[1]), float(position[2])]  # RAS -> LPS
        ds.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]  # rows run to the patient's right, columns front
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (data[:, :, k].T + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)
    (folder / "README.txt").write_text("not DICOM")


def test_dicom_series_input_gives_the_pet_on_the_series_grid(tmp_path, tiny_pipeline_dir):
    from tests.helpers.dicom_series import read_series

    image = synthetic_ct(spacing=(4.0, 4.0, 5.0))
    write_dicom_series(tmp_path / "series", image)
    code, out = run_generate(tmp_path, tiny_pipeline_dir, tmp_path / "series")
    assert code == 0
    values, affine, _ = read_series(tmp_path / "series")  # the tests' own reader, independent of the library's
    pet, ct = nib.load(out / "pet_suv.nii.gz"), nib.load(out / "ct.nii.gz")
    assert pet.shape == ct.shape
    np.testing.assert_allclose(pet.affine, ct.affine, atol=1e-5)
    pet, ct = nib.as_closest_canonical(pet), nib.as_closest_canonical(ct)
    assert pet.shape == values.shape
    np.testing.assert_allclose(pet.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(ct.dataobj), values)
    np.testing.assert_array_equal(values, np.asarray(image.dataobj))


def test_the_real_dicom_fixture_reads_with_its_geometry():
    from petct_pipeline.data.dicom_series import read_dicom_series
    from tests.helpers.dicom_series import read_series

    folder = Path(__file__).parent / "fixtures" / "example_ct_dicom"
    series = read_dicom_series(folder)
    values, affine, _ = read_series_any(folder, read_series)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(series.values, series.affine))
    np.testing.assert_allclose(canonical.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(canonical.dataobj), values)
    assert series.modality == "CT" and series.values.min() == -1024
    with pytest.raises(InputError, match="span at least"):  # four 2 mm slices are too thin a volume
        read_ct(folder)


def read_series_any(folder: Path, reader):
    """The tests' reader takes *.dcm; the fixture's files have no suffix, so read them through links."""
    import tempfile

    links = Path(tempfile.mkdtemp())
    for path in folder.glob("CT.*"):
        (links / f"{path.name}.dcm").symlink_to(path.resolve())
    return reader(links)


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the one-line error must contain)."""
    cases = {}
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    cases["empty file"] = (empty, "empty")
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    cases["not an image"] = (text, "not a readable NIfTI")
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 1), np.int16) - 1000, np.eye(4)), flat)
    cases["2D image"] = (flat, "2D image")
    slice2d = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), slice2d)
    cases["2D array"] = (slice2d, "2D image")
    ct = np.asarray(synthetic_ct().dataobj).astype(np.float32)
    pet = tmp_path / "pet.nii.gz"
    nib.save(nib.Nifti1Image(np.where(ct > -900, 1.5, 0.0).astype(np.float32), np.diag([4, 4, 4, 1.0])), pet)
    cases["a PET in SUV"] = (pet, "not a CT")
    labels = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.where(ct > -900, 5, 0).astype(np.uint8), np.diag([4, 4, 4, 1.0])), labels)
    cases["a label map"] = (labels, "not a CT")
    mr = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(np.where(ct > -900, 600.0 + ct, 0.0).astype(np.float32), np.diag([4, 4, 4, 1.0])), mr)
    cases["an MR"] = (mr, "not a CT")
    constant = tmp_path / "constant.nii.gz"
    nib.save(nib.Nifti1Image(np.full((40, 40, 40), -1000, np.int16), np.diag([4, 4, 4, 1.0])), constant)
    cases["an empty image"] = (constant, "not a CT")
    coarse = tmp_path / "coarse.nii.gz"
    nib.save(nib.Nifti1Image(ct.astype(np.int16), np.diag([20, 20, 4, 1.0])), coarse)
    cases["spacing"] = (coarse, "spacing")
    cases["missing"] = (tmp_path / "nope.nii.gz", "no such file")
    return cases


def test_each_bad_input_is_one_line_exit_code_2_and_nothing_written(tmp_path, tiny_pipeline_dir, capsys):
    for name, (path, phrase) in bad_inputs(tmp_path).items():
        code, out = run_generate(tmp_path, tiny_pipeline_dir, path, out_name=f"out_{name.replace(' ', '_')}")
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert len(err.splitlines()) == 1 and "--ct" in err and phrase in err, (name, err)
        assert not out.exists(), name


def test_bad_flags_with_ct_are_refused_before_work(tmp_path, tiny_pipeline_dir, capsys):
    path = tmp_path / "ct.nii.gz"
    nib.save(synthetic_ct(), path)
    for extra, phrase in ((["--ct-offset-mm", "nan"], "--ct-offset-mm"), (["--ct-offset-mm", "5000"], "--ct-offset-mm"),
                          (["--diagnosis", "LYMPHOMA"], "--diagnosis"), (["--ct-offset-mm", "-900"], "outside")):
        code, out = run_generate(tmp_path, tiny_pipeline_dir, path, *extra)
        err = capsys.readouterr().err.strip()
        assert code == 2 and phrase in err and len(err.splitlines()) == 1, (extra, err)
        assert not out.exists()
    code = main(["generate", "--ct", str(path), "--age", "60", "--out", str(tmp_path / "x")])
    assert code == 2 and "missing --sex" in capsys.readouterr().err
    code = main(["generate", *DEMOGRAPHICS, "--ct-offset-mm", "10", "--out", str(tmp_path / "y")])
    assert code == 2 and "goes with --ct" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_ct_value_check_accepts_ct_conventions_and_names_the_range():
    ct = np.asarray(synthetic_ct().dataobj).astype(np.float32)
    hu, offset = check_ct_values(ct, "--ct x")
    assert offset == 0.0 and np.array_equal(hu, ct)
    hu, offset = check_ct_values(ct + 1024, "--ct x", integral=True)
    assert offset == -1024.0 and np.array_equal(hu, ct)
    with pytest.raises(InputError, match=r"not a CT: no air .* values in \[24, 1724\]"):
        check_ct_values(ct + 1024, "--ct x", integral=False)  # float with no air: not shifted
    with_nan = ct.copy()
    with_nan[0] = np.nan
    assert np.isfinite(check_ct_values(with_nan, "--ct x")[0]).all()


def profiles(body: list[float], lung: list[float]) -> AxialProfiles:
    return AxialProfiles(body=np.asarray(body, float), lung=np.asarray(lung, float))


def test_profile_matching_recovers_a_chest_ct_offset_and_the_body_size_ratio():
    rng = np.random.default_rng(0)
    n = 90  # a 720 mm reference frame in 8 mm slabs: head, neck, chest with lungs, abdomen
    z = np.arange(n)
    body = np.where(z < 25, 150 + 4 * z, 500 + 100 * np.sin(z / 9.0))
    lung = np.where((z > 30) & (z < 58), 120 * np.sin(np.pi * (z - 30) / 28), 0.0)
    reference = profiles(body, lung)
    start, length = 26, 40  # a CT from 208 mm below the vertex, 320 mm long
    ct = profiles(1.3 * body[start:start + length] + rng.normal(0, 5, length),
                  1.3 * lung[start:start + length] + rng.normal(0, 2, length))
    offset, ratio, error = estimate_offset(ct, reference, n * 8.0)
    assert offset == pytest.approx(start * 8.0, abs=8.0)
    assert ratio == pytest.approx(1.3, abs=0.05) and error < 0.05
    scale, _ = fit_at(ct, reference, n * 8.0, start * 8.0)
    assert scale == pytest.approx(ratio, abs=0.05)
    # a CT whose top slabs are air above the head is placed by the vertex
    whole = profiles(np.concatenate([np.zeros(5), body]), np.concatenate([np.zeros(5), lung]))
    assert estimate_offset(whole, reference, n * 8.0)[0] == pytest.approx(-40.0, abs=8.0)


# ------------------------------------------------ the shipped model on a phantom and on real public CTs (slow)


def shipped_run(tmp_path: Path, ct: Path, *demographics: str) -> tuple[Path, dict]:
    from petct_pipeline.checkpoints import default_model

    out = tmp_path / "out"
    code = main(["generate", "--ct", str(ct), *demographics, "--seed", "0", "--model", str(default_model()),
                 "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "metadata.json").read_text())


def organ_suv(out: Path, *names: str) -> float | None:
    from petct_pipeline.organs import organ_mask

    labels = np.asarray(nib.load(out / "organs.nii.gz").dataobj)
    pet = np.asarray(nib.load(out / "pet_suv.nii.gz").dataobj)
    mask = np.zeros(labels.shape, bool)
    for name in names:
        mask |= organ_mask(labels, name)
    return float(pet[mask].mean()) if mask.sum() > 20 else None


def check_on_input_grid(out: Path, ct: Path) -> np.ndarray:
    given, pet = nib.load(ct), nib.load(out / "pet_suv.nii.gz")
    assert pet.shape == given.shape
    np.testing.assert_allclose(pet.affine, given.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(nib.load(out / "ct.nii.gz").dataobj), np.asarray(given.dataobj))
    values = np.asarray(pet.dataobj)
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() > 1
    return values


@pytest.mark.slow
def test_shipped_model_on_a_held_out_phantom_ct_beats_chance(tmp_path):
    from petct_pipeline.phantom import generate_phantom

    subject = Demographics(age=55, sex="M", weight=80, height=176)
    phantom = generate_phantom(subject, 1001, spacing=4.0)
    path = tmp_path / "phantom_ct.nii.gz"
    nib.save(nib.Nifti1Image(phantom.ct_hu.astype(np.int16), phantom.affine), path)
    out, metadata = shipped_run(tmp_path, path, "--age", "55", "--sex", "M", "--weight", "80", "--height", "176")
    pet = check_on_input_grid(out, path)
    placement = metadata["ct_to_pet"]["placement"]
    body_top = phantom.affine[2, 3] + 4.0 * (np.nonzero((phantom.ct_hu > -500).any(axis=(0, 1)))[0].max() + 0.5)
    assert abs(placement["vertex_mm"] - body_top) <= 40.0
    from petct_pipeline.organs import organ_mask

    for organ in ("liver", "brain"):  # organ SUVmean on the phantom's own labels within 35 % of its own PET
        mask = organ_mask(phantom.organs, organ)
        truth, value = phantom.suv[mask].mean(), pet[mask].mean()
        assert abs(value - truth) / truth < 0.35, (organ, value, truth)
    lungs = organ_mask(phantom.organs, "lungs")
    assert pet[lungs].mean() < pet[organ_mask(phantom.organs, "liver")].mean()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["totalseg_example", "totalseg_aorta_chest"])
def test_shipped_model_on_a_real_public_ct(tmp_path, name):
    from tests.helpers.public_cts import fetch_public_ct

    path = fetch_public_ct(name)
    if path is None:
        pytest.skip(f"the TotalSegmentator sdist holding {name} could not be downloaded")
    out, metadata = shipped_run(tmp_path, path, "--age", "60", "--sex", "M", "--weight", "80", "--height", "175")
    check_on_input_grid(out, path)
    record = metadata["ct_to_pet"]
    assert record["placement"]["method"] == "profile"
    assert record["input_ct"]["orientation"] == "".join(nib.aff2axcodes(nib.load(path).affine))
    lungs, liver = organ_suv(out, "lungs"), organ_suv(out, "liver")
    if lungs is not None and liver is not None:  # plausible where both are in the field of view
        assert lungs < liver


def test_demographics_that_contradict_the_ct_give_one_warning_line_and_still_the_pet(tmp_path, tiny_pipeline_dir,
                                                                                   monkeypatch, capsys):
    import logging

    from petct_pipeline.conditional import ct_to_pet
    from petct_pipeline.conditional.placement import ct_profiles

    path = tmp_path / "ct.nii.gz"
    nib.save(synthetic_ct(), path)
    ct = read_ct(path)
    own, _, _ = ct_profiles(ct.hu, ct.affine)
    for scale, warned in ((1.0, False), (2.0, True)):  # the model expects the CT's own body, then one twice as large
        expected = AxialProfiles(body=np.concatenate([np.zeros(30), scale * own.body, np.zeros(40)]),
                                 lung=np.concatenate([np.zeros(30), scale * own.lung, np.zeros(40)]))
        monkeypatch.setattr(ct_to_pet, "expected_profiles", lambda *args, expected=expected: expected)
        # main() installs a stderr handler, as the installed command does, where the root logger has none;
        # monkeypatch restores pytest's handlers afterwards (a handler left on a closed capture breaks later tests)
        monkeypatch.setattr(logging.getLogger(), "handlers", [])
        code, out = run_generate(tmp_path, tiny_pipeline_dir, path, out_name=f"out{scale:g}")
        err = [line for line in capsys.readouterr().err.splitlines() if "body size" in line]
        assert code == 0 and (out / "pet_suv.nii.gz").is_file()
        record = json.loads((out / "metadata.json").read_text())["ct_to_pet"]
        assert record["placement"]["offset_mm"] == pytest.approx(240.0, abs=8.0)
        if warned:
            assert len(err) == 1 and "0.50 times" in err[0] and "--weight" in err[0]
            assert record["warnings"][0].startswith("body size")
        else:
            assert err == [] and record["placement"]["body_size_ratio"] == pytest.approx(1.0, abs=0.02)
