import nibabel as nib
import numpy as np
import pytest
import torch

from petct_pipeline.geometry import VolumeGrid, body_length_mm, body_slices, coordinate_grid
from petct_pipeline.intensity import hu_to_model, model_to_hu, model_to_suv, suv_to_model
from petct_pipeline.io import load_nifti, save_nifti
from petct_pipeline.zchunks import blend_weights, plan_z_chunks


def test_ct_transform_inverts_over_lung_and_bone():
    hu = np.array([-1024, -1000, -850, -100, 0, 60, 120, 700, 2000, 3071], dtype=np.float64)
    np.testing.assert_allclose(model_to_hu(hu_to_model(hu)), hu, atol=1e-6)
    assert hu_to_model(np.float64(-1000)) < hu_to_model(np.float64(-850))  # lungs keep their contrast
    assert hu_to_model(np.float64(2000)) < hu_to_model(np.float64(3000))  # so does dense bone


def test_suv_transform_inverts_beyond_paper_clip_and_matches_torch():
    suv = np.array([0, 0.5, 2.3, 10, 25, 60], dtype=np.float64)
    np.testing.assert_allclose(model_to_suv(suv_to_model(suv)), suv, atol=1e-9)
    assert suv_to_model(np.float64(0)) == pytest.approx(-1) and suv_to_model(np.float64(25)) == pytest.approx(1)
    torch_values = model_to_suv(suv_to_model(torch.tensor(suv)))
    np.testing.assert_allclose(torch_values.numpy(), suv, atol=1e-9)


def test_body_length_follows_paper_fit():
    assert body_length_mm(100) == pytest.approx(2 * (146.629 + 110.419))
    assert body_slices(165, 2.0) == int(np.ceil(body_length_mm(165) / 2))
    assert body_slices(200, 16.0, max_slices=48) == 48


def test_ras_affine_and_nifti_round_trip(tmp_path):
    grid = VolumeGrid((10, 12, 20), (2.0, 2.0, 3.0))
    volume = np.random.default_rng(0).normal(size=grid.shape).astype(np.float32)
    path = save_nifti(volume, grid.affine, tmp_path / "v.nii.gz")
    image = nib.load(path)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.header.get_zooms() == (2.0, 2.0, 3.0)
    data, affine = load_nifti(path)
    np.testing.assert_array_equal(data, volume)
    assert affine[2, 3] == pytest.approx(-(20 - 1) * 3.0)  # vertex (top slice) at z = 0 mm
    assert not list(tmp_path.glob(".*tmp*")), "temporary files must be renamed away"


def test_load_nifti_reorients_lps_to_ras(tmp_path):
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(volume, lps), tmp_path / "lps.nii.gz")
    data, affine = load_nifti(tmp_path / "lps.nii.gz")
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    np.testing.assert_array_equal(data, volume[::-1, ::-1, :])


def test_coordinate_grid_crops_are_consistent():
    full = coordinate_grid((4, 6, 8))
    crop = coordinate_grid((4, 6, 8), (1, 2, 3), (2, 3, 4))
    np.testing.assert_array_equal(crop, full[:, 1:3, 2:5, 3:7])
    assert full.min() == -1 and full.max() == 1
    with pytest.raises(ValueError, match="outside the grid"):
        coordinate_grid((4, 6, 8), (0, 0, 6), (4, 6, 4))


@pytest.mark.parametrize("length,size,overlap", [(100, 32, 8), (40, 16, 4), (10, 16, 4), (33, 8, 0)])
def test_z_chunks_cover_and_weights_sum_to_one(length, size, overlap):
    chunks = plan_z_chunks(length, size, overlap)
    assert chunks[0][0] == 0 and chunks[-1][1] == length
    total = torch.zeros(length)
    for (start, stop), weight in zip(chunks, blend_weights(chunks, length)):
        assert stop - start == min(size, length)
        total[start:stop] += weight
    torch.testing.assert_close(total, torch.ones(length))


def test_z_chunk_arguments_are_checked():
    with pytest.raises(ValueError, match="sr_chunk_overlap"):
        plan_z_chunks(50, 16, 16)
