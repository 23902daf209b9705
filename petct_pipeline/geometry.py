"""Voxel grids, RAS+ affines and the height-aware field of view.

Convention (see DESIGN.md): arrays are (x, y, z) in canonical RAS+, z runs inferior to
superior, and every subject is aligned at the vertex: the top of the head sits in the
last z slice and the scan extends downward by a body length that follows height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = [
    "VolumeGrid",
    "ras_affine",
    "body_length_mm",
    "body_slices",
    "spacing_from_affine",
    "coordinate_grid",
]

# Paper (arXiv 2505.22489): scan length in 2 mm slices = 146.629 * height_m + 110.419.
_LENGTH_SLOPE_2MM = 146.629
_LENGTH_INTERCEPT_2MM = 110.419


def body_length_mm(height_cm: float) -> float:
    """Axial extent (mm) of a vertex-to-mid-thigh scan for a patient of this height."""
    return 2.0 * (_LENGTH_SLOPE_2MM * height_cm / 100.0 + _LENGTH_INTERCEPT_2MM)


def body_slices(height_cm: float, spacing_z: float, max_slices: int | None = None) -> int:
    """Number of z slices (at ``spacing_z`` mm) the body occupies, capped at ``max_slices``."""
    n = int(math.ceil(body_length_mm(height_cm) / spacing_z))
    return n if max_slices is None else min(n, max_slices)


def ras_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """RAS+ affine with x/y centred on the scanner axis and z = 0 mm at the top slice (vertex)."""
    sx, sy, sz = (float(s) for s in spacing)
    nx, ny, nz = shape
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [-(nx - 1) * sx / 2.0, -(ny - 1) * sy / 2.0, -(nz - 1) * sz]
    return affine


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis."""
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def coordinate_grid(
    full_shape: tuple[int, int, int],
    start: tuple[int, int, int] = (0, 0, 0),
    size: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """(3, *size) float32 x/y/z maps in [-1, 1] over ``full_shape``, cropped to a box at ``start``.

    The SR stage sees these maps so a patch (training) or z-chunk (sampling) knows where
    in the body it is; both crop the same full-volume maps, so they cannot disagree.
    """
    size = tuple(full_shape) if size is None else tuple(size)
    axes = []
    for n, s0, m in zip(full_shape, start, size):
        if not (0 <= s0 and s0 + m <= n):
            raise InputError(f"crop start={start} size={size} lies outside the grid {tuple(full_shape)}")
        full = np.linspace(-1.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32)
        axes.append(full[s0 : s0 + m])
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=0)


@dataclass(frozen=True)
class VolumeGrid:
    """A regular (x, y, z) grid with isotropic or anisotropic spacing in mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise InputError(f"shape must be three positive ints, got {self.shape!r}")
        if len(self.spacing) != 3 or any(not (float(s) > 0) for s in self.spacing):
            raise InputError(f"spacing must be three positive numbers (mm), got {self.spacing!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing))

    @property
    def affine(self) -> np.ndarray:
        return ras_affine(self.shape, self.spacing)

    def scaled(self, factor: int) -> VolumeGrid:
        """The grid with ``factor`` times more voxels per axis over the same extent."""
        return VolumeGrid(tuple(n * factor for n in self.shape), tuple(s / factor for s in self.spacing))

    def with_z(self, nz: int) -> VolumeGrid:
        return VolumeGrid((self.shape[0], self.shape[1], nz), self.spacing)
