"""Make the super-resolved volume agree with the stage-1 volume in physical units.

Both stages work in model space, where PET is log2(SUV + 1) and CT asinh(HU / 200).
Interpolating or smoothing there does not preserve means in SUV or HU: the geometric
blend of a hot organ with its cold surroundings is darker than the physical one, so a
few-step SR sample (close to the smooth posterior mean) returns hot organs with too
little activity even from the true low-resolution volume (benchmarks/bench_stage_errors.py).

Iterative back-projection (Irani & Peleg, 1991, "Improving resolution by image
registration") restores the physical low frequencies: downsample the fine volume with
the operator preprocessing uses to make the training pairs (Gaussian anti-alias filter,
then linear sampling at the coarse voxel centres), compare with the stage-1 volume, and
spread the mismatch back with the trilinear upsampling the SR stage starts from. PET is
corrected multiplicatively on SUV + 1, i.e. additively in model space (activity is
conserved, zero-uptake air stays zero; an offset of 0.1 instead of 1 changed organ means
by < 0.3 points); CT additively in HU. Only what the coarse grid sees is changed: the
SR stage's detail stays.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError
from .intensity import hu_to_model, model_to_hu, model_to_suv, suv_to_model

__all__ = ["downsample_like_preprocessing", "back_project"]


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """1D Gaussian as scipy.ndimage.gaussian_filter builds it (radius = truncate * sigma)."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def _blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian over the spatial axes of (B, C, X, Y, Z), edges replicated (scipy's 'nearest')."""
    kernel = _gaussian_kernel(sigma).to(volume.device).view(1, 1, -1)
    radius = kernel.shape[-1] // 2
    out = volume.float()
    for axis in (2, 3, 4):
        moved = out.movedim(axis, -1)
        rows = F.pad(moved.reshape(-1, 1, moved.shape[-1]), (radius, radius), mode="replicate")
        out = F.conv1d(rows, kernel).reshape(moved.shape).movedim(-1, axis)
    return out


def downsample_like_preprocessing(volume: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, X, Y, Z) on the fine grid -> the nested grid ``scale`` times coarser.

    Mirrors ``data.preprocess.resample`` with ``anti_alias``: Gaussian sigma (scale - 1) / 2
    fine voxels, then linear interpolation at the coarse voxel centres, which is where
    ``F.interpolate(..., mode="trilinear", align_corners=False)`` samples.
    """
    coarse_shape = [n // scale for n in volume.shape[2:]]
    blurred = _blur(volume, (scale - 1) / 2.0) if scale > 1 else volume.float()
    return F.interpolate(blurred, size=coarse_shape, mode="trilinear", align_corners=False)


def _upsample(volume: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(volume, scale_factor=scale, mode="trilinear", align_corners=False)


def back_project(fine: torch.Tensor, coarse: torch.Tensor, iterations: int) -> torch.Tensor:
    """Correct model-space ``fine`` (B, 2, X, Y, Z) so that it downsamples to ``coarse`` in HU and SUV.

    ``fine``'s spatial shape must be an integer multiple ``scale`` of ``coarse``'s. Each
    iteration moves the remaining coarse-grid mismatch back onto the fine grid.
    """
    if iterations <= 0:
        return fine
    scale = fine.shape[2] // coarse.shape[2]
    if scale < 1 or any(f != c * scale for f, c in zip(fine.shape[2:], coarse.shape[2:])):
        raise InputError(
            f"fine grid {tuple(fine.shape[2:])} is not an integer multiple of the coarse grid {tuple(coarse.shape[2:])}"
        )
    coarse = coarse.float()
    target_hu, target_pet = model_to_hu(coarse[:, 0:1]), model_to_suv(coarse[:, 1:2]) + 1.0
    hu, pet = model_to_hu(fine[:, 0:1].float()), model_to_suv(fine[:, 1:2].float()) + 1.0
    for _ in range(iterations):
        hu = hu + _upsample(target_hu - downsample_like_preprocessing(hu, scale), scale)
        log_ratio = torch.log2(target_pet / downsample_like_preprocessing(pet, scale))
        pet = (pet * torch.exp2(_upsample(log_ratio, scale))).clamp_min(1.0)
    return torch.cat([hu_to_model(hu), suv_to_model(pet - 1.0)], dim=1).to(fine.dtype)
