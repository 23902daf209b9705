"""Body-weight SUV from PET activity concentration, injected dose and uptake time (18F).

    SUVbw = activity [Bq/mL] * weight [kg] * 1000 [g/kg] / (dose [Bq] * 2^(-dt / T1/2))

``dt`` is the time from injection (the radiopharmaceutical start time) to the scan's
decay-correction reference (Siemens: series start), ``T1/2`` = 6586.2 s for 18F. The
dose is decay-corrected to the scan time, not the activity, because scanners already
decay-correct the image to the series start.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

from ..errors import InputError, InputTypeError

__all__ = ["F18_HALF_LIFE_S", "decay_factor", "suv_scale_factor", "activity_to_suv", "suv_to_activity"]

F18_HALF_LIFE_S = 6586.2  # 109.77 min

Array = TypeVar("Array", np.ndarray, float)


def _positive(name: str, value: float, unit: str, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise InputTypeError(f"{name} must be a number in ({low:g}, {high:g}] {unit}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not low < value <= high:
        raise InputError(f"{name}={value!r} is out of range: allowed ({low:g}, {high:g}] {unit}")
    return value


def decay_factor(uptake_time_s: float, half_life_s: float = F18_HALF_LIFE_S) -> float:
    """Fraction of the injected activity left after ``uptake_time_s`` seconds: 2^(-dt / T1/2)."""
    if isinstance(uptake_time_s, bool) or not isinstance(uptake_time_s, int | float | np.floating | np.integer):
        raise InputTypeError(f"uptake_time_s must be a number in [0, 86400] s, got {uptake_time_s!r}")
    dt = float(uptake_time_s)
    if not math.isfinite(dt) or not 0.0 <= dt <= 86400.0:
        raise InputError(f"uptake_time_s={dt!r} is out of range: allowed [0, 86400] s")
    half_life_s = _positive("half_life_s", half_life_s, "s")
    return 2.0 ** (-dt / half_life_s)


def suv_scale_factor(
    injected_dose_bq: float, uptake_time_s: float, weight_kg: float, half_life_s: float = F18_HALF_LIFE_S
) -> float:
    """Multiply Bq/mL by this to get SUVbw (g/mL)."""
    dose = _positive("injected_dose_bq", injected_dose_bq, "Bq", 1e3, 1e11)
    weight = _positive("weight_kg", weight_kg, "kg", 0.0, 350.0)
    return weight * 1000.0 / (dose * decay_factor(uptake_time_s, half_life_s))


def activity_to_suv(
    activity_bq_ml: Array,
    injected_dose_bq: float,
    uptake_time_s: float,
    weight_kg: float,
    half_life_s: float = F18_HALF_LIFE_S,
) -> Array:
    """PET activity concentration (Bq/mL) -> SUVbw; arrays keep their shape, dtype float32."""
    scale = suv_scale_factor(injected_dose_bq, uptake_time_s, weight_kg, half_life_s)
    if isinstance(activity_bq_ml, np.ndarray):
        return (activity_bq_ml.astype(np.float64) * scale).astype(np.float32)
    return float(activity_bq_ml) * scale


def suv_to_activity(
    suv: Array,
    injected_dose_bq: float,
    uptake_time_s: float,
    weight_kg: float,
    half_life_s: float = F18_HALF_LIFE_S,
) -> Array:
    """Inverse of :func:`activity_to_suv`: SUVbw -> Bq/mL."""
    scale = suv_scale_factor(injected_dose_bq, uptake_time_s, weight_kg, half_life_s)
    if isinstance(suv, np.ndarray):
        return (suv.astype(np.float64) / scale).astype(np.float32)
    return float(suv) / scale
