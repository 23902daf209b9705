"""Axial skeleton and shoulder girdle: vertebrae C1-S1 with discs and canal, ribs, sternum, arms.

Vertebral levels are fixed fractions of height, so every organ placed "at T12" moves with
the spine. Bones are painted over whatever the outline put there (cortical shell around
red marrow; yellow marrow in long-bone shafts) and carry TotalSegmentator labels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...organs import LABEL_IDS
from .body import BodyProfile
from .canvas import Canvas
from .grid import LEFT, RIGHT
from .outline import ArmAxis
from .painter import paint_bone
from .tissue import Tissue

__all__ = ["VertebraLevel", "paint_ribs_and_sternum", "paint_shoulders_and_arms", "paint_spine", "vertebra_levels"]

#: spine regions: vertebra count and the height fractions of the top of the first and the
#: bottom of the last vertebra
SPINE_REGIONS = (("C", 7, 0.110, 0.185), ("T", 12, 0.185, 0.355), ("L", 5, 0.355, 0.445))
SACRUM_S1_FRACTIONS = (0.445, 0.462)


class VertebraLevel(NamedTuple):
    name: str  # TotalSegmentator label, e.g. vertebrae_T12
    top_mm: float  # depth below the vertex
    bottom_mm: float


def vertebra_levels(height_mm: float) -> list[VertebraLevel]:
    """C1 ... L5 and S1, equally spaced within each region."""
    levels = []
    for region, count, top, bottom in SPINE_REGIONS:
        edges = np.linspace(top, bottom, count + 1) * height_mm
        for index in range(count):
            levels.append(VertebraLevel(f"vertebrae_{region}{index + 1}", float(edges[index]), float(edges[index + 1])))
    top, bottom = SACRUM_S1_FRACTIONS
    levels.append(VertebraLevel("vertebrae_S1", top * height_mm, bottom * height_mm))
    return levels


def vertebra_centre_mm(height_mm: float, name: str) -> float:
    """Depth (mm) of the middle of one vertebra."""
    level = next(level for level in vertebra_levels(height_mm) if level.name == name)
    return 0.5 * sum(level[1:])


def paint_spine(canvas: Canvas, profile: BodyProfile) -> None:
    """Vertebral bodies (discs in their lowest 18 %), arches, spinous and transverse processes, canal, cord."""
    height, scale = canvas.height_mm, profile.width_scale
    fraction = profile.height_fraction
    spine_landmarks = [0.11, 0.185, 0.355, 0.445]
    body_half_width = (np.interp(fraction, spine_landmarks, [9, 14, 20, 25]) * scale).astype(np.float32)
    body_half_depth = (np.interp(fraction, spine_landmarks, [8, 12, 15, 17]) * scale).astype(np.float32)
    z_part = canvas.fraction_slice(0.105, 0.462)
    if z_part.stop <= z_part.start:
        return
    x_part = canvas.x_slice(-60 * scale, 60 * scale)
    y_part = canvas.y_slice(
        float(profile.spine_y[z_part].min() - 90 * scale), float(profile.spine_y[z_part].max() + 40 * scale)
    )
    x, y, _ = canvas.coordinates((x_part, y_part, z_part))
    body_y = profile.spine_y[z_part][None, None, :]
    half_width, half_depth = body_half_width[z_part][None, None, :], body_half_depth[z_part][None, None, :]
    depth = canvas.depth[z_part]
    label = np.zeros(depth.shape, np.uint8)
    in_disc = np.zeros(depth.shape, bool)
    for name, top, bottom in vertebra_levels(height):
        level = (depth >= top) & (depth < bottom)
        label[level] = LABEL_IDS[name]
        in_disc[level & (depth > bottom - 0.18 * (bottom - top))] = True
    body_level = (x / half_width) ** 2 + ((y - body_y) / half_depth) ** 2
    canal_radius = (np.interp(fraction[z_part], [0.11, 0.2, 0.44], [9, 7.5, 9]) * scale)[None, None, :]
    canal_y = body_y - half_depth - canal_radius
    from_canal = np.sqrt(x**2 + (y - canal_y) ** 2)
    arch = (from_canal > canal_radius) & (from_canal < canal_radius + 5 * scale)
    spinous = (np.abs(x) < 4 * scale) & (y < canal_y) & (y > canal_y - canal_radius - 28 * scale)
    transverse = (np.abs(y - canal_y) < 5 * scale) & (np.abs(x) < half_width + 16 * scale) & (np.abs(x) > canal_radius)
    bone = ((body_level <= 1.0) | arch | spinous | transverse) & ~in_disc[None, None, :]
    bone &= canvas.lean[x_part, y_part, z_part]
    inner = body_level <= 0.6
    tissue = canvas.tissue[x_part, y_part, z_part]
    organs = canvas.organs[x_part, y_part, z_part]
    tissue[bone] = Tissue.BONE_CORTICAL
    tissue[bone & inner] = Tissue.MARROW_RED
    disc = (body_level <= 1.0) & in_disc[None, None, :]
    tissue[disc] = Tissue.CARTILAGE
    organs[bone] = np.broadcast_to(label[None, None, :], bone.shape)[bone]
    # canal: CSF with spinal cord (ends at L1)
    canal = from_canal <= canal_radius
    tissue[canal] = Tissue.CSF
    cord = (from_canal <= 0.55 * canal_radius) & (depth[None, None, :] < 0.36 * height)
    tissue[cord] = Tissue.SPINAL_CORD
    organs[cord] = LABEL_IDS["spinal_cord"]


def paint_ribs_and_sternum(canvas: Canvas, profile: BodyProfile) -> None:
    """Twelve rib pairs sloping down to the front (costal cartilages for 1-10), then the sternum."""
    height, scale = canvas.height_mm, profile.width_scale
    levels = {level.name: (level.top_mm, level.bottom_mm) for level in vertebra_levels(height)}
    first_rib_mm = 0.5 * sum(levels["vertebrae_T1"])
    step = levels["vertebrae_T2"][0] - levels["vertebrae_T1"][0]
    drop = 3.2 * step  # anterior ends lie ~3 vertebral heights lower than the heads
    z_part = canvas.depth_slice(first_rib_mm - 12, 0.5 * sum(levels["vertebrae_T12"]) + drop + 12)
    widest, deepest = float(profile.half_width[z_part].max()), float(profile.half_depth[z_part].max())
    x_part, y_part = canvas.x_slice(-widest, widest), canvas.y_slice(-deepest - 20, deepest + 20)
    x, y, depth = canvas.coordinates((x_part, y_part, z_part))
    half_width = profile.half_width[z_part][None, None, :]
    half_depth = profile.half_depth[z_part][None, None, :]
    centre_y = profile.centre_y[z_part][None, None, :]
    ring_x, ring_y = half_width * 0.93, half_depth * 0.90
    ring_level = np.sqrt((x / ring_x) ** 2 + ((y - centre_y) / ring_y) ** 2)
    angle = np.arctan2(np.abs(x) / ring_x, -(y - centre_y) / ring_y)  # 0 at the back, pi at the front
    shift = drop * (1 - np.cos(angle)) / 2.0
    rib_position = (depth - shift - first_rib_mm) / step
    nearest = np.rint(rib_position)
    near = np.abs(rib_position - nearest) * step < 6.0 * scale
    on_ring = np.abs(ring_level - 1.0) * ring_x < 5.5 * scale
    rib_number = nearest.astype(np.int16) + 1  # 1..12
    bone_end = np.select([rib_number <= 7, rib_number <= 10, rib_number == 11], [2.6, 2.2, 1.9], 1.6)
    cartilage_end = np.select([rib_number <= 7, rib_number <= 10], [3.0, 2.6], 0.0)
    valid = near & on_ring & (rib_number >= 1) & (rib_number <= 12) & (angle > 0.35)
    rib = valid & (angle <= bone_end)
    cartilage = valid & (angle > bone_end) & (angle <= cartilage_end)
    tissue = canvas.tissue[x_part, y_part, z_part]
    organs = canvas.organs[x_part, y_part, z_part]
    lean = canvas.lean[x_part, y_part, z_part]
    rib &= lean
    tissue[rib] = Tissue.BONE_CORTICAL
    tissue[cartilage & lean] = Tissue.CARTILAGE
    left = x < 0
    ids = np.where(left, LABEL_IDS["rib_left_1"] - 1, LABEL_IDS["rib_right_1"] - 1) + rib_number
    organs[rib] = np.broadcast_to(ids, rib.shape)[rib].astype(np.uint8)
    organs[cartilage & lean] = LABEL_IDS["costal_cartilages"]
    # sternum (manubrium + body) on the anterior midline: three parallel rods
    points, radii = [], []
    for fraction, radius in ((0.195, 16), (0.215, 13), (0.25, 12), (0.29, 11), (0.305, 7)):
        points.append((0.0, 0.86 * profile.half_depth_at(fraction), fraction * height))
        radii.append(radius * scale)
    for offset in (-6 * scale, 0.0, 6 * scale):
        rod = [(point[0] + offset, point[1], point[2]) for point in points]
        paint_bone(canvas, rod, [radius * 0.6 for radius in radii], "sternum", shell_mm=2.5)


def paint_shoulders_and_arms(canvas: Canvas, profile: BodyProfile, arm: ArmAxis) -> None:
    """Humerus, radius and ulna along the arm axis; clavicle and scapula on the chest wall."""
    height, scale = canvas.height_mm, profile.width_scale
    if arm.z_part.stop <= arm.z_part.start:
        return
    for side, humerus, scapula, clavicle in (
        (LEFT, "humerus_left", "scapula_left", "clavicula_left"),
        (RIGHT, "humerus_right", "scapula_right", "clavicula_right"),
    ):
        shoulder = (side * arm.at(arm.x_mm, 0.195), arm.at(arm.y_mm, 0.195), 0.195 * height)
        elbow = (side * arm.at(arm.x_mm, 0.37), arm.at(arm.y_mm, 0.37) - 5, 0.37 * height)
        wrist = (side * arm.at(arm.x_mm, 0.51), arm.at(arm.y_mm, 0.51), 0.51 * height)
        paint_bone(canvas, [shoulder, shoulder], [22 * scale, 22 * scale], humerus, shell_mm=2.5)
        paint_bone(
            canvas, [shoulder, elbow], [11 * scale, 10 * scale], humerus, shell_mm=4.0, marrow=Tissue.MARROW_YELLOW
        )
        for offset in (-9.0, 9.0):  # radius and ulna (not TotalSegmentator "total" classes)
            forearm = [(elbow[0], elbow[1] + offset * scale, elbow[2]), (wrist[0], wrist[1] + offset * scale, wrist[2])]
            paint_bone(canvas, forearm, [7 * scale, 6 * scale], None, shell_mm=2.5, marrow=Tissue.MARROW_YELLOW)
        # clavicle from the sternal notch to the acromion
        top_depth = profile.half_depth_at(0.19)
        top_width = profile.half_width_at(0.19)
        paint_bone(
            canvas,
            [
                (side * 18 * scale, 0.75 * top_depth, 0.19 * height),
                (side * 0.55 * top_width, 0.7 * top_depth, 0.182 * height),
                (side * 0.9 * top_width, 0.05 * top_depth, 0.18 * height),
            ],
            [7 * scale, 6 * scale, 7 * scale],
            clavicle,
            shell_mm=2.5,
        )
        # scapula: plate on the posterior chest wall, two struts from the top and a base
        top = (side * 0.75 * top_width, -0.55 * top_depth, 0.195 * height)
        medial = (side * 0.40 * top_width, -0.80 * top_depth, 0.20 * height)
        inferior = (side * 0.45 * top_width, -0.78 * top_depth, 0.26 * height)
        for corner in (medial, inferior):
            paint_bone(canvas, [top, corner], [7 * scale, 6 * scale], scapula, shell_mm=2.5)
        paint_bone(canvas, [medial, inferior], [6 * scale, 6 * scale], scapula, shell_mm=2.5)
