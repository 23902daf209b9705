"""Organ and whole-body measurements of one subject: volume, SUVmean/max/peak, mean HU, fat fraction.

Definitions (physical units throughout: mL, SUVbw in g/mL, HU):

* ``volume_ml``: voxels of the organ times the voxel volume.
* ``suv_mean``, ``suv_max``, ``hu_mean``: over the organ's voxels.
* ``suv_peak``: the highest mean SUV in a 1 mL sphere centred on an organ voxel, the sphere
  restricted to the organ (a normalised spherical-kernel convolution, so uptake from a hot
  neighbour such as the kidneys next to the liver never leaks in). Sphere weights are the
  fraction of each voxel inside the sphere (supersampled), so the sphere holds 1 mL on a 2 mm
  grid and on an 8 mm grid alike. Centres whose sphere lies at least half inside the organ are
  preferred; in organs too thin for that, every organ voxel may be the centre.
* whole body (organ ``body``): the body mask of the preprocessing (CT above -500 HU, patient
  table removed, lungs filled in), its volume, SUVmean/max, mean HU and ``fat_fraction``: the
  share of body voxels in the adipose window -190 .. -30 HU.

An organ missing from the label map has volume 0 and undefined (NaN) intensity metrics;
:func:`organ_found` is the one test of that, so a missing organ is left out of every comparison
(it is not a 0 mL organ) and counted instead (``coverage``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import signal

from ..data.preprocess import body_mask as coarse_body_mask
from ..errors import InputError
from ..geometry import spacing_from_affine
from ..organs import EVALUATION_ORGANS, organ_mask

__all__ = [
    "METRICS",
    "BODY_METRICS",
    "BODY",
    "FAT_HU_WINDOW",
    "SUV_PEAK_ML",
    "sphere_kernel",
    "suv_peak",
    "organ_metrics",
    "organ_found",
    "measure_organs",
    "body_mask",
    "body_metrics",
]

#: per-organ metric names, in report order (an interface: summary.csv uses exactly these)
METRICS: tuple[str, ...] = ("volume_ml", "suv_mean", "suv_max", "suv_peak", "hu_mean")
#: whole-body metric names (organ ``body``)
BODY_METRICS: tuple[str, ...] = ("volume_ml", "suv_mean", "suv_max", "hu_mean", "fat_fraction")
BODY = "body"
FAT_HU_WINDOW = (-190.0, -30.0)
SUV_PEAK_ML = 1.0
_SUPERSAMPLE = 7


def sphere_kernel(spacing: Sequence[float], volume_ml: float = SUV_PEAK_ML) -> np.ndarray:
    """Weights (fraction of each voxel inside a sphere of ``volume_ml`` centred on the middle voxel)."""
    if volume_ml <= 0:
        raise InputError(f"volume_ml must be > 0, got {volume_ml!r}")
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # mm; 1 mL -> 6.20 mm
    axes = []
    for s in spacing:
        half = max(0, math.ceil(radius / s + 0.5) - 1)
        centres = np.arange(-half, half + 1) * s
        offsets = ((np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - 0.5) * s
        axes.append(centres[:, None] + offsets[None, :])  # (n, supersample) sub-voxel coordinates
    x, y, z = axes
    d2 = (
        (x[:, None, None, :, None, None] ** 2)
        + (y[None, :, None, None, :, None] ** 2)
        + (z[None, None, :, None, None, :] ** 2)
    )
    weights = (d2 <= radius**2).mean(axis=(3, 4, 5))
    if weights.sum() == 0:  # cannot happen (the centre sub-sample is inside), but keep it defined
        weights[tuple(n // 2 for n in weights.shape)] = 1.0
    return weights


def suv_peak(suv: np.ndarray, mask: np.ndarray, spacing: Sequence[float], volume_ml: float = SUV_PEAK_ML,
             kernel: np.ndarray | None = None) -> float:
    """SUVpeak of the organ ``mask`` (see the module docstring); NaN for an empty mask."""
    if not mask.any():
        return float("nan")
    kernel = sphere_kernel(spacing, volume_ml) if kernel is None else kernel
    pad = [n // 2 for n in kernel.shape]
    box = []
    for axis, half in enumerate(pad):
        nonzero = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(0, nonzero[0] - half), min(mask.shape[axis], nonzero[-1] + half + 1)))
    box = tuple(box)
    sub_mask = mask[box].astype(np.float64)
    sub_suv = np.where(mask[box], suv[box], 0.0).astype(np.float64)
    numerator = signal.fftconvolve(sub_suv, kernel, mode="same")
    denominator = signal.fftconvolve(sub_mask, kernel, mode="same")
    inside = mask[box]
    centres = inside & (denominator >= 0.5 * kernel.sum())
    if not centres.any():
        centres = inside & (denominator > 1e-6 * kernel.sum())
    return float((numerator[centres] / denominator[centres]).max())


def organ_metrics(ct: np.ndarray, suv: np.ndarray, mask: np.ndarray, spacing: Sequence[float],
                  kernel: np.ndarray | None = None) -> dict[str, float]:
    """The :data:`METRICS` of one organ mask."""
    count = int(mask.sum())
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if count == 0:
        nan = float("nan")
        return {"volume_ml": 0.0, "suv_mean": nan, "suv_max": nan, "suv_peak": nan, "hu_mean": nan}
    values = suv[mask].astype(np.float64)
    return {
        "volume_ml": count * voxel_ml,
        "suv_mean": float(values.mean()),
        "suv_max": float(values.max()),
        "suv_peak": suv_peak(suv, mask, spacing, kernel=kernel),
        "hu_mean": float(ct[mask].astype(np.float64).mean()),
    }


def organ_found(values: Mapping[str, float]) -> bool:
    """Whether one subject's measurement of an organ (:func:`organ_metrics` / :func:`body_metrics`) found it."""
    volume = values.get("volume_ml", 0.0)
    return math.isfinite(volume) and volume > 0


def measure_organs(ct: np.ndarray, suv: np.ndarray, labels: np.ndarray, spacing: Sequence[float],
                   organs: Sequence[str] = EVALUATION_ORGANS) -> dict[str, dict[str, float]]:
    """Organ name -> :func:`organ_metrics`, for TotalSegmentator-id ``labels`` on the CT/SUV grid."""
    if labels.shape != suv.shape or ct.shape != suv.shape:
        raise InputError(f"labels {labels.shape}, CT {ct.shape} and SUV {suv.shape} must have the same shape")
    kernel = sphere_kernel(spacing)
    return {organ: organ_metrics(ct, suv, organ_mask(labels, organ), spacing, kernel) for organ in organs}


def body_mask(ct: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The preprocessing's body mask (CT > -500 HU, table removed, holes filled) on the CT grid itself."""
    spacing = spacing_from_affine(affine)
    try:
        coarse, coarse_affine = coarse_body_mask(ct, affine)
    except ValueError:  # nothing above the body threshold: an all-air volume
        return np.zeros(ct.shape, dtype=bool)
    steps = [max(1, int(round(c / s))) for c, s in zip(spacing_from_affine(coarse_affine), spacing)]
    mask = coarse
    for axis, step in enumerate(steps):
        if step > 1:
            mask = np.repeat(mask, step, axis=axis)
    return np.ascontiguousarray(mask[: ct.shape[0], : ct.shape[1], : ct.shape[2]])


def body_metrics(ct: np.ndarray, suv: np.ndarray, affine: np.ndarray, mask: np.ndarray | None = None
                 ) -> dict[str, float]:
    """Whole-body :data:`BODY_METRICS` (``mask``: a precomputed :func:`body_mask`)."""
    mask = body_mask(ct, affine) if mask is None else mask
    count = int(mask.sum())
    voxel_ml = float(np.prod(spacing_from_affine(affine))) / 1000.0
    if count == 0:
        nan = float("nan")
        return {"volume_ml": 0.0, "suv_mean": nan, "suv_max": nan, "hu_mean": nan, "fat_fraction": nan}
    hu = ct[mask].astype(np.float64)
    values = suv[mask].astype(np.float64)
    low, high = FAT_HU_WINDOW
    return {
        "volume_ml": count * voxel_ml,
        "suv_mean": float(values.mean()),
        "suv_max": float(values.max()),
        "hu_mean": float(hu.mean()),
        "fat_fraction": float(np.count_nonzero((hu >= low) & (hu <= high)) / count),
    }
