"""Validation PNGs: coronal CT slice and coronal PET maximum-intensity projection per volume."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from petct_pipeline.io import atomic_path

__all__ = ["save_validation_png"]

logger = logging.getLogger(__name__)


def _coronal(volume: np.ndarray, mip: bool) -> np.ndarray:
    """(x, y, z) -> image rows = z from head (top) to feet, columns = x (patient's right on the left)."""
    plane = volume.max(axis=1) if mip else volume[:, volume.shape[1] // 2, :]
    return plane.T[::-1]


def save_validation_png(
    path: str | Path,
    rows: Sequence[tuple[np.ndarray, np.ndarray]],
    titles: Sequence[str],
    spacing: float = 1.0,
    suv_max: float = 10.0,
) -> Path | None:
    """One row per (CT in HU, PET in SUV) volume: CT window [-1000, 1000], PET MIP [0, suv_max] inverted."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no validation PNG (pip install 'petct-diffusion[train]')")
        return None
    path = Path(path)
    figure, axes = plt.subplots(len(rows), 2, figsize=(5, 3.2 * len(rows)), squeeze=False)
    for (ct, pet), title, pair in zip(rows, titles, axes):
        pair[0].imshow(_coronal(ct, mip=False), cmap="gray", vmin=-1000, vmax=1000, aspect=1.0)
        pair[1].imshow(_coronal(pet, mip=True), cmap="gray_r", vmin=0, vmax=suv_max, aspect=1.0)
        pair[0].set_title(f"{title}\nCT coronal", fontsize=7)
        pair[1].set_title(f"PET MIP (SUV 0-{suv_max:g})", fontsize=7)
        for axis in pair:
            axis.set_axis_off()
    figure.suptitle(f"{spacing:g} mm", fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
    plt.close(figure)
    return path
