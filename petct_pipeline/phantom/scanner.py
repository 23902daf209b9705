"""Scanner model: contrast-enhanced CT in HU and FDG PET in Bq/mL (Biograph mCT-like).

CT: HU per tissue class (portal-venous contrast phase, as 953/1014 AutoPET CTs), a
small Gaussian blur and Gaussian noise that grows with patient size. PET: Gaussian PSF
(FWHM sampled in 5-7 mm), count-dependent noise added before the PSF so that it comes
out spatially correlated like reconstructed PET noise, zero outside the body.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..demographics import Demographics
from .anatomy import Tissue

__all__ = ["CT_HU", "ct_lookup", "simulate_ct", "simulate_pet_suv", "suv_to_bqml", "bqml_to_suv"]

#: mean HU per tissue class (portal-venous phase); sources in docs/phantom.md
CT_HU: dict[int, float] = {
    Tissue.AIR: -1000.0,
    Tissue.AIRWAY: -990.0,
    Tissue.GAS: -950.0,
    Tissue.LUNG: -840.0,
    Tissue.FAT: -100.0,
    Tissue.MUSCLE: 55.0,
    Tissue.BLOOD: 165.0,
    Tissue.BLOOD_VENOUS: 150.0,
    Tissue.LUNG_VESSEL: 120.0,
    Tissue.LIVER: 110.0,
    Tissue.SPLEEN: 120.0,
    Tissue.KIDNEY: 170.0,
    Tissue.URINE_KIDNEY: 15.0,
    Tissue.URINE_BLADDER: 8.0,
    Tissue.BRAIN_GREY: 40.0,
    Tissue.BRAIN_WHITE: 28.0,
    Tissue.CSF: 6.0,
    Tissue.MYOCARDIUM: 115.0,
    Tissue.BONE_CORTICAL: 1250.0,
    Tissue.MARROW_RED: 250.0,
    Tissue.MARROW_YELLOW: -40.0,
    Tissue.SOFT: 45.0,
    Tissue.BOWEL: 60.0,
    Tissue.COLON_CONTENT: -80.0,
    Tissue.STOMACH: 30.0,
    Tissue.PANCREAS: 100.0,
    Tissue.BILE: 10.0,
    Tissue.THYROID: 130.0,
    Tissue.CARTILAGE: 180.0,
    Tissue.SPINAL_CORD: 35.0,
    Tissue.PROSTATE: 55.0,
    Tissue.ESOPHAGUS: 50.0,
    Tissue.LESION: 60.0,
}


def ct_lookup(d: Demographics, rng: np.random.Generator) -> np.ndarray:
    """HU table for one subject: contrast timing and bone density vary between subjects."""
    table = np.full(256, -1000.0, np.float32)
    for key, value in CT_HU.items():
        table[int(key)] = value
    enhance = float(np.clip(rng.normal(1.0, 0.12), 0.6, 1.4))  # contrast bolus timing / dose per kg
    for key in (Tissue.BLOOD, Tissue.BLOOD_VENOUS, Tissue.LUNG_VESSEL, Tissue.KIDNEY, Tissue.MYOCARDIUM):
        table[key] = 40.0 + (table[key] - 40.0) * enhance
    for key in (Tissue.LIVER, Tissue.SPLEEN, Tissue.PANCREAS):
        table[key] = 55.0 + (table[key] - 55.0) * enhance
    # trabecular bone density falls ~1 %/yr after 40 (faster in women)
    loss = max(0.0, d.age - 40.0) * (0.012 if not d.is_male else 0.008)
    table[Tissue.MARROW_RED] = float(np.clip(250.0 * (1.0 - loss), 90.0, 300.0) + rng.normal(0, 15))
    table[Tissue.LUNG] = float(np.clip(-840.0 + rng.normal(0, 25), -900, -750))
    return table


def simulate_ct(
    tissue: np.ndarray,
    table: np.ndarray,
    texture: np.ndarray,
    body: np.ndarray,
    d: Demographics,
    spacing: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """CT in HU (float32): lookup, mild texture, 1.2 mm FWHM blur, size-dependent noise."""
    ct = table[tissue]
    ct += (texture - 1.0) * 40.0 * body  # organ texture also shows a little in CT
    sigma_vox = 1.2 / 2.355 / spacing
    if sigma_vox > 0.25:
        ndimage.gaussian_filter(ct, sigma_vox, output=ct, truncate=2.5)
    noise_sd = 10.0 * math.exp(0.012 * (d.weight - 75.0)) * (2.0 / spacing) ** 1.5
    noise = rng.standard_normal(ct.shape, dtype=np.float32)
    noise *= noise_sd
    ct += noise
    ct[~body] = -1000.0
    np.clip(ct, -1024.0, 3071.0, out=ct)
    return ct


def simulate_pet_suv(
    suv_true: np.ndarray,
    body: np.ndarray,
    d: Demographics,
    acquisition,
    spacing: float,
    fwhm_mm: float,
    rng: np.random.Generator,
    liver_cv: float = 0.10,
) -> np.ndarray:
    """Reconstructed PET in SUV: count-dependent noise, then the Gaussian PSF (FWHM in mm)."""
    sigma_vox = fwhm_mm / 2.355 / spacing
    # relative noise per reconstructed voxel at SUV 2.3: liver CV ~10 % for a 75 kg patient at 2 mm
    # voxels; grows with body size and with less activity at scan time, falls with voxel volume
    counts = (acquisition.dose_at_scan_bq / 215e6) * (75.0 / d.weight) ** 1.5
    cv = liver_cv / math.sqrt(max(counts, 0.05)) * (2.0 / spacing) ** 1.5
    kernel_gain = (2.0 * math.sqrt(math.pi) * max(sigma_vox, 0.3)) ** 1.5  # 1 / sqrt(sum of kernel^2)
    noise = rng.standard_normal(suv_true.shape, dtype=np.float32)
    noise *= np.sqrt(np.maximum(suv_true, 0.0) * 2.3, dtype=np.float32)
    noise *= cv * kernel_gain
    pet = suv_true + noise
    ndimage.gaussian_filter(pet, sigma_vox, output=pet, truncate=3.0)
    np.maximum(pet, 0.0, out=pet)
    pet[~body] = 0.0
    return pet


def suv_to_bqml(suv: np.ndarray, weight_kg: float, dose_at_scan_bq: float) -> np.ndarray:
    """Activity concentration (Bq/mL) at scan time from SUVbw: C = SUV * dose / (weight in g)."""
    return (suv * np.float32(dose_at_scan_bq / (weight_kg * 1000.0))).astype(np.float32)


def bqml_to_suv(pet_bqml: np.ndarray, weight_kg: float, dose_at_scan_bq: float) -> np.ndarray:
    """SUVbw = C (Bq/mL) * weight (g) / decay-corrected dose (Bq)."""
    return (pet_bqml * np.float32(weight_kg * 1000.0 / dose_at_scan_bq)).astype(np.float32)
