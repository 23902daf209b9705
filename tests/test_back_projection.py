"""back_projection: the SR output is corrected to downsample to the stage-1 volume in HU and SUV."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from petct_pipeline.back_projection import back_project, downsample_like_preprocessing
from petct_pipeline.data.preprocess import resample
from petct_pipeline.intensity import from_model_space, to_model_space


def smooth_random(shape, seed, scale):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape).astype(np.float32), 1.0) * scale


@pytest.mark.parametrize("scale", [2, 4])
def test_downsampling_equals_the_preprocessing_resampler(scale):
    fine = smooth_random((8 * scale, 6 * scale, 5 * scale), seed=scale, scale=100.0)
    fine_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    coarse_affine = np.diag([2.0 * scale] * 3 + [1.0])
    coarse_affine[:3, 3] = (scale - 1) / 2 * 2.0  # nested grids: the coarse centre sits between fine voxels
    expected = resample(fine, fine_affine, (8, 6, 5), coarse_affine, order=1, anti_alias=True)
    got = downsample_like_preprocessing(torch.from_numpy(fine)[None, None], scale)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3)


def physical(volume):
    ct, pet = from_model_space(volume[:, 0:1], volume[:, 1:2])
    return ct, pet


def make_pair(seed=0):
    """A coarse volume with a hot 'organ' and a fine volume whose organ is too dark, as SR tends to return."""
    coarse_ct = torch.from_numpy(smooth_random((6, 6, 8), seed, 400.0) - 200.0)
    coarse_pet = torch.from_numpy(smooth_random((6, 6, 8), seed + 1, 2.0))
    coarse_pet[2:4, 2:4, 3:5] += 6.0
    coarse = torch.stack(to_model_space(coarse_ct, coarse_pet))[None]
    fine = F.interpolate(coarse, scale_factor=4, mode="trilinear", align_corners=False)  # log-space blend
    detail = 0.05 * torch.randn(fine.shape, generator=torch.Generator().manual_seed(seed))  # SR 'texture'
    return coarse, fine + detail


def test_back_projection_restores_the_coarse_hu_and_suv():
    coarse, fine = make_pair()
    target_ct, target_pet = physical(coarse)
    before = [(downsample_like_preprocessing(v, 4) - t).abs().max() for v, t in zip(physical(fine), physical(coarse))]
    corrected = back_project(fine, coarse, iterations=10)
    ct, pet = physical(corrected)
    ct_error = (downsample_like_preprocessing(ct, 4) - target_ct).abs().max()
    pet_error = (downsample_like_preprocessing(pet, 4) - target_pet).abs().max()
    assert pet_error < 0.1 * before[1] and ct_error < 0.1 * before[0]
    assert pet.min() >= 0 and torch.isfinite(corrected).all()
    # the total activity the coarse grid holds is kept, where the log-space blend lost some
    assert abs(float(downsample_like_preprocessing(pet, 4).sum() / target_pet.sum()) - 1) < 0.01


def test_back_projection_keeps_fine_detail_and_zero_iterations_is_identity():
    coarse, fine = make_pair(seed=3)
    assert back_project(fine, coarse, 0) is fine
    corrected = back_project(fine, coarse, 3)
    change = corrected - fine
    # the correction is smooth at the coarse scale: it leaves the voxel-scale texture alone
    texture = torch.from_numpy(ndimage.laplace(fine[0, 1].numpy()))
    change_texture = torch.from_numpy(ndimage.laplace(change[0, 1].numpy()))
    assert change_texture.abs().mean() < 0.1 * texture.abs().mean()


def test_back_projection_rejects_grids_that_do_not_nest():
    coarse, fine = make_pair()
    with pytest.raises(ValueError, match="not an integer multiple"):
        back_project(fine[..., :-1], coarse, 2)
