"""Optional FDG-avid lesions, placed by diagnosis the way AutoPET's positives present.

Lesions are deformed spheres (radius 4-18 mm, SUVmean log-normal with median 7) in sites
typical of the three AutoPET cancers: lymphoma (nodal stations, spleen, marrow), melanoma
(subcutaneous, nodes, lung, liver) and lung cancer (lung, mediastinal nodes, bone,
liver, adrenal). They are written to SEG.nii.gz (1 = lesion) as in AutoPET.
"""

from __future__ import annotations

import numpy as np

from ..organs import LABEL_IDS, ORGAN_GROUPS
from .anatomy import Anatomy, Tissue

__all__ = [
    "DIAGNOSES",
    "AUTOPET_DIAGNOSIS_COUNTS",
    "DIAGNOSIS_SITES",
    "LESION_COUNT_RANGE",
    "LESION_RADIUS_MM",
    "NODE_RADIUS_MM",
    "LESION_SUV_MEDIAN",
    "LESION_SUV_SIGMA",
    "LESION_SUV_RANGE",
    "sample_diagnosis",
    "add_lesions",
]

#: AutoPET study counts per diagnosis (TCIA FDG-PET-CT-Lesions; Gatidis et al. 2022, Sci Data 9:601)
AUTOPET_DIAGNOSIS_COUNTS = {"NEGATIVE": 513, "MELANOMA": 188, "LUNG_CANCER": 168, "LYMPHOMA": 145}
DIAGNOSES = tuple(AUTOPET_DIAGNOSIS_COUNTS)

#: share of a cancer's lesions per site (assumption from the cancers' usual spread; the sites are those
#: AutoPET's positives show, the shares are not published per site). ``petct_pipeline.lesions`` samples
#: the same model.
DIAGNOSIS_SITES: dict[str, dict[str, float]] = {
    "LYMPHOMA": {"node": 0.7, "spleen": 0.1, "marrow": 0.2},
    "MELANOMA": {"subcutaneous": 0.3, "node": 0.35, "lung": 0.2, "liver": 0.15},
    "LUNG_CANCER": {"lung": 0.45, "node": 0.3, "marrow": 0.15, "liver": 0.1},
}
#: lesions per positive study, inclusive (assumption: AutoPET's positives range from one lesion to many)
LESION_COUNT_RANGE = (1, 8)
#: lesion radius (mm) drawn uniformly; nodes are smaller (assumption, short axis of involved nodes >= 10 mm)
LESION_RADIUS_MM = (4.0, 18.0)
NODE_RADIUS_MM = (5.0, 14.0)
#: lesion SUVmean: log-normal with this median and log-SD, clipped to the range
LESION_SUV_MEDIAN = 7.0
LESION_SUV_SIGMA = 0.5
LESION_SUV_RANGE = (2.5, 40.0)


def sample_diagnosis(rng: np.random.Generator, positive_only: bool = False) -> str:
    names = [n for n in DIAGNOSES if not (positive_only and n == "NEGATIVE")]
    p = np.array([AUTOPET_DIAGNOSIS_COUNTS[n] for n in names], float)
    return str(rng.choice(names, p=p / p.sum()))


def _site_mask(anat: Anatomy, site: str) -> np.ndarray:
    organs, tissue = anat.organs, anat.tissue
    if site == "liver":
        return organs == LABEL_IDS["liver"]
    if site == "spleen":
        return organs == LABEL_IDS["spleen"]
    if site == "lung":
        return np.isin(organs, [LABEL_IDS[n] for n in ORGAN_GROUPS["lungs"]]) & (tissue == Tissue.LUNG)
    if site == "marrow":
        return tissue == Tissue.MARROW_RED
    if site == "subcutaneous":
        return (tissue == Tissue.FAT) & (organs == 0)
    # nodes: beside the great vessels (para-aortic, iliac, mediastinal) - the vessel voxels themselves,
    # shifted below by a random offset
    return np.isin(
        organs,
        [
            LABEL_IDS[n]
            for n in ("aorta", "iliac_artery_left", "iliac_artery_right", "superior_vena_cava", "inferior_vena_cava")
        ],
    )


def add_lesions(anat: Anatomy, diagnosis: str, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Paint lesions into ``anat`` (tissue LESION, per-lesion SUV via texture); returns (mask, list)."""
    mask = np.zeros(anat.tissue.shape, np.uint8)
    if diagnosis == "NEGATIVE":
        return mask, []
    s = anat.spacing
    sites = DIAGNOSIS_SITES[diagnosis]
    n = int(rng.integers(LESION_COUNT_RANGE[0], LESION_COUNT_RANGE[1] + 1))
    lesions = []
    cache: dict[str, np.ndarray] = {}
    for _ in range(n):
        site = str(rng.choice(list(sites), p=np.array(list(sites.values())) / sum(sites.values())))
        if site not in cache:
            cache[site] = np.flatnonzero(_site_mask(anat, site))
        idx = cache[site]
        if idx.size == 0:
            continue
        center = np.array(np.unravel_index(int(rng.choice(idx)), anat.tissue.shape), float)
        if site == "node":
            direction = rng.normal(size=3)
            direction[2] *= 0.3
            center += direction / np.linalg.norm(direction) * rng.uniform(14, 24) / s
        radius = float(rng.uniform(*LESION_RADIUS_MM) if site != "node" else rng.uniform(*NODE_RADIUS_MM))
        suv = float(np.clip(LESION_SUV_MEDIAN * np.exp(rng.normal(0, LESION_SUV_SIGMA)), *LESION_SUV_RANGE))
        r_vox = radius / s
        lo = np.maximum(np.floor(center - r_vox - 1).astype(int), 0)
        hi = np.minimum(np.ceil(center + r_vox + 2).astype(int), anat.tissue.shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        gx, gy, gz = (
            np.arange(a, b)[sh]
            for a, b, sh in zip(
                lo, hi, ((slice(None), None, None), (None, slice(None), None), (None, None, slice(None)))
            )
        )
        dist2 = (gx - center[0]) ** 2 + (gy - center[1]) ** 2 + (gz - center[2]) ** 2
        wobble = 1.0 + 0.15 * rng.normal(size=(1, 1, 1))
        sphere = (dist2 <= (r_vox * wobble) ** 2) & anat.body[box] & (anat.tissue[box] != Tissue.BONE_CORTICAL)
        if not sphere.any():
            continue
        anat.tissue[box][sphere] = Tissue.LESION
        anat.texture[box][sphere] = suv / 6.0
        mask[box][sphere] = 1
        lesions.append(
            {
                "site": site,
                "center_voxel": center.round(1).tolist(),
                "radius_mm": round(radius, 1),
                "suv_mean": round(suv, 2),
                "volume_ml": float(sphere.sum() * s**3 / 1000.0),
            }
        )
    return mask, lesions
