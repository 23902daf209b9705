"""Insert FDG-avid lesions with known truth into an existing PET/CT pair.

    from petct_pipeline.lesions import insert_lesions
    result = insert_lesions(ct_hu, suv, affine, organs, diagnosis="LYMPHOMA", generator=3)
    result.ct, result.suv, result.instances, result.records   # result.save("out/")

The arrays stay on their own grid and orientation (internally the work is done on the
closest-canonical RAS view, a pure axis permutation/flip, so a flipped or permuted copy of a
study gets the same lesions in mm); the inputs are not modified. The records are measured on
the returned volumes, so lesions.json describes what was written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nibabel import orientations
from scipy import ndimage

from ..errors import InputError, InputTypeError
from ..intensity import HU_RANGE
from ..io import save_nifti, write_json
from ..seeds import check_seed
from ..subject_files import CT_FILENAME, LESIONS_FILENAME, LESIONS_JSON_FILENAME, PET_FILENAME
from .density import blend_ct, ct_noise_sd, default_lesion_hu
from .measure import background_shell, lesion_metrics, requested_quantity
from .placement import MIN_GAP_MM, Placement, place_lesions
from .psf import PSF_FWHM_MM
from .sampling import check_diagnosis, sample_lesion_specs
from .sites import SiteMaps
from .spec import LesionSpec, parse_lesion_specs
from .uptake import PV_COMPENSATION_MIN_DIAMETER_MM, LesionUptake, activity_pattern

__all__ = [
    "LESIONS_FILENAME",
    "LESIONS_JSON_FILENAME",
    "LesionInsertion",
    "insert_lesions",
]

#: a fixed stream of the seed, so the lesions of seed N do not share random numbers with other uses of N
_LESION_STREAM = 0x1E5104


@dataclass
class LesionInsertion:
    """The volumes with lesions (input grid and orientation), the instance map and what lesions.json holds."""

    ct: np.ndarray  # HU, float32 (lesion voxels rounded to whole HU, as int16 writers keep them)
    suv: np.ndarray  # SUVbw, float32
    instances: np.ndarray  # int16: 0 background, lesion ids 1..N
    affine: np.ndarray
    records: list[dict[str, Any]]
    diagnosis: str | None = None
    seed: int | None = None
    not_placed: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The content of lesions.json."""
        return {
            "synthetic": True,
            "generator": "petct_pipeline.lesions",
            "diagnosis": self.diagnosis,
            "seed": self.seed,
            "psf_fwhm_mm": PSF_FWHM_MM,
            "min_gap_mm": MIN_GAP_MM,
            "pv_compensation_min_diameter_mm": PV_COMPENSATION_MIN_DIAMETER_MM,
            "units": {"suv": "SUVbw (g/mL)", "hu": "HU", "volume": "mL", "tlg": "SUV x mL", "center": "RAS mm"},
            "files": {"instances": LESIONS_FILENAME},
            "n_lesions": len(self.records),
            "lesions": self.records,
            "not_placed": self.not_placed,
        }

    def save(self, out_dir: str | os.PathLike, volumes: bool = True) -> list[Path]:
        """Write lesions.nii.gz and lesions.json (and with ``volumes`` ct.nii.gz int16 and pet_suv.nii.gz)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        if volumes:
            ct = np.rint(np.clip(self.ct, *HU_RANGE)).astype(np.int16)
            written.append(save_nifti(ct, self.affine, out / CT_FILENAME, description="CT (HU) with lesions"))
            written.append(save_nifti(self.suv.astype(np.float32), self.affine, out / PET_FILENAME,
                                      description="PET (SUVbw) with lesions"))
        written.append(save_nifti(self.instances, self.affine, out / LESIONS_FILENAME, dtype=np.int16,
                                  description="lesion instances (0 background, 1..N)"))
        written.append(write_json(self.document(), out / LESIONS_JSON_FILENAME))
        return written


def _rng(generator: Any) -> tuple[np.random.Generator, int | None]:
    """numpy Generator for the lesions and the seed to record (None when not reproducible from a seed)."""
    if generator is None:
        return np.random.default_rng(), None
    if isinstance(generator, np.random.Generator):
        return generator, None
    if hasattr(generator, "initial_seed") and hasattr(generator, "manual_seed"):  # a torch.Generator
        seed = int(generator.initial_seed())
        return np.random.default_rng([seed, _LESION_STREAM]), seed
    seed = check_seed(generator, "generator (seed)")
    return np.random.default_rng([seed, _LESION_STREAM]), seed


def _check_volumes(ct: Any, suv: Any, affine: Any, organs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                         np.ndarray | None]:
    ct, suv = np.asarray(ct), np.asarray(suv)
    affine = np.asarray(affine, dtype=np.float64)
    if ct.ndim != 3 or suv.ndim != 3:
        raise InputError(f"CT and PET must be 3D volumes, got shapes {ct.shape} and {suv.shape}")
    if ct.shape != suv.shape:
        raise InputError(f"CT {ct.shape} and PET {suv.shape} are on different grids: resample one onto the other")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"affine must be an invertible 4x4 voxel-to-RAS-mm matrix, got {affine.tolist()}")
    for name, volume in (("CT", ct), ("PET", suv)):
        if not np.issubdtype(volume.dtype, np.number) or not np.isfinite(volume).all():
            raise InputTypeError(f"{name} must hold finite numbers, got dtype {volume.dtype}")
    if organs is not None:
        organs = np.asarray(organs)
        if organs.shape != ct.shape:
            raise InputError(f"organs {organs.shape} must be on the CT/PET grid {ct.shape}")
        if not np.issubdtype(organs.dtype, np.integer):
            if not np.all(np.mod(organs, 1) == 0):
                raise InputTypeError(f"organs must be an integer label map, got dtype {organs.dtype}")
            organs = organs.astype(np.int32)
    return ct, suv, affine, organs


def _specs(diagnosis: str | None, lesions: Any, maps: SiteMaps, rng: np.random.Generator
           ) -> tuple[list[LesionSpec], str | None]:
    if diagnosis is not None and lesions is not None:
        raise InputError("give either diagnosis or lesions (a spec list), not both")
    if lesions is not None:
        return parse_lesion_specs(lesions), None
    diagnosis = check_diagnosis("NEGATIVE" if diagnosis is None else diagnosis)
    return sample_lesion_specs(diagnosis, rng, maps.available_sites()), diagnosis


def _exclusion(instances_box: np.ndarray, own: int, spacing) -> np.ndarray | None:
    """Voxels closer than MIN_GAP_MM to another lesion (they are no lesion's background)."""
    others = (instances_box > 0) & (instances_box != own)
    if not others.any():
        return None
    return ndimage.distance_transform_edt(~others, sampling=spacing) < MIN_GAP_MM


def _insert_one(p: Placement, lesion_id: int, ct: np.ndarray, suv: np.ndarray, instances: np.ndarray,
                maps: SiteMaps, rng: np.random.Generator) -> dict[str, Any]:
    """Write one lesion into ``ct``/``suv``; returns what the record needs from its making."""
    spec, sl = p.spec, p.box.slices
    body = maps.body[sl]
    shell, _ = background_shell(p.mask, p.region, body, maps.spacing, _exclusion(instances[sl], lesion_id,
                                                                                  maps.spacing))
    if not shell.any():  # coarse grids: no voxel of the site around the lesion; use the body around it
        shell = body & ~p.mask
    if not p.mask.any() or not shell.any():
        raise InputError(f"lesion {spec.index}: a {spec.diameter_mm:g} mm lesion has no voxels or no background "
                         f"around it on this grid ({', '.join(f'{v:g}' for v in maps.spacing)} mm voxels); use a "
                         "finer grid or a larger diameter")
    uptake = LesionUptake.build(suv[sl], activity_pattern(p.occupancy, p.core, maps.spacing, rng), body, p.mask,
                                shell, maps.spacing, rng)
    notes: list[str] = []
    target = spec.value
    # the value with no lesion at all (e.g. the background's own SUVmax inside the mask) must be exceeded
    floor = max(uptake.measure(spec.quantity, 0.0),
                1.0 if spec.quantity == "lesion_to_background" else uptake.background_mean)
    if target <= floor:
        if not spec.sampled:
            what = "its background's own maximum inside it" if spec.quantity == "suv_max" else "its background"
            raise InputError(f"lesion {spec.index}: {spec.quantity}={target:g} is not above {what} "
                             f"({floor:.2f}, {p.site} around the lesion): ask for more, or for "
                             f"lesion_to_background > 1")
        notes.append(f"sampled {spec.quantity} {target:g} raised to 1.5 x its background ({floor:.2f})")
        target = 1.5 * floor
    compensate = p.diameter_mm >= PV_COMPENSATION_MIN_DIAMETER_MM
    scale = (uptake.calibrated_scale(spec.quantity, target) if compensate
             else uptake.uncompensated_scale(spec.quantity, target))
    suv[sl] = uptake.written(scale).astype(np.float32)
    around = shell & p.region if (shell & p.region).any() else p.region & ~p.mask
    hu = spec.hu if spec.hu is not None else default_lesion_hu(p.site, ct[sl][around])
    soft = body & ~p.mask & (ct[sl] > -200) & (ct[sl] < 200)
    noise_sd = ct_noise_sd(ct[sl], around, soft)
    # the written mask is all lesion; the partly covered voxels just outside it blend the edge
    ct[sl] = blend_ct(ct[sl], np.where(p.mask, 1.0, p.occupancy), p.core, hu, noise_sd, rng)
    return {"target": target, "true_value": uptake.true_value(spec.quantity, scale), "compensated": compensate,
            "hu": hu, "notes": notes}


def _value(value: float, digits: int = 4) -> float | None:
    """A measured number for lesions.json (None where it is undefined, e.g. no background voxel: JSON has no NaN)."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def _record(p: Placement, lesion_id: int, made: dict[str, Any], ct: np.ndarray, suv: np.ndarray,
            instances: np.ndarray, maps: SiteMaps) -> dict[str, Any]:
    """The lesions.json entry, measured on the final volumes."""
    sl = p.box.slices
    mask = instances[sl] == lesion_id
    shell, background_region = background_shell(mask, p.region, maps.body[sl], maps.spacing,
                                                 _exclusion(instances[sl], lesion_id, maps.spacing))
    metrics = lesion_metrics(ct[sl], suv[sl], mask, shell, maps.spacing)
    spec = p.spec
    measured = requested_quantity(spec.quantity, suv[sl], mask, shell)
    target = made["target"]
    record = {
        "id": lesion_id,
        "site": p.site,
        "organ": maps.organ_at(p.center_voxel),
        "center_mm": [round(float(c), 2) for c in p.center_mm],
        "diameter_mm": round(p.diameter_mm, 2),
        "shape": spec.shape,
        "necrotic_fraction": spec.necrotic_fraction,
        **{k: _value(metrics[k]) for k in ("volume_ml", "suv_mean", "suv_max", "suv_peak", "tlg", "hu_mean",
                                           "lesion_to_background", "background_suv_mean", "background_suv_sd")},
        "background_region": background_region,
        "lesion_hu": round(float(made["hu"]), 1),
        "requested": dict(spec.requested or {}),
        "requested_quantity": spec.quantity,
        "requested_value": round(float(target), 4),
        "measured_value": _value(measured),
        "error_pct": round(100.0 * (measured - target) / target, 2),
        "pv_compensated": bool(made["compensated"]),
        "activity_value": round(float(made["true_value"]), 4),
        "partial_volume_loss_pct": round(100.0 * (1.0 - measured / made["true_value"]), 2),
        "notes": p.notes + made["notes"],
    }
    if not made["compensated"]:
        record["notes"].append(f"smaller than {PV_COMPENSATION_MIN_DIAMETER_MM:g} mm: not compensated for partial "
                               f"volume; the written {spec.quantity} is {record['partial_volume_loss_pct']:.1f} % "
                               f"below the inserted activity's")
    return record


def insert_lesions(
    ct: np.ndarray,
    suv: np.ndarray,
    affine: np.ndarray,
    organs: np.ndarray | None = None,
    *,
    diagnosis: str | None = None,
    lesions: Sequence[Mapping[str, Any] | LesionSpec] | None = None,
    generator: int | np.random.Generator | Any | None = 0,
) -> LesionInsertion:
    """Insert lesions into a PET/CT pair: CT in HU, SUV in SUVbw, one (x, y, z) grid described by ``affine``.

    ``organs``: an optional TotalSegmentator-id label map on the same grid (needed for liver, spleen
    and organ-named lesions). Give ``diagnosis`` (NEGATIVE, LYMPHOMA, MELANOMA, LUNG_CANCER: lesions
    sampled as AutoPET's positives present) or ``lesions`` (spec objects as in ``--lesions SPEC.json``);
    neither means NEGATIVE. ``generator``: a seed, a ``numpy.random.Generator`` or a ``torch.Generator``
    (its initial seed is used, so the lesions do not consume the pipeline's random stream); the same
    seed gives the same lesions. Raises ``InputError`` naming the lesion and field for any bad request;
    the work is done on copies, so nothing the caller holds is changed and nothing is written.
    """
    ct, suv, affine, organs = _check_volumes(ct, suv, affine, organs)
    rng, seed = _rng(generator)
    ornt = orientations.io_orientation(affine)
    canonical = orientations.inv_ornt_aff(ornt, ct.shape)
    ct_c = np.array(orientations.apply_orientation(ct, ornt), dtype=np.float32)
    suv_c = np.array(orientations.apply_orientation(suv, ornt), dtype=np.float32)
    organs_c = None if organs is None else np.ascontiguousarray(orientations.apply_orientation(organs, ornt))
    maps = SiteMaps(ct_c, affine @ canonical, organs_c)
    specs, diagnosis = _specs(diagnosis, lesions, maps, rng)
    placements, not_placed = place_lesions(maps, specs, rng)  # every check before any voxel changes
    instances = np.zeros(ct_c.shape, np.int16)
    for lesion_id, p in enumerate(placements, start=1):
        instances[p.box.slices][p.mask] = lesion_id
    made = [_insert_one(p, i, ct_c, suv_c, instances, maps, rng) for i, p in enumerate(placements, start=1)]
    records = [_record(p, i, m, ct_c, suv_c, instances, maps) for i, (p, m) in enumerate(zip(placements, made),
                                                                                         start=1)]
    back = orientations.ornt_transform(orientations.axcodes2ornt("RAS"), ornt)

    def restore(volume: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(orientations.apply_orientation(volume, back))

    return LesionInsertion(ct=restore(ct_c), suv=restore(suv_c), instances=restore(instances), affine=affine.copy(),
                           records=records, diagnosis=diagnosis, seed=seed, not_placed=not_placed)
