"""The PET resolution and noise a lesion is given: a fixed Gaussian PSF and PSF-correlated noise.

The phantom's scanner model (``petct_pipeline.phantom.scanner``) blurs with a Gaussian PSF of
FWHM 5-7 mm per subject (Biograph mCT-like; AutoPET's reconstructions add a 2 mm Gaussian
post-filter to the scanner's ~4-5 mm resolution). A lesion inserted afterwards does not know
which FWHM a volume had, so it uses the middle of that range, 6 mm, fixed and recorded in
lesions.json. The voxel's own averaging is the shape's partial-volume occupancy (see
``shapes``), so the Gaussian is applied to it on the output grid: sigma = FWHM / 2.355 /
spacing per axis. Reconstructed PET noise is correlated over the PSF: the noise added with
a lesion is white Gaussian noise blurred by the same PSF and scaled to unit SD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["PSF_FWHM_MM", "PSF_TRUNCATE", "psf_sigma_voxels", "blur", "correlated_noise", "smooth_field"]

PSF_FWHM_MM = 6.0
#: the Gaussian is cut at this many sigmas (3: 99.7 % of it)
PSF_TRUNCATE = 3.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def psf_sigma_voxels(spacing: Sequence[float], fwhm_mm: float = PSF_FWHM_MM) -> tuple[float, ...]:
    return tuple(fwhm_mm / _FWHM_PER_SIGMA / s for s in spacing)


def blur(volume: np.ndarray, spacing: Sequence[float], fwhm_mm: float = PSF_FWHM_MM) -> np.ndarray:
    """``volume`` through the PSF; outside the array counts as zero (a lesion's box holds all of its activity)."""
    return ndimage.gaussian_filter(volume.astype(np.float64), psf_sigma_voxels(spacing, fwhm_mm), mode="constant",
                                   truncate=PSF_TRUNCATE)


def smooth_field(shape: Sequence[int], spacing: Sequence[float], fwhm_mm: float, rng: np.random.Generator
                 ) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian noise correlated over a Gaussian of ``fwhm_mm`` (drawn in array order)."""
    white = rng.standard_normal(tuple(shape))
    sigma = psf_sigma_voxels(spacing, fwhm_mm)
    field = ndimage.gaussian_filter(white, sigma, mode="wrap", truncate=PSF_TRUNCATE)
    # the SD a Gaussian kernel leaves of unit white noise is sqrt(sum of its squared weights)
    impulse = np.zeros([2 * math.ceil(PSF_TRUNCATE * s) + 1 for s in sigma])
    impulse[tuple(n // 2 for n in impulse.shape)] = 1.0
    kernel = ndimage.gaussian_filter(impulse, sigma, mode="constant", truncate=PSF_TRUNCATE)
    return field / math.sqrt(float((kernel**2).sum()))


def correlated_noise(shape: Sequence[int], spacing: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Unit-SD noise with the PSF's correlation, like reconstructed PET noise."""
    return smooth_field(shape, spacing, PSF_FWHM_MM, rng)
