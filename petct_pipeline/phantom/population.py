"""Cohort sampler: demographics and acquisition parameters distributed like AutoPET.

AutoPET (TCIA FDG-PET-CT-Lesions, University Hospital Tuebingen): 1014 studies, 570 male
(mean age 60) and 444 female (mean age 58), age SD ~16, range 11-95; FDG 314.7 +/- 22.1
MBq, ~60 min uptake. Weight and height are not in the public metadata, so they follow
adult German anthropometry (Mikrozensus 2017: men ~178 cm / ~85 kg, women ~165 cm /
~69 kg) with a log-normal BMI; weight = BMI * height^2 gives the natural height-weight
correlation. See docs/phantom.md for every number and its source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.suv import F18_HALF_LIFE_S, decay_factor
from ..demographics import Demographics
from ..errors import InputError, InputTypeError

__all__ = [
    "AUTOPET_COHORT",
    "Acquisition",
    "sample_population",
    "sample_acquisition",
    "F18_HALF_LIFE_S",
]

#: population parameters; keys are documented in docs/phantom.md
AUTOPET_COHORT = {
    "p_male": 570 / 1014,
    "age_mean": {"M": 60.0, "F": 58.0},
    "age_sd": 16.0,
    "age_range": (11.0, 95.0),
    "height_mean_cm": {"M": 178.0, "F": 165.0},
    "height_sd_cm": {"M": 7.0, "F": 6.5},
    "height_loss_cm_per_year_after_40": 0.1,  # secular trend + age-related shortening
    "bmi_median": {"M": 26.5, "F": 25.5},
    "bmi_log_sd": {"M": 0.15, "F": 0.19},
    "bmi_range": (15.0, 50.0),
    "dose_mbq": (314.7, 22.1),
    "uptake_s": (3720.0, 420.0),
    "uptake_range_s": (3000.0, 5400.0),
}


@dataclass(frozen=True)
class Acquisition:
    """Injected FDG activity (Bq, at injection) and uptake time (s, injection to scan start)."""

    injected_dose_bq: float
    uptake_time_s: float

    @property
    def decay_factor(self) -> float:
        return decay_factor(self.uptake_time_s)

    @property
    def dose_at_scan_bq(self) -> float:
        return self.injected_dose_bq * self.decay_factor


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, low: float, high: float) -> float:
    for _ in range(1000):
        value = rng.normal(mean, sd)
        if low <= value <= high:
            return float(value)
    return float(np.clip(mean, low, high))


def _sample_one(rng: np.random.Generator) -> Demographics:
    c = AUTOPET_COHORT
    sex = "M" if rng.random() < c["p_male"] else "F"
    age = round(_truncated_normal(rng, c["age_mean"][sex], c["age_sd"], *c["age_range"]))
    height = rng.normal(c["height_mean_cm"][sex], c["height_sd_cm"][sex])
    height -= c["height_loss_cm_per_year_after_40"] * max(0.0, age - 40.0)
    if age < 18:  # the few adolescents in AutoPET: crude growth factor, adult height reached at 18
        height *= 0.82 + 0.18 * (age - 11.0) / 7.0
    low, high = c["bmi_range"]
    bmi = float(np.clip(c["bmi_median"][sex] * np.exp(rng.normal(0.0, c["bmi_log_sd"][sex])), low, high))
    if age < 18:
        bmi = min(bmi, 18.0 + (bmi - 18.0) * 0.6)
    height = float(np.clip(height, 135.0, 210.0))
    weight = bmi * (height / 100.0) ** 2
    return Demographics(age=float(age), sex=sex, weight=round(weight, 1), height=round(height))


def sample_population(n: int, seed: int) -> list[Demographics]:
    """``n`` demographic tuples drawn like the AutoPET cohort; deterministic per ``seed``."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise InputTypeError(f"n must be an integer number of subjects, got {n!r}")
    if n < 1:
        raise InputError(f"n={n} is out of range: the number of subjects must be >= 1")
    rng = np.random.default_rng([int(seed), 0xC0407])
    return [_sample_one(rng) for _ in range(int(n))]


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Injected activity and uptake time as in AutoPET (Biograph mCT, ~315 MBq, ~60 min)."""
    c = AUTOPET_COHORT
    dose_mbq = _truncated_normal(rng, *c["dose_mbq"], 200.0, 420.0)
    uptake = _truncated_normal(rng, *c["uptake_s"], *c["uptake_range_s"])
    return Acquisition(injected_dose_bq=round(dose_mbq * 1e6, -3), uptake_time_s=round(uptake))
