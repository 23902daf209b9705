"""Whole-body anatomy on a voxel grid: tissue classes and TotalSegmentator organ labels (synthetic).

One module per body region paints onto a shared :class:`~.canvas.Canvas`; ellipsoid-like
organs are data rows (:class:`~.painter.OrganShape`: tissue, centre, semi-axes, reference
volume, noise) read by one painter, :func:`~.painter.paint_organ`, while genuinely
procedural anatomy (bones as capsule chains, ribs, lungs, bowel) stays code. Each organ's
implicit shape is perturbed by a smooth random field and thresholded at the quantile that
gives exactly the sampled volume among the voxels still free, so volumes follow
:mod:`..organ_sizes` while shapes deform per subject.

Frame: arrays (x, y, z) in RAS+ (x toward the patient's right, y anterior), z inferior ->
superior with the vertex at the top slice. Positions along the body are height fractions
(depth below the vertex / standing height), after Drillis & Contini 1966.

Modules: tissue (classes), grid (spacing, shape), canvas (label volumes, noise, volume
fill), shapes (implicit functions), painter (organ rows, tubes, bones), body (build per
slice), outline (skin, fat, muscle), skeleton (spine, ribs, arms), head_neck, thorax,
vessels, abdomen, pelvis, build (the driver).
"""

from .body import body_fat_fraction, lean_body_mass_kg
from .build import Anatomy, build_anatomy
from .grid import SCAN_EXTENT_FRACTION, SPACING_RANGE_MM, check_spacing, grid_shape
from .tissue import Tissue

__all__ = [
    "Tissue",
    "Anatomy",
    "build_anatomy",
    "grid_shape",
    "check_spacing",
    "SCAN_EXTENT_FRACTION",
    "SPACING_RANGE_MM",
    "lean_body_mass_kg",
    "body_fat_fraction",
]
