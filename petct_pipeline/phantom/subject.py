"""One phantom subject: demographics + seed -> CT (HU), PET (Bq/mL and SUV), labels, truth."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..demographics import Demographics
from ..errors import InputError, InputTypeError
from ..geometry import ras_affine
from ..organs import EVALUATION_ORGANS, organ_mask
from .anatomy import build_anatomy, check_spacing
from .lesions import add_lesions, sample_diagnosis
from .organ_sizes import aorta_radius_mm, sample_organ_volumes
from .population import Acquisition, sample_acquisition
from .scanner import bqml_to_suv, ct_lookup, simulate_ct, simulate_pet_suv, suv_to_bqml
from .uptake import sample_uptake, suv_lookup

__all__ = ["PhantomSubject", "generate_phantom"]


@dataclass
class PhantomSubject:
    """A synthetic PET/CT study; arrays are (x, y, z) RAS+ on one grid described by ``affine``."""

    ct_hu: np.ndarray
    suv: np.ndarray
    pet_bqml: np.ndarray
    organs: np.ndarray
    lesion_mask: np.ndarray
    affine: np.ndarray
    spacing: float
    demographics: Demographics
    injected_dose_bq: float
    uptake_time_s: float
    seed: int
    diagnosis: str = "NEGATIVE"
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def acquisition(self) -> Acquisition:
        return Acquisition(self.injected_dose_bq, self.uptake_time_s)


def generate_phantom(
    demographics: Demographics,
    seed: int,
    spacing: float = 2.0,
    lesions: bool = False,
    *,
    fov: str = "whole_body",
    diagnosis: str | None = None,
) -> PhantomSubject:
    """Simulate one whole-body FDG PET/CT study of a subject with these demographics.

    Deterministic for a given (demographics, seed, spacing, lesions). ``fov="whole_body"``
    covers vertex to mid-thigh (0.635 x height, like AutoPET's ~1050 mm); ``fov="model"``
    crops to ``geometry.body_slices`` from the vertex. With ``lesions=True`` the study gets
    FDG-avid lesions of a cancer drawn with AutoPET's proportions (or ``diagnosis``).
    """
    if not isinstance(demographics, Demographics):
        raise InputTypeError(f"demographics must be a Demographics, got {type(demographics).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    spacing = check_spacing(spacing)
    started = time.perf_counter()
    d = demographics
    rng = np.random.default_rng([int(seed), 0x9E7C])
    volumes = sample_organ_volumes(d, rng)
    volumes["aorta_radius_mm"] = aorta_radius_mm(d)
    acquisition = sample_acquisition(rng)
    uptake = sample_uptake(d, rng)
    ct_table = ct_lookup(d, rng)
    fwhm = float(rng.uniform(5.0, 7.0))
    anat = build_anatomy(d, volumes, rng, spacing, fov)
    if lesions:
        diagnosis = diagnosis or sample_diagnosis(rng, positive_only=True)
    else:
        diagnosis = diagnosis or "NEGATIVE"
    lesion_mask, lesion_list = add_lesions(anat, diagnosis, rng)
    suv_true = suv_lookup(uptake)[anat.tissue]
    suv_true *= anat.texture
    truth_suv = {}
    for organ in EVALUATION_ORGANS:
        m = organ_mask(anat.organs, organ)
        truth_suv[organ] = float(suv_true[m].mean()) if m.any() else float("nan")
    truth_vol = {
        organ: float(organ_mask(anat.organs, organ).sum() * spacing**3 / 1000.0) for organ in EVALUATION_ORGANS
    }
    ct = simulate_ct(anat.tissue, ct_table, anat.texture, anat.body, d, spacing, rng)
    suv_rec = simulate_pet_suv(suv_true, anat.body, d, acquisition, spacing, fwhm, rng)
    del suv_true
    pet = suv_to_bqml(suv_rec, d.weight, acquisition.dose_at_scan_bq)
    suv = bqml_to_suv(pet, d.weight, acquisition.dose_at_scan_bq)
    affine = ras_affine(ct.shape, (spacing, spacing, spacing))
    truth = {
        "organ_volumes_ml": truth_vol,
        "organ_suv_mean_true": truth_suv,
        "sampled_volumes_ml": {k: round(v, 2) for k, v in volumes.items()},
        "tissue_suv": {k: round(v, 4) for k, v in uptake.items()},
        "painted_volumes_ml": anat.volumes_ml,
        "psf_fwhm_mm": fwhm,
        "lesions": lesion_list,
        "landmarks": anat.landmarks,
        "seconds": time.perf_counter() - started,
    }
    return PhantomSubject(
        ct_hu=ct,
        suv=suv,
        pet_bqml=pet,
        organs=anat.organs,
        lesion_mask=lesion_mask,
        affine=affine,
        spacing=spacing,
        demographics=d,
        injected_dose_bq=acquisition.injected_dose_bq,
        uptake_time_s=acquisition.uptake_time_s,
        seed=int(seed),
        diagnosis=diagnosis,
        truth=truth,
    )
