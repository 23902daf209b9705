"""MS-SSIM diversity: how alike are generated samples that share the same demographics?

Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) between pairs of samples, computed by MONAI
(``monai.metrics.MultiScaleSSIMMetric``, ``spatial_dims=3``; install ``petct-diffusion[eval]``).
1 means identical volumes (mode collapse); lower means more diverse. The scale is set by
different patients: the mean MS-SSIM between different reference subjects, and, where the
reference repeats a demographic tuple, between its subjects sharing one.

Parameters, chosen for whole-body volumes a few dozen voxels wide:

* each subject is block-averaged to about :data:`MSSSIM_MM` (8 mm, the cascade's first-stage
  grid, where anatomy is decided) with HU clipped to [-1000, 2000] and SUV to [0, 50]
  (:func:`~petct_pipeline.evaluation.image_checks.thumbnail`), then mapped to the model's
  intensity space (``hu_to_model``, ``suv_to_model``), where both channels span about
  [-1, 1]: ``data_range`` 2;
* CT and PET are compared separately and their MS-SSIM averaged;
* Gaussian window of :data:`MSSSIM_KERNEL` voxels (sigma :data:`MSSSIM_SIGMA`), and as many of
  the standard five scales (weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, renormalised) as the
  smallest volume allows (MONAI's size rule, and the window must fit at the coarsest scale): a
  whole-body volume at 8 mm (56 x 56 x 110) gets 4 scales (8 to 64 mm), a 44 x 30 x 124 test volume 3.
  One evaluation uses one set of scales for every pair;
* two volumes of different size (subjects of different height) are cropped to their common
  size, centred in x/y and aligned at the top slice (the vertex).
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..intensity import hu_to_model, suv_to_model
from .image_checks import common_crop, thumbnail

__all__ = [
    "MSSSIM_MM",
    "MSSSIM_KERNEL",
    "MSSSIM_SIGMA",
    "MSSSIM_WEIGHTS",
    "MSSSIM_DATA_RANGE",
    "monai_problem",
    "diversity_volume",
    "msssim_scales",
    "pairwise_ms_ssim",
]

MSSSIM_MM = 8.0
MSSSIM_KERNEL = 5
MSSSIM_SIGMA = 1.0
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_DATA_RANGE = 2.0
#: pairs per call to MONAI (memory: about 60 MB per pair at 56 x 56 x 110)
_CHUNK = 8


def monai_problem() -> str | None:
    """None when MONAI can be imported, else what to install."""
    if importlib.util.find_spec("monai") is None:
        return ("MS-SSIM needs MONAI: `pip install petct-diffusion[eval]` (or `pip install monai`, Apache-2.0); "
                "the rest of the evaluation does not")
    return None


def diversity_volume(ct: np.ndarray, suv: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(2, X, Y, Z) float32 model-space CT and PET at about :data:`MSSSIM_MM`: what MS-SSIM compares."""
    small = thumbnail(ct, suv, spacing, target_mm=MSSSIM_MM)
    return np.stack([hu_to_model(small[0]), suv_to_model(small[1])]).astype(np.float32)


def msssim_scales(shapes: Sequence[Sequence[int]], kernel: int = MSSSIM_KERNEL) -> int:
    """The most scales (<= 5) that every spatial shape in ``shapes`` allows; 0 if not even one."""
    smallest = np.min(np.asarray(shapes, dtype=int).reshape(-1, 3), axis=0)
    for scales in range(len(MSSSIM_WEIGHTS), 0, -1):
        monai_rule = all(n // max(1, scales - 1) ** 2 > kernel - 1 for n in smallest)
        window_fits = all(n // 2 ** (scales - 1) >= kernel for n in smallest)
        if monai_rule and window_fits:
            return scales
    return 0


def pairwise_ms_ssim(volumes: Sequence[np.ndarray], scales: int,
                     pairs: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """(pairs, 2) MS-SSIM of CT and PET for ``pairs`` of ``volumes`` (default: every pair i < j)."""
    problem = monai_problem()
    if problem:
        raise InputError(problem)
    if not 1 <= scales <= len(MSSSIM_WEIGHTS):
        raise InputError(f"scales must be 1..{len(MSSSIM_WEIGHTS)}, got {scales}")
    from monai.metrics import MultiScaleSSIMMetric

    weights = np.asarray(MSSSIM_WEIGHTS[:scales]) / np.sum(MSSSIM_WEIGHTS[:scales])
    metric = MultiScaleSSIMMetric(spatial_dims=3, data_range=MSSSIM_DATA_RANGE, kernel_size=MSSSIM_KERNEL,
                                  kernel_sigma=MSSSIM_SIGMA, weights=tuple(float(w) for w in weights),
                                  reduction="none")
    pairs = list(itertools.combinations(range(len(volumes)), 2)) if pairs is None else list(pairs)
    crops = [common_crop(volumes[i], volumes[j]) for i, j in pairs]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, (first, _) in enumerate(crops):
        by_shape.setdefault(first.shape, []).append(index)
    out = np.zeros((len(pairs), 2))
    for shape, members in by_shape.items():
        for start in range(0, len(members), _CHUNK):
            chunk = members[start : start + _CHUNK]
            # CT and PET as separate batch items: MONAI averages the channels of an item
            a = torch.from_numpy(np.stack([crops[k][0] for k in chunk])).reshape(-1, 1, *shape[1:])
            b = torch.from_numpy(np.stack([crops[k][1] for k in chunk])).reshape(-1, 1, *shape[1:])
            with torch.no_grad():
                out[chunk] = metric(a, b).reshape(len(chunk), 2).double().numpy()
    return out
