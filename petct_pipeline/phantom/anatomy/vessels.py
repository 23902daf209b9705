"""Great vessels: aorta from the heart to its bifurcation, iliac arteries and veins, venae cavae.

Painted after the heart and before the lungs, so the lungs wrap around them. Radii follow
the subject's sampled aortic radius; the venous side is wider and darker in CT.
"""

from __future__ import annotations

from .body import BodyProfile
from .canvas import Canvas
from .grid import LEFT, RIGHT
from .painter import PaintedOrgan, paint_tube
from .tissue import Tissue

__all__ = ["paint_great_vessels"]


def paint_great_vessels(canvas: Canvas, profile: BodyProfile, heart: PaintedOrgan, aorta_radius_mm: float) -> None:
    """Ascending aorta from the heart, arch, descending aorta, iliac arteries and veins, IVC and SVC."""
    height, scale = canvas.height_mm, profile.width_scale
    radius = aorta_radius_mm
    heart_centre, heart_scale = heart.centre, heart.scale
    root = (heart_centre[0] + RIGHT * 25 * heart_scale, heart_centre[1] + 5, heart_centre[2] - 25 * heart_scale)
    aorta = [
        root,
        (RIGHT * 12 * scale, 0.25 * profile.half_depth_at(0.23), 0.225 * height),
        (RIGHT * 2 * scale, 0.05 * profile.half_depth_at(0.21), 0.21 * height),
        (LEFT * 18 * scale, profile.spine_y_at(0.215) + 30 * scale, 0.22 * height),
        (LEFT * 22 * scale, profile.spine_y_at(0.26) + 28 * scale, 0.26 * height),
        (LEFT * 18 * scale, profile.spine_y_at(0.33) + 26 * scale, 0.33 * height),
        (LEFT * 10 * scale, profile.spine_y_at(0.37) + 28 * scale, 0.37 * height),
        (LEFT * 5 * scale, profile.spine_y_at(0.41) + 28 * scale, 0.41 * height),
    ]
    radii = [
        1.35 * radius,
        1.3 * radius,
        1.2 * radius,
        1.05 * radius,
        radius,
        0.95 * radius,
        0.85 * radius,
        0.8 * radius,
    ]
    paint_tube(canvas, aorta, radii, Tissue.BLOOD, "aorta")
    bifurcation = aorta[-1]
    for side, artery, vein in (
        (LEFT, "iliac_artery_left", "iliac_vena_left"),
        (RIGHT, "iliac_artery_right", "iliac_vena_right"),
    ):
        artery_points = [
            bifurcation,
            (side * 45 * scale, profile.spine_y_at(0.44) + 30 * scale, 0.445 * height),
            (side * 70 * scale, 0.1 * profile.half_depth_at(0.47), 0.475 * height),
            (side * 80 * scale, 0.45 * profile.half_depth_at(0.5), 0.5 * height),
        ]
        paint_tube(
            canvas, artery_points, [0.55 * radius, 0.5 * radius, 0.45 * radius, 0.45 * radius], Tissue.BLOOD, artery
        )
        # each vein lies medial and posterior to its artery and joins the IVC on the right
        vein_points = [(RIGHT * 20 * scale, profile.spine_y_at(0.42) + 20 * scale, 0.42 * height)] + [
            (point[0] - side * 12 * scale, point[1] - 8, point[2]) for point in artery_points[1:]
        ]
        vein_radii = [0.65 * radius, 0.6 * radius, 0.55 * radius, 0.55 * radius]
        paint_tube(canvas, vein_points, vein_radii, Tissue.BLOOD_VENOUS, vein)
    inferior_cava = [
        (RIGHT * 22 * scale, 0.1 * profile.half_depth_at(0.29), 0.285 * height),
        (RIGHT * 22 * scale, profile.spine_y_at(0.33) + 30 * scale, 0.33 * height),
        (RIGHT * 20 * scale, profile.spine_y_at(0.42) + 20 * scale, 0.42 * height),
    ]
    paint_tube(canvas, inferior_cava, [11 * scale, 11 * scale, 10 * scale], Tissue.BLOOD_VENOUS, "inferior_vena_cava")
    superior_cava = [
        (RIGHT * 25 * scale, 0.2 * profile.half_depth_at(0.2), 0.195 * height),
        (RIGHT * 22 * scale, 0.2 * profile.half_depth_at(0.245), 0.245 * height),
    ]
    paint_tube(canvas, superior_cava, [9 * scale, 9 * scale], Tissue.BLOOD_VENOUS, "superior_vena_cava")
