"""What lesions.json reports of a lesion, measured on the written volumes within its written mask.

* ``volume_ml``, ``suv_mean``, ``suv_max``, ``suv_peak``, ``hu_mean``: the evaluation's
  ``organ_metrics`` on the lesion mask (SUVpeak: the highest 1 mL sphere mean inside the lesion);
* ``tlg``: total lesion glycolysis, SUVmean x volume (mL);
* background: the voxels of the lesion's own site (e.g. the liver around a liver lesion) between
  one PSF FWHM (6 mm, where the lesion's spill-out has fallen below 1 %) and FWHM + 10 mm from its
  edge, away from other lesions; where the site has fewer than 8 such voxels, the body's instead;
* ``lesion_to_background``: lesion SUVmean / background SUVmean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..evaluation.metrics import organ_metrics
from .psf import PSF_FWHM_MM

__all__ = ["SHELL_GAP_MM", "SHELL_WIDTH_MM", "MIN_SHELL_VOXELS", "background_shell", "requested_quantity",
           "lesion_metrics"]

SHELL_GAP_MM = PSF_FWHM_MM
SHELL_WIDTH_MM = 10.0
MIN_SHELL_VOXELS = 8


def background_shell(mask: np.ndarray, site: np.ndarray, body: np.ndarray, spacing: Sequence[float],
                     exclude: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """(shell voxels, 'site' or 'body'): the background region around ``mask`` inside its box."""
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing)
    ring = (distance >= SHELL_GAP_MM) & (distance <= SHELL_GAP_MM + SHELL_WIDTH_MM)
    if exclude is not None:
        ring &= ~exclude
    shell = ring & site
    if np.count_nonzero(shell) >= MIN_SHELL_VOXELS:
        return shell, "site"
    return ring & body, "body"


def requested_quantity(quantity: str, suv: np.ndarray, mask: np.ndarray, shell: np.ndarray) -> float:
    """The value of ``quantity`` (suv_max, suv_mean or lesion_to_background) that lesions.json reports."""
    values = suv[mask]
    if quantity == "suv_max":
        return float(values.max())
    if quantity == "suv_mean":
        return float(values.mean(dtype=np.float64))
    return float(values.mean(dtype=np.float64) / max(float(suv[shell].mean(dtype=np.float64)), 1e-6))


def lesion_metrics(ct: np.ndarray, suv: np.ndarray, mask: np.ndarray, shell: np.ndarray,
                   spacing: Sequence[float]) -> dict[str, float]:
    """The per-lesion measurements of lesions.json (arrays: the lesion's box)."""
    metrics = organ_metrics(ct, suv, mask, spacing)
    background = suv[shell].astype(np.float64)
    metrics["tlg"] = metrics["suv_mean"] * metrics["volume_ml"]
    metrics["background_suv_mean"] = float(background.mean()) if background.size else float("nan")
    metrics["background_suv_sd"] = float(background.std()) if background.size else float("nan")
    metrics["lesion_to_background"] = metrics["suv_mean"] / max(metrics["background_suv_mean"], 1e-6)
    return metrics
