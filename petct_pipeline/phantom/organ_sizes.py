"""Organ volumes from ICRP Publication 89 reference masses, scaled by published regressions.

Each organ volume is ``V = V_ref(sex) * body_size_ratio * age_factor * variability`` where
``V_ref`` is the ICRP-89 reference mass of the reference adult (male 176 cm / 73 kg,
female 163 cm / 60 kg, age taken as 35) divided by its ICRP tissue density, the body
size ratio is a published regression evaluated at the subject divided by the same
regression at the reference adult (so the reference adult gets exactly the ICRP value),
and the variability is log-normal with mean 1. Sources: docs/phantom.md.
"""

from __future__ import annotations

import math

import numpy as np

from ..demographics import Demographics
from ..errors import InputError

__all__ = [
    "ICRP89_MASS_G",
    "DENSITY_G_PER_ML",
    "REFERENCE_ADULT",
    "VARIABILITY_CV",
    "reference_volume_ml",
    "expected_volume_ml",
    "sample_organ_volumes",
    "aorta_radius_mm",
    "SIZED_ORGANS",
]

#: ICRP Publication 89 (2002), Table 2.8 (adult reference values), grams, (male, female).
ICRP89_MASS_G: dict[str, tuple[float, float]] = {
    "liver": (1800.0, 1400.0),
    "spleen": (150.0, 130.0),
    "kidneys": (310.0, 275.0),  # both kidneys
    "brain": (1450.0, 1300.0),
    "heart": (840.0, 620.0),  # heart with blood
    "lungs": (1200.0, 950.0),  # lungs with blood
    "pancreas": (140.0, 120.0),
    "thyroid_gland": (20.0, 17.0),
    "gallbladder": (68.0, 56.0),  # wall + contents
    "stomach": (400.0, 370.0),  # wall + contents
    "prostate": (17.0, 0.0),
    "adrenal_glands": (14.0, 13.0),
}

#: densities (g/mL), ICRP Publication 110 (2009) Table A.1 / ICRU Report 46; lungs: inflated
#: lung including blood as used for the ICRP-89-matched UF hybrid phantom (Lee et al. 2010).
DENSITY_G_PER_ML: dict[str, float] = {
    "liver": 1.05,
    "spleen": 1.04,
    "kidneys": 1.05,
    "brain": 1.04,
    "heart": 1.05,
    "lungs": 0.38,
    "pancreas": 1.04,
    "thyroid_gland": 1.04,
    "gallbladder": 1.03,
    "stomach": 1.04,
    "prostate": 1.04,
    "adrenal_glands": 1.02,
}

REFERENCE_ADULT = {
    "M": Demographics(age=35, sex="M", weight=73, height=176),
    "F": Demographics(age=35, sex="F", weight=60, height=163),
}

#: inter-subject coefficient of variation (log-normal, mean 1) at fixed demographics
VARIABILITY_CV: dict[str, float] = {
    "liver": 0.15,  # residual of BSA formulas ~ 13-20 % (Vauthey 2002; Yu 2015)
    "spleen": 0.30,  # spleen volume is highly variable (Prassopoulos 1997)
    "kidneys": 0.13,  # SHIP-TREND IQR / median ~ 0.2 -> SD ~ 0.15
    "brain": 0.08,
    "heart": 0.12,
    "lungs": 0.15,
    "pancreas": 0.20,
    "thyroid_gland": 0.25,
    "gallbladder": 0.50,  # fasting state varies
    "stomach": 0.30,
    "prostate": 0.25,
    "adrenal_glands": 0.15,
}

SIZED_ORGANS = tuple(ICRP89_MASS_G)


def reference_volume_ml(organ: str, sex: str) -> float:
    """ICRP-89 reference mass / ICRP density for the reference adult of this sex (mL)."""
    male, female = ICRP89_MASS_G[organ]
    return (male if sex == "M" else female) / DENSITY_G_PER_ML[organ]


def _frc_litre(d: Demographics) -> float:
    """Functional residual capacity, ECSC/ERS 1993 (Quanjer et al.) prediction equations."""
    h = d.height_m
    if d.is_male:
        return 2.34 * h + 0.009 * d.age - 1.09
    return 2.24 * h + 0.001 * d.age - 1.00


def _size_model(organ: str, d: Demographics) -> float:
    """The regression's prediction (arbitrary units) used as a ratio to the reference adult."""
    if organ == "liver":  # Vauthey et al. 2002: TLV (mL) = -794.41 + 1267.28 * BSA (m^2)
        return max(-794.41 + 1267.28 * d.bsa, 300.0)
    if organ == "kidneys":  # SHIP-TREND (Dabers 2024): +97.66 mL per m^2 BSA per kidney
        ref = reference_volume_ml("kidneys", d.sex) / 2.0
        return ref + 97.66 * (d.bsa - REFERENCE_ADULT[d.sex].bsa)
    if organ == "lungs":  # FRC (ERS 1993) times the BMI effect of Jones & Nzekwu 2006
        return max(_frc_litre(d), 0.8) * math.exp(-0.03 * (d.bmi - REFERENCE_ADULT[d.sex].bmi))
    if organ == "brain":  # brain size follows stature weakly (~ height^0.5)
        return d.height_m**0.5
    # spleen (Prassopoulos 1997), heart (indexing to BSA, ASE), small organs: proportional to BSA
    return d.bsa


def _age_factor(organ: str, age: float) -> float:
    if organ == "brain":  # ~0.2 %/yr after 35, ~0.5 %/yr after 60 (Scahill et al. 2003)
        return 1.0 - 0.002 * max(0.0, min(age, 60.0) - 35.0) - 0.005 * max(0.0, age - 60.0)
    if organ == "liver":  # liver shrinks with age (Wynne et al. 1989); conservative 0.3 %/yr after 40
        return 1.0 - 0.003 * max(0.0, age - 40.0)
    if organ == "kidneys":  # SHIP-TREND: ~9 % smaller at 60-81 than at 40-59
        return 1.0 - 0.004 * max(0.0, age - 50.0)
    if organ == "spleen":  # Prassopoulos 1997: smaller after 60
        return 1.0 - 0.004 * max(0.0, age - 60.0)
    if organ == "prostate":  # benign growth with age (Berry et al. 1984), ~1.5 %/yr after 40
        return 1.0 + 0.015 * max(0.0, age - 40.0)
    return 1.0


def expected_volume_ml(organ: str, d: Demographics) -> float:
    """Mean organ volume (mL) for these demographics (no inter-subject variability)."""
    if organ not in ICRP89_MASS_G:
        raise InputError(f"unknown sized organ {organ!r}; known: {', '.join(SIZED_ORGANS)}")
    ref = REFERENCE_ADULT[d.sex]
    ratio = _size_model(organ, d) / _size_model(organ, ref)
    age = _age_factor(organ, d.age) / _age_factor(organ, ref.age)
    return reference_volume_ml(organ, d.sex) * ratio * max(age, 0.3)


def sample_organ_volumes(d: Demographics, rng: np.random.Generator) -> dict[str, float]:
    """One subject's organ volumes (mL): expected value times log-normal variability (mean 1).

    Also samples the urinary bladder (urine + wall): log-normal, median 150 mL (assumption
    for a patient who voided before the scan; range 40-600 mL).
    """
    volumes: dict[str, float] = {}
    for organ in SIZED_ORGANS:
        if organ == "prostate" and not d.is_male:
            continue
        cv = VARIABILITY_CV[organ]
        sigma = math.sqrt(math.log(1.0 + cv * cv))
        volumes[organ] = expected_volume_ml(organ, d) * math.exp(rng.normal(-0.5 * sigma * sigma, sigma))
    split = float(np.clip(rng.normal(0.5, 0.03), 0.4, 0.6))  # left kidney slightly larger on average
    volumes["kidney_left"] = volumes["kidneys"] * (split + 0.01)
    volumes["kidney_right"] = volumes["kidneys"] - volumes["kidney_left"]
    volumes["urinary_bladder"] = float(np.clip(150.0 * math.exp(rng.normal(0.0, 0.5)), 40.0, 600.0))
    return volumes


def aorta_radius_mm(d: Demographics) -> float:
    """Descending thoracic aorta radius: diameter ~24 mm (men) / 22 mm (women) at 50 y, +0.1 mm/yr,
    +2 mm per m^2 BSA above 1.9 (Wolak et al. 2008)."""
    diameter = (24.0 if d.is_male else 22.0) + 0.1 * (d.age - 50.0) + 2.0 * (d.bsa - 1.9)
    return float(np.clip(diameter, 14.0, 36.0)) / 2.0
