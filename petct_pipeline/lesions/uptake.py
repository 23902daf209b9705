"""The lesion's PET: activity added to the SUV, through the PSF, with noise, scaled to the requested uptake.

The activity is the shape's occupancy times a mild heterogeneity (multiplicative, CV 15 %,
correlated over 4 mm: FDG uptake within tumours is heterogeneous) with a necrotic core, if
any, keeping 10 % of the rim's uptake. It is added on top of the existing SUV, blurred by the
PSF (``psf``), and given extra PSF-correlated noise so that the lesion's noise follows the
background's: PET noise variance grows with activity (Poisson counts; the phantom's scanner
model scales noise SD with sqrt(SUV)), so with background mean B and SD sigma measured in the
shell, a voxel raised by A gets noise of SD sigma * sqrt(A / B) on top of what it had.

Calibration: for lesions of 10 mm and more, the activity scale is solved so that the requested
quantity measured on the written SUV inside the written mask (with its blur and its noise)
equals the request (a bracketed secant search, to 0.5 %): partial-volume loss is compensated.
Smaller lesions get the requested value as their true (pre-PSF) activity, and lesions.json
reports how much of it the PSF took (``partial_volume_loss_pct``), as a scanner would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .measure import requested_quantity
from .psf import blur, correlated_noise, smooth_field

__all__ = [
    "HETEROGENEITY_CV",
    "HETEROGENEITY_FWHM_MM",
    "NECROTIC_UPTAKE",
    "PV_COMPENSATION_MIN_DIAMETER_MM",
    "CALIBRATION_TOLERANCE",
    "MIN_BACKGROUND_SUV",
    "LesionUptake",
    "activity_pattern",
]

HETEROGENEITY_CV = 0.15
HETEROGENEITY_FWHM_MM = 4.0
NECROTIC_UPTAKE = 0.1
PV_COMPENSATION_MIN_DIAMETER_MM = 10.0
CALIBRATION_TOLERANCE = 0.005
_MAX_EVALUATIONS = 12
#: below this background SUV the sqrt(A / B) noise rule would explode (e.g. near air); floor it
MIN_BACKGROUND_SUV = 0.1


def activity_pattern(occupancy: np.ndarray, core: np.ndarray | None, spacing: Sequence[float],
                     rng: np.random.Generator) -> np.ndarray:
    """Unit excess activity (1 = the solid part's mean level before heterogeneity) on the box."""
    texture = 1.0 + HETEROGENEITY_CV * smooth_field(occupancy.shape, spacing, HETEROGENEITY_FWHM_MM, rng)
    pattern = occupancy * np.clip(texture, 0.3, None)
    if core is not None:
        pattern *= 1.0 - (1.0 - NECROTIC_UPTAKE) * core
    return pattern


@dataclass
class LesionUptake:
    """One lesion's PET in its box: the SUV before it, its unit activity, blurred, and its noise."""

    base: np.ndarray  # SUV of the box before this lesion
    truth: np.ndarray  # unit activity before the PSF
    profile: np.ndarray  # unit activity after the PSF (zero outside the body)
    noise: np.ndarray  # unit-SD PSF-correlated noise
    body: np.ndarray
    mask: np.ndarray
    shell: np.ndarray
    background_mean: float
    background_sd: float

    @classmethod
    def build(cls, base: np.ndarray, pattern: np.ndarray, body: np.ndarray, mask: np.ndarray, shell: np.ndarray,
              spacing: Sequence[float], rng: np.random.Generator) -> LesionUptake:
        background = base[shell].astype(np.float64)
        return cls(base=base.astype(np.float64), truth=pattern, profile=blur(pattern, spacing) * body,
                   noise=correlated_noise(pattern.shape, spacing, rng) * body, body=body, mask=mask, shell=shell,
                   background_mean=float(background.mean()), background_sd=float(background.std()))

    def written(self, scale: float) -> np.ndarray:
        """The box's SUV with the lesion at activity ``scale`` (SUV added to the solid part before the PSF)."""
        added = scale * self.profile
        sd = self.background_sd * np.sqrt(added / max(self.background_mean, MIN_BACKGROUND_SUV))
        return np.maximum(self.base + added + sd * self.noise, 0.0)

    def measure(self, quantity: str, scale: float) -> float:
        return requested_quantity(quantity, self.written(scale), self.mask, self.shell)

    def true_value(self, quantity: str, scale: float) -> float:
        """The quantity on the lesion's true activity (background mean + scale x pattern, no PSF, no noise)."""
        truth = self.background_mean + scale * self.truth
        if quantity == "suv_max":
            return float(truth[self.mask].max())
        mean = float(truth[self.mask].mean())
        return mean if quantity == "suv_mean" else mean / max(self.background_mean, 1e-6)

    def uncompensated_scale(self, quantity: str, target: float) -> float:
        """The scale whose true (pre-PSF) activity has the requested value."""
        pattern = self.truth[self.mask]
        if quantity == "suv_max":
            return (target - self.background_mean) / float(pattern.max())
        if quantity == "suv_mean":
            return (target - self.background_mean) / float(pattern.mean())
        return (target - 1.0) * self.background_mean / float(pattern.mean())

    def calibrated_scale(self, quantity: str, target: float) -> float:
        """The scale whose written value (after PSF and noise) is ``target``; needs measure(quantity, 0) < target.

        The written value grows with the scale, nearly linearly (the noise term grows as its square
        root), so a secant step lands close and a bracket keeps later steps safe.
        """
        low, f_low = 0.0, self.measure(quantity, 0.0) - target
        blurred = self.profile[self.mask]
        unit = float(blurred.max() if quantity == "suv_max" else blurred.mean())
        if quantity == "lesion_to_background":
            unit /= max(float(self.base[self.shell].mean()), 1e-6)
        scale = -f_low / max(unit, 1e-9)  # the noiseless linear guess
        high = f_high = None
        for _ in range(_MAX_EVALUATIONS):
            f = self.measure(quantity, scale) - target
            if abs(f) <= CALIBRATION_TOLERANCE * target:
                return scale
            if f < 0:
                previous, f_previous = low, f_low
                low, f_low = scale, f
            else:
                high, f_high = scale, f
            if high is None:  # still below: extrapolate through the last two points below
                slope = (f_low - f_previous) / max(low - previous, 1e-12)
                scale = low - f_low / slope if slope > 0 else 2.0 * low
                scale = max(scale, 1.05 * low)
            else:  # secant inside the bracket, bisection when it would leave it
                guess = low + (high - low) * (-f_low) / (f_high - f_low)
                scale = guess if low < guess < high else 0.5 * (low + high)
        return scale
