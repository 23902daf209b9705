"""The lesion's CT: a density right for its site, blended into the CT at the lesion's edge.

Defaults (a spec's ``hu`` overrides them):

* lung: a solid soft-tissue nodule, 40 HU (solid nodules measure ~30-50 HU);
* liver, spleen and other parenchymal organs: hypodense, the organ's own median HU around the
  lesion minus 30 HU (hypovascular metastases and lymphoma deposits enhance less than the
  parenchyma in the portal-venous phase that 953 of AutoPET's 1014 CTs have);
* node and subcutaneous nodule: soft tissue, 35 HU, replacing fat;
* bone: lytic 50 HU (soft tissue replacing trabecular bone) or sclerotic 700 HU;
* a necrotic core: 15 HU (fluid-like necrosis, 10-20 HU), never denser than the lesion.

The lesion gets the CT's own noise level: white Gaussian noise with the SD estimated from the
differences of neighbouring voxels (median absolute deviation / sqrt 2: smooth anatomy hardly
changes from one voxel to the next and the median ignores the edges) in the site's shell and in
the box's soft tissue (-200 .. 200 HU), the smaller of the two. Voxels of the written lesion
mask are all lesion; the partly covered voxels just outside it are blended by their occupancy,
so the edge is blended over about one voxel, as a real CT's partial volume is, and ``hu_mean``
in the mask is the lesion's HU.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LUNG_NODULE_HU",
    "SOFT_TISSUE_LESION_HU",
    "HYPODENSE_OFFSET_HU",
    "BONE_LYTIC_HU",
    "BONE_SCLEROTIC_HU",
    "NECROSIS_HU",
    "default_lesion_hu",
    "ct_noise_sd",
    "blend_ct",
]

LUNG_NODULE_HU = 40.0
SOFT_TISSUE_LESION_HU = 35.0
HYPODENSE_OFFSET_HU = 30.0
BONE_LYTIC_HU = 50.0
BONE_SCLEROTIC_HU = 700.0
NECROSIS_HU = 15.0
#: a hypodense lesion is never given less than this (it stays soft tissue, not fluid)
_HYPODENSE_FLOOR_HU = 20.0


def default_lesion_hu(site: str, surrounding_hu: np.ndarray) -> float:
    """Lesion HU for ``site`` ('lung', 'node', 'subcutaneous', 'bone' or a parenchymal organ/site)."""
    if site == "lung":
        return LUNG_NODULE_HU
    if site in ("node", "subcutaneous"):
        return SOFT_TISSUE_LESION_HU
    if site == "bone":
        return BONE_LYTIC_HU
    if surrounding_hu.size == 0:
        return SOFT_TISSUE_LESION_HU
    return float(max(_HYPODENSE_FLOOR_HU, np.median(surrounding_hu) - HYPODENSE_OFFSET_HU))


def ct_noise_sd(ct_box: np.ndarray, *regions: np.ndarray) -> float:
    """The CT's noise SD in the box: the smallest robust estimate over ``regions`` with >= 20 voxel pairs (else 0)."""
    ct_box = ct_box.astype(np.float64)
    estimates = []
    for where in regions:
        steps = []
        for axis in range(3):
            ahead = [slice(None)] * 3
            behind = [slice(None)] * 3
            ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
            both = where[tuple(ahead)] & where[tuple(behind)]
            steps.append((ct_box[tuple(ahead)] - ct_box[tuple(behind)])[both])
        steps = np.concatenate(steps)
        if steps.size >= 20:
            estimates.append(1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / np.sqrt(2.0))
    return min(estimates, default=0.0)


def blend_ct(ct_box: np.ndarray, weight: np.ndarray, core: np.ndarray | None, hu: float, noise_sd: float,
             rng: np.random.Generator) -> np.ndarray:
    """CT of the box with the lesion blended in (``weight`` in [0, 1] per voxel; ``core``: necrotic occupancy)."""
    ct_box = ct_box.astype(np.float32)
    target = np.full(ct_box.shape, hu, np.float32)
    if core is not None:
        target += core.astype(np.float32) * (min(hu, NECROSIS_HU) - hu)
    target += np.float32(noise_sd) * rng.standard_normal(ct_box.shape, dtype=np.float32)
    weight = weight.astype(np.float32)
    return np.rint((1.0 - weight) * ct_box + weight * target).astype(np.float32)
