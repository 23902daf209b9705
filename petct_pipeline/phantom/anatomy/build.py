"""Paint one subject's whole-body anatomy, region by region, in the order the random stream expects.

Later regions take only voxels earlier ones left free, so the order below is part of the
anatomy: outline, bones, head and neck, heart, great vessels, lungs, abdomen, pelvis, bowel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ...demographics import Demographics
from .abdomen import abdominal_cavity, paint_abdominal_organs, paint_bowel_and_visceral_fat
from .body import body_profile
from .canvas import Canvas
from .grid import grid_shape
from .head_neck import paint_head, paint_neck
from .outline import paint_body_outline
from .pelvis import paint_pelvic_bones_and_legs, paint_pelvic_organs
from .skeleton import paint_ribs_and_sternum, paint_shoulders_and_arms, paint_spine
from .thorax import paint_heart, paint_lungs, sample_diaphragm_domes
from .tissue import Tissue
from .vessels import paint_great_vessels

__all__ = ["Anatomy", "build_anatomy"]

#: used when a caller's volumes lack them (organ_sizes always samples both)
DEFAULT_AORTA_RADIUS_MM = 11.0
DEFAULT_THYROID_ML = 18.0


@dataclass
class Anatomy:
    """Label volumes of one subject (x, y, z): tissue classes, organ ids, uptake texture."""

    tissue: np.ndarray
    organs: np.ndarray
    texture: np.ndarray
    body: np.ndarray
    spacing: float
    landmarks: dict[str, float] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)


def build_anatomy(
    demographics: Demographics,
    volumes: Mapping[str, float],
    rng: np.random.Generator,
    spacing: float,
    fov: str = "whole_body",
) -> Anatomy:
    """Paint one subject's anatomy; ``volumes`` from :func:`..organ_sizes.sample_organ_volumes`."""
    canvas = Canvas(demographics, grid_shape(demographics, spacing, fov), spacing, rng)
    profile = body_profile(canvas)
    outline = paint_body_outline(canvas, profile)
    volumes = dict(volumes)
    volumes.setdefault("aorta_radius_mm", DEFAULT_AORTA_RADIUS_MM)
    volumes.setdefault("thyroid_gland", DEFAULT_THYROID_ML)
    domes = sample_diaphragm_domes(rng)
    paint_spine(canvas, profile)
    paint_ribs_and_sternum(canvas, profile)
    paint_pelvic_bones_and_legs(canvas, profile)
    paint_shoulders_and_arms(canvas, profile, outline.arm)
    paint_head(canvas, outline.head, volumes["brain"])
    paint_neck(canvas, profile, volumes)
    heart = paint_heart(canvas, profile, volumes)
    paint_great_vessels(canvas, profile, heart, volumes["aorta_radius_mm"])
    paint_lungs(canvas, profile, volumes["lungs"], domes)
    cavity = abdominal_cavity(canvas, profile, domes)
    paint_abdominal_organs(canvas, profile, volumes, cavity)
    paint_pelvic_organs(canvas, profile, volumes, cavity)
    paint_bowel_and_visceral_fat(canvas, profile, cavity)
    outside = ~canvas.body
    canvas.tissue[outside] = Tissue.AIR
    canvas.organs[outside] = 0
    canvas.volumes["fat_total"] = float((canvas.tissue == Tissue.FAT).sum() * canvas.voxel_ml)
    # truth.json keys: "w_lateral" is the lateral width scale
    landmarks = {
        "height_mm": canvas.height_mm,
        "w_lateral": profile.width_scale,
        "subcutaneous_fat_mm": profile.subcutaneous_fat_base,
    }
    return Anatomy(canvas.tissue, canvas.organs, canvas.texture, canvas.body, canvas.spacing, landmarks, canvas.volumes)
