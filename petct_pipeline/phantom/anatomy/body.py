"""Body build of one subject: lean trunk cross-sections, subcutaneous fat and spine position per slice.

Positions along the body are height fractions (depth below the vertex / standing height),
using standard anthropometric proportions (Drillis & Contini 1966) and the vertebral levels
of the organs. The trunk tables below are a reference male's; a woman's are scaled per
landmark, and everything lateral scales with lean body mass per height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...demographics import Demographics
from ...errors import InputError
from ..organ_sizes import REFERENCE_ADULT
from .canvas import Canvas
from .painter import Frame, FrameName

__all__ = ["BodyProfile", "body_fat_fraction", "body_profile", "lean_body_mass_kg"]

#: height fractions of the trunk landmarks the tables below are given at (neck to hips)
LANDMARK_FRACTIONS = np.array([0.110, 0.135, 0.170, 0.185, 0.20, 0.23, 0.26, 0.30, 0.34, 0.38, 0.42, 0.46, 0.50, 0.53])
#: lean trunk half-width and half-depth (mm), reference male
MALE_HALF_WIDTH_MM = np.array([45, 50, 56, 150, 156, 160, 160, 156, 146, 140, 146, 158, 158, 140], np.float32)
MALE_HALF_DEPTH_MM = np.array([48, 52, 56, 92, 100, 106, 110, 108, 100, 96, 98, 104, 100, 88], np.float32)
#: female / male ratios of the same (narrower chest, wider hips)
FEMALE_HALF_WIDTH_SCALE = np.array(
    [1, 1, 1, 0.92, 0.92, 0.92, 0.92, 0.92, 0.9, 0.9, 0.98, 1.06, 1.07, 1.05], np.float32
)
FEMALE_HALF_DEPTH_SCALE = np.array(
    [1, 1, 1, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.98, 1.02, 1.02, 1.0], np.float32
)
#: subcutaneous fat distribution factor per landmark (abdomen thickest; women more on hips)
MALE_SUBCUTANEOUS_FAT = np.array([0.4, 0.5, 0.6, 0.8, 1.0, 1.0, 1.1, 1.4, 2.0, 2.3, 2.1, 1.4, 1.2, 1.0], np.float32)
FEMALE_SUBCUTANEOUS_FAT = np.array([0.4, 0.5, 0.6, 0.8, 1.0, 1.0, 1.1, 1.3, 1.7, 2.0, 2.1, 2.0, 1.9, 1.6], np.float32)
#: vertebral-body centre distance from the back of the lean trunk (mm, reference male)
VERTEBRAL_BODY_FROM_BACK_MM = np.array([40, 42, 45, 48, 52, 56, 58, 60, 64, 70, 74, 70, 60, 55], np.float32)
#: abdominal wall thickness (mm at the reference build) between the lean outline and the cavity
ABDOMINAL_WALL_LATERAL_MM = 16
ABDOMINAL_WALL_ANTERIOR_MM = 14


def lean_body_mass_kg(demographics: Demographics) -> float:
    """Janmahasatian et al. 2005 lean body weight."""
    if demographics.is_male:
        return 9270.0 * demographics.weight / (6680.0 + 216.0 * demographics.bmi)
    return 9270.0 * demographics.weight / (8780.0 + 244.0 * demographics.bmi)


def body_fat_fraction(demographics: Demographics) -> float:
    """Deurenberg et al. 1991: BF% = 1.2 BMI + 0.23 age - 10.8 sex - 5.4 (sex: M=1)."""
    age = max(demographics.age, 16.0)
    percent = 1.2 * demographics.bmi + 0.23 * age - 10.8 * (1.0 if demographics.is_male else 0.0) - 5.4
    return float(np.clip(percent, 4.0, 60.0)) / 100.0


@dataclass
class BodyProfile:
    """Per z slice (arrays) and whole-body (scalars) dimensions of one subject, in mm."""

    height_fraction: np.ndarray  # depth / height per slice
    half_width: np.ndarray  # lean trunk half-width per slice
    half_depth: np.ndarray  # lean trunk half-depth per slice
    centre_y: np.ndarray  # trunk centre (y) per slice: the neck sits behind the chest
    subcutaneous_fat: np.ndarray  # subcutaneous fat thickness per slice
    width_scale: float  # lateral size relative to the reference adult of the same sex
    fat_litres: float  # total body fat volume
    subcutaneous_fat_base: float  # mean subcutaneous fat thickness over the body surface
    spine_y: np.ndarray  # vertebral-body centre (y) per slice

    def at(self, values: np.ndarray, fraction: float) -> float:
        """``values`` (one per slice) interpolated at a height fraction."""
        return float(np.interp(fraction, self.height_fraction[::-1], values[::-1]))

    def spine_y_at(self, fraction: float) -> float:
        """Vertebral-body centre (y, mm) at a height fraction."""
        return self.at(self.spine_y, fraction)

    def half_depth_at(self, fraction: float) -> float:
        """Lean trunk half-depth (mm) at a height fraction."""
        return self.at(self.half_depth, fraction)

    def half_width_at(self, fraction: float) -> float:
        """Lean trunk half-width (mm) at a height fraction."""
        return self.at(self.half_width, fraction)

    def frame(self, name: FrameName, level: float) -> Frame:
        """The body frame ``name`` read at height fraction ``level`` (see painter.FrameName)."""
        if name == "spine":
            return Frame(self.width_scale, self.spine_y_at(level), self.width_scale)
        if name == "trunk":
            return Frame(self.half_width_at(level), 0.0, self.half_depth_at(level))
        if name == "abdominal_cavity":
            return Frame(self.cavity_half_width(level), 0.0, self.cavity_half_depth(level))
        raise InputError(f"unknown body frame {name!r}; known: spine, trunk, abdominal_cavity")

    def cavity_half_width(self, fraction: float) -> float:
        """Half-width of the abdominal cavity (inside the wall muscles) at a height fraction."""
        return self.half_width_at(fraction) - ABDOMINAL_WALL_LATERAL_MM * self.width_scale

    def cavity_half_depth(self, fraction: float) -> float:
        return self.half_depth_at(fraction) - ABDOMINAL_WALL_ANTERIOR_MM * self.width_scale


def body_profile(canvas: Canvas) -> BodyProfile:
    """Scale the reference trunk to this subject; draws the subject's width jitter (one normal)."""
    demographics = canvas.demographics
    male = demographics.is_male
    reference = REFERENCE_ADULT[demographics.sex]
    width_scale = math.sqrt(
        (lean_body_mass_kg(demographics) / demographics.height) / (lean_body_mass_kg(reference) / reference.height)
    )
    width_scale *= math.exp(canvas.rng.normal(0, 0.03))
    fat_litres = body_fat_fraction(demographics) * demographics.weight / 0.92
    fat_base = 0.62 * fat_litres / demographics.bsa  # mm, ~ fat volume spread over the body surface
    fraction = canvas.depth / canvas.height_mm
    half_width_table = MALE_HALF_WIDTH_MM * (1.0 if male else FEMALE_HALF_WIDTH_SCALE)
    half_depth_table = MALE_HALF_DEPTH_MM * (1.0 if male else FEMALE_HALF_DEPTH_SCALE)
    half_width = np.interp(fraction, LANDMARK_FRACTIONS, half_width_table).astype(np.float32) * width_scale
    half_depth = np.interp(fraction, LANDMARK_FRACTIONS, half_depth_table).astype(np.float32) * width_scale
    fat_table = MALE_SUBCUTANEOUS_FAT if male else FEMALE_SUBCUTANEOUS_FAT
    subcutaneous_fat = np.interp(fraction, LANDMARK_FRACTIONS, fat_table).astype(np.float32) * fat_base
    centre_y = np.interp(fraction, [0.11, 0.17, 0.19, 0.5], [-12, -12, 0, 0]).astype(np.float32)
    from_back = np.interp(fraction, LANDMARK_FRACTIONS, VERTEBRAL_BODY_FROM_BACK_MM).astype(np.float32)
    spine_y = (centre_y - half_depth + from_back * width_scale).astype(np.float32)
    return BodyProfile(
        height_fraction=fraction,
        half_width=half_width,
        half_depth=half_depth,
        centre_y=centre_y,
        subcutaneous_fat=subcutaneous_fat,
        width_scale=width_scale,
        fat_litres=fat_litres,
        subcutaneous_fat_base=fat_base,
        spine_y=spine_y,
    )
