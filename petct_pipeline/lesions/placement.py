"""Placing lesions: a given centre is checked, a missing one is drawn inside the lesion's site.

A lesion covers only voxels of its region (``sites.SiteMaps.region``: in the body, not air, in
its site or organ). A given ``center_mm`` must be inside the volume, in the body, not in air and
in the lesion's site; the shape is clipped to the region, and if less than half of it is left
that is an error. A drawn centre must hold nearly all of the shape (90 %) in the region; the rest
is clipped (a node flattened against a vessel or muscle, as real nodes are).
Lesions keep at least 2 PSF FWHM (12 mm) between their edges, so one's blurred activity (below
0.01 % of it at that distance) does not change another's measured uptake or background; a given
centre closer than that to another lesion is an error naming both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .box import VoxelBox, box_around
from .measure import SHELL_GAP_MM, SHELL_WIDTH_MM
from .psf import PSF_FWHM_MM
from .shapes import LesionShape, make_shape
from .sites import AIR_HU, SiteMaps, site_name
from .spec import DIAMETER_RANGE_MM, LesionSpec

__all__ = ["MIN_GAP_MM", "MIN_INSIDE_FRACTION", "Placement", "place_lesions"]

MIN_GAP_MM = 2.0 * PSF_FWHM_MM
MIN_INSIDE_FRACTION = 0.5
_DRAWN_INSIDE_FRACTION = 0.9
_TRIES_PER_SIZE = 150
#: a drawn lesion that fits nowhere is shrunk by this factor, down to 6 mm, before it is given up
_SHRINK = 0.85
_MIN_DRAWN_DIAMETER_MM = 6.0


@dataclass
class Placement:
    """One placed lesion: its spec, centre, shape and partial-volume occupancy in its box (region-clipped)."""

    spec: LesionSpec
    site: str
    key: str
    center_voxel: np.ndarray
    center_mm: np.ndarray
    shape: LesionShape
    box: VoxelBox
    region: np.ndarray
    occupancy: np.ndarray
    core: np.ndarray | None
    mask: np.ndarray
    diameter_mm: float
    notes: list[str] = field(default_factory=list)


def _fmt(center) -> str:
    return "[" + ", ".join(f"{c:g}" for c in center) + "]"


def _box_radius(shape: LesionShape) -> float:
    # the measuring shell reaches FWHM + 10 mm beyond the edge; the PSF's 3 sigma (7.6 mm) is within that
    return shape.bounding_radius_mm + SHELL_GAP_MM + SHELL_WIDTH_MM


def _build(maps: SiteMaps, key: str, center: np.ndarray, shape: LesionShape
           ) -> tuple[VoxelBox, np.ndarray, np.ndarray, np.ndarray, float]:
    """(box, region, full occupancy, clipped occupancy, inside fraction) of a shape at ``center``."""
    box = box_around(center, _box_radius(shape), maps.spacing, maps.ct.shape)
    offsets = box.offsets_mm(center, maps.affine)
    full = shape.occupancy(offsets, maps.affine[:3, :3])
    region = maps.region(key, box)
    clipped = full * region
    total = float(full.sum())
    return box, region, full, clipped, (float(clipped.sum()) / total if total > 0 else 0.0)


def _mask(clipped: np.ndarray) -> np.ndarray:
    mask = clipped >= 0.5
    if not mask.any():  # a lesion smaller than a voxel: its most-covered voxel
        mask = np.zeros(clipped.shape, bool)
        mask[np.unravel_index(int(np.argmax(clipped)), clipped.shape)] = True
    return mask


def _gap_to_others(box: VoxelBox, mask: np.ndarray, instances: np.ndarray, spacing) -> tuple[float, int]:
    """(smallest edge-to-edge distance in mm to another lesion inside the box, its id), (inf, 0) if none."""
    others = instances[box.slices]
    if not others.any():
        return float("inf"), 0
    distance, nearest = ndimage.distance_transform_edt(others == 0, sampling=spacing, return_indices=True)
    where = np.argmin(np.where(mask, distance, np.inf))
    index = np.unravel_index(int(where), mask.shape)
    lesion = int(others[tuple(nearest[:, index[0], index[1], index[2]])])
    return float(distance[index]), lesion


def _core(shape: LesionShape, spec_fraction: float, box: VoxelBox, center: np.ndarray, maps: SiteMaps,
          region: np.ndarray) -> np.ndarray | None:
    if spec_fraction <= 0:
        return None
    offsets = box.offsets_mm(center, maps.affine)
    return shape.occupancy(offsets, maps.affine[:3, :3], scale=spec_fraction ** (1.0 / 3.0)) * region


def _place_given(maps: SiteMaps, spec: LesionSpec, instances: np.ndarray, rng: np.random.Generator,
                 order: dict[int, int]) -> Placement:
    key = maps.key(spec)
    where = f"lesion {spec.index}: center_mm={_fmt(spec.center_mm)}"
    center = maps.voxel_of(spec.center_mm)
    if not maps.inside(center):
        raise InputError(f"{where} is outside the volume ({maps.extent_mm()} mm)")
    voxel = tuple(int(round(v)) for v in center)
    if not maps.body[voxel]:
        raise InputError(f"{where} is outside the body")
    one = VoxelBox(voxel, tuple(v + 1 for v in voxel))
    around = maps.ct[tuple(slice(max(0, v - 1), v + 2) for v in voxel)]
    if float(np.median(around)) < AIR_HU:  # the same 3-voxel median as SiteMaps.air
        raise InputError(f"{where} is in air ({maps.ct[voxel]:.0f} HU)")
    if not maps.region(key, one)[0, 0, 0]:
        found = maps.organ_at(center)
        there = f"the organ map has {found!r} there" if found else f"{maps.ct[voxel]:.0f} HU there"
        raise InputError(f"{where} is not in {spec.where} ({there})")
    shape = make_shape(spec.shape, spec.diameter_mm, rng)
    box, region, _, clipped, inside = _build(maps, key, center, shape)
    if inside < MIN_INSIDE_FRACTION:
        raise InputError(f"{where}: only {100 * inside:.0f} % of a diameter_mm={spec.diameter_mm:g} lesion fits "
                         f"inside {spec.where} there (at least {100 * MIN_INSIDE_FRACTION:.0f} % must)")
    mask = _mask(clipped)
    gap, other = _gap_to_others(box, mask, instances, maps.spacing)
    if gap < MIN_GAP_MM:
        raise InputError(f"{where} overlaps lesion {order[other]}: their edges are {gap:.1f} mm apart, lesions need "
                         f">= {MIN_GAP_MM:g} mm (2 PSF FWHM) so one's uptake does not change the other's")
    placement = Placement(spec, site_name(spec), key, center, np.asarray(spec.center_mm, float), shape, box, region,
                          clipped, _core(shape, spec.necrotic_fraction, box, center, maps, region), mask,
                          spec.diameter_mm)
    if inside < 1.0 - 1e-6:
        placement.notes.append(f"clipped to {spec.where}: {100 * (1 - inside):.1f} % of the shape lay outside it")
    return placement


def _place_drawn(maps: SiteMaps, spec: LesionSpec, instances: np.ndarray, rng: np.random.Generator
                 ) -> Placement | None:
    key = maps.key(spec)
    diameter = spec.diameter_mm
    while True:
        shape = make_shape(spec.shape, diameter, rng)
        for _ in range(_TRIES_PER_SIZE):
            center = maps.propose_center(key, diameter / 2.0, rng)
            if center is None:
                if spec.sampled:
                    return None
                raise InputError(f"lesion {spec.index}: {spec.where} has no voxel in this volume")
            if not maps.inside(center):
                continue
            voxel = tuple(int(round(v)) for v in center)
            if not maps.region(key, VoxelBox(voxel, tuple(v + 1 for v in voxel)))[0, 0, 0]:
                continue  # the centre itself is outside the site: no need to draw the shape
            box, region, _, clipped, inside = _build(maps, key, center, shape)
            if inside < _DRAWN_INSIDE_FRACTION:
                continue
            mask = _mask(clipped)
            if _gap_to_others(box, mask, instances, maps.spacing)[0] < MIN_GAP_MM:
                continue
            affine = maps.affine
            placement = Placement(spec, site_name(spec), key, center, affine[:3, :3] @ center + affine[:3, 3], shape,
                                  box, region, clipped, _core(shape, spec.necrotic_fraction, box, center, maps, region),
                                  mask, diameter)
            if inside < 1.0 - 1e-6:
                placement.notes.append(f"clipped to {spec.where}: {100 * (1 - inside):.1f} % of the shape lay "
                                       f"outside it")
            if diameter != spec.diameter_mm:
                placement.notes.append(f"diameter reduced from {spec.diameter_mm:g} to {diameter:.1f} mm to fit "
                                       f"inside {spec.where}")
            return placement
        smaller = diameter * _SHRINK
        if not spec.sampled or smaller < max(_MIN_DRAWN_DIAMETER_MM, DIAMETER_RANGE_MM[0]):
            if spec.sampled:
                return None
            raise InputError(f"lesion {spec.index}: no place inside {spec.where} holds a diameter_mm={diameter:g} "
                             f"lesion >= {MIN_GAP_MM:g} mm from the other lesions (tried {_TRIES_PER_SIZE} centres)")
        diameter = smaller


def place_lesions(maps: SiteMaps, specs: list[LesionSpec], rng: np.random.Generator
                  ) -> tuple[list[Placement], list[dict]]:
    """(placements in spec order, the sampled lesions that fit nowhere): given centres first, then drawn ones."""
    for spec in specs:
        maps.check(spec)
    instances = np.zeros(maps.ct.shape, np.int16)
    order = {spec.index + 1: spec.index for spec in specs}
    placed: dict[int, Placement] = {}
    skipped = []
    for spec in sorted(specs, key=lambda s: s.center_mm is None):
        placement = (_place_given(maps, spec, instances, rng, order) if spec.center_mm is not None
                     else _place_drawn(maps, spec, instances, rng))
        if placement is None:
            skipped.append({"requested": dict(spec.requested or {}),
                            "reason": f"no place inside {spec.where} fits it, even shrunk to "
                                      f"{_MIN_DRAWN_DIAMETER_MM:g} mm"})
            continue
        instances[placement.box.slices][placement.mask] = spec.index + 1
        placed[spec.index] = placement
    return [placed[i] for i in sorted(placed)], skipped
