"""Image-level checks that catch broken generators before organ statistics do.

* non-finite voxels (NaN/inf) per subject, counted before they are replaced for measuring;
* intensity histograms of the body (HU, SUV), pooled per cohort and compared with the
  1-Wasserstein distance (``scipy.stats.wasserstein_distance`` on bin centres weighted by counts;
  in HU and in SUV units: the mean shift needed to turn one distribution into the other);
* sample diversity: mean pairwise distance (mean absolute voxel difference, HU and SUV, on
  thumbnails of about 16 mm voxels) among generated samples that share the same demographics.
  Near 0 means the model returns the same volume for the same input (mode collapse); the
  reference's pairwise distance between different patients gives the scale.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = [
    "HU_EDGES",
    "SUV_EDGES",
    "THUMBNAIL_MM",
    "intensity_histograms",
    "histogram_distance",
    "thumbnail",
    "common_crop",
    "pairwise_distance",
    "mean_pairwise_distance",
]

HU_EDGES = np.arange(-1024.0, 3072.0 + 1e-6, 8.0)
SUV_EDGES = np.arange(0.0, 40.0 + 1e-6, 0.05)
THUMBNAIL_MM = 16.0
_HU_CLIP = (-1000.0, 2000.0)
_SUV_CLIP = (0.0, 50.0)


def intensity_histograms(ct: np.ndarray, suv: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of HU (:data:`HU_EDGES`) and SUV (:data:`SUV_EDGES`) inside ``mask``; out-of-range values go
    to the first/last bin."""
    hu = np.clip(ct[mask], HU_EDGES[0], HU_EDGES[-1])
    values = np.clip(suv[mask], SUV_EDGES[0], SUV_EDGES[-1])
    return (np.histogram(hu, HU_EDGES)[0].astype(np.int64), np.histogram(values, SUV_EDGES)[0].astype(np.int64))


def histogram_distance(counts_a: np.ndarray, counts_b: np.ndarray, edges: np.ndarray) -> float:
    """1-Wasserstein distance between two histograms on the same bins (NaN if either is empty)."""
    if counts_a.sum() == 0 or counts_b.sum() == 0:
        return float("nan")
    centres = (edges[:-1] + edges[1:]) / 2.0
    return float(stats.wasserstein_distance(centres, centres, counts_a, counts_b))


def thumbnail(ct: np.ndarray, suv: np.ndarray, spacing: Sequence[float], target_mm: float = THUMBNAIL_MM
              ) -> np.ndarray:
    """(2, X', Y', Z') float32 block means (HU clipped to [-1000, 2000], SUV to [0, 50]) at about ``target_mm``."""
    factors = [max(1, int(round(target_mm / s))) for s in spacing]
    out = []
    for array, (low, high) in ((ct, _HU_CLIP), (suv, _SUV_CLIP)):
        data = np.clip(array, low, high).astype(np.float32)
        # keep the top (vertex) slices: trim at the bottom of z, symmetric in x/y
        shape = [n - n % f for n, f in zip(data.shape, factors)]
        x0 = (data.shape[0] - shape[0]) // 2
        y0 = (data.shape[1] - shape[1]) // 2
        z0 = data.shape[2] - shape[2]
        data = data[x0 : x0 + shape[0], y0 : y0 + shape[1], z0:]
        fx, fy, fz = factors
        data = data.reshape(shape[0] // fx, fx, shape[1] // fy, fy, shape[2] // fz, fz).mean(axis=(1, 3, 5))
        out.append(data)
    return np.stack(out)


def common_crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop two (C, X, Y, Z) thumbnails to their common size: centred in x/y, aligned at the top slice."""
    shape = [min(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]

    def crop(v: np.ndarray) -> np.ndarray:
        x0 = (v.shape[1] - shape[0]) // 2
        y0 = (v.shape[2] - shape[1]) // 2
        return v[:, x0 : x0 + shape[0], y0 : y0 + shape[1], v.shape[3] - shape[2] :]

    return crop(a), crop(b)


def pairwise_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean |HU difference|, mean |SUV difference|) between two thumbnails."""
    a, b = common_crop(a, b)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=(1, 2, 3))
    return float(diff[0]), float(diff[1])


def mean_pairwise_distance(thumbnails: Sequence[np.ndarray], max_items: int = 20) -> dict[str, float]:
    """Mean pairwise HU and SUV distance over the first ``max_items`` thumbnails (pairs: n(n-1)/2)."""
    items = list(thumbnails)[:max_items]
    pairs = list(itertools.combinations(range(len(items)), 2))
    if not pairs:
        return {"n": len(items), "pairs": 0, "hu_mad": float("nan"), "suv_mad": float("nan")}
    distances = np.array([pairwise_distance(items[i], items[j]) for i, j in pairs])
    return {"n": len(items), "pairs": len(pairs), "hu_mad": float(distances[:, 0].mean()),
            "suv_mad": float(distances[:, 1].mean())}
