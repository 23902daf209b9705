"""Thorax: diaphragm, heart (a data row) with left-ventricular myocardium, lungs with lobes and vessels.

The lungs take the thoracic cavity inside the ribs, above the diaphragm and outside the
mediastinum, to their sampled volume; the diaphragm also bounds the abdominal cavity.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...organs import LABEL_IDS
from .body import BodyProfile
from .canvas import Canvas
from .grid import LEFT
from .painter import OrganShape, PaintedOrgan, Rotation, paint_organ
from .shapes import ellipsoid_level
from .skeleton import vertebra_centre_mm
from .tissue import Tissue

__all__ = ["HEART", "diaphragm_depth", "paint_heart", "paint_lungs", "sample_diaphragm_domes"]

#: heart: tilted ellipsoid, apex to the left, anterior, resting on the diaphragm
HEART = OrganShape(
    organ="heart",
    tissue=Tissue.BLOOD,
    frame="trunk",
    frame_level=0.265,
    centre=(LEFT * 0.18, 0.22, 0.262),
    semi_axes=(58, 50, 72),
    reference_volume_ml=800.0,
    rotation=Rotation(yaw=-35, pitch=25, yaw_sd=5, pitch_sd=5),
    box_half_mm=(95, 95, 95),
    noise=0.05,
    noise_scale_mm=40,
    noise_grows_outward=False,
    candidate_below=2.0,
)


def sample_diaphragm_domes(rng: np.random.Generator) -> tuple[float, float]:
    """Height fractions of the (left, right) diaphragm domes; the right dome sits higher."""
    return (0.305 + rng.normal(0, 0.004), 0.297 + rng.normal(0, 0.004))


def diaphragm_depth(
    canvas: Canvas, profile: BodyProfile, x: np.ndarray, y: np.ndarray, domes: tuple[float, float]
) -> np.ndarray:
    """Depth (mm) of the diaphragm surface under each (x, y): domes, lower laterally and posteriorly."""
    height = canvas.height_mm
    half_width = profile.half_width_at(0.3)
    half_depth = profile.half_depth_at(0.3)
    dome = np.where(x > 0, domes[1], domes[0]) * height  # x > 0: patient's right
    lateral = ((np.abs(x) - 0.45 * half_width) / half_width) ** 2
    posterior = np.clip(-y / half_depth, 0, 1)
    return dome + 0.10 * height * lateral + 0.05 * height * posterior


def paint_heart(canvas: Canvas, profile: BodyProfile, volumes: Mapping[str, float]) -> PaintedOrgan:
    """The heart row (blood), then the left-ventricular myocardium as an ellipsoid shell towards the apex."""
    heart = paint_organ(canvas, HEART, profile.frame(HEART.frame, HEART.level), volumes, canvas.lean)
    if not heart.mask.size:
        return heart
    centre, scale, rotation = heart.centre, heart.scale, heart.rotation
    ventricle = (centre[0] + LEFT * 18 * scale, centre[1] + 8 * scale, centre[2] + 18 * scale)
    outer = ellipsoid_level(canvas, heart.box, ventricle, (34 * scale, 30 * scale, 46 * scale), rotation)
    cavity = ellipsoid_level(canvas, heart.box, ventricle, (23 * scale, 19 * scale, 34 * scale), rotation)
    myocardium = heart.mask & (outer <= 1.0) & (cavity > 1.0)
    canvas.tissue[heart.box][myocardium] = Tissue.MYOCARDIUM
    uptake = 1.0 + 0.25 * canvas.noise(heart.mask.shape, 25.0)[myocardium]
    canvas.texture[heart.box][myocardium] = np.clip(uptake, 0.4, 2.0)
    return heart


def paint_lungs(canvas: Canvas, profile: BodyProfile, volume_ml: float, domes: tuple[float, float]) -> None:
    """Lungs to their sampled volume, five lobes split by the fissures, pulmonary vessels denser at the hila."""
    height, scale = canvas.height_mm, profile.width_scale
    z_part = canvas.fraction_slice(0.165, 0.40)
    widest, deepest = float(profile.half_width[z_part].max()), float(profile.half_depth[z_part].max())
    region = (canvas.x_slice(-widest, widest), canvas.y_slice(-deepest - 20, deepest + 20), z_part)
    x, y, depth = canvas.coordinates(region)
    half_width = profile.half_width[z_part][None, None, :] * 0.86
    half_depth = profile.half_depth[z_part][None, None, :] * 0.82
    centre_y = profile.centre_y[z_part][None, None, :] + 4
    radial = np.sqrt((x / half_width) ** 2 + ((y - centre_y) / half_depth) ** 2)
    apex = 0.168 * height
    taper = np.clip((depth - apex) / (0.05 * height), 0.05, 1.0)  # narrow apices
    cavity = radial <= np.sqrt(taper)
    cavity &= depth < diaphragm_depth(canvas, profile, x, y, domes)
    mediastinum_half_width = (
        np.interp(profile.height_fraction[z_part], [0.165, 0.2, 0.24, 0.3, 0.4], [14, 22, 28, 30, 30]) * scale
    )[None, None, :]
    spine_y = profile.spine_y[z_part][None, None, :]
    mediastinum = (np.abs(x) < mediastinum_half_width) & (y > spine_y - 25 * scale)
    cavity &= ~mediastinum
    cavity &= canvas.free(region) & canvas.lean[region]
    deformation = canvas.noise(cavity.shape, 60.0)
    lungs = canvas.fill_quantile(
        region, radial + 0.04 * deformation, cavity, volume_ml, tissue=Tissue.LUNG, name="lungs"
    )
    # lobes: oblique major fissure on both sides, horizontal fissure on the right
    major_fissure = (depth - vertebra_centre_mm(height, "vertebrae_T4")) - 0.9 * (y - spine_y)  # > 0: lower lobe
    right = x > 0
    lower = major_fissure > 0.02 * height
    lobe = np.where(
        right,
        np.where(
            lower,
            LABEL_IDS["lung_lower_lobe_right"],
            np.where(depth > 0.245 * height, LABEL_IDS["lung_middle_lobe_right"], LABEL_IDS["lung_upper_lobe_right"]),
        ),
        np.where(lower, LABEL_IDS["lung_lower_lobe_left"], LABEL_IDS["lung_upper_lobe_left"]),
    )
    canvas.organs[region][lungs] = lobe[lungs].astype(np.uint8)
    # pulmonary vessels: thin bright structures, denser towards the hila
    vessel_field = canvas.noise(cavity.shape, 9.0) + 1.2 * (1.0 - radial)
    threshold = np.quantile(vessel_field[lungs], 0.91) if lungs.any() else 0.0
    canvas.tissue[region][lungs & (vessel_field > threshold)] = Tissue.LUNG_VESSEL
    canvas.texture[region][lungs] = 1.0 + 0.1 * deformation[lungs]
