"""Implicit shape functions evaluated on a canvas box: ellipsoids, segments, per-slice ellipses.

Each returns a value per voxel (<= 1 inside for ellipsoids, a distance in mm for segments)
rather than a mask, so painters can deform the shape with noise and threshold it at the
quantile that meets a sampled volume.
"""

from __future__ import annotations

import math

import numpy as np

from .canvas import Box, Canvas

__all__ = ["ellipsoid_level", "per_slice_ellipses", "rotation_matrix", "segment_distance"]


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix from angles (deg) about the depth (yaw), y (pitch) and x (roll) axes."""
    yaw_rad, pitch_rad, roll_rad = np.deg2rad([yaw, pitch, roll])
    cos, sin = math.cos, math.sin
    about_depth = np.array([[cos(yaw_rad), -sin(yaw_rad), 0], [sin(yaw_rad), cos(yaw_rad), 0], [0, 0, 1]])
    about_y = np.array([[cos(pitch_rad), 0, sin(pitch_rad)], [0, 1, 0], [-sin(pitch_rad), 0, cos(pitch_rad)]])
    about_x = np.array([[1, 0, 0], [0, cos(roll_rad), -sin(roll_rad)], [0, sin(roll_rad), cos(roll_rad)]])
    return (about_depth @ about_y @ about_x).astype(np.float32)


def ellipsoid_level(
    canvas: Canvas,
    box: Box,
    centre: tuple[float, float, float],
    semi_axes: tuple[float, float, float],
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised squared distance from an ellipsoid's centre (1 on its surface) over ``box``."""
    x, y, depth = canvas.coordinates(box)
    along_x, along_y, along_depth = x - centre[0], y - centre[1], depth - centre[2]
    if rotation is not None:
        inverse = rotation.T
        along_x, along_y, along_depth = (
            inverse[0, 0] * along_x + inverse[0, 1] * along_y + inverse[0, 2] * along_depth,
            inverse[1, 0] * along_x + inverse[1, 1] * along_y + inverse[1, 2] * along_depth,
            inverse[2, 0] * along_x + inverse[2, 1] * along_y + inverse[2, 2] * along_depth,
        )
    return (along_x / semi_axes[0]) ** 2 + (along_y / semi_axes[1]) ** 2 + (along_depth / semi_axes[2]) ** 2


def segment_distance(canvas: Canvas, box: Box, start, end) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from each voxel in ``box`` to the segment start-end, and the parameter along it."""
    x, y, depth = canvas.coordinates(box)
    start = np.asarray(start, np.float32)
    direction = np.asarray(end, np.float32) - start
    length_squared = float(direction @ direction) or 1e-6
    along = (
        (x - start[0]) * direction[0] + (y - start[1]) * direction[1] + (depth - start[2]) * direction[2]
    ) / length_squared
    along = np.clip(along, 0.0, 1.0)
    off_x = x - (start[0] + along * direction[0])
    off_y = y - (start[1] + along * direction[1])
    off_depth = depth - (start[2] + along * direction[2])
    return np.sqrt(off_x * off_x + off_y * off_y + off_depth * off_depth), along


def per_slice_ellipses(
    canvas: Canvas,
    centre_x: np.ndarray,
    centre_y: np.ndarray,
    half_width: np.ndarray,
    half_depth: np.ndarray,
) -> np.ndarray:
    """Mask of one ellipse per z slice of a slab over the whole transaxial plane.

    The arrays (one value per slice of the slab) give each slice's centre and semi-axes (mm);
    this is how body cross-sections (trunk, limbs, head) follow anthropometric profiles.
    """
    x = canvas.x[:, None, None]
    y = canvas.y[None, :, None]
    return ((x - centre_x[None, None, :]) / half_width[None, None, :]) ** 2 + (
        (y - centre_y[None, None, :]) / half_depth[None, None, :]
    ) ** 2 <= 1.0
