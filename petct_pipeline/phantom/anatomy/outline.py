"""The body outline: skin-deep fat over lean muscle for head, neck, trunk, breasts, thighs and arms.

Cross-sections are per-slice ellipses that follow :class:`.body.BodyProfile`, so the outline
scales with height, lean mass and body fat. Everything later is painted inside ``lean``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import BodyProfile
from .canvas import Canvas
from .grid import FOV_XY_MM, LEFT, RIGHT
from .shapes import ellipsoid_level, per_slice_ellipses
from .tissue import Tissue

__all__ = ["ArmAxis", "BodyOutline", "HeadShape", "paint_body_outline"]


@dataclass(frozen=True)
class HeadShape:
    """The head ellipsoid including scalp: centre depth below the vertex and semi-axes (mm)."""

    centre_depth_mm: float
    semi_axes_mm: tuple[float, float, float]


@dataclass(frozen=True)
class ArmAxis:
    """Where the arms hang, per z slice of ``z_part``: axis x (mm, unsigned) and y, height fractions."""

    z_part: slice
    x_mm: np.ndarray
    y_mm: np.ndarray
    height_fraction: np.ndarray

    def at(self, values: np.ndarray, fraction: float) -> float:
        return float(np.interp(fraction, self.height_fraction[::-1], values[::-1]))


@dataclass(frozen=True)
class BodyOutline:
    head: HeadShape
    arm: ArmAxis


def paint_body_outline(canvas: Canvas, profile: BodyProfile) -> BodyOutline:
    """Fill ``canvas.body`` (skin outline) and ``canvas.lean`` (under the subcutaneous fat); fat, then muscle."""
    height = canvas.height_mm
    male = canvas.demographics.is_male

    # head: ellipsoid from the vertex, semi-axes 76 x 98 x 118 mm (reference male incl. scalp)
    head_scale = (0.96 if male else 0.93) * (height / 1760.0) ** 0.5
    head = HeadShape(0.066 * height, (76.0 * head_scale, 98.0 * head_scale, 0.066 * height))
    head_width, head_depth, head_length = head.semi_axes_mm
    z_part = canvas.depth_slice(0, 2 * head_length)
    depth = canvas.depth[z_part]
    profile_ratio = np.sqrt(np.clip(1.0 - ((depth - head.centre_depth_mm) / head_length) ** 2, 1e-4, None))
    profile_ratio = profile_ratio.astype(np.float32)
    scalp_fat = np.float32(0.25) * profile.subcutaneous_fat[z_part] * profile_ratio
    _add_sections(
        canvas,
        z_part,
        np.zeros_like(depth),
        np.full_like(depth, 6.0),
        head_width * profile_ratio,
        head_depth * profile_ratio,
        scalp_fat,
    )
    # neck and trunk
    z_part = canvas.fraction_slice(0.11, 0.535)
    _add_sections(
        canvas,
        z_part,
        np.zeros(z_part.stop - z_part.start, np.float32),
        profile.centre_y[z_part],
        profile.half_width[z_part],
        profile.half_depth[z_part],
        profile.subcutaneous_fat[z_part],
    )
    if not male:
        _paint_breasts(canvas, profile)
    _paint_thighs(canvas, profile)
    arm = _paint_arms(canvas, profile)
    canvas.tissue[canvas.body] = Tissue.FAT
    canvas.tissue[canvas.lean] = Tissue.MUSCLE
    return BodyOutline(head, arm)


def _add_sections(
    canvas: Canvas,
    z_part: slice,
    centre_x: np.ndarray,
    centre_y: np.ndarray,
    half_width: np.ndarray,
    half_depth: np.ndarray,
    fat: np.ndarray,
) -> None:
    """One lean ellipse per slice of ``z_part``, and around it the skin outline ``fat`` mm further out."""
    if z_part.stop <= z_part.start:
        return
    canvas.body[:, :, z_part] |= per_slice_ellipses(canvas, centre_x, centre_y, half_width + fat, half_depth + fat)
    canvas.lean[:, :, z_part] |= per_slice_ellipses(canvas, centre_x, centre_y, half_width, half_depth)


def _paint_breasts(canvas: Canvas, profile: BodyProfile) -> None:
    """Fat ellipsoids on the anterior chest; their size follows body fat."""
    height = canvas.height_mm
    size = float(np.clip((profile.fat_litres / 20.0) ** 0.4, 0.6, 1.5))
    for side in (LEFT, RIGHT):
        centre_x = side * 0.48 * profile.half_width_at(0.27)
        chest_y = profile.half_depth_at(0.27) * 0.85
        box = canvas.box((centre_x, chest_y + 20, 0.275 * height), (80 * size, 80 * size, 70 * size))
        level = ellipsoid_level(
            canvas, box, (centre_x, chest_y + 15 * size, 0.275 * height), (55 * size, 45 * size, 50 * size)
        )
        canvas.body[box] |= level <= 1.0


def _paint_thighs(canvas: Canvas, profile: BodyProfile) -> None:
    z_part = canvas.fraction_slice(0.47, 1.0)
    fraction = profile.height_fraction[z_part]
    hip = profile.half_width_at(0.5)
    axis_x = (np.interp(fraction, [0.47, 0.55, 0.7], [0.5, 0.52, 0.5]) * hip).astype(np.float32)
    radius = (np.interp(fraction, [0.47, 0.52, 0.7], [70, 72, 58]) * profile.width_scale).astype(np.float32)
    fat_factor = 1.0 if canvas.demographics.is_male else 1.5
    fat = (np.interp(fraction, [0.47, 0.7], [1.3, 1.0]) * profile.subcutaneous_fat_base * fat_factor).astype(np.float32)
    for side in (LEFT, RIGHT):
        _add_sections(canvas, z_part, side * axis_x, np.full_like(fraction, 5.0), radius, radius * 1.08, fat)


def _paint_arms(canvas: Canvas, profile: BodyProfile) -> ArmAxis:
    """Arms hanging at the sides: axis just lateral to the trunk, truncated by the field of view."""
    z_part = canvas.fraction_slice(0.175, 0.63)
    fraction = profile.height_fraction[z_part]
    scale = profile.width_scale
    lean_radius = (
        np.interp(fraction, [0.175, 0.20, 0.30, 0.37, 0.45, 0.515, 0.55, 0.63], [30, 46, 42, 36, 34, 24, 30, 22])
        * scale
    ).astype(np.float32)
    fat_profile = np.interp(fraction, [0.175, 0.2, 0.515, 0.63], [0.5, 1.0, 0.5, 0.2])
    fat_radius = (0.9 * profile.subcutaneous_fat_base * fat_profile).astype(np.float32)
    trunk_half_width = profile.half_width[z_part]
    trunk_outer = trunk_half_width + profile.subcutaneous_fat[z_part]
    above_shoulder = fraction < 0.2
    trunk_outer = np.maximum.accumulate(np.where(above_shoulder, 0, trunk_outer))  # arms do not tuck in at the waist
    trunk_outer = np.where(
        above_shoulder,
        trunk_half_width * 0.85,
        np.maximum(trunk_outer, trunk_half_width + profile.subcutaneous_fat[z_part]),
    )
    half_fov = FOV_XY_MM / 2.0
    axis_x = np.minimum(trunk_outer + lean_radius + fat_radius + 4.0, half_fov - 0.5 * lean_radius)
    axis_y = (np.interp(fraction, [0.2, 0.37, 0.5, 0.6], [0, -10, 10, 20]) * scale).astype(np.float32)
    # the hands (below the wrist at 0.51) are flat side to side and broad front to back
    depth_radius = lean_radius * np.interp(fraction, [0.5, 0.55, 0.63], [1.0, 1.5, 1.3]).astype(np.float32)
    width_radius = lean_radius * np.interp(fraction, [0.5, 0.55, 0.63], [1.0, 0.55, 0.5]).astype(np.float32)
    for side in (LEFT, RIGHT):
        _add_sections(canvas, z_part, side * axis_x, axis_y, width_radius, depth_radius, fat_radius)
    return ArmAxis(z_part, axis_x, axis_y, fraction)
