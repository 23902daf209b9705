"""Healthy-tissue 18F-FDG uptake (SUVbw at ~60 min) per tissue class, with demographic effects.

Every mean, slope and spread is listed with its source in docs/phantom.md. Values are
SUVmean of the tissue itself (before scanner blur); organ SUVmeans measured on the
simulated PET include partial-volume effects, as in real data.
"""

from __future__ import annotations

import math

import numpy as np

from ..demographics import Demographics
from .anatomy import Tissue

__all__ = ["sample_uptake", "LITERATURE_SUV_RANGES", "suv_lookup"]

#: plausible organ SUVmean ranges (healthy adults, 60 min, SUVbw), used by the tests and docs
LITERATURE_SUV_RANGES: dict[str, tuple[float, float]] = {
    "liver": (1.5, 3.3),  # Liu 2015 1.83 +/- 0.42; AutoPET 2.27 (M) / 2.35 (F)
    "spleen": (1.2, 2.8),
    "kidney_left": (1.5, 4.5),  # AutoPET 2.50 (M) / 2.70 (F), urinary activity in the pelvis
    "kidney_right": (1.5, 4.5),
    "heart": (1.3, 8.0),  # blood pool + highly variable myocardium; AutoPET 2.48 (M)
    "lungs": (0.25, 1.0),
    "brain": (3.5, 11.0),
    "urinary_bladder": (3.0, 80.0),
    "aorta": (1.0, 2.6),  # blood pool SUVmean 1.4-2.2 (reduced by partial volume)
}


def _lognormal(rng: np.random.Generator, median: float, sigma: float, low: float, high: float) -> float:
    return float(np.clip(median * math.exp(rng.normal(0.0, sigma)), low, high))


def sample_uptake(d: Demographics, rng: np.random.Generator) -> dict[int, float]:
    """SUVmean per :class:`Tissue` for one subject (demographic trend + inter-subject spread)."""
    bmi, age, female = d.bmi, d.age, not d.is_male
    liver = 2.25 + 0.066 * (bmi - 26.0) + 0.002 * (age - 60.0) + (0.05 if female else 0.0) + rng.normal(0, 0.2)
    liver = float(np.clip(liver, 1.3, 4.0))
    blood = 1.75 + 0.03 * (bmi - 26.0) + 0.004 * (age - 60.0) + rng.normal(0, 0.15)
    blood = float(np.clip(blood, 1.0, 3.0))
    brain_age = float(np.clip(1.0 - 0.004 * (age - 35.0), 0.6, 1.1)) * math.exp(rng.normal(0, 0.12))
    kidney = 2.0 + (0.2 if female else 0.0) + rng.normal(0, 0.25)
    suv = {
        Tissue.AIR: 0.0,
        Tissue.AIRWAY: 0.0,
        Tissue.GAS: 0.05,
        Tissue.LUNG: float(np.clip(0.5 - 0.002 * (age - 60.0) + rng.normal(0, 0.07), 0.25, 0.9)),
        Tissue.FAT: float(np.clip(0.32 + rng.normal(0, 0.05), 0.15, 0.6)),
        Tissue.MUSCLE: float(np.clip(0.72 + 0.01 * (bmi - 26.0) + rng.normal(0, 0.08), 0.4, 1.3)),
        Tissue.BLOOD: blood,
        Tissue.BLOOD_VENOUS: blood,
        Tissue.LUNG_VESSEL: blood,
        Tissue.LIVER: liver,
        Tissue.SPLEEN: float(np.clip(0.85 * liver + rng.normal(0, 0.12), 1.0, 3.5)),
        Tissue.KIDNEY: float(np.clip(kidney, 1.3, 3.5)),
        Tissue.URINE_KIDNEY: _lognormal(rng, 12.0, 0.6, 3.0, 60.0),
        Tissue.URINE_BLADDER: _lognormal(rng, 20.0, 0.6, 4.0, 120.0),
        Tissue.BRAIN_GREY: 9.5 * brain_age,
        Tissue.BRAIN_WHITE: 3.3 * brain_age,
        Tissue.CSF: 0.2,
        Tissue.MYOCARDIUM: _lognormal(rng, 3.2, 0.75, 1.0, 20.0),
        Tissue.BONE_CORTICAL: 0.5,
        Tissue.MARROW_RED: float(np.clip(1.6 - 0.005 * (age - 60.0) + rng.normal(0, 0.15), 0.8, 2.5)),
        Tissue.MARROW_YELLOW: 0.4,
        Tissue.SOFT: 1.0,
        Tissue.BOWEL: _lognormal(rng, 1.5, 0.25, 0.7, 3.5),
        Tissue.COLON_CONTENT: 1.0,
        Tissue.STOMACH: _lognormal(rng, 1.8, 0.25, 0.8, 4.0),
        Tissue.PANCREAS: float(np.clip(1.4 + rng.normal(0, 0.15), 0.8, 2.2)),
        Tissue.BILE: 0.6,
        Tissue.THYROID: _lognormal(rng, 1.3, 0.2, 0.7, 3.0),
        Tissue.CARTILAGE: 0.6,
        Tissue.SPINAL_CORD: 1.7,
        Tissue.PROSTATE: 1.5,
        Tissue.ESOPHAGUS: 1.6,
        Tissue.LESION: 6.0,
    }
    return {int(k): float(v) for k, v in suv.items()}


def suv_lookup(values: dict[int, float]) -> np.ndarray:
    """A 256-entry float32 table indexed by tissue class."""
    table = np.zeros(256, np.float32)
    for key, value in values.items():
        table[int(key)] = value
    return table
