"""PET from a given CT: the cascade as a conditional model, with the CT channel known and the PET sampled.

1. Place the CT in the model's vertex-aligned body frame (``placement.py``: given, or estimated
   from body and lung profiles against a stage-1 volume sampled for the demographics).
2. Resample the CT (outside its body: air, as training saw it) onto the stage-1 grid (16 mm) and
   the output grid (4 mm) of that frame, with the mask of the frame's voxels the CT covers.
3. Stage 1 inpaints: the CT channel is known inside the coverage (``models.denoiser.KnownVoxels``,
   replacement; or RePaint resampling, ``repaint.py``), the PET and the CT outside are sampled.
4. Stage 2 super-resolves through the same known-voxels seam with the 4 mm CT known, and the result
   is back-projected onto stage 1 as in unconditional generation.
5. The PET is resampled onto the input's own grid; outside the CT's body and outside the model's
   frame it is 0, and metadata.json records where the PET was generated.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..data.preprocess import AIR_HU, body_mask, resample, target_affine
from ..demographics import Demographics
from ..errors import InputError
from ..geometry import body_length_mm, body_slices, spacing_from_affine
from ..intensity import hu_to_model, model_to_hu, model_to_suv
from ..io import save_nifti, write_json
from ..models.denoiser import KnownVoxels
from ..organs import LABEL_IDS
from .ct_input import InputCT, read_ct
from .placement import (
    BODY_SIZE_WARNING,
    MAX_OFFSET_MM,
    AxialProfiles,
    Placement,
    ct_profiles,
    estimate_offset,
    fit_at,
    volume_profiles,
)
from .repaint import repaint_base

__all__ = ["CTtoPETOutput", "pet_from_ct", "check_offset", "place_ct", "expected_profiles", "METHODS",
           "COVERED_FRACTION", "REFERENCE_STEPS"]

logger = logging.getLogger(__name__)

#: how stage 1 conditions on the CT: "replacement" (the known-voxels seam in diffusers' scheduler) or
#: "repaint" (RePaint resampling with ``jumps`` passes per step)
METHODS = ("replacement", "repaint")
#: the body's HU threshold (as data.preprocess.body_mask's default)
BODY_HU = -500.0
#: stage-1 steps of the reference volume that placement matches against (coarse anatomy is all it needs)
REFERENCE_STEPS = 8
#: a model voxel is known when at least this fraction of it lies inside the CT's field of view
COVERED_FRACTION = 0.95


@dataclass
class CTtoPETOutput:
    """The PET generated for an input CT, on the input's own grid (``ct.file_shape``, ``ct.file_affine``)."""

    pet: np.ndarray
    ct: InputCT
    demographics: Demographics
    placement: Placement
    metadata: dict[str, Any] = field(default_factory=dict)
    organs: np.ndarray | None = None
    organ_segmenter: str | None = None
    pet_canonical: np.ndarray | None = None  # the PET on the CT's canonical RAS grid (``ct.hu``, ``ct.affine``)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write pet_suv.nii.gz (SUVbw, float32), ct.nii.gz (the input unchanged), organs.nii.gz + organs.json
        (when labelled) and metadata.json into ``out_dir``; each file under a temporary name, then renamed."""
        from ..pipeline_output import (
            CT_FILENAME,
            METADATA_FILENAME,
            ORGAN_NAMES_FILENAME,
            ORGANS_FILENAME,
            PET_FILENAME,
        )

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_nifti(self.pet.astype(np.float32), self.ct.file_affine, out_dir / PET_FILENAME,
                   description="synthetic FDG PET (SUVbw) from a given CT, petct-diffusion")
        self.ct.save(out_dir / CT_FILENAME)
        files = {"ct": CT_FILENAME, "pet": PET_FILENAME}
        if self.organs is not None:
            save_nifti(self.organs.astype(np.uint8), self.ct.file_affine, out_dir / ORGANS_FILENAME,
                       description="TotalSegmentator total ids (segmenter)")
            write_json(dict(LABEL_IDS), out_dir / ORGAN_NAMES_FILENAME)
            files.update({"organs": ORGANS_FILENAME, "organ_names": ORGAN_NAMES_FILENAME})
        metadata = dict(self.metadata)
        metadata.update({"demographics": self.demographics.to_dict(), "shape": list(self.ct.file_shape),
                         "spacing_mm": [round(s, 4) for s in spacing_from_affine(self.ct.file_affine)],
                         "units": {"ct": "as the input (HU after hu_offset_applied)", "pet": "SUVbw (g/mL)"},
                         "files": files, "synthetic": "pet"})
        if self.organs is not None and self.organ_segmenter:
            metadata["organ_labels"] = {"made_by": self.organ_segmenter}
        write_json(metadata, out_dir / METADATA_FILENAME)
        return out_dir


def check_offset(offset_mm: Any) -> float | None:
    """``--ct-offset-mm``: None (estimate), or a finite number of mm in [-MAX_OFFSET_MM, MAX_OFFSET_MM]."""
    if offset_mm is None:
        return None
    if isinstance(offset_mm, bool) or not isinstance(offset_mm, int | float) or not np.isfinite(offset_mm) \
            or not -MAX_OFFSET_MM <= offset_mm <= MAX_OFFSET_MM:
        raise InputError(f"--ct-offset-mm (distance from the vertex down to the CT's top slice) must be a number in "
                         f"[{-MAX_OFFSET_MM:g}, {MAX_OFFSET_MM:g}] mm, got {offset_mm!r}")
    return float(offset_mm)


@torch.no_grad()
def pet_from_ct(pipe: Any, ct: InputCT | str | os.PathLike, subject: Demographics, *, ct_offset_mm: float | None,
                generator: torch.Generator | None, num_inference_steps: int, sr_num_inference_steps: int,
                guidance_scale: float, prior_scale: float, back_projection_iterations: int, method: str = "replacement",
                jumps: int = 2, segmenter: Any = None) -> CTtoPETOutput:
    """The PET of ``subject`` that fits ``ct`` (an ``InputCT`` or a path), sampled by ``pipe`` (a ``PETCTPipeline``).

    Called by ``PETCTPipeline.pet_from_ct``, which resolves the sampling defaults. ``segmenter``
    (a ``ModelSegmenter``) labels the organs on the input's grid when given.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {list(METHODS)}, got {method!r}")
    ct = ct if isinstance(ct, InputCT) else read_ct(ct)
    offset_mm = check_offset(ct_offset_mm)
    seed = generator.initial_seed() if isinstance(generator, torch.Generator) else 0
    warnings: list[str] = []

    # 1. Place the CT in the model's body frame
    placement = place_ct(pipe, ct, subject, offset_mm, guidance_scale, prior_scale, seed + 1)
    spacing = pipe.config.base_spacing
    frame_length = min(body_length_mm(subject.height), pipe.base_shape[2] * spacing)
    ratio = placement.body_size_ratio
    if not BODY_SIZE_WARNING[0] <= ratio <= BODY_SIZE_WARNING[1]:
        warnings.append(f"body size: the CT's body cross-section is {ratio:.2f} times the model's for a "
                        f"{subject.weight:g} kg, {subject.height:g} cm {subject.sex} subject at this level (expected "
                        f"{BODY_SIZE_WARNING[0]:g}-{BODY_SIZE_WARNING[1]:g}); check --weight/--height/--sex")
        logger.warning(warnings[-1])

    # 2. The CT on the frame's grids: air outside its body (as training saw CTs), and what it covers
    mask, mask_affine = body_mask(ct.hu, ct.affine, BODY_HU)
    body = resample(mask.astype(np.float32), mask_affine, ct.hu.shape, ct.affine, order=1, cval=0.0) > 0.5
    body &= _filled_slices(ct.hu > BODY_HU)  # the mask is coarse in x/y: trim it to the skin at full resolution
    hu = np.where(body, ct.hu, AIR_HU).astype(np.float32)
    base_affine = target_affine(pipe.base_shape, spacing, placement.center_xy_mm, placement.vertex_mm)
    out_shape, out_spacing = pipe.output_shape, pipe.output_spacing
    out_affine = target_affine(out_shape, out_spacing, placement.center_xy_mm, placement.vertex_mm)
    ct_base = resample(hu, ct.affine, pipe.base_shape, base_affine, order=1, cval=AIR_HU, anti_alias=True)
    ct_fine = resample(hu, ct.affine, out_shape, out_affine, order=1, cval=AIR_HU, anti_alias=True)
    covered_fine = resample(np.ones(ct.hu.shape, np.float32), ct.affine, out_shape, out_affine, order=0, cval=0.0)
    scale = pipe.config.sr_scale
    covered_base = covered_fine.reshape(pipe.base_shape[0], scale, pipe.base_shape[1], scale, pipe.base_shape[2],
                                        scale).mean(axis=(1, 3, 5)) >= COVERED_FRACTION
    if not covered_base.any():
        raise InputError(f"--ct-offset-mm {offset_mm:g} puts the CT outside the model's body frame (vertex to "
                         f"{frame_length:.0f} mm below it): no voxel of it can condition the PET")

    # 3. Stage 1: CT channel known inside the coverage, PET (and the CT outside) sampled
    device = pipe.device
    known_base = _known(ct_base, covered_base, device)
    if method == "replacement":
        low_res = pipe.sample_base([subject], num_inference_steps, guidance_scale, prior_scale, generator,
                                   known=known_base)
    else:
        low_res = repaint_base(pipe, [subject], known_base, num_inference_steps, guidance_scale, prior_scale,
                               generator, jumps=jumps)

    # 4. Stage 2 through the known-voxels seam on the body slices, then back-projection onto stage 1
    slices = body_slices(subject.height, out_spacing, max_slices=out_shape[2])
    known_fine = _known(ct_fine[..., -slices:], covered_fine[..., -slices:] > 0.5, device)
    volume = pipe.super_resolve(low_res, subject, sr_num_inference_steps, None, generator, known=known_fine)
    volume = pipe.back_project(volume, low_res, back_projection_iterations)
    pet_fine = model_to_suv(volume[0, 1].float().cpu().numpy())

    # 5. Onto the input's grid: zero outside its body and outside the frame's body slices
    body_affine = out_affine.copy()
    body_affine[:3, 3] = out_affine[:3, :3] @ np.array([0.0, 0.0, out_shape[2] - slices]) + out_affine[:3, 3]
    coarser = max(spacing_from_affine(ct.affine)) > out_spacing * 1.1
    pet = resample(pet_fine, body_affine, ct.hu.shape, ct.affine, order=1, cval=0.0, anti_alias=coarser)
    in_frame = resample(np.ones(pet_fine.shape, np.float32), body_affine, ct.hu.shape, ct.affine, order=0,
                        cval=0.0) > 0.5
    pet = np.where(body & in_frame, np.clip(pet, 0.0, None), 0.0).astype(np.float32)
    covered_body = float((body & in_frame).sum() / max(1, body.sum()))
    if covered_body < 0.999:
        note = (f"the model's frame (vertex to {slices * out_spacing:.0f} mm below it, "
                f"{out_shape[0] * out_spacing:.0f} mm wide) covers {100 * covered_body:.1f} % of the CT's body; "
                "the PET is 0 in the rest")
        warnings.append(note)
        logger.info(note)

    organs, made_by = None, None
    if segmenter is not None:
        organs = ct.to_file_grid(segmenter.predict(ct.hu, pet, ct.affine).astype(np.uint8))
        made_by = segmenter.describe()
    metadata = pipe.sampling_record(generator, num_inference_steps, sr_num_inference_steps, guidance_scale,
                                    pipe.config.sr_noise_level, back_projection_iterations, prior_scale,
                                    out_of_distribution=pipe.out_of_distribution([subject])[0])
    metadata["ct_to_pet"] = {
        "input_ct": ct.describe(),
        "placement": placement.to_dict(),
        "placement_how": "given by --ct-offset-mm" if placement.method == "given" else
        "estimated: the CT's body and lung cross-section profiles slid along those of a stage-1 volume sampled "
        "for these demographics (seed + 1, REFERENCE_STEPS steps), least squares with one scale per profile",
        "conditioning": {"method": method, "jumps": jumps if method == "repaint" else 1,
                         "known": "CT channel inside the CT's coverage: stage 1 at "
                                  f"{spacing:g} mm ({int(covered_base.sum())} voxels), stage 2 at {out_spacing:g} mm"},
        "pet_generated_where": {
            "z_mm": [round(placement.vertex_mm - slices * out_spacing, 2), round(placement.vertex_mm, 2)],
            "body_fraction_covered": round(covered_body, 4),
            "outside": "0 SUV outside the CT's body and outside the model's frame",
        },
        "warnings": warnings,
    }
    return CTtoPETOutput(pet=ct.to_file_grid(pet), ct=ct, demographics=subject, placement=placement,
                         metadata=metadata, organs=organs, organ_segmenter=made_by, pet_canonical=pet)


def expected_profiles(pipe: Any, subject: Demographics, guidance_scale: float, prior_scale: float, seed: int
                      ) -> AxialProfiles:
    """The model's expectation for these demographics: the axial profiles of one stage-1 volume sampled for them
    with ``REFERENCE_STEPS`` steps from ``seed``."""
    reference = pipe.sample_base([subject], REFERENCE_STEPS, guidance_scale, prior_scale,
                                 torch.Generator().manual_seed(seed))
    spacing = pipe.config.base_spacing
    return volume_profiles(model_to_hu(reference[0, 0].float().cpu().numpy()), (spacing,) * 3)


def place_ct(pipe: Any, ct: InputCT, subject: Demographics, offset_mm: float | None, guidance_scale: float,
             prior_scale: float, seed: int, expected: AxialProfiles | None = None) -> Placement:
    """The CT's ``Placement`` in ``pipe``'s body frame: ``offset_mm`` if given, else estimated (placement.py)
    against ``expected`` (default: ``expected_profiles`` from ``seed``); with a given offset the match still
    yields the body-size ratio."""
    profiles, center_xy, ct_top_mm = ct_profiles(ct.hu, ct.affine)
    if expected is None:
        expected = expected_profiles(pipe, subject, guidance_scale, prior_scale, seed)
    frame_length = min(body_length_mm(subject.height), pipe.base_shape[2] * pipe.config.base_spacing)
    if offset_mm is None:
        offset_mm, ratio, error = estimate_offset(profiles, expected, frame_length)
        method = "profile"
    else:
        ratio, error = fit_at(profiles, expected, frame_length, offset_mm)
        method = "given"
    return Placement(offset_mm=offset_mm, method=method, center_xy_mm=center_xy, ct_top_mm=ct_top_mm,
                     body_size_ratio=ratio, match_error=error)


def _filled_slices(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the holes of every axial slice filled (lungs and bowel gas are body)."""
    filled = np.empty_like(mask)
    for k in range(mask.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return filled


def _known(ct_hu: np.ndarray, covered: np.ndarray, device: Any) -> KnownVoxels:
    """Known CT channel (model space) where ``covered``; the PET channel is never known."""
    values = torch.zeros((1, 2, *ct_hu.shape), dtype=torch.float32)
    values[0, 0] = torch.from_numpy(np.asarray(hu_to_model(ct_hu), dtype=np.float32))
    mask = torch.zeros((1, 2, *ct_hu.shape), dtype=torch.bool)
    mask[0, 0] = torch.from_numpy(np.asarray(covered, dtype=bool))
    return KnownVoxels(mask.to(device), values.to(device))
