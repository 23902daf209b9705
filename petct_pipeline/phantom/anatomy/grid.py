"""The phantom's voxel grid: field of view and array shape.

Frame: arrays (x, y, z) in RAS+ (x toward the patient's right, y anterior), z inferior ->
superior with the vertex at the top slice.
"""

from __future__ import annotations

import math

from ...demographics import Demographics
from ...geometry import body_slices

__all__ = ["FOV_XY_MM", "LEFT", "RIGHT", "SCAN_EXTENT_FRACTION", "grid_shape"]

RIGHT = 1.0  # RAS+: x increases toward the patient's right
LEFT = -1.0
#: transaxial field of view (mm), square
FOV_XY_MM = 448.0
#: vertex to mid-thigh as a fraction of height (AutoPET axial extent 1050 +/- 307 mm)
SCAN_EXTENT_FRACTION = 0.635


def grid_shape(demographics: Demographics, spacing: float, fov: str = "whole_body") -> tuple[int, int, int]:
    """Array shape for this subject: ``whole_body`` reaches mid-thigh, ``model`` the model's slab."""
    side = int(round(FOV_XY_MM / spacing))
    if fov == "whole_body":
        slices = int(math.ceil(SCAN_EXTENT_FRACTION * demographics.height * 10.0 / spacing))
    elif fov == "model":
        slices = body_slices(demographics.height, spacing)
    else:
        raise ValueError(f"fov must be 'whole_body' or 'model', got {fov!r}")
    return side, side, slices
