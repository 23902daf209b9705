"""Whole-body anatomy on a voxel grid: tissue classes and TotalSegmentator organ labels.

Shapes are implicit functions (ellipsoids, tapered ellipsoids, capsule chains, per-slice
ellipses) evaluated with numpy broadcasting inside each structure's bounding box, so a
2 mm whole-body grid costs a few seconds. Each organ's implicit function is perturbed by
a smooth random field and then thresholded at the quantile that gives exactly the
sampled organ volume among the voxels still free, so volumes follow
:mod:`.organ_sizes` while shapes are deformed per subject.

Frame: arrays (x, y, z) in RAS+ (x toward the patient's right, y anterior), z inferior ->
superior with the vertex at the top slice. Positions are written as ``t``, the depth below
the vertex as a fraction of standing height, using standard anthropometric proportions
(Drillis & Contini 1966) and the vertebral levels of the organs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from scipy import ndimage

from ..demographics import Demographics
from ..organs import LABEL_IDS

__all__ = [
    "Tissue",
    "Anatomy",
    "build_anatomy",
    "grid_shape",
    "SCAN_EXTENT_FRACTION",
    "lean_body_mass_kg",
    "body_fat_fraction",
]

RIGHT = 1.0  # RAS+: x increases toward the patient's right
LEFT = -1.0
FOV_XY_MM = 448.0
#: vertex to mid-thigh as a fraction of height (AutoPET axial extent 1050 +/- 307 mm)
SCAN_EXTENT_FRACTION = 0.635


class Tissue(IntEnum):
    """Tissue classes; CT HU and FDG SUV per class live in scanner.py and uptake.py."""

    AIR = 0
    LUNG = 1
    FAT = 2
    MUSCLE = 3
    BLOOD = 4
    LIVER = 5
    SPLEEN = 6
    KIDNEY = 7
    URINE_KIDNEY = 8
    URINE_BLADDER = 9
    BRAIN_GREY = 10
    BRAIN_WHITE = 11
    CSF = 12
    MYOCARDIUM = 13
    BONE_CORTICAL = 14
    MARROW_RED = 15
    MARROW_YELLOW = 16
    SOFT = 17
    GAS = 18
    STOMACH = 19
    PANCREAS = 20
    BILE = 21
    THYROID = 22
    CARTILAGE = 23
    SPINAL_CORD = 24
    PROSTATE = 25
    ESOPHAGUS = 26
    AIRWAY = 27
    LUNG_VESSEL = 28
    BOWEL = 29
    COLON_CONTENT = 30
    LESION = 31
    BLOOD_VENOUS = 32


def lean_body_mass_kg(d: Demographics) -> float:
    """Janmahasatian et al. 2005 lean body weight."""
    if d.is_male:
        return 9270.0 * d.weight / (6680.0 + 216.0 * d.bmi)
    return 9270.0 * d.weight / (8780.0 + 244.0 * d.bmi)


def body_fat_fraction(d: Demographics) -> float:
    """Deurenberg et al. 1991: BF% = 1.2 BMI + 0.23 age - 10.8 sex - 5.4 (sex: M=1)."""
    age = max(d.age, 16.0)
    bf = 1.2 * d.bmi + 0.23 * age - 10.8 * (1.0 if d.is_male else 0.0) - 5.4
    return float(np.clip(bf, 4.0, 60.0)) / 100.0


def grid_shape(d: Demographics, spacing: float, fov: str = "whole_body") -> tuple[int, int, int]:
    from ..geometry import body_slices

    nxy = int(round(FOV_XY_MM / spacing))
    if fov == "whole_body":
        nz = int(math.ceil(SCAN_EXTENT_FRACTION * d.height * 10.0 / spacing))
    elif fov == "model":
        nz = body_slices(d.height, spacing)
    else:
        raise ValueError(f"fov must be 'whole_body' or 'model', got {fov!r}")
    return nxy, nxy, nz


@dataclass
class Anatomy:
    """Label volumes of one subject (x, y, z): tissue classes, organ ids, uptake texture."""

    tissue: np.ndarray
    organs: np.ndarray
    texture: np.ndarray
    body: np.ndarray
    spacing: float
    landmarks: dict[str, float] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers


class _Ctx:
    def __init__(self, d: Demographics, shape, spacing: float, rng: np.random.Generator):
        self.d = d
        self.s = float(spacing)
        self.shape = shape
        nx, ny, nz = shape
        self.x = ((np.arange(nx) - (nx - 1) / 2.0) * self.s).astype(np.float32)
        self.y = ((np.arange(ny) - (ny - 1) / 2.0) * self.s).astype(np.float32)
        self.depth = ((nz - 1 - np.arange(nz)) * self.s).astype(np.float32)  # mm below vertex
        self.H = d.height * 10.0
        self.rng = rng
        self.tissue = np.zeros(shape, np.uint8)
        self.organs = np.zeros(shape, np.uint8)
        self.texture = np.ones(shape, np.float32)
        self.voxel_ml = self.s**3 / 1000.0
        self.volumes: dict[str, float] = {}

    # index ranges -------------------------------------------------------------
    def xr(self, lo, hi):
        return self._range(self.x, lo, hi)

    def yr(self, lo, hi):
        return self._range(self.y, lo, hi)

    def zr_t(self, t_lo, t_hi):
        """slice of z indices covering depths t_lo*H .. t_hi*H (t_lo < t_hi)."""
        d_lo, d_hi = t_lo * self.H, t_hi * self.H
        k = np.nonzero((self.depth >= d_lo) & (self.depth <= d_hi))[0]
        if k.size == 0:
            return slice(0, 0)
        return slice(int(k.min()), int(k.max()) + 1)

    def zr_d(self, d_lo, d_hi):
        k = np.nonzero((self.depth >= d_lo) & (self.depth <= d_hi))[0]
        if k.size == 0:
            return slice(0, 0)
        return slice(int(k.min()), int(k.max()) + 1)

    @staticmethod
    def _range(axis, lo, hi):
        k = np.nonzero((axis >= lo) & (axis <= hi))[0]
        if k.size == 0:
            return slice(0, 0)
        return slice(int(k.min()), int(k.max()) + 1)

    def box(self, center, half):
        """Slices of a box centred at (x, y, depth) with half extents (mm)."""
        cx, cy, cd = center
        hx, hy, hd = half
        return (self.xr(cx - hx, cx + hx), self.yr(cy - hy, cy + hy), self.zr_d(cd - hd, cd + hd))

    def coords(self, box):
        sx, sy, sz = box
        return self.x[sx][:, None, None], self.y[sy][None, :, None], self.depth[sz][None, None, :]

    def noise(self, shape, scale_mm: float) -> np.ndarray:
        """Smooth random field ~N(0,1) with correlation length ``scale_mm``.

        A coarse white-noise lattice interpolated separably (C1 smoothstep weights) by three
        small matrix products; ~20x faster than ndimage.zoom on whole-body boxes.
        """
        shape = tuple(int(n) for n in shape)
        if min(shape) == 0:
            return np.zeros(shape, np.float32)
        coarse = [max(2, int(math.ceil(n * self.s / scale_mm)) + 1) for n in shape]
        out = self.rng.standard_normal(coarse).astype(np.float32)
        for axis, (n, c) in enumerate(zip(shape, coarse)):
            out = np.moveaxis(np.tensordot(out, _interp_matrix(n, c), axes=([axis], [1])), -1, axis)
        sd = float(out[:: max(1, shape[0] // 16), :: max(1, shape[1] // 16)].std()) or 1.0
        out -= float(out.mean())
        out /= sd
        return out

    def fill_quantile(self, box, f, candidate, volume_ml, organ=None, tissue=None, name=None):
        """Assign the ``volume_ml`` worth of candidate voxels with the lowest ``f``."""
        n = int(round(volume_ml / self.voxel_ml))
        idx = np.flatnonzero(candidate)
        if idx.size == 0 or n <= 0:
            mask = np.zeros(candidate.shape, bool)
        else:
            if n < idx.size:
                vals = f.ravel()[idx]
                keep = np.argpartition(vals, n - 1)[:n]
                idx = idx[keep]
            mask = np.zeros(candidate.shape, bool)
            mask.ravel()[idx] = True
        if organ is not None:
            self.organs[box][mask] = LABEL_IDS[organ]
        if tissue is not None:
            self.tissue[box][mask] = tissue
        if name is not None:
            self.volumes[name] = float(mask.sum() * self.voxel_ml)
        return mask

    def free(self, box):
        return (
            (self.organs[box] == 0)
            & (self.tissue[box] != Tissue.BONE_CORTICAL)
            & (self.tissue[box] != Tissue.MARROW_RED)
        )


def _interp_matrix(n: int, c: int) -> np.ndarray:
    """(n, c) weights interpolating c lattice values onto n samples with smoothstep blending."""
    pos = np.linspace(0.0, c - 1.0, n)
    i0 = np.clip(np.floor(pos).astype(int), 0, c - 2)
    frac = pos - i0
    frac = frac * frac * (3.0 - 2.0 * frac)
    m = np.zeros((n, c), np.float32)
    m[np.arange(n), i0] = 1.0 - frac
    m[np.arange(n), i0 + 1] = frac
    return m


def _rot(yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    """Rotation matrix from angles (deg) about depth (yaw), y (pitch) and x (roll) axes."""
    a, b, c = np.deg2rad([yaw, pitch, roll])
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    return (rz @ ry @ rx).astype(np.float32)


def _ellipsoid_f(ctx, box, center, semi, rot=None):
    X, Y, D = ctx.coords(box)
    px, py, pd = X - center[0], Y - center[1], D - center[2]
    if rot is not None:
        r = rot.T
        px, py, pd = (
            r[0, 0] * px + r[0, 1] * py + r[0, 2] * pd,
            r[1, 0] * px + r[1, 1] * py + r[1, 2] * pd,
            r[2, 0] * px + r[2, 1] * py + r[2, 2] * pd,
        )
    return (px / semi[0]) ** 2 + (py / semi[1]) ** 2 + (pd / semi[2]) ** 2


def _segment_dist(ctx, box, a, b):
    """Distance (mm) from each voxel in ``box`` to segment a-b and the parameter along it."""
    X, Y, D = ctx.coords(box)
    a = np.asarray(a, np.float32)
    ab = np.asarray(b, np.float32) - a
    L2 = float(ab @ ab) or 1e-6
    u = ((X - a[0]) * ab[0] + (Y - a[1]) * ab[1] + (D - a[2]) * ab[2]) / L2
    u = np.clip(u, 0.0, 1.0)
    dx, dy, dd = X - (a[0] + u * ab[0]), Y - (a[1] + u * ab[1]), D - (a[2] + u * ab[2])
    return np.sqrt(dx * dx + dy * dy + dd * dd), u


def _paint_tube(
    ctx, points, radii, tissue=None, organ=None, only_free=True, shell=None, core_tissue=None, overwrite_organs=False
):
    """Capsule chain through ``points`` (x, y, depth) with per-point radius; returns nothing."""
    points = [np.asarray(p, np.float32) for p in points]
    for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        r = max(ra, rb)
        lo = np.minimum(a, b) - r - ctx.s
        hi = np.maximum(a, b) + r + ctx.s
        box = (ctx.xr(lo[0], hi[0]), ctx.yr(lo[1], hi[1]), ctx.zr_d(lo[2], hi[2]))
        if any(sl.stop - sl.start <= 0 for sl in box):
            continue
        dist, u = _segment_dist(ctx, box, a, b)
        rad = ra + (rb - ra) * u
        inside = dist <= rad
        if only_free:
            inside &= ctx.free(box) if not overwrite_organs else True
        if tissue is not None:
            if shell is not None and core_tissue is not None:
                t = ctx.tissue[box]
                t[inside & (dist > rad - shell)] = tissue
                t[inside & (dist <= rad - shell)] = core_tissue
            else:
                ctx.tissue[box][inside] = tissue
        if organ is not None:
            ctx.organs[box][inside] = LABEL_IDS[organ]


# ------------------------------------------------------------------ body dimensions


@dataclass
class _Body:
    t: np.ndarray  # per z slice: depth / height
    a_lean: np.ndarray  # trunk lean half-width per slice (mm)
    b_lean: np.ndarray
    yc: np.ndarray
    sc: np.ndarray  # subcutaneous fat thickness per slice (mm)
    w: float
    fat_l: float
    sc_base: float
    y_vb: np.ndarray  # vertebral body centre (y) per slice


_T = np.array([0.110, 0.135, 0.170, 0.185, 0.20, 0.23, 0.26, 0.30, 0.34, 0.38, 0.42, 0.46, 0.50, 0.53])
_A_M = np.array([45, 50, 56, 150, 156, 160, 160, 156, 146, 140, 146, 158, 158, 140], np.float32)
_B_M = np.array([48, 52, 56, 92, 100, 106, 110, 108, 100, 96, 98, 104, 100, 88], np.float32)
_A_F_SCALE = np.array([1, 1, 1, 0.92, 0.92, 0.92, 0.92, 0.92, 0.9, 0.9, 0.98, 1.06, 1.07, 1.05], np.float32)
_B_F_SCALE = np.array([1, 1, 1, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.98, 1.02, 1.02, 1.0], np.float32)
# subcutaneous fat distribution factor per landmark (abdomen thickest; women more on hips)
_SC_M = np.array([0.4, 0.5, 0.6, 0.8, 1.0, 1.0, 1.1, 1.4, 2.0, 2.3, 2.1, 1.4, 1.2, 1.0], np.float32)
_SC_F = np.array([0.4, 0.5, 0.6, 0.8, 1.0, 1.0, 1.1, 1.3, 1.7, 2.0, 2.1, 2.0, 1.9, 1.6], np.float32)
# vertebral-body centre distance from the back of the lean trunk (mm, reference male)
_VB_FROM_BACK = np.array([40, 42, 45, 48, 52, 56, 58, 60, 64, 70, 74, 70, 60, 55], np.float32)


def _body_dims(ctx: _Ctx) -> _Body:
    d = ctx.d
    ref = Demographics(age=35, sex=d.sex, weight=73 if d.is_male else 60, height=176 if d.is_male else 163)
    w = math.sqrt((lean_body_mass_kg(d) / d.height) / (lean_body_mass_kg(ref) / ref.height))
    w *= math.exp(ctx.rng.normal(0, 0.03))
    fat_l = body_fat_fraction(d) * d.weight / 0.92
    sc_base = 0.62 * fat_l / d.bsa  # mm, ~ fat volume spread over the body surface
    t = ctx.depth / ctx.H
    a = _A_M * (1.0 if d.is_male else _A_F_SCALE)
    b = _B_M * (1.0 if d.is_male else _B_F_SCALE)
    a_lean = np.interp(t, _T, a).astype(np.float32) * w
    b_lean = np.interp(t, _T, b).astype(np.float32) * w
    sc = np.interp(t, _T, _SC_M if d.is_male else _SC_F).astype(np.float32) * sc_base
    yc = np.interp(t, [0.11, 0.17, 0.19, 0.5], [-12, -12, 0, 0]).astype(np.float32)
    y_vb = (yc - b_lean + np.interp(t, _T, _VB_FROM_BACK).astype(np.float32) * w).astype(np.float32)
    return _Body(t, a_lean, b_lean, yc, sc, w, fat_l, sc_base, y_vb)


def _per_slice_ellipse(ctx, zs, cx, cy, a, b, xs=None, ys=None):
    """Boolean mask of per-slice ellipses over slab ``zs`` (arrays indexed by the slab's slices)."""
    xs = xs or slice(0, ctx.shape[0])
    ys = ys or slice(0, ctx.shape[1])
    X = ctx.x[xs][:, None, None]
    Y = ctx.y[ys][None, :, None]
    return ((X - cx[None, None, :]) / a[None, None, :]) ** 2 + ((Y - cy[None, None, :]) / b[None, None, :]) ** 2 <= 1.0


# --------------------------------------------------------------------- body outline


def _paint_body(ctx: _Ctx, B: _Body) -> dict[str, float]:
    H, s = ctx.H, ctx.s
    nz = ctx.shape[2]
    body = np.zeros(ctx.shape, bool)
    lean = np.zeros(ctx.shape, bool)
    half = FOV_XY_MM / 2.0

    def add(zs, cx, cy, a, b, fat):
        if zs.stop <= zs.start:
            return
        body[:, :, zs] |= _per_slice_ellipse(ctx, zs, cx, cy, a + fat, b + fat)
        lean[:, :, zs] |= _per_slice_ellipse(ctx, zs, cx, cy, a, b)

    # head: ellipsoid from the vertex, semi-axes 76 x 98 x 118 mm (reference male incl. scalp)
    hs = (0.96 if ctx.d.is_male else 0.93) * (ctx.H / 1760.0) ** 0.5
    head_c = 0.066 * H
    ha, hb, hz = 76.0 * hs, 98.0 * hs, 0.066 * H
    zs = ctx.zr_d(0, 2 * hz)
    dz = ctx.depth[zs]
    prof = np.sqrt(np.clip(1.0 - ((dz - head_c) / hz) ** 2, 1e-4, None)).astype(np.float32)
    add(zs, np.zeros_like(dz), np.full_like(dz, 6.0), ha * prof, hb * prof, np.float32(0.25) * B.sc[zs] * prof)
    # neck and trunk
    zs = ctx.zr_t(0.11, 0.535)
    add(zs, np.zeros(zs.stop - zs.start, np.float32), B.yc[zs], B.a_lean[zs], B.b_lean[zs], B.sc[zs])
    # breasts (women): fat ellipsoids on the anterior chest, size with body fat
    if not ctx.d.is_male:
        size = float(np.clip((B.fat_l / 20.0) ** 0.4, 0.6, 1.5))
        for side in (LEFT, RIGHT):
            cx = side * 0.48 * float(np.interp(0.27, B.t[::-1], B.a_lean[::-1]))
            cy = float(np.interp(0.27, B.t[::-1], B.b_lean[::-1])) * 0.85
            box = ctx.box((cx, cy + 20, 0.275 * H), (80 * size, 80 * size, 70 * size))
            f = _ellipsoid_f(ctx, box, (cx, cy + 15 * size, 0.275 * H), (55 * size, 45 * size, 50 * size))
            body[box] |= f <= 1.0
    # thighs
    zs = ctx.zr_t(0.47, 1.0)
    tt = B.t[zs]
    hip = float(np.interp(0.5, B.t[::-1], B.a_lean[::-1]))
    ax = (np.interp(tt, [0.47, 0.55, 0.7], [0.5, 0.52, 0.5]) * hip).astype(np.float32)
    ra = (np.interp(tt, [0.47, 0.52, 0.7], [70, 72, 58]) * B.w).astype(np.float32)
    fat_t = (np.interp(tt, [0.47, 0.7], [1.3, 1.0]) * B.sc_base * (1.0 if ctx.d.is_male else 1.5)).astype(np.float32)
    for side in (LEFT, RIGHT):
        add(zs, side * ax, np.full_like(tt, 5.0), ra, ra * 1.08, fat_t)
    # arms hanging at the sides: axis just lateral to the trunk, truncated by the field of view
    zs = ctx.zr_t(0.175, 0.63)
    tt = B.t[zs]
    r_lean = (
        np.interp(tt, [0.175, 0.20, 0.30, 0.37, 0.45, 0.515, 0.55, 0.63], [30, 46, 42, 36, 34, 24, 30, 22]) * B.w
    ).astype(np.float32)
    r_fat = (0.9 * B.sc_base * np.interp(tt, [0.175, 0.2, 0.515, 0.63], [0.5, 1.0, 0.5, 0.2])).astype(np.float32)
    trunk_outer = B.a_lean[zs] + B.sc[zs]
    trunk_outer = np.maximum.accumulate(np.where(tt < 0.2, 0, trunk_outer))  # arms do not tuck in at the waist
    trunk_outer = np.where(tt < 0.2, B.a_lean[zs] * 0.85, np.maximum(trunk_outer, B.a_lean[zs] + B.sc[zs]))
    xa = np.minimum(trunk_outer + r_lean + r_fat + 4.0, half - 0.5 * r_lean)
    ya = (np.interp(tt, [0.2, 0.37, 0.5, 0.6], [0, -10, 10, 20]) * B.w).astype(np.float32)
    arm_ry = r_lean * np.interp(tt, [0.5, 0.55, 0.63], [1.0, 1.5, 1.3]).astype(np.float32)
    arm_rx = r_lean * np.interp(tt, [0.5, 0.55, 0.63], [1.0, 0.55, 0.5]).astype(np.float32)
    for side in (LEFT, RIGHT):
        add(zs, side * xa, ya, arm_rx, arm_ry, r_fat)
    ctx.arm_axis = (zs, xa, ya, tt)
    ctx.thigh_axis = (ctx.zr_t(0.47, 1.0), ax)
    body &= True
    ctx.tissue[body] = Tissue.FAT
    ctx.tissue[lean] = Tissue.MUSCLE
    ctx.body = body
    ctx.lean = lean
    _ = nz, s
    return {"head_center_mm": head_c, "head_semi": (ha, hb, hz)}


# ------------------------------------------------------------------------ skeleton

# vertebral levels: top depth of C1 and bottom of L5 as fractions of height
_SPINE_T = {"C": (0.110, 0.185), "T": (0.185, 0.355), "L": (0.355, 0.445)}


def _vertebra_levels(H: float) -> list[tuple[str, float, float]]:
    levels = []
    for region, count in (("C", 7), ("T", 12), ("L", 5)):
        top, bottom = _SPINE_T[region]
        edges = np.linspace(top, bottom, count + 1) * H
        for i in range(count):
            levels.append((f"vertebrae_{region}{i + 1}", float(edges[i]), float(edges[i + 1])))
    levels.append(("vertebrae_S1", 0.445 * H, 0.462 * H))
    return levels


def _paint_spine(ctx: _Ctx, B: _Body, marrow_hu_tissue=Tissue.MARROW_RED) -> dict[str, float]:
    H, w = ctx.H, B.w
    levels = _vertebra_levels(H)
    # per-slice body size by region
    t = B.t
    a_vb = (np.interp(t, [0.11, 0.185, 0.355, 0.445], [9, 14, 20, 25]) * w).astype(np.float32)
    b_vb = (np.interp(t, [0.11, 0.185, 0.355, 0.445], [8, 12, 15, 17]) * w).astype(np.float32)
    zs = ctx.zr_t(0.105, 0.462)
    if zs.stop <= zs.start:
        return {}
    xs = ctx.xr(-60 * w, 60 * w)
    ys = ctx.yr(float(B.y_vb[zs].min() - 90 * w), float(B.y_vb[zs].max() + 40 * w))
    X, Y, _ = ctx.coords((xs, ys, zs))
    yv = B.y_vb[zs][None, None, :]
    av, bv = a_vb[zs][None, None, :], b_vb[zs][None, None, :]
    depth = ctx.depth[zs]
    label = np.zeros(depth.shape, np.uint8)
    in_disc = np.zeros(depth.shape, bool)
    for name, top, bottom in levels:
        sel = (depth >= top) & (depth < bottom)
        label[sel] = LABEL_IDS[name]
        in_disc[sel & (depth > bottom - 0.18 * (bottom - top))] = True
    rho_body = (X / av) ** 2 + ((Y - yv) / bv) ** 2
    canal_r = (np.interp(t[zs], [0.11, 0.2, 0.44], [9, 7.5, 9]) * w)[None, None, :]
    canal_y = yv - bv - canal_r
    r_canal = np.sqrt(X**2 + (Y - canal_y) ** 2)
    arch = (r_canal > canal_r) & (r_canal < canal_r + 5 * w)
    spinous = (np.abs(X) < 4 * w) & (Y < canal_y) & (Y > canal_y - canal_r - 28 * w)
    transverse = (np.abs(Y - canal_y) < 5 * w) & (np.abs(X) < av + 16 * w) & (np.abs(X) > canal_r)
    bone = ((rho_body <= 1.0) | arch | spinous | transverse) & ~in_disc[None, None, :]
    bone &= ctx.lean[xs, ys, zs]
    inner = rho_body <= 0.6
    tissue = ctx.tissue[xs, ys, zs]
    organs = ctx.organs[xs, ys, zs]
    tissue[bone] = Tissue.BONE_CORTICAL
    tissue[bone & inner] = marrow_hu_tissue
    disc = (rho_body <= 1.0) & in_disc[None, None, :]
    tissue[disc] = Tissue.CARTILAGE
    organs[bone] = np.broadcast_to(label[None, None, :], bone.shape)[bone]
    # canal: CSF with spinal cord (ends at L1)
    canal = r_canal <= canal_r
    tissue[canal] = Tissue.CSF
    cord = (r_canal <= 0.55 * canal_r) & (depth[None, None, :] < 0.36 * H)
    tissue[cord] = Tissue.SPINAL_CORD
    organs[cord] = LABEL_IDS["spinal_cord"]
    return {"canal_y_mid": float(np.median(canal_y))}


def _paint_pelvis_and_legs(ctx: _Ctx, B: _Body) -> dict[str, float]:
    H, w = ctx.H, B.w
    f = 1.0 if ctx.d.is_male else 1.08  # wider female pelvis
    hip_t = 0.475
    y_l5 = float(np.interp(0.44, B.t[::-1], B.y_vb[::-1]))
    b_hip = float(np.interp(hip_t, B.t[::-1], B.b_lean[::-1]))
    x_fh, y_fh, d_fh = 88.0 * w * f, 0.12 * b_hip, hip_t * H
    r_fh = (24.0 if ctx.d.is_male else 21.0) * w
    # sacrum: tilted wedge behind the pelvis
    pts = [
        (0, y_l5 - 5, 0.445 * H),
        (0, y_l5 - 25 * w, 0.47 * H),
        (0, y_l5 - 30 * w, 0.50 * H),
        (0, y_l5 - 15 * w, 0.52 * H),
    ]
    _paint_tube(
        ctx,
        pts[:2],
        [22 * w, 20 * w],
        Tissue.BONE_CORTICAL,
        "vertebrae_S1",
        only_free=False,
        shell=3.0,
        core_tissue=Tissue.MARROW_RED,
    )
    _paint_tube(
        ctx,
        pts[1:],
        [20 * w, 14 * w, 7 * w],
        Tissue.BONE_CORTICAL,
        "sacrum",
        only_free=False,
        shell=3.0,
        core_tissue=Tissue.MARROW_RED,
    )
    for side, hip_name, femur_name in ((LEFT, "hip_left", "femur_left"), (RIGHT, "hip_right", "femur_right")):
        # ilium: a curved plate from the iliac crest down to the acetabulum, fanning from the sacrum
        crest = [
            (side * 40 * w, y_l5 - 20 * w, 0.452 * H),
            (side * 95 * w * f, y_l5 - 10 * w, 0.41 * H),
            (side * 125 * w * f, y_l5 + 40 * w, 0.405 * H),
            (side * 118 * w * f, y_l5 + 85 * w, 0.42 * H),
        ]
        acet = (side * (x_fh - 8 * w), y_fh, d_fh - 12 * w)
        for c in crest:
            _paint_tube(
                ctx,
                [c, acet],
                [9 * w, 13 * w],
                Tissue.BONE_CORTICAL,
                hip_name,
                only_free=False,
                shell=3.0,
                core_tissue=Tissue.MARROW_RED,
            )
        for c0, c1 in zip(crest[:-1], crest[1:]):
            mid0 = tuple((np.array(c0) + np.array(acet)) / 2)
            mid1 = tuple((np.array(c1) + np.array(acet)) / 2)
            _paint_tube(
                ctx,
                [c0, c1],
                [8 * w, 8 * w],
                Tissue.BONE_CORTICAL,
                hip_name,
                only_free=False,
                shell=3.0,
                core_tissue=Tissue.MARROW_RED,
            )
            _paint_tube(
                ctx,
                [mid0, mid1],
                [8 * w, 8 * w],
                Tissue.BONE_CORTICAL,
                hip_name,
                only_free=False,
                shell=3.0,
                core_tissue=Tissue.MARROW_RED,
            )
        # pubic ramus to the symphysis and ischium down to the tuberosity
        sym = (side * 9.0, 0.62 * b_hip, 0.505 * H)
        _paint_tube(
            ctx,
            [acet, sym],
            [12 * w, 9 * w],
            Tissue.BONE_CORTICAL,
            hip_name,
            only_free=False,
            shell=3.0,
            core_tissue=Tissue.MARROW_RED,
        )
        isch = (side * 58 * w * f, y_fh - 35 * w, 0.52 * H)
        _paint_tube(
            ctx,
            [acet, isch, sym],
            [13 * w, 12 * w, 8 * w],
            Tissue.BONE_CORTICAL,
            hip_name,
            only_free=False,
            shell=3.0,
            core_tissue=Tissue.MARROW_RED,
        )
        # femur: head, neck, trochanter and shaft (yellow marrow in the shaft)
        head = (side * x_fh, y_fh, d_fh)
        troch = (side * (x_fh + 38 * w), y_fh - 8 * w, d_fh + 22 * w)
        knee = (side * (x_fh - 10 * w), 10.0, 0.715 * H)
        _paint_tube(
            ctx,
            [head, head],
            [r_fh, r_fh],
            Tissue.BONE_CORTICAL,
            femur_name,
            only_free=False,
            shell=2.5,
            core_tissue=Tissue.MARROW_RED,
        )
        _paint_tube(
            ctx,
            [head, troch],
            [16 * w, 18 * w],
            Tissue.BONE_CORTICAL,
            femur_name,
            only_free=False,
            shell=3.0,
            core_tissue=Tissue.MARROW_RED,
        )
        _paint_tube(
            ctx,
            [troch, knee],
            [15 * w, 13 * w],
            Tissue.BONE_CORTICAL,
            femur_name,
            only_free=False,
            shell=5.0,
            core_tissue=Tissue.MARROW_YELLOW,
        )
    return {"femoral_head_depth_mm": d_fh, "symphysis_depth_mm": 0.505 * H}


def _paint_shoulders_and_arms(ctx: _Ctx, B: _Body) -> None:
    H, w = ctx.H, B.w
    zs, xa, ya, tt = ctx.arm_axis
    if zs.stop <= zs.start:
        return

    def at(t_val, arr):
        return float(np.interp(t_val, tt[::-1], arr[::-1]))

    for side, hum, scap, clav in (
        (LEFT, "humerus_left", "scapula_left", "clavicula_left"),
        (RIGHT, "humerus_right", "scapula_right", "clavicula_right"),
    ):
        shoulder = (side * at(0.195, xa), at(0.195, ya), 0.195 * H)
        elbow = (side * at(0.37, xa), at(0.37, ya) - 5, 0.37 * H)
        wrist = (side * at(0.51, xa), at(0.51, ya), 0.51 * H)
        _paint_tube(
            ctx,
            [shoulder, shoulder],
            [22 * w, 22 * w],
            Tissue.BONE_CORTICAL,
            hum,
            only_free=False,
            shell=2.5,
            core_tissue=Tissue.MARROW_RED,
        )
        _paint_tube(
            ctx,
            [shoulder, elbow],
            [11 * w, 10 * w],
            Tissue.BONE_CORTICAL,
            hum,
            only_free=False,
            shell=4.0,
            core_tissue=Tissue.MARROW_YELLOW,
        )
        for dy in (-9.0, 9.0):  # radius and ulna (not TotalSegmentator "total" classes)
            e = (elbow[0], elbow[1] + dy * w, elbow[2])
            wr = (wrist[0], wrist[1] + dy * w, wrist[2])
            _paint_tube(
                ctx,
                [e, wr],
                [7 * w, 6 * w],
                Tissue.BONE_CORTICAL,
                None,
                only_free=False,
                shell=2.5,
                core_tissue=Tissue.MARROW_YELLOW,
            )
        # clavicle from the sternal notch to the acromion
        b_top = float(np.interp(0.19, B.t[::-1], B.b_lean[::-1]))
        a_top = float(np.interp(0.19, B.t[::-1], B.a_lean[::-1]))
        _paint_tube(
            ctx,
            [
                (side * 18 * w, 0.75 * b_top, 0.19 * H),
                (side * 0.55 * a_top, 0.7 * b_top, 0.182 * H),
                (side * 0.9 * a_top, 0.05 * b_top, 0.18 * H),
            ],
            [7 * w, 6 * w, 7 * w],
            Tissue.BONE_CORTICAL,
            clav,
            only_free=False,
            shell=2.5,
            core_tissue=Tissue.MARROW_RED,
        )
        # scapula: plate on the posterior chest wall
        top = (side * 0.75 * a_top, -0.55 * b_top, 0.195 * H)
        pts = [top, (side * 0.40 * a_top, -0.80 * b_top, 0.20 * H), (side * 0.45 * a_top, -0.78 * b_top, 0.26 * H)]
        for p in pts[1:]:
            _paint_tube(
                ctx,
                [top, p],
                [7 * w, 6 * w],
                Tissue.BONE_CORTICAL,
                scap,
                only_free=False,
                shell=2.5,
                core_tissue=Tissue.MARROW_RED,
            )
        _paint_tube(
            ctx,
            pts[1:],
            [6 * w, 6 * w],
            Tissue.BONE_CORTICAL,
            scap,
            only_free=False,
            shell=2.5,
            core_tissue=Tissue.MARROW_RED,
        )


def _paint_ribs_and_sternum(ctx: _Ctx, B: _Body) -> None:
    H, w = ctx.H, B.w
    levels = {name: (top, bottom) for name, top, bottom in _vertebra_levels(H)}
    d1 = 0.5 * sum(levels["vertebrae_T1"])
    step = levels["vertebrae_T2"][0] - levels["vertebrae_T1"][0]
    drop = 3.2 * step  # anterior ends lie ~3 vertebral heights lower than the heads
    zs = ctx.zr_d(d1 - 12, 0.5 * sum(levels["vertebrae_T12"]) + drop + 12)
    amax, bmax = float(B.a_lean[zs].max()), float(B.b_lean[zs].max())
    xs, ys = ctx.xr(-amax, amax), ctx.yr(-bmax - 20, bmax + 20)
    X, Y, D = ctx.coords((xs, ys, zs))
    a = B.a_lean[zs][None, None, :]
    b = B.b_lean[zs][None, None, :]
    yc = B.yc[zs][None, None, :]
    rx, ry = a * 0.93, b * 0.90
    rho = np.sqrt((X / rx) ** 2 + ((Y - yc) / ry) ** 2)
    phi = np.arctan2(np.abs(X) / rx, -(Y - yc) / ry)  # 0 at the back, pi at the front
    shift = drop * (1 - np.cos(phi)) / 2.0
    kf = (D - shift - d1) / step
    k = np.rint(kf)
    near = np.abs(kf - k) * step < 6.0 * w
    ring = np.abs(rho - 1.0) * rx < 5.5 * w
    k_i = k.astype(np.int16) + 1  # rib number 1..12
    end = np.select([k_i <= 7, k_i <= 10, k_i == 11], [2.6, 2.2, 1.9], 1.6)
    cart_end = np.select([k_i <= 7, k_i <= 10], [3.0, 2.6], 0.0)
    valid = near & ring & (k_i >= 1) & (k_i <= 12) & (phi > 0.35)
    rib = valid & (phi <= end)
    cart = valid & (phi > end) & (phi <= cart_end)
    tissue = ctx.tissue[xs, ys, zs]
    organs = ctx.organs[xs, ys, zs]
    lean = ctx.lean[xs, ys, zs]
    rib &= lean
    tissue[rib] = Tissue.BONE_CORTICAL
    tissue[cart & lean] = Tissue.CARTILAGE
    left = X < 0
    ids = np.where(left, LABEL_IDS["rib_left_1"] - 1, LABEL_IDS["rib_right_1"] - 1) + k_i
    organs[rib] = np.broadcast_to(ids, rib.shape)[rib].astype(np.uint8)
    organs[cart & lean] = LABEL_IDS["costal_cartilages"]
    # sternum (manubrium + body) on the anterior midline
    pts, radii = [], []
    for t_val, r in ((0.195, 16), (0.215, 13), (0.25, 12), (0.29, 11), (0.305, 7)):
        bb = float(np.interp(t_val, B.t[::-1], B.b_lean[::-1]))
        pts.append((0.0, 0.86 * bb, t_val * H))
        radii.append(r * w)
    for dx in (-6 * w, 0.0, 6 * w):
        _paint_tube(
            ctx,
            [(p[0] + dx, p[1], p[2]) for p in pts],
            [r * 0.6 for r in radii],
            Tissue.BONE_CORTICAL,
            "sternum",
            only_free=False,
            shell=2.5,
            core_tissue=Tissue.MARROW_RED,
        )


# ----------------------------------------------------------------------- head & neck


def _paint_head(ctx: _Ctx, B: _Body, head: dict, volume_ml: float, age: float) -> None:
    H, rng = ctx.H, ctx.rng
    ha, hb, hz = head["head_semi"]
    hc = head["head_center_mm"]
    center = (0.0, 6.0, hc)
    box = ctx.box(center, (ha + 4, hb + 4, hz + 4))
    f_out = _ellipsoid_f(ctx, box, center, (ha - 5, hb - 5, hz - 5))
    f_in = _ellipsoid_f(ctx, box, center, (ha - 12, hb - 12, hz - 12))
    X, Y, D = ctx.coords(box)
    base = 0.083 * H + 0.03 * H * np.clip(-(Y - 6) / hb, 0, 1)  # skull base, deeper posteriorly
    cranium = D < base
    skull = (f_out <= 1.0) & (f_in > 1.0) & cranium
    tissue = ctx.tissue[box]
    organs = ctx.organs[box]
    tissue[skull] = Tissue.BONE_CORTICAL
    f_mid = _ellipsoid_f(ctx, box, center, (ha - 8.5, hb - 8.5, hz - 8.5))
    tissue[skull & (np.abs(f_mid - 1.0) < 0.03)] = Tissue.MARROW_RED  # diploe
    organs[skull] = LABEL_IDS["skull"]
    intracranial = (f_in <= 1.0) & cranium
    tissue[intracranial] = Tissue.CSF
    # brain: quantile of the deformed intracranial distance -> atrophy widens the CSF space
    n = ctx.noise(f_in.shape, 40.0)
    fb = np.sqrt(f_in) + 0.03 * n
    brain = ctx.fill_quantile(box, fb, intracranial, volume_ml, organ="brain", tissue=Tissue.BRAIN_WHITE, name="brain")
    thr = float(fb[brain].max()) if brain.any() else 1.0
    cortex = brain & (fb > thr - 0.13)
    cerebellum = brain & (D > 0.075 * H) & (Y < 6 - 0.25 * hb)
    deep = brain & (_ellipsoid_f(ctx, box, (0, 6, hc + 0.01 * H), (30, 25, 20)) <= 1.0)
    tissue[cortex | cerebellum | deep] = Tissue.BRAIN_GREY
    vent = brain & (_ellipsoid_f(ctx, box, (0, 0, hc - 0.005 * H), (14 + 0.1 * max(age - 40, 0), 30, 12)) <= 1.0)
    tissue[vent] = Tissue.CSF
    ctx.texture[box][brain] = 1.0 + 0.08 * ctx.noise(f_in.shape, 15.0)[brain]
    # face: mandible (part of the skull class), eyes and nasal airway
    bj = hb * 0.85
    jaw = [
        (LEFT * 0.55 * ha, -0.05 * hb, 0.10 * H),
        (LEFT * 0.45 * ha, 0.55 * bj, 0.125 * H),
        (0, 0.80 * bj, 0.13 * H),
        (RIGHT * 0.45 * ha, 0.55 * bj, 0.125 * H),
        (RIGHT * 0.55 * ha, -0.05 * hb, 0.10 * H),
    ]
    _paint_tube(
        ctx,
        jaw,
        [7, 8, 8, 8, 7],
        Tissue.BONE_CORTICAL,
        "skull",
        only_free=False,
        shell=2.5,
        core_tissue=Tissue.MARROW_RED,
    )
    maxilla = [(LEFT * 0.4 * ha, 0.5 * hb, 0.098 * H), (0, 0.78 * hb, 0.1 * H), (RIGHT * 0.4 * ha, 0.5 * hb, 0.098 * H)]
    _paint_tube(
        ctx,
        maxilla,
        [9, 10, 9],
        Tissue.BONE_CORTICAL,
        "skull",
        only_free=False,
        shell=2.5,
        core_tissue=Tissue.MARROW_RED,
    )
    for side in (LEFT, RIGHT):
        _paint_tube(ctx, [(side * 32, 0.72 * hb, 0.072 * H)] * 2, [12, 12], Tissue.SOFT, None, only_free=True)
    _paint_tube(ctx, [(0, 0.75 * hb, 0.085 * H), (0, 0.35 * hb, 0.09 * H)], [9, 9], Tissue.AIRWAY, None, only_free=True)
    _ = rng


def _paint_neck_and_airway(ctx: _Ctx, B: _Body, volumes: dict[str, float]) -> None:
    H, w = ctx.H, B.w

    def yv(t_val):
        return float(np.interp(t_val, B.t[::-1], B.y_vb[::-1]))

    def bl(t_val):
        return float(np.interp(t_val, B.t[::-1], B.b_lean[::-1]))

    # pharynx -> larynx -> trachea -> main bronchi (air lumen with a soft-tissue wall)
    pharynx = [(0, yv(0.10) + 22 * w, 0.095 * H), (0, yv(0.125) + 22 * w, 0.125 * H)]
    _paint_tube(ctx, pharynx, [9 * w, 8 * w], Tissue.AIRWAY, None, only_free=True)
    trachea = [(0, yv(0.13) + 24 * w, 0.13 * H), (0, yv(0.17) + 26 * w, 0.17 * H), (0, yv(0.235) + 28 * w, 0.235 * H)]
    _paint_tube(ctx, trachea, [11 * w, 11 * w, 11 * w], Tissue.SOFT, "trachea", only_free=True)
    _paint_tube(
        ctx, trachea, [8.5 * w, 8.5 * w, 8.5 * w], Tissue.AIRWAY, "trachea", only_free=False, overwrite_organs=True
    )
    carina = trachea[-1]
    for side in (LEFT, RIGHT):
        _paint_tube(
            ctx,
            [carina, (side * 40 * w, carina[1] - 5, carina[2] + 25 * w)],
            [7 * w, 5.5 * w],
            Tissue.AIRWAY,
            None,
            only_free=True,
        )
    # esophagus behind the trachea down to the gastro-oesophageal junction
    eso = [
        (0, yv(0.13) + 12 * w, 0.13 * H),
        (LEFT * 5, yv(0.24) + 16 * w, 0.24 * H),
        (LEFT * 15 * w, yv(0.32) + 22 * w, 0.32 * H),
        (LEFT * 35 * w, yv(0.335) + 40 * w, 0.335 * H),
    ]
    _paint_tube(ctx, eso, [7 * w] * 4, Tissue.ESOPHAGUS, "esophagus", only_free=True)
    # thyroid: two lobes beside the trachea and an isthmus
    vol = volumes.get("thyroid_gland", 18.0)
    sc = (vol / 18.0) ** (1 / 3)
    ty = yv(0.165) + 30 * w
    for side in (LEFT, RIGHT):
        c = (side * 18 * w, ty, 0.163 * H)
        box = ctx.box(c, (16, 16, 30))
        f = _ellipsoid_f(ctx, box, c, (9 * sc, 9 * sc, 22 * sc))
        ctx.fill_quantile(box, f, ctx.free(box) & (f < 1.6), vol / 2.0, organ="thyroid_gland", tissue=Tissue.THYROID)


# --------------------------------------------------------------------------- thorax


def _diaphragm(ctx: _Ctx, B: _Body, X, Y, side_dome_t: tuple[float, float]) -> np.ndarray:
    """Depth (mm) of the diaphragm surface under each (x, y)."""
    H = ctx.H
    a = float(np.interp(0.3, B.t[::-1], B.a_lean[::-1]))
    b = float(np.interp(0.3, B.t[::-1], B.b_lean[::-1]))
    dome = np.where(X > 0, side_dome_t[1], side_dome_t[0]) * H  # X > 0: patient's right
    lat = ((np.abs(X) - 0.45 * a) / a) ** 2
    post = np.clip(-Y / b, 0, 1)
    return dome + 0.10 * H * lat + 0.05 * H * post


def _paint_thorax(ctx: _Ctx, B: _Body, vols: dict[str, float], dome_t) -> dict[str, float]:
    H, w, rng = ctx.H, B.w, ctx.rng
    # heart: tilted ellipsoid, apex to the left, anterior, resting on the diaphragm
    vh = vols["heart"]
    sh = (vh / 800.0) ** (1 / 3)
    a3 = float(np.interp(0.265, B.t[::-1], B.a_lean[::-1]))
    b3 = float(np.interp(0.265, B.t[::-1], B.b_lean[::-1]))
    hc = (LEFT * 0.18 * a3, 0.22 * b3, 0.262 * H)
    rot = _rot(yaw=-35 + rng.normal(0, 5), pitch=25 + rng.normal(0, 5))
    box = ctx.box(hc, (95 * sh, 95 * sh, 95 * sh))
    f = _ellipsoid_f(ctx, box, hc, (58 * sh, 50 * sh, 72 * sh), rot) + 0.05 * ctx.noise(ctx.tissue[box].shape, 40)
    cand = ctx.free(box) & ctx.lean[box] & (f < 2.0)
    heart = ctx.fill_quantile(box, f, cand, vh, organ="heart", tissue=Tissue.BLOOD, name="heart")
    # left-ventricular myocardium: shell of an ellipsoid towards the apex
    lv_c = (hc[0] + LEFT * 18 * sh, hc[1] + 8 * sh, hc[2] + 18 * sh)
    f_lv = _ellipsoid_f(ctx, box, lv_c, (34 * sh, 30 * sh, 46 * sh), rot)
    f_cav = _ellipsoid_f(ctx, box, lv_c, (23 * sh, 19 * sh, 34 * sh), rot)
    myo = heart & (f_lv <= 1.0) & (f_cav > 1.0)
    ctx.tissue[box][myo] = Tissue.MYOCARDIUM
    ctx.texture[box][myo] = np.clip(1.0 + 0.25 * ctx.noise(f.shape, 25.0)[myo], 0.4, 2.0)

    # aorta: ascending, arch, descending thoracic and abdominal down to the bifurcation
    r = vols["aorta_radius_mm"]

    def yv(t_val):
        return float(np.interp(t_val, B.t[::-1], B.y_vb[::-1]))

    def bv(t_val):
        return float(np.interp(t_val, B.t[::-1], B.b_lean[::-1]))

    root = (hc[0] + RIGHT * 25 * sh, hc[1] + 5, hc[2] - 25 * sh)
    pts = [
        root,
        (RIGHT * 12 * w, 0.25 * bv(0.23), 0.225 * H),
        (RIGHT * 2 * w, 0.05 * bv(0.21), 0.21 * H),
        (LEFT * 18 * w, yv(0.215) + 30 * w, 0.22 * H),
        (LEFT * 22 * w, yv(0.26) + 28 * w, 0.26 * H),
        (LEFT * 18 * w, yv(0.33) + 26 * w, 0.33 * H),
        (LEFT * 10 * w, yv(0.37) + 28 * w, 0.37 * H),
        (LEFT * 5 * w, yv(0.41) + 28 * w, 0.41 * H),
    ]
    radii = [1.35 * r, 1.3 * r, 1.2 * r, 1.05 * r, r, 0.95 * r, 0.85 * r, 0.8 * r]
    _paint_tube(ctx, pts, radii, Tissue.BLOOD, "aorta", only_free=True)
    bif = pts[-1]
    for side, art, ven in (
        (LEFT, "iliac_artery_left", "iliac_vena_left"),
        (RIGHT, "iliac_artery_right", "iliac_vena_right"),
    ):
        ipts = [
            bif,
            (side * 45 * w, yv(0.44) + 30 * w, 0.445 * H),
            (side * 70 * w, 0.1 * bv(0.47), 0.475 * H),
            (side * 80 * w, 0.45 * bv(0.5), 0.5 * H),
        ]
        _paint_tube(ctx, ipts, [0.55 * r, 0.5 * r, 0.45 * r, 0.45 * r], Tissue.BLOOD, art, only_free=True)
        vpts = [(RIGHT * 20 * w, yv(0.42) + 20 * w, 0.42 * H)] + [
            (p[0] - side * 12 * w, p[1] - 8, p[2]) for p in ipts[1:]
        ]
        _paint_tube(ctx, vpts, [0.65 * r, 0.6 * r, 0.55 * r, 0.55 * r], Tissue.BLOOD_VENOUS, ven, only_free=True)
    ivc = [
        (RIGHT * 22 * w, 0.1 * bv(0.29), 0.285 * H),
        (RIGHT * 22 * w, yv(0.33) + 30 * w, 0.33 * H),
        (RIGHT * 20 * w, yv(0.42) + 20 * w, 0.42 * H),
    ]
    _paint_tube(ctx, ivc, [11 * w, 11 * w, 10 * w], Tissue.BLOOD_VENOUS, "inferior_vena_cava", only_free=True)
    svc = [(RIGHT * 25 * w, 0.2 * bv(0.2), 0.195 * H), (RIGHT * 22 * w, 0.2 * bv(0.245), 0.245 * H)]
    _paint_tube(ctx, svc, [9 * w, 9 * w], Tissue.BLOOD_VENOUS, "superior_vena_cava", only_free=True)

    # lungs: thoracic cavity inside the ribs, above the diaphragm, outside the mediastinum
    zs = ctx.zr_t(0.165, 0.40)
    amax, bmax = float(B.a_lean[zs].max()), float(B.b_lean[zs].max())
    full = (ctx.xr(-amax, amax), ctx.yr(-bmax - 20, bmax + 20), zs)
    X, Y, D = ctx.coords(full)
    a = B.a_lean[zs][None, None, :] * 0.86
    b = B.b_lean[zs][None, None, :] * 0.82
    yc = B.yc[zs][None, None, :] + 4
    rho = np.sqrt((X / a) ** 2 + ((Y - yc) / b) ** 2)
    apex = 0.168 * H
    taper = np.clip((D - apex) / (0.05 * H), 0.05, 1.0)  # narrow apices
    cavity = rho <= np.sqrt(taper)
    diaph = _diaphragm(ctx, B, X, Y, dome_t)
    cavity &= D < diaph
    med_half = (np.interp(B.t[zs], [0.165, 0.2, 0.24, 0.3, 0.4], [14, 22, 28, 30, 30]) * w)[None, None, :]
    yv_arr = B.y_vb[zs][None, None, :]
    mediastinum = (np.abs(X) < med_half) & (Y > yv_arr - 25 * w)
    cavity &= ~mediastinum
    cavity &= ctx.free(full) & ctx.lean[full]
    noise = ctx.noise(cavity.shape, 60.0)
    f = rho + 0.04 * noise
    lungs = ctx.fill_quantile(full, f, cavity, vols["lungs"], tissue=Tissue.LUNG, name="lungs")
    # lobes: oblique major fissure on both sides, horizontal fissure on the right
    dT4 = 0.5 * sum(dict((n, (t0, t1)) for n, t0, t1 in _vertebra_levels(H))["vertebrae_T4"])
    s_major = (D - dT4) - 0.9 * (Y - yv_arr)  # > 0 : lower lobe
    right = X > 0
    organs = ctx.organs[full]
    lower = s_major > 0.02 * H
    lab = np.where(
        right,
        np.where(
            lower,
            LABEL_IDS["lung_lower_lobe_right"],
            np.where(D > 0.245 * H, LABEL_IDS["lung_middle_lobe_right"], LABEL_IDS["lung_upper_lobe_right"]),
        ),
        np.where(lower, LABEL_IDS["lung_lower_lobe_left"], LABEL_IDS["lung_upper_lobe_left"]),
    )
    organs[lungs] = lab[lungs].astype(np.uint8)
    # pulmonary vessels: thin bright structures, denser towards the hila
    vessel_field = ctx.noise(cavity.shape, 9.0) + 1.2 * (1.0 - rho)
    tissue = ctx.tissue[full]
    thr = np.quantile(vessel_field[lungs], 0.91) if lungs.any() else 0.0
    tissue[lungs & (vessel_field > thr)] = Tissue.LUNG_VESSEL
    ctx.texture[full][lungs] = 1.0 + 0.1 * noise[lungs]
    return {"heart_center_depth_mm": hc[2]}


# ------------------------------------------------------------------------- abdomen


def _paint_abdomen(ctx: _Ctx, B: _Body, vols: dict[str, float], dome_t) -> None:
    H, w, rng = ctx.H, B.w, ctx.rng
    zs = ctx.zr_t(0.27, 0.53)
    amax, bmax = float(B.a_lean[zs].max()), float(B.b_lean[zs].max())
    full = (ctx.xr(-amax, amax), ctx.yr(-bmax - 20, bmax + 20), zs)
    X, Y, D = ctx.coords(full)
    tt = B.t[zs]
    shrink = np.interp(tt, [0.27, 0.44, 0.53], [1.0, 1.0, 0.55]).astype(np.float32)[None, None, :]
    a = (B.a_lean[zs][None, None, :] - 16 * w) * shrink
    b = (B.b_lean[zs][None, None, :] - 14 * w) * np.sqrt(shrink)
    yc = B.yc[zs][None, None, :] + 6 * w
    rho = np.sqrt((X / a) ** 2 + ((Y - yc) / b) ** 2)
    yv = B.y_vb[zs][None, None, :]
    cavity = (rho <= 1.0) & (D >= _diaphragm(ctx, B, X, Y, dome_t))
    cavity &= ~((np.abs(X) < 40 * w) & (Y < yv + 20 * w))  # spine and psoas
    cavity &= ~(Y < yv - 5 * w)  # back muscles
    cavity &= ctx.lean[full]
    cav_full = np.zeros(ctx.shape, bool)
    # psoas / iliopsoas and back muscles (labels on muscle tissue)
    tissue, organs = ctx.tissue[full], ctx.organs[full]
    for side, name in ((LEFT, "iliopsoas_left"), (RIGHT, "iliopsoas_right")):
        r_ps = (np.interp(tt, [0.355, 0.40, 0.45, 0.50], [8, 18, 24, 20]) * w)[None, None, :]
        xc = (side * np.interp(tt, [0.355, 0.45, 0.50], [30, 45, 70]) * w)[None, None, :]
        ycc = yv + (np.interp(tt, [0.355, 0.45, 0.5], [8, 20, 40]) * w)[None, None, :]
        ps = ((X - xc) ** 2 + (Y - ycc) ** 2 <= r_ps**2) & (tt[None, None, :] > 0.355) & (organs == 0)
        ps &= (tissue == Tissue.MUSCLE) | cavity
        tissue[ps] = Tissue.MUSCLE
        organs[ps] = LABEL_IDS[name]
    cavity &= organs == 0
    cav_full[full] = cavity
    zb = ctx.zr_t(0.19, 0.45)
    Xb, Yb, _ = ctx.coords((slice(None), slice(None), zb))
    yvb = B.y_vb[zb][None, None, :]
    back = (
        (ctx.tissue[:, :, zb] == Tissue.MUSCLE)
        & (ctx.organs[:, :, zb] == 0)
        & (Yb < yvb - 12 * w)
        & (np.abs(Xb) < 75 * w)
        & (np.abs(Xb) > 3)
    )
    ob = ctx.organs[:, :, zb]
    ob[back & (Xb < 0)] = LABEL_IDS["autochthon_left"]
    ob[back & (Xb > 0)] = LABEL_IDS["autochthon_right"]

    def a_at(t_val):
        return float(np.interp(t_val, B.t[::-1], B.a_lean[::-1])) - 16 * w

    def b_at(t_val):
        return float(np.interp(t_val, B.t[::-1], B.b_lean[::-1])) - 14 * w

    def y_at(t_val):
        return float(np.interp(t_val, B.t[::-1], B.y_vb[::-1]))

    def organ(
        name,
        center,
        semi,
        rot=None,
        tissue_class=Tissue.SOFT,
        vol=None,
        noise_amp=0.12,
        taper=None,
        tex_cv=0.0,
        extent=1.8,
    ):
        vol = vols[name] if vol is None else vol
        box = ctx.box(center, tuple(extent * max(semi) * np.ones(3)))
        if any(sl.stop - sl.start <= 0 for sl in box):
            return np.zeros((0, 0, 0), bool), box
        f = _ellipsoid_f(ctx, box, center, semi, rot)
        if taper is not None:
            Xl, _, _ = ctx.coords(box)
            f = f * (1.0 + taper * np.clip((center[0] - Xl) * np.sign(center[0] or 1) / semi[0], 0, None))
        shape = f.shape
        f = f + noise_amp * ctx.noise(shape, 50.0) * (1 + f)
        cav = cav_full[box]
        cand = cav & ctx.free(box) & (f < 4.0)
        mask = ctx.fill_quantile(box, f, cand, vol, organ=name, tissue=tissue_class, name=name)
        if tex_cv:
            ctx.texture[box][mask] = 1.0 + tex_cv * ctx.noise(shape, 20.0)[mask]
        return mask, box

    # kidneys: retroperitoneal at T12-L3, upper poles tilted medially and posteriorly
    for side, name, t_c in ((LEFT, "kidney_left", 0.366), (RIGHT, "kidney_right", 0.378)):
        sk = (vols[name] / 150.0) ** (1 / 3)
        c = (side * 72 * w, y_at(t_c) + 12 * w, t_c * H)
        rot = _rot(yaw=side * 20, pitch=side * -12 + rng.normal(0, 4), roll=-15)
        mask, box = organ(name, c, (27 * sk, 30 * sk, 56 * sk), rot, Tissue.KIDNEY, noise_amp=0.08, tex_cv=0.05)
        if mask.size:
            f_p = _ellipsoid_f(ctx, box, (c[0] - side * 12 * sk, c[1] + 6, c[2]), (9 * sk, 10 * sk, 26 * sk), rot)
            ctx.tissue[box][mask & (f_p <= 1.0)] = Tissue.URINE_KIDNEY
        # adrenal gland on the upper pole
        adr = "adrenal_gland_left" if side == LEFT else "adrenal_gland_right"
        ca = (side * 45 * w, y_at(t_c - 0.03) + 25 * w, (t_c - 0.04) * H)
        organ(adr, ca, (6, 12, 14), None, Tissue.SOFT, vol=vols["adrenal_glands"] / 2.0, noise_amp=0.05)
    # liver: right upper quadrant under the dome, left lobe tapering across the midline
    a_l, b_l = a_at(0.33), b_at(0.33)
    sl = (vols["liver"] / 1700.0) ** (1 / 3)
    organ(
        "liver",
        (RIGHT * 0.38 * a_l, 0.05 * b_l, 0.325 * H),
        (0.62 * a_l, 0.85 * b_l, 95 * sl),
        _rot(yaw=rng.normal(0, 5)),
        Tissue.LIVER,
        taper=0.9,
        noise_amp=0.10,
        tex_cv=0.06,
    )
    # gallbladder under the liver
    organ(
        "gallbladder",
        (RIGHT * 0.42 * a_l, 0.55 * b_l, 0.355 * H),
        (14, 14, 35),
        _rot(pitch=-25),
        Tissue.BILE,
        noise_amp=0.05,
    )
    # spleen: posterolateral left upper quadrant along the ribs
    ss = (vols["spleen"] / 145.0) ** (1 / 3)
    organ(
        "spleen",
        (LEFT * 0.68 * a_l, -0.45 * b_l, 0.315 * H),
        (28 * ss, 52 * ss, 55 * ss),
        _rot(yaw=35 + rng.normal(0, 8)),
        Tissue.SPLEEN,
        noise_amp=0.10,
        tex_cv=0.06,
    )
    # stomach: left upper quadrant, anterior to the spleen; gas cap in the fundus
    st = (vols["stomach"] / 385.0) ** (1 / 3)
    mask, box = organ(
        "stomach",
        (LEFT * 0.35 * a_l, 0.25 * b_l, 0.33 * H),
        (45 * st, 38 * st, 75 * st),
        _rot(yaw=20, pitch=-20),
        Tissue.STOMACH,
        noise_amp=0.10,
    )
    if mask.size and mask.any():
        _, _, D3 = ctx.coords(box)
        top = np.quantile(np.broadcast_to(D3, mask.shape)[mask], 0.15)
        ctx.tissue[box][mask & (D3 < top)] = Tissue.GAS
    # pancreas: a curved capsule from the head (right) to the tail (near the spleen)
    pv = vols["pancreas"]
    pts = [
        (RIGHT * 30 * w, y_at(0.375) + 55 * w, 0.375 * H),
        (LEFT * 15 * w, y_at(0.365) + 62 * w, 0.365 * H),
        (LEFT * 75 * w, y_at(0.35) + 40 * w, 0.345 * H),
    ]
    box = ctx.box((LEFT * 20 * w, y_at(0.36) + 50 * w, 0.36 * H), (130 * w, 60 * w, 60))
    dist = np.full(ctx.tissue[box].shape, np.inf, np.float32)
    for p0, p1 in zip(pts[:-1], pts[1:]):
        dist = np.minimum(dist, _segment_dist(ctx, box, p0, p1)[0])
    f = dist + 3.0 * ctx.noise(dist.shape, 30.0)
    cand = ctx.free(box) & (dist < 30) & cav_full[box]
    ctx.fill_quantile(box, f, cand, pv, organ="pancreas", tissue=Tissue.PANCREAS, name="pancreas")
    # urinary bladder behind the symphysis; prostate below it in men
    b_p = b_at(0.49)
    sb = (vols["urinary_bladder"] / 150.0) ** (1 / 3)
    mask, box = organ(
        "urinary_bladder",
        (0.0, 0.40 * b_p, (0.492 - 0.006 * (sb - 1)) * H),
        (40 * sb, 35 * sb, 32 * sb),
        None,
        Tissue.URINE_BLADDER,
        noise_amp=0.04,
        extent=2.2,
    )
    if mask.size and mask.any():
        wall = mask & ~ndimage.binary_erosion(mask, iterations=1)
        ctx.tissue[box][wall] = Tissue.SOFT
    if ctx.d.is_male:
        organ("prostate", (0.0, 0.25 * b_p, 0.515 * H), (20, 14, 17), None, Tissue.PROSTATE, noise_amp=0.05, extent=2.5)
    # colon frame with gas and faeces, then small bowel and visceral fat in the rest of the cavity
    a4, a3 = a_at(0.40), a_at(0.345)
    colon = [
        (RIGHT * 0.62 * a4, 0.05 * b_at(0.44), 0.445 * H),
        (RIGHT * 0.62 * a4, 0.0, 0.37 * H),
        (RIGHT * 0.35 * a3, 0.55 * b_at(0.37), 0.365 * H),
        (LEFT * 0.3 * a3, 0.55 * b_at(0.38), 0.38 * H),
        (LEFT * 0.66 * a3, 0.05 * b_at(0.34), 0.335 * H),
        (LEFT * 0.66 * a4, -0.05 * b_at(0.42), 0.43 * H),
        (LEFT * 0.35 * a4, 0.25 * b_at(0.47), 0.47 * H),
        (0.0, y_at(0.445) + 20 * w, 0.505 * H),
    ]
    rc = 21 * w
    _paint_tube(
        ctx,
        colon,
        [rc * 1.2] + [rc] * 6 + [rc * 0.8],
        Tissue.BOWEL,
        "colon",
        only_free=True,
        shell=4.0,
        core_tissue=Tissue.COLON_CONTENT,
    )
    t_full = ctx.tissue[full]
    o_full = ctx.organs[full]
    colon_in = (o_full == LABEL_IDS["colon"]) & (t_full == Tissue.COLON_CONTENT)
    gas_field = ctx.noise(colon_in.shape, 18.0)
    t_full[colon_in & (gas_field > 0.6)] = Tissue.GAS
    free = cavity & (o_full == 0) & (t_full != Tissue.BONE_CORTICAL)
    n_free = int(free.sum())
    vat_share = (0.22 if ctx.d.is_male else 0.12) * float(np.clip(1.0 + 0.01 * (ctx.d.age - 50.0), 0.6, 1.4))
    vat_ml = B.fat_l * 1000.0 * vat_share
    p_fat = float(np.clip(vat_ml / max(n_free * ctx.voxel_ml, 1.0), 0.08, 0.85))
    field_ = ctx.noise(free.shape, 22.0)
    # fat gathers peripherally (mesentery, perirenal), bowel centrally
    field_ += 0.8 * rho
    if n_free:
        thr = np.quantile(field_[free], 1.0 - p_fat)
        fat = free & (field_ > thr)
        bowel = free & ~fat
        t_full[fat] = Tissue.FAT
        t_full[bowel] = Tissue.BOWEL
        o_full[bowel] = LABEL_IDS["small_bowel"]
        gas = bowel & (ctx.noise(free.shape, 8.0) > 2.0)
        t_full[gas] = Tissue.GAS
        ctx.texture[full][bowel] = np.clip(1.0 + 0.3 * ctx.noise(free.shape, 15.0)[bowel], 0.3, 2.5)
    ctx.volumes["visceral_fat"] = float((cavity & (t_full == Tissue.FAT)).sum() * ctx.voxel_ml)


# -------------------------------------------------------------------------- driver


def build_anatomy(
    d: Demographics, volumes: dict[str, float], rng: np.random.Generator, spacing: float, fov: str = "whole_body"
) -> Anatomy:
    """Paint one subject's anatomy; ``volumes`` from :func:`.organ_sizes.sample_organ_volumes`."""
    shape = grid_shape(d, spacing, fov)
    ctx = _Ctx(d, shape, spacing, rng)
    B = _body_dims(ctx)
    head = _paint_body(ctx, B)
    vols = dict(volumes)
    vols.setdefault("aorta_radius_mm", 11.0)
    dome_t = (0.305 + rng.normal(0, 0.004), 0.297 + rng.normal(0, 0.004))  # (left, right): right dome higher
    _paint_spine(ctx, B)
    _paint_ribs_and_sternum(ctx, B)
    _paint_pelvis_and_legs(ctx, B)
    _paint_shoulders_and_arms(ctx, B)
    _paint_head(ctx, B, head, vols["brain"], d.age)
    _paint_neck_and_airway(ctx, B, vols)
    _paint_thorax(ctx, B, vols, dome_t)
    _paint_abdomen(ctx, B, vols, dome_t)
    body = ctx.body
    ctx.tissue[~body] = Tissue.AIR
    ctx.organs[~body] = 0
    fat_ml = float((ctx.tissue == Tissue.FAT).sum() * ctx.voxel_ml)
    ctx.volumes["fat_total"] = fat_ml
    landmarks = {"height_mm": ctx.H, "w_lateral": B.w, "subcutaneous_fat_mm": B.sc_base}
    return Anatomy(ctx.tissue, ctx.organs, ctx.texture, body, ctx.s, landmarks, ctx.volumes)
