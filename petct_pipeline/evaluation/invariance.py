"""Do organ statistics depend on the field of view or the voxel size? Measure one subject several ways.

Real AutoPET studies run from the vertex to mid-thigh; the cascade writes a shorter slab (its
field of view, ``geometry.body_slices`` from the vertex). A trustworthy evaluation gives the same
organ volume and SUVmean for the same body whichever of the two it sees, at 2 or 4 mm, and the
same as the true label map. This module measures that: it crops a whole-body study to the model's
field of view (the same voxels, only a shorter scan), measures each version with a segmenter and
with the true labels, and reports percent differences. ``benchmarks/bench_fov_invariance.py``
runs it on a phantom population; ``tests/test_evaluation_invariance.py`` on two small phantoms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..geometry import body_slices, spacing_from_affine
from ..organs import organ_mask
from .metrics import organ_metrics, sphere_kernel
from .segmenters import ModelSegmenter

__all__ = [
    "INVARIANCE_ORGANS",
    "INVARIANCE_METRICS",
    "StudyVersion",
    "crop_to_model_fov",
    "measure_version",
    "percent_difference",
]

#: the organs the invariance is claimed for (issue 20: within 2 %)
INVARIANCE_ORGANS = ("liver", "spleen", "kidney_left", "kidney_right", "heart", "lungs", "brain")
INVARIANCE_METRICS = ("volume_ml", "suv_mean")


@dataclass(frozen=True)
class StudyVersion:
    """One way of writing a study: CT (HU), SUV and true labels on one RAS grid (z index up = superior)."""

    name: str
    ct: np.ndarray
    suv: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


def crop_to_model_fov(version: StudyVersion, height_cm: float, name: str = "model_fov") -> StudyVersion:
    """The top ``body_slices(height)`` slices (vertex down): the cascade's field of view on the same voxels."""
    slices = body_slices(height_cm, float(spacing_from_affine(version.affine)[2]), version.ct.shape[2])
    start = version.ct.shape[2] - slices
    affine = version.affine.copy()
    affine[:3, 3] += affine[:3, 2] * start
    box = (slice(None), slice(None), slice(start, None))
    return StudyVersion(name, version.ct[box], version.suv[box], version.labels[box], affine)


def measure_version(version: StudyVersion, segmenter: ModelSegmenter | None, height_cm: float | None = None,
                    organs: Sequence[str] = INVARIANCE_ORGANS) -> dict[str, dict[str, float]]:
    """Organ -> {volume_ml, suv_mean} under ``segmenter`` (``None``: the version's true labels).

    ``height_cm`` is passed to the segmenter as ``petct evaluate`` passes the subject's height.
    """
    if segmenter is None:
        labels = version.labels
    else:
        labels = segmenter.predict(version.ct, version.suv, version.affine, height_cm)
    spacing = spacing_from_affine(version.affine)
    kernel = sphere_kernel(spacing)
    out = {}
    for organ in organs:
        values = organ_metrics(version.ct, version.suv, organ_mask(labels, organ), spacing, kernel)
        out[organ] = {metric: values[metric] for metric in INVARIANCE_METRICS}
    return out


def percent_difference(measured: Mapping[str, Mapping[str, float]], baseline: Mapping[str, Mapping[str, float]]
                       ) -> dict[str, dict[str, float]]:
    """Organ -> metric -> 100 x (measured - baseline) / baseline (NaN where the baseline is 0 or missing)."""
    out: dict[str, dict[str, float]] = {}
    for organ, metrics in measured.items():
        out[organ] = {}
        for metric, value in metrics.items():
            base = baseline[organ][metric]
            out[organ][metric] = 100.0 * (value - base) / base if np.isfinite(base) and base else float("nan")
    return out
