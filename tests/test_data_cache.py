"""Preprocessing (grid, vertex alignment, body mask, model space) and the config-keyed cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from petct_pipeline.cli import main
from petct_pipeline.data import (
    CachedVolumeDataset,
    PreprocessConfig,
    build_cache,
    dataset_key,
    open_cache,
    preprocess_study,
    scan_autopet,
)
from petct_pipeline.data.preprocess import default_shape
from petct_pipeline.data.study import StudyRecord
from petct_pipeline.demographics import Demographics
from petct_pipeline.intensity import from_model_space, hu_to_model, suv_to_model
from tests.helpers.autopet import (
    DEFAULT_SUBJECTS,
    truncate_gzip,
    write_autopet_population,
    write_autopet_study,
)

SMALL = PreprocessConfig(spacing=16, shape=(16, 16, 24))


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    return write_autopet_population(tmp_path_factory.mktemp("pop") / "autopet", DEFAULT_SUBJECTS[:2])


def test_config_validation_and_hash():
    assert PreprocessConfig(spacing=8).hash == PreprocessConfig(spacing=8.0).hash
    assert PreprocessConfig(spacing=8).hash != PreprocessConfig(spacing=8, mask_outside_body=False).hash
    assert default_shape(2) == (224, 224, 384) and default_shape(16) == (28, 28, 48)
    with pytest.raises(ValueError, match=r"spacing must be one of \[2, 4, 8, 16\] mm, got 3"):
        PreprocessConfig(spacing=3)
    with pytest.raises(ValueError, match="shape must be three positive integers"):
        PreprocessConfig(shape=(10, 10))
    with pytest.raises(ValueError, match="unknown preprocessing option"):
        PreprocessConfig.from_mapping({"spacing": 8, "spaceing": 4})


def test_preprocess_vertex_aligned_body_masked_model_space(population):
    study = scan_autopet(population).studies[0]
    result = preprocess_study(study, SMALL)
    assert result.volume.shape == (2, 16, 16, 24) and result.volume.dtype == np.float32
    ct, suv = from_model_space(result.volume[0], result.volume[1])
    body_slices = np.nonzero((ct > -500).any(axis=(0, 1)))[0]
    assert body_slices.max() == 23  # the vertex is in the top slice
    np.testing.assert_allclose(ct[..., :2], -1000.0, atol=1e-3)  # below the scan: air
    assert suv[..., :2].max() == 0.0
    # the table (2 voxels at the back, y = 0..16 mm at 8 mm) is outside the body: air
    assert ct[:, 0, :].max() < -900.0
    assert study.demographics.height == 180.0
    # model space is the library's transform: values map back to HU/SUV
    assert result.volume[0].min() == pytest.approx(float(hu_to_model(-1000.0)), abs=1e-5)
    assert result.volume[1].min() == pytest.approx(float(suv_to_model(0.0)), abs=1e-6)
    assert 5.0 < suv.max() <= 20.0  # brain/bladder after 16 mm partial-volume averaging
    assert result.info["valid_slices"] == 20  # 320 mm of scan at 16 mm
    assert result.info["sources"] == {"pet": "SUV", "ct": "CTres.nii.gz"}


def test_lps_study_gives_the_same_volume(tmp_path):
    ras = write_autopet_study(tmp_path, "PETCT_aaaaaaaaaa", 1)
    lps = write_autopet_study(tmp_path, "PETCT_bbbbbbbbbb", 1, lps=True)
    demo = Demographics(age=50, sex="F", weight=75, height=175)
    volumes = []
    for folder in (ras, lps):
        record = StudyRecord("s", folder.name, folder, demo, ctres=folder / "CTres.nii.gz", suv=folder / "SUV.nii.gz",
                             organs=folder / "organs.nii.gz")
        result = preprocess_study(record, SMALL)
        volumes.append((result.volume, result.organs))
    np.testing.assert_allclose(volumes[0][0], volumes[1][0], atol=1e-5)
    np.testing.assert_array_equal(volumes[0][1], volumes[1][1])


def test_ct_resampled_to_pet_grid_and_pet_converted(tmp_path):
    """No CTres and no SUV: CT at 4 mm is resampled to the 8 mm PET grid, PET Bq/mL becomes SUV."""
    fine = write_autopet_study(tmp_path / "fine", "PETCT_cccccccccc", 1, shape=(48, 48, 80), spacing=(4.0, 4.0, 4.0))
    coarse = write_autopet_study(tmp_path / "coarse", "PETCT_cccccccccc", 1)
    demo = Demographics(age=50, sex="F", weight=75, height=175)
    reference = StudyRecord("s", "x", coarse, demo, ctres=coarse / "CTres.nii.gz", suv=coarse / "SUV.nii.gz")
    mixed = StudyRecord("s", "x", coarse, demo, ct=fine / "CT.nii.gz", pet=coarse / "PET.nii.gz",
                        injected_dose_bq=3.147e8, uptake_time_s=3600.0)
    unmasked = PreprocessConfig(spacing=16, shape=(16, 16, 24), mask_outside_body=False)
    a = preprocess_study(reference, unmasked)
    b = preprocess_study(mixed, unmasked)
    assert b.info["sources"]["ct"] == "CT.nii.gz resampled to the PET grid"
    assert b.info["sources"]["pet"] == "PET (Bq/mL) -> SUV"
    np.testing.assert_allclose(a.volume[1], b.volume[1], atol=1e-4)  # SUV recomputed = SUV file
    ct_a, _ = from_model_space(a.volume[0], a.volume[1])
    ct_b, _ = from_model_space(b.volume[0], b.volume[1])
    assert np.median(np.abs(ct_a - ct_b)) < 5.0  # same anatomy, different CT sampling


def test_grids_of_different_spacing_are_nested(population):
    study = scan_autopet(population).studies[0]
    low = preprocess_study(study, PreprocessConfig(spacing=16, shape=(8, 8, 12)))
    high = preprocess_study(study, PreprocessConfig(spacing=8, shape=(16, 16, 24)))
    # same extent: the 8 mm voxel centres sit a quarter of a 16 mm voxel inside each 16 mm voxel
    np.testing.assert_allclose(high.scanner_affine[:3, 3], low.scanner_affine[:3, 3] - 4.0)
    # so trilinear upsampling (what the SR stage does) of the coarse volume approximates the fine one
    up = torch.nn.functional.interpolate(torch.from_numpy(low.volume)[None], scale_factor=2, mode="trilinear")[0]
    aligned = np.abs(up.numpy() - high.volume).mean()
    assert aligned < 0.15  # what remains is detail below 16 mm: the residual the SR stage learns
    for axis in (1, 2, 3):  # one fine voxel off along any axis fits worse
        for shift in (-1, 1):
            assert np.abs(np.roll(up.numpy(), shift, axis=axis) - high.volume).mean() > aligned


def test_cache_build_reuse_rebuild_and_dataset(tmp_path):
    root = write_autopet_population(tmp_path / "d", DEFAULT_SUBJECTS[:3])  # the third misses its weight
    scan = scan_autopet(root)
    index = build_cache(scan, tmp_path / "cache", SMALL, num_workers=2, progress=False)
    assert index.directory == tmp_path / "cache" / SMALL.hash / dataset_key(scan)
    assert index.directory.name.startswith("d-")
    assert len(index) == 2 and index.summary["processed"] == 2
    assert [s["path"].split("/")[0] for s in index.skipped] == ["PETCT_0000000002"]
    data = json.loads((index.directory / "index.json").read_text())
    assert data["config"]["spacing"] == 16.0 and data["summary"]["skipped"] == 1
    entry = data["studies"][0]
    assert entry["demographics"] == {"age": 63.0, "sex": "M", "weight": 82.0, "height": 180.0}
    volume = np.load(index.directory / entry["volume"])
    assert volume.dtype == np.float16 and volume.shape == (2, 16, 16, 24)
    organs = np.load(index.directory / entry["organs"])
    assert organs.dtype == np.uint8 and set(np.unique(organs)) <= {0, 5, 10, 21, 90}

    again = build_cache(scan, tmp_path / "cache", SMALL, progress=False)
    assert again.summary["reused"] == 2 and again.summary["processed"] == 0
    study_dir = scan.studies[0].directory
    os.utime(study_dir / "SUV.nii.gz", ns=(1, 1))  # a changed file is preprocessed again
    assert build_cache(scan, tmp_path / "cache", SMALL, progress=False).summary["processed"] == 1
    other = PreprocessConfig(spacing=16, shape=(16, 16, 24), mask_outside_body=False)
    rebuilt = build_cache(scan, tmp_path / "cache", other, progress=False)
    assert rebuilt.directory != index.directory and rebuilt.summary["processed"] == 2

    dataset = CachedVolumeDataset(open_cache(index.directory), with_organs=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    batch = next(iter(loader))
    assert batch["volume"].shape == (2, 2, 16, 16, 24) and batch["volume"].dtype == torch.float32
    assert batch["demographics"]["sex"] == ["M", "F"]
    assert batch["organs"].shape == (2, 16, 16, 24)
    box = (slice(4, 12), slice(4, 12), slice(8, 24))
    np.testing.assert_array_equal(index.load_volume(0, box), index.load_volume(0)[:, 4:12, 4:12, 8:24])


def test_data_sets_sharing_a_cache_root_keep_their_arrays(tmp_path):
    """Building the held-out set's cache must not prune the training set's (a running training maps them)."""
    train = scan_autopet(write_autopet_population(tmp_path / "train", DEFAULT_SUBJECTS[:2]))
    held_out = scan_autopet(write_autopet_population(tmp_path / "held_out", DEFAULT_SUBJECTS[:1]))
    first = build_cache(train, tmp_path / "cache", SMALL, progress=False)
    arrays = sorted((first.directory / "arrays").iterdir())
    second = build_cache(held_out, tmp_path / "cache", SMALL, progress=False)
    assert second.directory != first.directory and len(second) == 1
    assert sorted((first.directory / "arrays").iterdir()) == arrays and len(open_cache(first.directory)) == 2
    assert build_cache(train, tmp_path / "cache", SMALL, progress=False).summary["processed"] == 0


def test_cache_skips_corrupt_study_without_stopping(tmp_path):
    root = write_autopet_population(tmp_path / "d", DEFAULT_SUBJECTS[:2])
    studies = scan_autopet(root).studies
    truncate_gzip(studies[1].suv, 0.6)  # damaged after the scan: preprocessing must cope
    index = build_cache(studies, tmp_path / "cache", SMALL, progress=False)
    assert len(index) == 1 and index.summary["failed_preprocessing"] == 1
    assert index.skipped[0]["path"].startswith("PETCT_0000000001/")
    assert index.skipped[0]["reason"].startswith("preprocessing: ")
    assert "cannot read SUV.nii.gz (truncated or corrupt?)" in index.skipped[0]["reason"]


def test_prepare_cache_command(population, tmp_path, capsys):
    summary = tmp_path / "summary.json"
    args = ["prepare", "--data-dir", str(population), "--cache", str(tmp_path / "c"), "--spacing", "16",
            "--shape", "16", "16", "24", "--workers", "0", "--summary", str(summary)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "c" / SMALL.hash / dataset_key(scan_autopet(population)))
    assert "2 studies (2 processed, 0 reused)" in err
    assert json.loads(summary.read_text())["studies"] == 2
    assert main(["prepare", "--data-dir", str(population), "--cache", str(tmp_path / "c"), "--spacing", "5"]) == 2
    assert "spacing must be one of [2, 4, 8, 16] mm, got 5" in capsys.readouterr().err
    assert main(["prepare"]) == 2
