"""Where a CT sits in the cascade's body frame: the distance from the vertex down to the CT's top slice.

The model's frame is vertex-aligned (geometry.py): the top of the head is the top of the grid and
the body runs down a length that follows height. A real CT is usually a chest or an abdomen, so
its place in that frame must be given (``--ct-offset-mm``) or estimated. The estimate matches two
axial profiles of the CT, the body's and the lungs' cross-sectional area per slice, against the
same profiles of a stage-1 volume the model samples for these demographics, sliding the CT along
the frame; each profile gets its own least-squares scale, so a patient larger than the model's
expectation still matches by shape, and the body's scale is the body-size ratio that the
demographics check reads. Above the vertex the frame is air, so a CT that includes the top of
the head is placed by it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..data.preprocess import body_mask
from ..errors import InputError
from ..geometry import spacing_from_affine

__all__ = ["Placement", "AxialProfiles", "ct_profiles", "volume_profiles", "estimate_offset", "fit_at",
           "PROFILE_STEP_MM", "MAX_OFFSET_MM", "BODY_SIZE_WARNING"]

#: the profiles' sampling along z (mm)
PROFILE_STEP_MM = 8.0
#: a CT's top slice may lie at most this far below the vertex (``--ct-offset-mm`` range: the body frame's length)
MAX_OFFSET_MM = 2000.0
#: body cross-section of the CT over the model's expectation outside this range: the demographics look wrong
BODY_SIZE_WARNING = (0.6, 1.65)
_LUNG_HU = -400.0
_BODY_HU = -500.0
_LUNG_WEIGHT = 2.0  # the lungs' profile is the sharper landmark
_MIN_OVERLAP_MM = 96.0


@dataclass(frozen=True)
class AxialProfiles:
    """Body and lung cross-sectional areas (cm^2) per ``PROFILE_STEP_MM`` slab, from the top of a volume down."""

    body: np.ndarray
    lung: np.ndarray

    @property
    def length_mm(self) -> float:
        return len(self.body) * PROFILE_STEP_MM


@dataclass(frozen=True)
class Placement:
    """The CT's place in the body frame: ``offset_mm`` from the vertex down to the upper edge of its top slice.

    ``method`` is "given" (``--ct-offset-mm``) or "profile" (estimated); ``center_xy_mm`` is the
    RAS x/y (scanner mm) of the frame's axis, the centre of the CT's body; ``body_size_ratio`` the CT's
    body cross-section over the model's expectation for the demographics at that level (None when
    not measured); ``match_error`` the profile fit's normalised residual (0 = perfect).
    """

    offset_mm: float
    method: str
    center_xy_mm: tuple[float, float]
    ct_top_mm: float
    body_size_ratio: float | None = None
    match_error: float | None = None

    @property
    def vertex_mm(self) -> float:
        """Scanner z (RAS mm) of the vertex: the top edge of the model's frame."""
        return self.ct_top_mm + self.offset_mm

    def to_dict(self) -> dict:
        record = asdict(self)
        record["center_xy_mm"] = [round(float(v), 2) for v in self.center_xy_mm]
        for key in ("offset_mm", "ct_top_mm", "body_size_ratio", "match_error"):
            if record[key] is not None:
                record[key] = round(float(record[key]), 3)
        record["vertex_mm"] = round(self.vertex_mm, 2)
        return record


def ct_profiles(hu: np.ndarray, affine: np.ndarray) -> tuple[AxialProfiles, tuple[float, float], float]:
    """(profiles, body centre x/y in scanner mm, upper edge z of the top slice) of a canonical RAS CT in HU."""
    mask, mask_affine = body_mask(hu, affine, _BODY_HU)
    steps = [max(1, round(a / b)) for a, b in zip(spacing_from_affine(mask_affine), spacing_from_affine(affine))]
    coarse = hu[:: steps[0], :: steps[1], :: steps[2]][: mask.shape[0], : mask.shape[1], : mask.shape[2]]
    lung = mask & (coarse < _LUNG_HU)
    # lungs are a large enclosed air volume: drop bowel gas and the air next to the skin by size
    lung = ndimage.binary_opening(lung, structure=ndimage.generate_binary_structure(3, 1))
    sx, sy, sz = spacing_from_affine(mask_affine)
    area = sx * sy / 100.0  # cm^2 per voxel
    body_area = mask.sum(axis=(0, 1)) * area
    lung_area = lung.sum(axis=(0, 1)) * area
    xs, ys, _ = np.nonzero(mask)
    centre = mask_affine[:3, :3] @ np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, 0.0])
    centre = centre + mask_affine[:3, 3]
    top_mm = float(affine[2, 3] + affine[2, 2] * (hu.shape[2] - 0.5))
    # slices run inferior -> superior in RAS; profiles run from the top down
    return (_resample_profile(body_area[::-1], lung_area[::-1], sz), (float(centre[0]), float(centre[1])), top_mm)


def volume_profiles(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> AxialProfiles:
    """Profiles of a model-frame volume in HU (vertex at the top slice): the model's expectation."""
    body = hu > _BODY_HU
    for k in range(body.shape[2]):
        if body[:, :, k].any():
            body[:, :, k] = ndimage.binary_fill_holes(body[:, :, k])
    lung = body & (hu < _LUNG_HU)
    area = spacing_mm[0] * spacing_mm[1] / 100.0
    return _resample_profile(body.sum(axis=(0, 1))[::-1] * area, lung.sum(axis=(0, 1))[::-1] * area, spacing_mm[2])


def _resample_profile(body: np.ndarray, lung: np.ndarray, step_mm: float) -> AxialProfiles:
    """Slice profiles at ``step_mm`` averaged onto ``PROFILE_STEP_MM`` slabs from the top edge down."""
    length = len(body) * step_mm
    count = max(1, int(math.ceil(length / PROFILE_STEP_MM)))
    edges = np.arange(len(body) + 1) * step_mm
    out = []
    for values in (np.asarray(body, float), np.asarray(lung, float)):
        cumulative = np.concatenate([[0.0], np.cumsum(values * step_mm)])
        slab_edges = np.minimum(np.arange(count + 1) * PROFILE_STEP_MM, length)
        integral = np.interp(slab_edges, edges, cumulative)
        widths = np.maximum(np.diff(slab_edges), 1e-6)
        out.append(np.diff(integral) / widths)
    return AxialProfiles(body=out[0], lung=out[1])


def _padded(reference: AxialProfiles, n_ct: int, body_length_mm: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The reference's profiles over the model's body with ``n_ct`` slabs of air above the vertex."""
    n_ref = min(len(reference.body), int(math.ceil(body_length_mm / PROFILE_STEP_MM)))
    if n_ref < 2:
        raise InputError("the model's body frame is too short to place the CT in")
    return (np.concatenate([np.zeros(n_ct), reference.body[:n_ref]]),
            np.concatenate([np.zeros(n_ct), reference.lung[:n_ref]]), n_ref)


def fit_at(ct: AxialProfiles, reference: AxialProfiles, body_length_mm: float, offset_mm: float
           ) -> tuple[float, float]:
    """(body-size ratio, normalised residual) of ``ct`` placed ``offset_mm`` below the vertex of ``reference``.

    ``reference`` runs from the vertex down over the model's body (``body_length_mm``); above the
    vertex it is air. The CT's slabs inside ``(-inf, body_length_mm)`` are compared with the
    reference after fitting one scale per profile (clamped to [0.4, 2.5]); the residual is
    normalised by the CT's own energy and the lung profile weighs ``_LUNG_WEIGHT``. A placement that
    leaves part of the CT below the model's body is judged on what overlaps, plus a penalty for
    the part it could have checked and does not (a whole-body CT is not penalised for its legs).
    """
    n_ct = len(ct.body)
    ref_body, ref_lung, n_ref = _padded(reference, n_ct, body_length_mm)
    shift = int(round(offset_mm / PROFILE_STEP_MM))
    start = min(max(shift + n_ct, 0), n_ct + n_ref)  # index of the CT's first slab in the padded reference
    stop = min(start + n_ct, n_ct + n_ref)
    count = stop - start
    if count <= 0:
        return 1.0, math.inf
    residual, energy, body_scale = 0.0, 1e-6, 1.0
    for weight, c, r in ((1.0, ct.body[:count], ref_body[start:stop]),
                         (_LUNG_WEIGHT, ct.lung[:count], ref_lung[start:stop])):
        scale = float(np.clip((c @ r) / (r @ r), 0.4, 2.5)) if r @ r > 0 else 1.0
        residual += weight * float(np.sum((c - scale * r) ** 2))
        energy += weight * float(np.sum(c ** 2))
        if weight == 1.0:
            body_scale = scale
    unchecked = max(0, min(n_ct, n_ref) - count)
    return body_scale, residual / energy + 0.5 * unchecked / min(n_ct, n_ref)


def estimate_offset(ct: AxialProfiles, reference: AxialProfiles, body_length_mm: float
                    ) -> tuple[float, float, float]:
    """(offset mm, body-size ratio, normalised residual) of the best slide of ``ct`` along ``reference`` (``fit_at``).

    Candidates run in ``PROFILE_STEP_MM`` steps from the CT's top far above the vertex (all but
    ``_MIN_OVERLAP_MM`` of it in air) to the CT overlapping the model's body by that much at its bottom.
    """
    n_ct = len(ct.body)
    _, _, n_ref = _padded(reference, n_ct, body_length_mm)
    min_overlap = min(n_ct, int(_MIN_OVERLAP_MM / PROFILE_STEP_MM), n_ref)
    best = (math.inf, 0.0, 1.0)
    for shift in range(-n_ct + min_overlap, n_ref - min_overlap + 1):
        scale, error = fit_at(ct, reference, body_length_mm, shift * PROFILE_STEP_MM)
        if error < best[0]:
            best = (error, shift * PROFILE_STEP_MM, scale)
    error, offset, scale = best
    return offset, scale, error
