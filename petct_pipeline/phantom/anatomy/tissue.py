"""Tissue classes of the phantom: every voxel is one of these before CT and PET are simulated."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Tissue"]


class Tissue(IntEnum):
    """Tissue classes; CT HU and FDG SUV per class live in scanner.py and uptake.py."""

    AIR = 0
    LUNG = 1
    FAT = 2
    MUSCLE = 3
    BLOOD = 4
    LIVER = 5
    SPLEEN = 6
    KIDNEY = 7
    URINE_KIDNEY = 8
    URINE_BLADDER = 9
    BRAIN_GREY = 10
    BRAIN_WHITE = 11
    CSF = 12
    MYOCARDIUM = 13
    BONE_CORTICAL = 14
    MARROW_RED = 15
    MARROW_YELLOW = 16
    SOFT = 17
    GAS = 18
    STOMACH = 19
    PANCREAS = 20
    BILE = 21
    THYROID = 22
    CARTILAGE = 23
    SPINAL_CORD = 24
    PROSTATE = 25
    ESOPHAGUS = 26
    AIRWAY = 27
    LUNG_VESSEL = 28
    BOWEL = 29
    COLON_CONTENT = 30
    LESION = 31
    BLOOD_VENOUS = 32
