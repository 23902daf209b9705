"""Head and neck: skull, brain (grey/white, ventricles widening with age), face, airway, oesophagus, thyroid.

The brain fills the intracranial space to its sampled volume from the inside out, so
atrophy shows as a wider CSF rim; the thyroid lobes are data rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...organs import LABEL_IDS
from .body import BodyProfile
from .canvas import Canvas
from .grid import LEFT, RIGHT
from .outline import HeadShape
from .painter import OrganShape, paint_bone, paint_organs, paint_tube
from .shapes import ellipsoid_level
from .tissue import Tissue

__all__ = ["THYROID_LOBES", "paint_head", "paint_neck"]

#: thyroid: two lobes beside the trachea (reference volume is the whole gland's); the
#: lobes share one label, so the painted volume is not recorded per lobe
THYROID_LOBES = tuple(
    OrganShape(
        organ="thyroid_gland",
        tissue=Tissue.THYROID,
        frame="spine",
        frame_level=0.165,
        centre=(side * 18, 30, 0.163),
        semi_axes=(9, 9, 22),
        reference_volume_ml=18.0,
        volume_share=0.5,
        box_half_mm=(16, 16, 30),
        box_grows=False,
        candidate_below=1.6,
        records_volume=False,
    )
    for side in (LEFT, RIGHT)
)


def paint_head(canvas: Canvas, head: HeadShape, brain_volume_ml: float) -> None:
    """Skull with diploe, CSF, brain to its sampled volume, mandible, maxilla, eyes, nasal airway."""
    height = canvas.height_mm
    age = canvas.demographics.age
    half_width, half_depth, half_length = head.semi_axes_mm
    centre_depth = head.centre_depth_mm
    centre = (0.0, 6.0, centre_depth)
    box = canvas.box(centre, (half_width + 4, half_depth + 4, half_length + 4))
    outer_table = ellipsoid_level(canvas, box, centre, (half_width - 5, half_depth - 5, half_length - 5))
    inner_table = ellipsoid_level(canvas, box, centre, (half_width - 12, half_depth - 12, half_length - 12))
    _, y, depth = canvas.coordinates(box)
    skull_base = 0.083 * height + 0.03 * height * np.clip(-(y - 6) / half_depth, 0, 1)  # deeper posteriorly
    cranium = depth < skull_base
    skull = (outer_table <= 1.0) & (inner_table > 1.0) & cranium
    tissue = canvas.tissue[box]
    organs = canvas.organs[box]
    tissue[skull] = Tissue.BONE_CORTICAL
    diploe = ellipsoid_level(canvas, box, centre, (half_width - 8.5, half_depth - 8.5, half_length - 8.5))
    tissue[skull & (np.abs(diploe - 1.0) < 0.03)] = Tissue.MARROW_RED
    organs[skull] = LABEL_IDS["skull"]
    intracranial = (inner_table <= 1.0) & cranium
    tissue[intracranial] = Tissue.CSF
    # brain: quantile of the deformed intracranial distance -> atrophy widens the CSF space
    brain_level = np.sqrt(inner_table) + 0.03 * canvas.noise(inner_table.shape, 40.0)
    brain = canvas.fill_quantile(
        box, brain_level, intracranial, brain_volume_ml, organ="brain", tissue=Tissue.BRAIN_WHITE, name="brain"
    )
    surface = float(brain_level[brain].max()) if brain.any() else 1.0
    cortex = brain & (brain_level > surface - 0.13)
    cerebellum = brain & (depth > 0.075 * height) & (y < 6 - 0.25 * half_depth)
    deep_grey = brain & (ellipsoid_level(canvas, box, (0, 6, centre_depth + 0.01 * height), (30, 25, 20)) <= 1.0)
    tissue[cortex | cerebellum | deep_grey] = Tissue.BRAIN_GREY
    ventricle_width = 14 + 0.1 * max(age - 40, 0)
    ventricles = (0, 0, centre_depth - 0.005 * height)
    tissue[brain & (ellipsoid_level(canvas, box, ventricles, (ventricle_width, 30, 12)) <= 1.0)] = Tissue.CSF
    canvas.texture[box][brain] = 1.0 + 0.08 * canvas.noise(inner_table.shape, 15.0)[brain]
    # face: mandible (part of the skull class), eyes and nasal airway
    jaw_depth = half_depth * 0.85
    mandible = [
        (LEFT * 0.55 * half_width, -0.05 * half_depth, 0.10 * height),
        (LEFT * 0.45 * half_width, 0.55 * jaw_depth, 0.125 * height),
        (0, 0.80 * jaw_depth, 0.13 * height),
        (RIGHT * 0.45 * half_width, 0.55 * jaw_depth, 0.125 * height),
        (RIGHT * 0.55 * half_width, -0.05 * half_depth, 0.10 * height),
    ]
    paint_bone(canvas, mandible, [7, 8, 8, 8, 7], "skull", shell_mm=2.5)
    maxilla = [
        (LEFT * 0.4 * half_width, 0.5 * half_depth, 0.098 * height),
        (0, 0.78 * half_depth, 0.1 * height),
        (RIGHT * 0.4 * half_width, 0.5 * half_depth, 0.098 * height),
    ]
    paint_bone(canvas, maxilla, [9, 10, 9], "skull", shell_mm=2.5)
    for side in (LEFT, RIGHT):
        eye = (side * 32, 0.72 * half_depth, 0.072 * height)
        paint_tube(canvas, [eye, eye], [12, 12], Tissue.SOFT)
    nasal = [(0, 0.75 * half_depth, 0.085 * height), (0, 0.35 * half_depth, 0.09 * height)]
    paint_tube(canvas, nasal, [9, 9], Tissue.AIRWAY)


def paint_neck(canvas: Canvas, profile: BodyProfile, volumes: Mapping[str, float]) -> None:
    """Pharynx -> trachea -> main bronchi, the oesophagus behind them, and the thyroid lobes."""
    height, scale = canvas.height_mm, profile.width_scale
    # air lumen; the trachea has a soft-tissue wall
    pharynx = [
        (0, profile.spine_y_at(0.10) + 22 * scale, 0.095 * height),
        (0, profile.spine_y_at(0.125) + 22 * scale, 0.125 * height),
    ]
    paint_tube(canvas, pharynx, [9 * scale, 8 * scale], Tissue.AIRWAY)
    trachea = [
        (0, profile.spine_y_at(0.13) + 24 * scale, 0.13 * height),
        (0, profile.spine_y_at(0.17) + 26 * scale, 0.17 * height),
        (0, profile.spine_y_at(0.235) + 28 * scale, 0.235 * height),
    ]
    paint_tube(canvas, trachea, [11 * scale, 11 * scale, 11 * scale], Tissue.SOFT, "trachea")
    paint_tube(canvas, trachea, [8.5 * scale, 8.5 * scale, 8.5 * scale], Tissue.AIRWAY, "trachea", only_free=False)
    carina = trachea[-1]
    for side in (LEFT, RIGHT):
        bronchus = [carina, (side * 40 * scale, carina[1] - 5, carina[2] + 25 * scale)]
        paint_tube(canvas, bronchus, [7 * scale, 5.5 * scale], Tissue.AIRWAY)
    # oesophagus behind the trachea down to the gastro-oesophageal junction
    oesophagus = [
        (0, profile.spine_y_at(0.13) + 12 * scale, 0.13 * height),
        (LEFT * 5, profile.spine_y_at(0.24) + 16 * scale, 0.24 * height),
        (LEFT * 15 * scale, profile.spine_y_at(0.32) + 22 * scale, 0.32 * height),
        (LEFT * 35 * scale, profile.spine_y_at(0.335) + 40 * scale, 0.335 * height),
    ]
    paint_tube(canvas, oesophagus, [7 * scale] * 4, Tissue.ESOPHAGUS, "esophagus")
    paint_organs(canvas, THYROID_LOBES, profile.frame, volumes)
