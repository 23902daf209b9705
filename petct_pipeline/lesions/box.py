"""A voxel box around one lesion: everything a lesion needs (shape, blur, noise, shell) happens inside it.

Working on the box keeps the cost per lesion independent of the volume's size, and the
world-mm offsets of its voxels come from the affine, so shapes are drawn in mm whatever the
voxel size or orientation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["VoxelBox", "box_around"]


@dataclass(frozen=True)
class VoxelBox:
    """Voxel index ranges ``lo[i] <= index < hi[i]`` of a volume."""

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.lo, self.hi))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.lo, self.hi))

    def offsets_mm(self, center_voxel: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """(3, *shape) world-mm vectors from the (fractional) ``center_voxel`` to every voxel of the box."""
        linear = np.asarray(affine, dtype=np.float64)[:3, :3]
        steps = [np.arange(a, b, dtype=np.float64) - c for a, b, c in zip(self.lo, self.hi, center_voxel)]
        out = np.zeros((3, *self.shape), dtype=np.float64)
        views = (np.s_[:, None, None], np.s_[None, :, None], np.s_[None, None, :])
        for axis in range(3):
            for row in range(3):
                if linear[row, axis] != 0.0:
                    out[row] += linear[row, axis] * steps[axis][views[axis]]
        return out


def box_around(center_voxel: np.ndarray, radius_mm: float, spacing: Sequence[float],
               shape: Sequence[int]) -> VoxelBox:
    """The box holding every voxel within ``radius_mm`` of ``center_voxel``, clipped to the volume."""
    lo, hi = [], []
    for c, s, n in zip(center_voxel, spacing, shape):
        half = math.ceil(radius_mm / s) + 1
        lo.append(int(max(0, math.floor(c) - half)))
        hi.append(int(min(n, math.ceil(c) + half + 1)))
    return VoxelBox(tuple(lo), tuple(hi))
