"""Lesion shapes in mm: sphere, ellipsoid, lobulated, each with the volume of the requested diameter.

A shape is star-shaped around its centre and described by its radius along every direction,
r(u). ``diameter_mm`` is the equivalent-sphere diameter, so every shape has the volume
pi d^3 / 6 whatever its form:

* sphere: r(u) = d / 2;
* ellipsoid: semi-axes (d / 2) * e with prod(e) = 1, log(e) ~ N(0, 0.2) (axis ratios ~0.7-1.4,
  as nodes and metastases are oval), randomly oriented;
* lobulated: r(u) = r0 * (1 + 0.35 * sum_j w_j exp(5 (u . v_j - 1))), three to five bumps
  in random directions v_j, r0 set so the volume is that of the sphere.

Voxels get their partial-volume occupancy from the radial distance to the surface over the
voxel's width along that direction (a linear ramp: the fraction of the voxel inside), so a
lesion smaller than a voxel still has the right volume on coarse grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["LesionShape", "make_shape", "ELLIPSOID_LOG_SD", "LOBE_AMPLITUDE", "LOBE_SHARPNESS", "LOBE_COUNT"]

ELLIPSOID_LOG_SD = 0.2
LOBE_AMPLITUDE = 0.35
LOBE_SHARPNESS = 5.0
LOBE_COUNT = (3, 5)


def _fibonacci_sphere(n: int = 2000) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere (deterministic: volume integrals of r(u))."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = math.pi * (1.0 + 5.0**0.5) * k
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_DIRECTIONS = _fibonacci_sphere()


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass(frozen=True)
class LesionShape:
    """A star-shaped lesion of equivalent-sphere ``diameter_mm`` (``kind`` in ``spec.SHAPES``)."""

    kind: str
    diameter_mm: float
    rotation: np.ndarray  # columns: the shape's own axes in world mm
    semi_axes: np.ndarray  # ellipsoid: (d / 2) * e; others: (d / 2,) * 3
    lobes: np.ndarray  # (k, 3) unit bump directions (lobulated; empty otherwise)
    lobe_weights: np.ndarray
    lobe_radius_mm: float  # r0 of the lobulated form

    def radius_along(self, directions: np.ndarray) -> np.ndarray:
        """r(u) in mm for unit vectors ``directions`` of shape (3, ...)."""
        if self.kind == "ellipsoid":
            local = np.tensordot(self.rotation.T, directions, axes=1)
            q = sum((local[i] / self.semi_axes[i]) ** 2 for i in range(3))
            return 1.0 / np.sqrt(q)
        if self.kind == "lobulated":
            bumps = sum(w * np.exp(LOBE_SHARPNESS * (np.tensordot(v, directions, axes=1) - 1.0))
                        for v, w in zip(self.lobes, self.lobe_weights))
            return self.lobe_radius_mm * (1.0 + LOBE_AMPLITUDE * bumps)
        return np.full(directions.shape[1:], self.diameter_mm / 2.0)

    @property
    def bounding_radius_mm(self) -> float:
        """The largest r(u) (plus 2 % for directions between the sampled ones)."""
        return float(self.radius_along(_DIRECTIONS.T).max() * 1.02)

    def occupancy(self, offsets_mm: np.ndarray, voxel_axes_mm: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Fraction of each voxel inside the shape (``scale`` < 1: the shape shrunk about its centre).

        ``offsets_mm``: (3, ...) vectors from the centre; ``voxel_axes_mm``: (3, 3) affine columns, whose
        projections on the radial direction give the voxel's width along it.
        """
        distance = np.sqrt((offsets_mm**2).sum(axis=0))
        safe = np.maximum(distance, 1e-9)
        directions = offsets_mm / safe
        radius = scale * self.radius_along(directions)
        width = sum(np.abs(np.tensordot(voxel_axes_mm[:, i], directions, axes=1)) for i in range(3))
        return np.clip(0.5 - (distance - radius) / np.maximum(width, 1e-6), 0.0, 1.0)


def make_shape(kind: str, diameter_mm: float, rng: np.random.Generator) -> LesionShape:
    """A random shape of this kind and equivalent-sphere diameter (draws from ``rng`` for every kind)."""
    radius = diameter_mm / 2.0
    rotation = _random_rotation(rng)
    log_axes = rng.normal(0.0, ELLIPSOID_LOG_SD, size=3)
    count = int(rng.integers(LOBE_COUNT[0], LOBE_COUNT[1] + 1))
    lobes = rng.normal(size=(LOBE_COUNT[1], 3))
    weights = rng.uniform(0.5, 1.0, size=LOBE_COUNT[1])
    empty = np.zeros((0, 3))
    if kind == "ellipsoid":
        factors = np.exp(log_axes - log_axes.mean())  # product 1: the sphere's volume
        return LesionShape(kind, diameter_mm, rotation, radius * factors, empty, np.zeros(0), radius)
    if kind == "lobulated":
        lobes = lobes[:count] / np.linalg.norm(lobes[:count], axis=1, keepdims=True)
        shape = LesionShape(kind, diameter_mm, rotation, np.full(3, radius), lobes, weights[:count], 1.0)
        mean_cube = float((shape.radius_along(_DIRECTIONS.T) ** 3).mean())  # volume = 4/3 pi <r^3>
        return LesionShape(kind, diameter_mm, rotation, np.full(3, radius), lobes, weights[:count],
                           radius / mean_cube ** (1.0 / 3.0))
    return LesionShape(kind, diameter_mm, rotation, np.full(3, radius), empty, np.zeros(0), radius)
