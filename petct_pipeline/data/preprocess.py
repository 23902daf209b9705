"""One study -> a fixed-size, vertex-aligned, isotropic CT+PET volume in model space.

Steps (DESIGN.md, "Preprocessing"):

1. Load SUV (or PET in Bq/mL converted with dose, uptake time and weight) and the CT in
   canonical RAS; the CT is resampled onto the PET grid unless it is already there
   (AutoPET's CTres is).
2. Find the body: CT above ``body_threshold_hu``, opened once to cut it from the patient
   table, largest connected component, holes filled slice by slice (lungs are body).
3. Define the output grid in scanner millimetres: isotropic ``spacing``, ``shape`` voxels,
   x/y centred on the body, and the *upper edge* of the top slice at the top of the body
   (the vertex; see geometry.py). Grids of different spacing over the same extent are
   therefore nested exactly: voxel ``i`` at 8 mm covers voxels ``4i .. 4i+3`` at 2 mm,
   which is what the super-resolution stage's trilinear upsampling assumes.
4. Resample CT and SUV onto it (Gaussian anti-aliasing when downsampling, trilinear),
   organ labels by nearest neighbour. Outside the field of view and outside the body the
   CT is air (-1000 HU) and the PET zero, as the pipeline generates them.
5. Map to model space with :func:`petct_pipeline.intensity.to_model_space`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError, InputTypeError
from ..geometry import VolumeGrid, ras_affine, spacing_from_affine
from ..intensity import hu_to_model, suv_to_model, to_model_space
from ..io import load_nifti
from .study import StudyRecord
from .suv import activity_to_suv

__all__ = [
    "PreprocessConfig",
    "PreprocessedStudy",
    "ALLOWED_SPACINGS",
    "PREPROCESS_VERSION",
    "AIR_HU",
    "OUTSIDE_BODY_MODEL",
    "load_study_images",
    "body_mask",
    "preprocess_study",
    "target_affine",
    "resample",
    "default_shape",
    "PAPER_EXTENT_MM",
]

logger = logging.getLogger(__name__)

ALLOWED_SPACINGS = (2.0, 4.0, 8.0, 16.0)
PREPROCESS_VERSION = 1  # bump when the code below changes its output; old caches are then rebuilt
AIR_HU = -1000.0
#: model-space (CT, PET) values of what lies outside the body: air and no uptake (what networks are padded with)
OUTSIDE_BODY_MODEL: tuple[float, float] = (float(hu_to_model(np.float32(AIR_HU))), float(suv_to_model(np.float32(0.0))))
PAPER_EXTENT_MM = (448.0, 448.0, 768.0)  # the paper's 224 x 224 x 384 voxels at 2 mm
_CT_SOURCES = ("auto", "ctres", "ct")
_DTYPES = ("float16", "float32")
_MASK_WORK_SPACING_MM = 4.0  # the body mask is found on a grid about this coarse in x/y


def default_shape(spacing: float) -> tuple[int, int, int]:
    """The paper's field of view (448 x 448 x 768 mm) at ``spacing``: 2 mm -> (224, 224, 384), 16 mm -> (28, 28, 48)."""
    if isinstance(spacing, bool) or not isinstance(spacing, int | float) or float(spacing) not in ALLOWED_SPACINGS:
        raise InputError(f"spacing must be one of {[int(s) for s in ALLOWED_SPACINGS]} mm, got {spacing!r}")
    return tuple(int(round(extent / float(spacing))) for extent in PAPER_EXTENT_MM)


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that changes the cached arrays; its hash names the cache folder.

    Args:
        spacing: isotropic voxel size in mm, one of 2, 4, 8, 16.
        shape: output (X, Y, Z) voxels; the paper uses (224, 224, 384) at 2 mm, (56, 56, 96) at 8 mm.
        body_threshold_hu: CT level separating body from air for the body mask.
        mask_outside_body: set CT to air and PET to zero outside the body (removes the table).
        anti_alias: Gaussian pre-filter (sigma = (factor - 1) / 2 voxels) when downsampling.
        ct_source: "auto" (CTres if present, else CT resampled to the PET grid), "ctres" or "ct".
        include_organs: also cache organs.nii.gz (nearest-neighbour) when a study has one.
        dtype: storage dtype of the model-space arrays.
    """

    spacing: float = 8.0
    shape: tuple[int, int, int] = (56, 56, 96)
    body_threshold_hu: float = -500.0
    mask_outside_body: bool = True
    anti_alias: bool = True
    ct_source: str = "auto"
    include_organs: bool = True
    dtype: str = "float16"

    def __post_init__(self) -> None:
        spacing = self.spacing
        if isinstance(spacing, bool) or not isinstance(spacing, int | float) or float(spacing) not in ALLOWED_SPACINGS:
            raise InputError(f"spacing must be one of {[int(s) for s in ALLOWED_SPACINGS]} mm, got {spacing!r}")
        object.__setattr__(self, "spacing", float(spacing))
        shape = tuple(self.shape) if isinstance(self.shape, list | tuple) else None
        if shape is None or len(shape) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                                   for n in shape):
            raise InputError(f"shape must be three positive integers (X, Y, Z), got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        if not -1000.0 < float(self.body_threshold_hu) < 200.0:
            raise InputError(f"body_threshold_hu must be in (-1000, 200) HU, got {self.body_threshold_hu!r}")
        object.__setattr__(self, "body_threshold_hu", float(self.body_threshold_hu))
        if self.ct_source not in _CT_SOURCES:
            raise InputError(f"ct_source must be one of {_CT_SOURCES}, got {self.ct_source!r}")
        if self.dtype not in _DTYPES:
            raise InputError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        for name in ("mask_outside_body", "anti_alias", "include_organs"):
            if not isinstance(getattr(self, name), bool):
                raise InputTypeError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown preprocessing option(s) {unknown}; allowed: {sorted(known)}")
        data = dict(values)
        if "shape" in data and isinstance(data["shape"], list):
            data["shape"] = tuple(data["shape"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        return data

    @property
    def hash(self) -> str:
        """12 hex digits over the options and :data:`PREPROCESS_VERSION`."""
        payload = json.dumps({"version": PREPROCESS_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def grid(self) -> VolumeGrid:
        return VolumeGrid(self.shape, (self.spacing,) * 3)

    @property
    def affine(self) -> np.ndarray:
        """The model-frame affine (geometry.ras_affine: x/y centred, z = 0 at the top slice)."""
        return ras_affine(self.shape, (self.spacing,) * 3)


@dataclass
class PreprocessedStudy:
    volume: np.ndarray  # (2, X, Y, Z) float32, model space, channel 0 CT, 1 PET
    organs: np.ndarray | None  # (X, Y, Z) uint8 TotalSegmentator ids, or None
    scanner_affine: np.ndarray  # voxel -> scanner RAS mm of the output grid
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- loading


def _load(path: Path, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """load_nifti (canonical RAS) with a message naming the file when it is truncated or corrupt."""
    try:
        array, affine = load_nifti(path, dtype=dtype)
    except (EOFError, OSError, zlib.error, ValueError) as error:
        raise InputError(f"cannot read {path.name} (truncated or corrupt?): {type(error).__name__}: {error}") from None
    if array.ndim == 4 and array.shape[3] == 1:  # some converters write (x, y, z, 1)
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(f"{path.name} is not a 3D volume: shape {array.shape}")
    return array, affine


def load_study_images(
    study: StudyRecord, ct_source: str = "auto", include_organs: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, dict[str, str]]:
    """(CT in HU, SUV, organ labels or None, PET-grid affine, sources) on the PET grid, canonical RAS."""
    sources: dict[str, str] = {}
    if study.suv is not None:
        suv, affine = _load(study.suv)
        sources["pet"] = "SUV"
    elif study.pet is not None:
        if study.injected_dose_bq is None or study.uptake_time_s is None:
            raise InputError("PET in Bq/mL needs injected_dose_bq and uptake_time_s to become SUV")
        activity, affine = _load(study.pet)
        suv = activity_to_suv(activity, study.injected_dose_bq, study.uptake_time_s, study.demographics.weight)
        sources["pet"] = "PET (Bq/mL) -> SUV"
    else:
        raise InputError("study has neither SUV.nii.gz nor PET.nii.gz")
    suv = np.nan_to_num(suv, nan=0.0, posinf=0.0, neginf=0.0)

    if ct_source == "ctres":
        ct_path = study.ctres
    elif ct_source == "ct":
        ct_path = study.ct
    else:
        ct_path = study.ctres or study.ct
    if ct_path is None:
        raise InputError(f"ct_source={ct_source!r} but the study has no such CT file")
    ct, ct_affine = _load(ct_path)
    sources["ct"] = ct_path.name
    ct = np.nan_to_num(ct, nan=AIR_HU)
    if ct.shape != suv.shape or not np.allclose(ct_affine, affine, atol=1e-3):
        ct = resample(ct, ct_affine, suv.shape, affine, order=1, cval=AIR_HU, anti_alias=True)
        sources["ct"] += " resampled to the PET grid"

    organs = None
    if include_organs and study.organs is not None:
        labels, label_affine = _load(study.organs, dtype=np.int32)
        if labels.shape != suv.shape or not np.allclose(label_affine, affine, atol=1e-3):
            labels = resample(labels, label_affine, suv.shape, affine, order=0, cval=0)
        organs = labels
    return ct, suv, organs, affine, sources


# ---------------------------------------------------------------------------------- geometry


def resample(
    array: np.ndarray,
    source_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
    anti_alias: bool = False,
) -> np.ndarray:
    """``array`` (voxels -> mm by ``source_affine``) sampled at the voxel centres of the target grid."""
    mapping = np.linalg.inv(source_affine) @ target_affine
    data = array
    if order == 0:
        data = np.asarray(array)
    else:
        data = np.asarray(array, dtype=np.float32)
        if anti_alias:
            factors = spacing_from_affine(target_affine) / np.asarray(spacing_from_affine(source_affine))
            sigma = np.maximum(0.0, (factors - 1.0) / 2.0)
            if np.any(sigma > 0.1):
                data = ndimage.gaussian_filter(data, sigma=sigma, mode="nearest")
    out = ndimage.affine_transform(
        data,
        mapping[:3, :3],
        offset=mapping[:3, 3],
        output_shape=tuple(int(n) for n in target_shape),
        order=order,
        mode="constant",
        cval=cval,
        prefilter=False,
    )
    return out


def body_mask(ct: np.ndarray, affine: np.ndarray, threshold_hu: float = -500.0) -> tuple[np.ndarray, np.ndarray]:
    """(mask, mask affine) on a grid strided in x/y to about 4 mm; the patient table is not body."""
    spacing = spacing_from_affine(affine)
    steps = [max(1, int(round(_MASK_WORK_SPACING_MM / s))) for s in spacing[:2]] + [1]
    coarse = ct[:: steps[0], :: steps[1], :: steps[2]]
    coarse_affine = affine @ np.diag([steps[0], steps[1], steps[2], 1.0])
    above = coarse > threshold_hu
    if not above.any():
        raise InputError(f"no body found: no CT voxel above {threshold_hu:g} HU")
    ball = ndimage.generate_binary_structure(3, 1)
    opened = ndimage.binary_opening(above, structure=ball)
    if not opened.any():
        opened = above
    labels, count = ndimage.label(opened, structure=ball)
    if count > 1:
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
        opened = labels == (1 + int(np.argmax(sizes)))
    else:
        opened = labels > 0
    # grow back what the opening shaved off the skin, but only into voxels that were above threshold
    mask = ndimage.binary_dilation(opened, structure=ball, iterations=2) & above
    for k in range(mask.shape[2]):
        if mask[:, :, k].any():
            mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask, coarse_affine


def target_affine(
    shape: tuple[int, int, int], spacing: float, center_xy_mm: tuple[float, float], top_mm: float
) -> np.ndarray:
    """Voxel -> scanner mm of a grid centred on ``center_xy_mm`` whose top slice's upper edge is ``top_mm``."""
    nx, ny, nz = shape
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [
        center_xy_mm[0] - (nx - 1) / 2.0 * spacing,
        center_xy_mm[1] - (ny - 1) / 2.0 * spacing,
        top_mm - spacing / 2.0 - (nz - 1) * spacing,
    ]
    return affine


def _voxel_to_mm(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    return (affine[:3, :3] @ np.asarray(index, dtype=float).T).T + affine[:3, 3]


def preprocess_study(study: StudyRecord, config: PreprocessConfig) -> PreprocessedStudy:
    """Run the whole chain for one study; raises ValueError/OSError on unusable data (the cache skips it)."""
    ct, suv, organs, affine, sources = load_study_images(study, config.ct_source, config.include_organs)
    if ct.ndim != 3:
        raise InputError(f"expected 3D images, got CT shape {ct.shape}")
    mask, mask_affine = body_mask(ct, affine, config.body_threshold_hu)

    xs, ys, zs = np.nonzero(mask)
    corners = _voxel_to_mm(mask_affine, np.array([[xs.min(), ys.min(), zs.max() + 0.5], [xs.max(), ys.max(), 0]]))
    center_xy = ((corners[0, 0] + corners[1, 0]) / 2.0, (corners[0, 1] + corners[1, 1]) / 2.0)
    top_mm = float(corners[0, 2])
    out_affine = target_affine(config.shape, config.spacing, center_xy, top_mm)

    ct_out = resample(ct, affine, config.shape, out_affine, 1, AIR_HU, config.anti_alias)
    suv_out = resample(suv, affine, config.shape, out_affine, 1, 0.0, config.anti_alias)
    suv_out = np.clip(suv_out, 0.0, None)
    body = None
    if config.mask_outside_body:
        body = resample(mask.astype(np.float32), mask_affine, config.shape, out_affine, 1, 0.0, True) > 0.1
        ct_out[~body] = AIR_HU
        suv_out[~body] = 0.0
    organs_out = None
    if organs is not None:
        organs_out = resample(organs, affine, config.shape, out_affine, order=0, cval=0)
        if body is not None:
            organs_out[~body] = 0
        if organs_out.max(initial=0) > 255 or organs_out.min(initial=0) < 0:
            raise InputError(f"organ labels must be in [0, 255], got [{organs_out.min()}, {organs_out.max()}]")
        organs_out = organs_out.astype(np.uint8)

    ct_model, pet_model = to_model_space(ct_out, suv_out)
    volume = np.stack([ct_model, pet_model]).astype(np.float32)

    bottom_mm = float(_voxel_to_mm(affine, np.array([[0, 0, -0.5]]))[0, 2])
    bottom_mm = min(bottom_mm, float(_voxel_to_mm(affine, np.array([[0, 0, ct.shape[2] - 0.5]]))[0, 2]))
    centres_z = out_affine[2, 3] + out_affine[2, 2] * np.arange(config.shape[2])
    info = {
        "valid_slices": int(np.count_nonzero(centres_z >= bottom_mm)),
        "top_clipped": bool(zs.max() >= mask.shape[2] - 1),
        "body_top_mm": round(top_mm, 2),
        "body_center_xy_mm": [round(float(c), 2) for c in center_xy],
        "native_shape": list(ct.shape),
        "native_spacing_mm": [round(s, 4) for s in spacing_from_affine(affine)],
        "sources": sources,
        "suv_max": round(float(suv_out.max()), 3),
    }
    if info["top_clipped"]:
        logger.info("%s: the body touches the top of the scan; the vertex may be outside the field of view", study.key)
    return PreprocessedStudy(volume=volume, organs=organs_out, scanner_affine=out_affine, info=info)
