"""Pelvis and legs: sacrum, hip bones, femurs, and the pelvic organs (urinary bladder, prostate).

The bony pelvis is procedural (capsule chains fanned between landmarks, wider in women);
the bladder and prostate are data rows painted into the abdominal cavity after the
abdominal organs, so they take what the bowel has not.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from .abdomen import AbdominalCavity
from .body import BodyProfile
from .canvas import Canvas
from .grid import LEFT, RIGHT
from .painter import OrganShape, paint_bone, paint_organs
from .tissue import Tissue

__all__ = ["PELVIC_ORGANS", "paint_pelvic_bones_and_legs", "paint_pelvic_organs"]

#: bladder behind the symphysis (a fuller bladder rises), prostate below it in men
PELVIC_ORGANS = (
    OrganShape(
        organ="urinary_bladder",
        tissue=Tissue.URINE_BLADDER,
        frame="abdominal_cavity",
        frame_level=0.49,
        centre=(0.0, 0.40, 0.492),
        rises_with_size=0.006,
        semi_axes=(40, 35, 32),
        reference_volume_ml=150.0,
        noise=0.04,
        box_extent=2.2,
    ),
    OrganShape(
        organ="prostate",
        tissue=Tissue.PROSTATE,
        frame="abdominal_cavity",
        frame_level=0.49,
        centre=(0.0, 0.25, 0.515),
        semi_axes=(20, 14, 17),
        noise=0.05,
        box_extent=2.5,
        sex="M",
    ),
)


def paint_pelvic_bones_and_legs(canvas: Canvas, profile: BodyProfile) -> None:
    """Sacrum, ilium, pubis, ischium and femur (head, neck, trochanter, shaft with yellow marrow)."""
    height, scale = canvas.height_mm, profile.width_scale
    male = canvas.demographics.is_male
    breadth = 1.0 if male else 1.08  # wider female pelvis
    hip_fraction = 0.475
    l5_y = profile.spine_y_at(0.44)
    hip_depth = profile.half_depth_at(hip_fraction)
    femoral_head_x, femoral_head_y = 88.0 * scale * breadth, 0.12 * hip_depth
    femoral_head_depth = hip_fraction * height
    femoral_head_radius = (24.0 if male else 21.0) * scale
    # sacrum: tilted wedge behind the pelvis, its top is S1
    sacrum = [
        (0, l5_y - 5, 0.445 * height),
        (0, l5_y - 25 * scale, 0.47 * height),
        (0, l5_y - 30 * scale, 0.50 * height),
        (0, l5_y - 15 * scale, 0.52 * height),
    ]
    paint_bone(canvas, sacrum[:2], [22 * scale, 20 * scale], "vertebrae_S1", shell_mm=3.0)
    paint_bone(canvas, sacrum[1:], [20 * scale, 14 * scale, 7 * scale], "sacrum", shell_mm=3.0)
    for side, hip, femur in ((LEFT, "hip_left", "femur_left"), (RIGHT, "hip_right", "femur_right")):
        # ilium: a curved plate from the iliac crest down to the acetabulum, fanning from the sacrum
        crest = [
            (side * 40 * scale, l5_y - 20 * scale, 0.452 * height),
            (side * 95 * scale * breadth, l5_y - 10 * scale, 0.41 * height),
            (side * 125 * scale * breadth, l5_y + 40 * scale, 0.405 * height),
            (side * 118 * scale * breadth, l5_y + 85 * scale, 0.42 * height),
        ]
        acetabulum = (side * (femoral_head_x - 8 * scale), femoral_head_y, femoral_head_depth - 12 * scale)
        for point in crest:
            paint_bone(canvas, [point, acetabulum], [9 * scale, 13 * scale], hip, shell_mm=3.0)
        for upper, lower in zip(crest[:-1], crest[1:]):
            upper_middle = tuple((np.array(upper) + np.array(acetabulum)) / 2)
            lower_middle = tuple((np.array(lower) + np.array(acetabulum)) / 2)
            paint_bone(canvas, [upper, lower], [8 * scale, 8 * scale], hip, shell_mm=3.0)
            paint_bone(canvas, [upper_middle, lower_middle], [8 * scale, 8 * scale], hip, shell_mm=3.0)
        # pubic ramus to the symphysis and ischium down to the tuberosity
        symphysis = (side * 9.0, 0.62 * hip_depth, 0.505 * height)
        paint_bone(canvas, [acetabulum, symphysis], [12 * scale, 9 * scale], hip, shell_mm=3.0)
        ischium = (side * 58 * scale * breadth, femoral_head_y - 35 * scale, 0.52 * height)
        paint_bone(canvas, [acetabulum, ischium, symphysis], [13 * scale, 12 * scale, 8 * scale], hip, shell_mm=3.0)
        # femur: head, neck, trochanter and shaft (yellow marrow in the shaft)
        head = (side * femoral_head_x, femoral_head_y, femoral_head_depth)
        trochanter = (side * (femoral_head_x + 38 * scale), femoral_head_y - 8 * scale, femoral_head_depth + 22 * scale)
        knee = (side * (femoral_head_x - 10 * scale), 10.0, 0.715 * height)
        paint_bone(canvas, [head, head], [femoral_head_radius, femoral_head_radius], femur, shell_mm=2.5)
        paint_bone(canvas, [head, trochanter], [16 * scale, 18 * scale], femur, shell_mm=3.0)
        paint_bone(
            canvas, [trochanter, knee], [15 * scale, 13 * scale], femur, shell_mm=5.0, marrow=Tissue.MARROW_YELLOW
        )


def paint_pelvic_organs(
    canvas: Canvas, profile: BodyProfile, volumes: Mapping[str, float], cavity: AbdominalCavity
) -> None:
    """Bladder (urine inside a one-voxel soft-tissue wall) and, in men, prostate."""
    painted = paint_organs(
        canvas,
        PELVIC_ORGANS,
        profile.frame,
        volumes,
        cavity.mask,
    )
    bladder = painted["urinary_bladder"]
    if bladder.mask.size and bladder.mask.any():
        wall = bladder.mask & ~ndimage.binary_erosion(bladder.mask, iterations=1)
        canvas.tissue[bladder.box][wall] = Tissue.SOFT
