"""The one painter: organs described as data rows (``OrganShape``) and capsule chains (tubes, bones).

An ``OrganShape`` row says where an ellipsoid-like organ sits in a body frame, how large it
is at a reference volume, how it is turned and how much a smooth random field deforms it.
:func:`paint_organ` resolves the row for one subject and fills exactly the sampled volume.
Random numbers are drawn in a fixed order per row (yaw jitter, pitch jitter, deformation
field, texture field), so a seed always paints the same subject.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...organs import LABEL_IDS
from .canvas import Box, Canvas
from .shapes import ellipsoid_level, rotation_matrix, segment_distance
from .tissue import Tissue

__all__ = [
    "Frame",
    "FrameName",
    "OrganShape",
    "PaintedOrgan",
    "Rotation",
    "paint_bone",
    "paint_organ",
    "paint_organs",
    "paint_tube",
]

#: body frames a row's centre is measured in (resolved by ``BodyProfile.frame``):
#: ``spine``: x and y in mm of a reference build (times the width scale), y from the
#: vertebral-body centre; ``trunk``: fractions of the lean trunk's half-width / half-depth;
#: ``abdominal_cavity``: fractions of the cavity's half-width / half-depth (inside the wall).
FrameName = Literal["spine", "trunk", "abdominal_cavity"]


@dataclass(frozen=True)
class Frame:
    """A body frame at one level: centre_mm = (x * x_unit, y_origin + y * y_unit, fraction * height)."""

    x_unit_mm: float
    y_origin_mm: float
    y_unit_mm: float


@dataclass(frozen=True)
class Rotation:
    """Orientation (deg) about depth (yaw), y (pitch) and x (roll); the ``_sd`` parts vary per subject."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    yaw_sd: float = 0.0
    pitch_sd: float = 0.0

    def matrix(self, rng: np.random.Generator) -> np.ndarray:
        yaw = self.yaw + rng.normal(0, self.yaw_sd) if self.yaw_sd else self.yaw
        pitch = self.pitch + rng.normal(0, self.pitch_sd) if self.pitch_sd else self.pitch
        return rotation_matrix(yaw=yaw, pitch=pitch, roll=self.roll)


@dataclass(frozen=True)
class OrganShape:
    """One ellipsoid-like organ (or one lobe of it) as data.

    ``centre`` is (x, y, depth fraction of height) in ``frame`` read at ``frame_level`` (a
    height fraction; default the centre's). ``semi_axes`` (mm) hold at ``reference_volume_ml``
    and scale with the cube root of the sampled volume; without a reference volume the size
    is fixed. ``noise`` is the amplitude of the smooth deformation, ``texture_cv`` the
    coefficient of variation of the uptake texture. The sampled volume is
    ``volumes[volume_key or organ] * volume_share``.
    """

    organ: str
    tissue: Tissue
    frame: FrameName
    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    reference_volume_ml: float | None = None
    noise: float = 0.0
    rotation: Rotation | None = None
    frame_level: float | None = None
    #: semi-axes x and y are fractions of the frame's units (the organ fills the cavity's
    #: cross-section); only the depth semi-axis follows the volume
    semi_axes_follow_frame: bool = False
    volume_key: str | None = None
    volume_share: float = 1.0
    #: height fraction the centre rises per unit of size scale above 1 (a full bladder rises)
    rises_with_size: float = 0.0
    #: narrowing across the midline (the liver's left lobe), per semi-axis of distance
    taper: float = 0.0
    texture_cv: float = 0.0
    noise_scale_mm: float = 50.0
    #: True: noise * (1 + level), stronger deformation away from the centre; False: additive
    noise_grows_outward: bool = True
    #: voxels with a deformed level below this are candidates for the organ
    candidate_below: float = 4.0
    #: search box: ``box_extent`` times the largest semi-axis, or ``box_half_mm`` (mm at the
    #: reference volume, scaled with the organ when ``box_grows``)
    box_extent: float = 1.8
    box_half_mm: tuple[float, float, float] | None = None
    box_grows: bool = True
    #: record the painted volume in truth.json (off for lobes that share one organ name)
    records_volume: bool = True
    #: paint only in subjects of this sex ("M" or "F"); None: both
    sex: str | None = None

    @property
    def level(self) -> float:
        """Height fraction at which the frame is read."""
        return self.centre[2] if self.frame_level is None else self.frame_level


@dataclass(frozen=True)
class PaintedOrgan:
    """What :func:`paint_organ` painted: the mask on ``box`` and the resolved geometry."""

    mask: np.ndarray
    box: Box
    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    rotation: np.ndarray | None
    scale: float


def paint_organ(
    canvas: Canvas,
    shape: OrganShape,
    frame: Frame,
    volumes: Mapping[str, float],
    allowed: np.ndarray | None = None,
) -> PaintedOrgan:
    """Paint one row: the sampled volume's worth of free (and ``allowed``) voxels nearest its centre."""
    total_ml = volumes[shape.volume_key or shape.organ]
    reference = shape.reference_volume_ml
    scale = 1.0 if reference is None else (total_ml / reference) ** (1 / 3)
    x, y, fraction = shape.centre
    if shape.rises_with_size:
        fraction = fraction - shape.rises_with_size * (scale - 1)
    centre = (x * frame.x_unit_mm, frame.y_origin_mm + y * frame.y_unit_mm, fraction * canvas.height_mm)
    if shape.semi_axes_follow_frame:
        semi_x, semi_y, semi_depth = shape.semi_axes
        semi_axes = (semi_x * frame.x_unit_mm, semi_y * frame.y_unit_mm, semi_depth * scale)
    elif reference is None:
        semi_axes = shape.semi_axes
    else:
        semi_axes = tuple(axis * scale for axis in shape.semi_axes)
    rotation = None if shape.rotation is None else shape.rotation.matrix(canvas.rng)
    if shape.box_half_mm is None:
        half = tuple(shape.box_extent * max(semi_axes) * np.ones(3))
    elif shape.box_grows:
        half = tuple(extent * scale for extent in shape.box_half_mm)
    else:
        half = shape.box_half_mm
    box = canvas.box(centre, half)
    if any(part.stop - part.start <= 0 for part in box):
        return PaintedOrgan(np.zeros((0, 0, 0), bool), box, centre, semi_axes, rotation, scale)
    level = ellipsoid_level(canvas, box, centre, semi_axes, rotation)
    if shape.taper:
        x_mm, _, _ = canvas.coordinates(box)
        across = np.clip((centre[0] - x_mm) * np.sign(centre[0] or 1) / semi_axes[0], 0, None)
        level = level * (1.0 + shape.taper * across)
    if shape.noise:
        field = canvas.noise(level.shape, shape.noise_scale_mm)
        if shape.noise_grows_outward:
            level = level + shape.noise * field * (1 + level)
        else:
            level = level + shape.noise * field
    candidate = canvas.free(box) & (level < shape.candidate_below)
    if allowed is not None:
        candidate &= allowed[box]
    mask = canvas.fill_quantile(
        box,
        level,
        candidate,
        total_ml * shape.volume_share,
        organ=shape.organ,
        tissue=shape.tissue,
        name=shape.organ if shape.records_volume else None,
    )
    if shape.texture_cv:
        canvas.texture[box][mask] = 1.0 + shape.texture_cv * canvas.noise(level.shape, 20.0)[mask]
    return PaintedOrgan(mask, box, centre, semi_axes, rotation, scale)


def paint_organs(
    canvas: Canvas,
    shapes: Sequence[OrganShape],
    frame_of: Callable[[FrameName, float], Frame],
    volumes: Mapping[str, float],
    allowed: np.ndarray | None = None,
) -> dict[str, PaintedOrgan]:
    """Paint rows in order (the random stream's order); ``frame_of(name, level)`` resolves each row's frame.

    Rows for the other sex are skipped. Returns what was painted, by organ name.
    """
    painted = {}
    for shape in shapes:
        if shape.sex is not None and shape.sex != canvas.demographics.sex:
            continue
        painted[shape.organ] = paint_organ(canvas, shape, frame_of(shape.frame, shape.level), volumes, allowed)
    return painted


def paint_tube(
    canvas: Canvas,
    points: Sequence,
    radii: Sequence[float],
    tissue: Tissue | None = None,
    organ: str | None = None,
    only_free: bool = True,
    shell_mm: float | None = None,
    core_tissue: Tissue | None = None,
) -> None:
    """Capsule chain through ``points`` (x, y, depth mm) with a radius per point.

    With ``shell_mm`` and ``core_tissue`` the outer shell gets ``tissue`` and the core
    ``core_tissue`` (cortical bone around marrow, bowel wall around content). ``only_free``
    keeps organs and bone painted earlier.
    """
    points = [np.asarray(point, np.float32) for point in points]
    for start, end, start_radius, end_radius in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        reach = max(start_radius, end_radius)
        low = np.minimum(start, end) - reach - canvas.spacing
        high = np.maximum(start, end) + reach + canvas.spacing
        box = (canvas.x_slice(low[0], high[0]), canvas.y_slice(low[1], high[1]), canvas.depth_slice(low[2], high[2]))
        if any(part.stop - part.start <= 0 for part in box):
            continue
        distance, along = segment_distance(canvas, box, start, end)
        radius = start_radius + (end_radius - start_radius) * along
        inside = distance <= radius
        if only_free:
            inside &= canvas.free(box)
        if tissue is not None:
            if shell_mm is not None and core_tissue is not None:
                labels = canvas.tissue[box]
                labels[inside & (distance > radius - shell_mm)] = tissue
                labels[inside & (distance <= radius - shell_mm)] = core_tissue
            else:
                canvas.tissue[box][inside] = tissue
        if organ is not None:
            canvas.organs[box][inside] = LABEL_IDS[organ]


def paint_bone(
    canvas: Canvas,
    points: Sequence,
    radii: Sequence[float],
    organ: str | None,
    shell_mm: float,
    marrow: Tissue = Tissue.MARROW_RED,
) -> None:
    """A bone as a capsule chain: cortical shell ``shell_mm`` thick around marrow; paints over anything."""
    paint_tube(
        canvas, points, radii, Tissue.BONE_CORTICAL, organ, only_free=False, shell_mm=shell_mm, core_tissue=marrow
    )
