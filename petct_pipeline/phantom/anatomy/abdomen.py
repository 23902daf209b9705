"""Abdomen: the cavity and its wall muscles, solid organs as data rows, pancreas, colon, small bowel, fat.

The cavity lies inside the lean trunk minus the abdominal wall, below the diaphragm and in
front of the spine and psoas. Organs take their sampled volumes from it in a fixed order
(kidneys and adrenals, liver, gallbladder, spleen, stomach, pancreas, then the pelvic
organs); the colon frames what is left, and the rest becomes small bowel and visceral fat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ...organs import LABEL_IDS
from .body import ABDOMINAL_WALL_ANTERIOR_MM, ABDOMINAL_WALL_LATERAL_MM, BodyProfile
from .canvas import Box, Canvas
from .grid import LEFT, RIGHT
from .painter import OrganShape, Rotation, paint_organs, paint_tube
from .shapes import ellipsoid_level, segment_distance
from .thorax import diaphragm_depth
from .tissue import Tissue

__all__ = [
    "ABDOMINAL_ORGANS",
    "AbdominalCavity",
    "abdominal_cavity",
    "paint_abdominal_organs",
    "paint_bowel_and_visceral_fat",
]


def _kidney_and_adrenal(side: float, level: float) -> tuple[OrganShape, OrganShape]:
    """Rows of one kidney (upper pole tilted medially and posteriorly) and the adrenal on its upper pole.

    Left and right mirror each other (``side``) and differ only in height (``level``).
    """
    name = "left" if side == LEFT else "right"
    kidney = OrganShape(
        organ=f"kidney_{name}",
        tissue=Tissue.KIDNEY,
        frame="spine",
        centre=(side * 72, 12, level),
        semi_axes=(27, 30, 56),
        reference_volume_ml=150.0,
        rotation=Rotation(yaw=side * 20, pitch=side * -12, roll=-15, pitch_sd=4),
        noise=0.08,
        texture_cv=0.05,
    )
    adrenal = OrganShape(
        organ=f"adrenal_gland_{name}",
        tissue=Tissue.SOFT,
        frame="spine",
        frame_level=level - 0.03,
        centre=(side * 45, 25, level - 0.04),
        semi_axes=(6, 12, 14),
        volume_key="adrenal_glands",
        volume_share=0.5,
        noise=0.05,
    )
    return kidney, adrenal


#: kidneys retroperitoneal at T12-L3, the right one lower (under the liver), each with its
#: adrenal; liver in the right upper quadrant under the dome, its left lobe tapering across
#: the midline; gallbladder under the liver; spleen posterolateral in the left upper quadrant
#: along the ribs; stomach anterior to the spleen. Row order is painting (and random-stream) order.
ABDOMINAL_ORGANS = (
    *_kidney_and_adrenal(LEFT, 0.366),
    *_kidney_and_adrenal(RIGHT, 0.378),
    OrganShape(
        organ="liver",
        tissue=Tissue.LIVER,
        frame="abdominal_cavity",
        frame_level=0.33,
        centre=(RIGHT * 0.38, 0.05, 0.325),
        semi_axes=(0.62, 0.85, 95),
        semi_axes_follow_frame=True,
        reference_volume_ml=1700.0,
        rotation=Rotation(yaw_sd=5),
        taper=0.9,
        noise=0.10,
        texture_cv=0.06,
    ),
    OrganShape(
        organ="gallbladder",
        tissue=Tissue.BILE,
        frame="abdominal_cavity",
        frame_level=0.33,
        centre=(RIGHT * 0.42, 0.55, 0.355),
        semi_axes=(14, 14, 35),
        rotation=Rotation(pitch=-25),
        noise=0.05,
    ),
    OrganShape(
        organ="spleen",
        tissue=Tissue.SPLEEN,
        frame="abdominal_cavity",
        frame_level=0.33,
        centre=(LEFT * 0.68, -0.45, 0.315),
        semi_axes=(28, 52, 55),
        reference_volume_ml=145.0,
        rotation=Rotation(yaw=35, yaw_sd=8),
        noise=0.10,
        texture_cv=0.06,
    ),
    OrganShape(
        organ="stomach",
        tissue=Tissue.STOMACH,
        frame="abdominal_cavity",
        frame_level=0.33,
        centre=(LEFT * 0.35, 0.25, 0.33),
        semi_axes=(45, 38, 75),
        reference_volume_ml=385.0,
        rotation=Rotation(yaw=20, pitch=-20),
        noise=0.10,
    ),
)


@dataclass(frozen=True)
class AbdominalCavity:
    """The peritoneal/retroperitoneal space: ``inside`` and ``radial`` on ``region``, ``mask`` on the grid."""

    region: Box
    inside: np.ndarray  # cavity voxels of the region (before any organ was painted)
    radial: np.ndarray  # normalised distance from the cavity's axis, 1 at its wall
    mask: np.ndarray  # the same cavity on the whole grid


def abdominal_cavity(canvas: Canvas, profile: BodyProfile, domes: tuple[float, float]) -> AbdominalCavity:
    """Find the cavity and paint the muscles that bound it: iliopsoas and the back muscles (autochthon)."""
    scale = profile.width_scale
    z_part = canvas.fraction_slice(0.27, 0.53)
    widest, deepest = float(profile.half_width[z_part].max()), float(profile.half_depth[z_part].max())
    region = (canvas.x_slice(-widest, widest), canvas.y_slice(-deepest - 20, deepest + 20), z_part)
    x, y, depth = canvas.coordinates(region)
    fraction = profile.height_fraction[z_part]
    shrink = np.interp(fraction, [0.27, 0.44, 0.53], [1.0, 1.0, 0.55]).astype(np.float32)[None, None, :]  # pelvis
    half_width = (profile.half_width[z_part][None, None, :] - ABDOMINAL_WALL_LATERAL_MM * scale) * shrink
    half_depth = (profile.half_depth[z_part][None, None, :] - ABDOMINAL_WALL_ANTERIOR_MM * scale) * np.sqrt(shrink)
    centre_y = profile.centre_y[z_part][None, None, :] + 6 * scale
    radial = np.sqrt((x / half_width) ** 2 + ((y - centre_y) / half_depth) ** 2)
    spine_y = profile.spine_y[z_part][None, None, :]
    inside = (radial <= 1.0) & (depth >= diaphragm_depth(canvas, profile, x, y, domes))
    inside &= ~((np.abs(x) < 40 * scale) & (y < spine_y + 20 * scale))  # spine and psoas
    inside &= ~(y < spine_y - 5 * scale)  # back muscles
    inside &= canvas.lean[region]
    # psoas / iliopsoas (labels on muscle tissue), taking muscle or cavity beside the lumbar spine
    tissue, organs = canvas.tissue[region], canvas.organs[region]
    for side, name in ((LEFT, "iliopsoas_left"), (RIGHT, "iliopsoas_right")):
        radius = (np.interp(fraction, [0.355, 0.40, 0.45, 0.50], [8, 18, 24, 20]) * scale)[None, None, :]
        centre_x = (side * np.interp(fraction, [0.355, 0.45, 0.50], [30, 45, 70]) * scale)[None, None, :]
        muscle_y = spine_y + (np.interp(fraction, [0.355, 0.45, 0.5], [8, 20, 40]) * scale)[None, None, :]
        psoas = ((x - centre_x) ** 2 + (y - muscle_y) ** 2 <= radius**2) & (fraction[None, None, :] > 0.355)
        psoas &= organs == 0
        psoas &= (tissue == Tissue.MUSCLE) | inside
        tissue[psoas] = Tissue.MUSCLE
        organs[psoas] = LABEL_IDS[name]
    inside &= organs == 0
    mask = np.zeros(canvas.shape, bool)
    mask[region] = inside
    # back muscles: unlabelled muscle behind the spine from T1 to L5
    back_z = canvas.fraction_slice(0.19, 0.45)
    back_x, back_y, _ = canvas.coordinates((slice(None), slice(None), back_z))
    back_spine_y = profile.spine_y[back_z][None, None, :]
    back = (
        (canvas.tissue[:, :, back_z] == Tissue.MUSCLE)
        & (canvas.organs[:, :, back_z] == 0)
        & (back_y < back_spine_y - 12 * scale)
        & (np.abs(back_x) < 75 * scale)
        & (np.abs(back_x) > 3)
    )
    back_organs = canvas.organs[:, :, back_z]
    back_organs[back & (back_x < 0)] = LABEL_IDS["autochthon_left"]
    back_organs[back & (back_x > 0)] = LABEL_IDS["autochthon_right"]
    return AbdominalCavity(region, inside, radial, mask)


def paint_abdominal_organs(
    canvas: Canvas, profile: BodyProfile, volumes: Mapping[str, float], cavity: AbdominalCavity
) -> None:
    """The organ rows, urine in each renal pelvis, a gas cap in the gastric fundus, then the pancreas."""
    painted = paint_organs(canvas, ABDOMINAL_ORGANS, profile.frame, volumes, cavity.mask)
    for name, side in (("kidney_left", LEFT), ("kidney_right", RIGHT)):
        kidney = painted[name]
        if kidney.mask.size:  # the renal pelvis opens medially, towards the spine
            centre, scale = kidney.centre, kidney.scale
            pelvis_centre = (centre[0] - side * 12 * scale, centre[1] + 6, centre[2])
            pelvis = ellipsoid_level(
                canvas, kidney.box, pelvis_centre, (9 * scale, 10 * scale, 26 * scale), kidney.rotation
            )
            canvas.tissue[kidney.box][kidney.mask & (pelvis <= 1.0)] = Tissue.URINE_KIDNEY
    stomach = painted["stomach"]
    if stomach.mask.size and stomach.mask.any():
        _, _, depth = canvas.coordinates(stomach.box)
        fundus = np.quantile(np.broadcast_to(depth, stomach.mask.shape)[stomach.mask], 0.15)
        canvas.tissue[stomach.box][stomach.mask & (depth < fundus)] = Tissue.GAS
    _paint_pancreas(canvas, profile, volumes["pancreas"], cavity)


def _paint_pancreas(canvas: Canvas, profile: BodyProfile, volume_ml: float, cavity: AbdominalCavity) -> None:
    """A curved capsule from the head (right of the midline) to the tail (near the spleen)."""
    height, scale = canvas.height_mm, profile.width_scale
    axis = [
        (RIGHT * 30 * scale, profile.spine_y_at(0.375) + 55 * scale, 0.375 * height),
        (LEFT * 15 * scale, profile.spine_y_at(0.365) + 62 * scale, 0.365 * height),
        (LEFT * 75 * scale, profile.spine_y_at(0.35) + 40 * scale, 0.345 * height),
    ]
    box = canvas.box(
        (LEFT * 20 * scale, profile.spine_y_at(0.36) + 50 * scale, 0.36 * height), (130 * scale, 60 * scale, 60)
    )
    distance = np.full(canvas.tissue[box].shape, np.inf, np.float32)
    for start, end in zip(axis[:-1], axis[1:]):
        distance = np.minimum(distance, segment_distance(canvas, box, start, end)[0])
    level = distance + 3.0 * canvas.noise(distance.shape, 30.0)
    candidate = canvas.free(box) & (distance < 30) & cavity.mask[box]
    canvas.fill_quantile(box, level, candidate, volume_ml, organ="pancreas", tissue=Tissue.PANCREAS, name="pancreas")


def paint_bowel_and_visceral_fat(canvas: Canvas, profile: BodyProfile, cavity: AbdominalCavity) -> None:
    """Colon frame (wall, faeces, gas), then small bowel and visceral fat share the rest of the cavity.

    Visceral fat is a share of total body fat (larger in men, growing with age); it gathers
    peripherally (mesentery, perirenal) and the bowel centrally.
    """
    height, scale = canvas.height_mm, profile.width_scale
    demographics = canvas.demographics
    low, high = profile.cavity_half_width(0.40), profile.cavity_half_width(0.345)
    depth_at = profile.cavity_half_depth
    colon = [
        (RIGHT * 0.62 * low, 0.05 * depth_at(0.44), 0.445 * height),  # caecum
        (RIGHT * 0.62 * low, 0.0, 0.37 * height),  # hepatic flexure
        (RIGHT * 0.35 * high, 0.55 * depth_at(0.37), 0.365 * height),  # transverse colon
        (LEFT * 0.3 * high, 0.55 * depth_at(0.38), 0.38 * height),  # transverse colon
        (LEFT * 0.66 * high, 0.05 * depth_at(0.34), 0.335 * height),  # splenic flexure
        (LEFT * 0.66 * low, -0.05 * depth_at(0.42), 0.43 * height),  # descending colon
        (LEFT * 0.35 * low, 0.25 * depth_at(0.47), 0.47 * height),  # sigmoid
        (0.0, profile.spine_y_at(0.445) + 20 * scale, 0.505 * height),  # rectum
    ]
    radius = 21 * scale
    paint_tube(
        canvas,
        colon,
        [radius * 1.2] + [radius] * 6 + [radius * 0.8],
        Tissue.BOWEL,
        "colon",
        shell_mm=4.0,
        core_tissue=Tissue.COLON_CONTENT,
    )
    region = cavity.region
    tissue, organs = canvas.tissue[region], canvas.organs[region]
    colon_content = (organs == LABEL_IDS["colon"]) & (tissue == Tissue.COLON_CONTENT)
    tissue[colon_content & (canvas.noise(colon_content.shape, 18.0) > 0.6)] = Tissue.GAS
    free = cavity.inside & (organs == 0) & (tissue != Tissue.BONE_CORTICAL)
    free_count = int(free.sum())
    age_factor = float(np.clip(1.0 + 0.01 * (demographics.age - 50.0), 0.6, 1.4))
    visceral_share = (0.22 if demographics.is_male else 0.12) * age_factor
    visceral_ml = profile.fat_litres * 1000.0 * visceral_share
    fat_fraction = float(np.clip(visceral_ml / max(free_count * canvas.voxel_ml, 1.0), 0.08, 0.85))
    field = canvas.noise(free.shape, 22.0)
    field += 0.8 * cavity.radial
    if free_count:
        threshold = np.quantile(field[free], 1.0 - fat_fraction)
        fat = free & (field > threshold)
        bowel = free & ~fat
        tissue[fat] = Tissue.FAT
        tissue[bowel] = Tissue.BOWEL
        organs[bowel] = LABEL_IDS["small_bowel"]
        tissue[bowel & (canvas.noise(free.shape, 8.0) > 2.0)] = Tissue.GAS
        canvas.texture[region][bowel] = np.clip(1.0 + 0.3 * canvas.noise(free.shape, 15.0)[bowel], 0.3, 2.5)
    canvas.volumes["visceral_fat"] = float((cavity.inside & (tissue == Tissue.FAT)).sum() * canvas.voxel_ml)
