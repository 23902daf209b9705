"""Where a lesion may sit: the body, air, and each site's or organ's voxels, from the CT and the organ map.

* body: the evaluation's body mask (CT > -500 HU, table removed, holes filled so the lungs are
  inside); air: CT < -950 HU after a 3-voxel median (airways, bowel gas, outside), which no
  lesion voxel may touch;
* ``liver``, ``spleen`` and any ``organ``: the organ map's TotalSegmentator labels (an organ map
  is needed; without one these are an error);
* ``lung``: the lung lobes of the organ map, or from the CT alone the body's voxels below -500 HU;
* ``bone``: the skeleton's labels, or from the CT alone CT > 200 HU with its enclosed marrow
  filled in; centres are drawn in trabecular bone (< 600 HU) where there is some;
* ``node``: unlabelled fat or soft tissue (-190 .. 120 HU: not enhanced vessel, not bone) beside
  the great vessels (para-aortic, caval, iliac, mediastinal and cervical stations: 4-12 mm beyond
  the lesion's radius from a vessel voxel, as the phantom's nodes); from the CT alone, such tissue
  at least 30 mm under the skin;
* ``subcutaneous``: fat (-190 .. -30 HU, the evaluation's adipose window) within 30 mm of the skin.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..evaluation.metrics import FAT_HU_WINDOW, body_mask
from ..geometry import spacing_from_affine
from ..organs import LABEL_IDS, LABELS, ORGAN_GROUPS, organ_ids
from .box import VoxelBox
from .spec import SITES, LesionSpec

__all__ = [
    "AIR_HU",
    "LUNG_MAX_HU",
    "BONE_MIN_HU",
    "TRABECULAR_MAX_HU",
    "NODE_HU_WINDOW",
    "NODE_VESSELS",
    "NODE_OFFSET_MM",
    "NODE_MIN_DEPTH_MM",
    "SUBCUTANEOUS_MAX_DEPTH_MM",
    "SKELETON",
    "CT_ONLY_SITES",
    "SiteMaps",
    "site_name",
]

AIR_HU = -950.0
LUNG_MAX_HU = -500.0
BONE_MIN_HU = 200.0
TRABECULAR_MAX_HU = 600.0
NODE_HU_WINDOW = (-190.0, 120.0)
NODE_VESSELS: tuple[str, ...] = (
    "aorta", "inferior_vena_cava", "superior_vena_cava", "iliac_artery_left", "iliac_artery_right",
    "iliac_vena_left", "iliac_vena_right", "brachiocephalic_trunk", "common_carotid_artery_left",
    "common_carotid_artery_right", "subclavian_artery_left", "subclavian_artery_right",
)
NODE_OFFSET_MM = (4.0, 12.0)
NODE_MIN_DEPTH_MM = 30.0
SUBCUTANEOUS_MAX_DEPTH_MM = 30.0
SKELETON: tuple[str, ...] = (
    *ORGAN_GROUPS["vertebrae"], *ORGAN_GROUPS["ribs"], "sacrum", "hip_left", "hip_right", "femur_left",
    "femur_right", "humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
    "clavicula_right", "sternum", "skull",
)
#: sites that can be found from the CT alone
CT_ONLY_SITES: tuple[str, ...] = ("lung", "node", "bone", "subcutaneous")
_LUNG_LABELS = frozenset(ORGAN_GROUPS["lungs"]) | {"lungs", "lung_left", "lung_right"}
_BONE_LABELS = frozenset(SKELETON) | {"vertebrae", "ribs", "hips", "femurs", "humeri"}
_DEPTH_GRID_MM = 8.0


def site_name(spec: LesionSpec) -> str:
    """The site a lesion is reported under: its ``site``, or the site its ``organ`` belongs to."""
    if spec.site is not None:
        return spec.site
    if spec.organ in _LUNG_LABELS:
        return "lung"
    if spec.organ in _BONE_LABELS:
        return "bone"
    return spec.organ


class SiteMaps:
    """Body, air and site masks of one CT (+ optional organ map) on its own grid; site masks built on demand."""

    def __init__(self, ct: np.ndarray, affine: np.ndarray, organs: np.ndarray | None = None):
        self.ct = ct
        self.affine = np.asarray(affine, dtype=np.float64)
        self.organs = organs
        self.spacing = spacing_from_affine(affine)
        self.body = body_mask(ct, affine)
        self._candidates: dict[str, np.ndarray] = {}
        self._depth: np.ndarray | None = None
        self._depth_step: list[int] = []
        self._present = set(np.unique(organs).tolist()) if organs is not None else set()

    # ------------------------------------------------------------------ what can be placed

    def available_sites(self) -> tuple[str, ...]:
        """The sites this volume has voxels of (a diagnosis samples only these; a chest CT has no liver)."""
        sites = CT_ONLY_SITES if self.organs is None else SITES
        return tuple(site for site in sites if self.candidates(site).size)

    def check(self, spec: LesionSpec) -> None:
        """``InputError`` naming the lesion if its site or organ cannot be found in this volume."""
        if spec.site in CT_ONLY_SITES:
            return
        name = spec.organ if spec.organ is not None else spec.site
        if self.organs is None:
            raise InputError(f"lesion {spec.index}: {spec.where} needs an organ map (--organs, organs=); without "
                             f"one only the sites {', '.join(CT_ONLY_SITES)} can be placed")
        if not set(organ_ids(name)) & self._present:
            raise InputError(f"lesion {spec.index}: {spec.where}: the organ map has no voxel of it")

    def key(self, spec: LesionSpec) -> str:
        """Site masks are cached per key: a site, or ``organ:<name>`` for an organ given by name."""
        return spec.site if spec.site is not None else f"organ:{spec.organ}"

    # ------------------------------------------------------------------ voxel tests in a box

    def air(self, box: VoxelBox) -> np.ndarray:
        """Air in ``box``: the 3-voxel median below AIR_HU, i.e. most of the 27 neighbours below it."""
        below = self.ct[box.slices] < AIR_HU
        if not below.any():
            return below
        return ndimage.uniform_filter(below.astype(np.float32), size=3, mode="nearest") > 0.5

    def region(self, key: str, box: VoxelBox) -> np.ndarray:
        """Voxels of ``box`` a lesion at this site may cover: in the body, not air, in the site."""
        sl = box.slices
        ct = self.ct[sl]
        labels = None if self.organs is None else self.organs[sl]
        ok = self.body[sl] & ~self.air(box)
        if key == "lung":
            if labels is not None:
                return ok & np.isin(labels, organ_ids("lungs"))
            return ok & ndimage.binary_closing(ct < LUNG_MAX_HU, iterations=1, border_value=1)
        if key == "bone":
            if labels is not None:
                return ok & np.isin(labels, [LABEL_IDS[n] for n in SKELETON])
            return ok & ndimage.binary_fill_holes(ct > BONE_MIN_HU)
        if key == "node":
            ok &= (ct >= NODE_HU_WINDOW[0]) & (ct <= NODE_HU_WINDOW[1])
            return ok & (labels == 0) if labels is not None else ok
        if key == "subcutaneous":
            ok &= (ct >= FAT_HU_WINDOW[0]) & (ct <= FAT_HU_WINDOW[1])
            ok &= self.depth_mm(np.indices(box.shape).reshape(3, -1) + np.array(box.lo)[:, None]).reshape(
                box.shape) <= SUBCUTANEOUS_MAX_DEPTH_MM
            return ok & (labels == 0) if labels is not None else ok
        organ = key.removeprefix("organ:")
        return ok & np.isin(labels, organ_ids(organ))

    # ------------------------------------------------------------------ centres

    def depth_mm(self, voxels: np.ndarray) -> np.ndarray:
        """Distance (mm) under the skin of (3, n) voxel indices, from an EDT of the body on an ~8 mm grid."""
        if self._depth is None:
            self._depth_step = [max(1, round(_DEPTH_GRID_MM / s)) for s in self.spacing]
            step = self._depth_step
            coarse = self.body[:: step[0], :: step[1], :: step[2]]
            sampling = [s * k for s, k in zip(self.spacing, step)]
            self._depth = ndimage.distance_transform_edt(np.pad(coarse, 1), sampling=sampling)[1:-1, 1:-1, 1:-1]
        index = tuple(np.minimum(v // k, n - 1) for v, k, n in zip(voxels, self._depth_step, self._depth.shape))
        return self._depth[index]

    def candidates(self, key: str) -> np.ndarray:
        """Flat voxel indices a lesion centre of this site is drawn from (node: the vessels it sits beside)."""
        if key in self._candidates:
            return self._candidates[key]
        ct, labels, body = self.ct, self.organs, self.body
        if key == "lung":
            mask = np.isin(labels, organ_ids("lungs")) if labels is not None else (
                body & (ct < LUNG_MAX_HU) & (ct > AIR_HU))
        elif key == "bone":
            mask = np.isin(labels, [LABEL_IDS[n] for n in SKELETON]) if labels is not None else body & (
                ct > BONE_MIN_HU)
            trabecular = mask & (ct < TRABECULAR_MAX_HU)
            mask = trabecular if trabecular.any() else mask
        elif key == "node" and labels is not None:
            mask = np.isin(labels, [LABEL_IDS[n] for n in NODE_VESSELS])
        elif key in ("node", "subcutaneous"):
            window = NODE_HU_WINDOW if key == "node" else FAT_HU_WINDOW
            mask = body & (ct >= window[0]) & (ct <= window[1])
            if labels is not None:
                mask &= labels == 0
        else:
            mask = np.isin(labels, organ_ids(key.removeprefix("organ:")))
        flat = np.flatnonzero(mask)
        if key in ("node", "subcutaneous") and (key == "subcutaneous" or labels is None):
            depth = self.depth_mm(np.array(np.unravel_index(flat, ct.shape)))
            flat = flat[depth >= NODE_MIN_DEPTH_MM] if key == "node" else flat[depth <= SUBCUTANEOUS_MAX_DEPTH_MM]
        self._candidates[key] = flat
        return flat

    def propose_center(self, key: str, radius_mm: float, rng: np.random.Generator) -> np.ndarray | None:
        """A random (fractional) voxel centre for a lesion of ``radius_mm`` at this site, or None if it has none."""
        flat = self.candidates(key)
        if flat.size == 0:
            return None
        center = np.array(np.unravel_index(int(flat[rng.integers(flat.size)]), self.ct.shape), dtype=np.float64)
        center += rng.uniform(-0.5, 0.5, size=3)
        if key == "node" and self.organs is not None:
            # beside the vessel: mostly in the axial plane (nodes lie along the vessels, not on their ends)
            direction = rng.normal(size=3)
            direction[2] *= 0.3
            offset_mm = direction / np.linalg.norm(direction) * (radius_mm + rng.uniform(*NODE_OFFSET_MM))
            center += np.linalg.solve(self.affine[:3, :3], offset_mm)
        return center

    # ------------------------------------------------------------------ reporting

    def organ_at(self, voxel: np.ndarray) -> str | None:
        """The organ map's TotalSegmentator name at ``voxel`` (None: no map, or background)."""
        if self.organs is None:
            return None
        label = int(self.organs[tuple(int(round(v)) for v in voxel)])
        return LABELS.get(label)

    def inside(self, voxel: np.ndarray) -> bool:
        return all(0 <= round(v) < n for v, n in zip(voxel, self.ct.shape))

    def voxel_of(self, center_mm: tuple[float, float, float]) -> np.ndarray:
        return np.linalg.solve(self.affine, np.array([*center_mm, 1.0]))[:3]

    def extent_mm(self) -> str:
        """The volume's world bounding box, for messages."""
        corners = np.array([[i, j, k, 1.0] for i in (0, self.ct.shape[0] - 1) for j in (0, self.ct.shape[1] - 1)
                            for k in (0, self.ct.shape[2] - 1)]) @ self.affine.T
        lo, hi = corners[:, :3].min(axis=0), corners[:, :3].max(axis=0)
        return ", ".join(f"{'RAS'[i]} {lo[i]:.0f}..{hi[i]:.0f}" for i in range(3))
