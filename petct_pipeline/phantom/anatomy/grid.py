"""The phantom's voxel grid: allowed spacing, field of view and array shape.

Frame: arrays (x, y, z) in RAS+ (x toward the patient's right, y anterior), z inferior ->
superior with the vertex at the top slice.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...demographics import Demographics
from ...errors import InputError, InputTypeError
from ...geometry import body_slices

__all__ = ["FOV_XY_MM", "LEFT", "RIGHT", "SCAN_EXTENT_FRACTION", "SPACING_RANGE_MM", "check_spacing", "grid_shape"]

RIGHT = 1.0  # RAS+: x increases toward the patient's right
LEFT = -1.0
#: transaxial field of view (mm), square
FOV_XY_MM = 448.0
#: vertex to mid-thigh as a fraction of height (AutoPET axial extent 1050 +/- 307 mm)
SCAN_EXTENT_FRACTION = 0.635
#: isotropic voxel sizes (mm) the phantom grid accepts; generate_phantom and write_population
#: both check them here
SPACING_RANGE_MM = (1.0, 12.0)


def check_spacing(spacing: Any) -> float:
    """Validate a phantom voxel size (mm) and return it as a float.

    Raises TypeError for a non-number and ValueError outside :data:`SPACING_RANGE_MM`, so the
    writer can refuse a bad ``--spacing`` before it simulates anyone.
    """
    if isinstance(spacing, bool) or not isinstance(spacing, int | float | np.floating | np.integer):
        raise InputTypeError(f"spacing must be a number of mm, got {spacing!r}")
    spacing = float(spacing)
    low, high = SPACING_RANGE_MM
    if not low <= spacing <= high:
        raise InputError(f"spacing={spacing:g} is out of range: allowed range [{low:g}, {high:g}] mm")
    return spacing


def grid_shape(demographics: Demographics, spacing: float, fov: str = "whole_body") -> tuple[int, int, int]:
    """Array shape for this subject: ``whole_body`` reaches mid-thigh, ``model`` the model's slab."""
    side = int(round(FOV_XY_MM / spacing))
    if fov == "whole_body":
        slices = int(math.ceil(SCAN_EXTENT_FRACTION * demographics.height * 10.0 / spacing))
    elif fov == "model":
        slices = body_slices(demographics.height, spacing)
    else:
        raise InputError(f"fov must be 'whole_body' or 'model', got {fov!r}")
    return side, side, slices
