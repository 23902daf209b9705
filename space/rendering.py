"""Pixels for the Space: CT windowing, PET colour maps, PET/CT fusion, MIPs and tri-planar slices.

Pure numpy (+ Pillow for resizing and labels), no Gradio, so every function is unit-tested.
Label overlays (organ maps, lesion instances) are drawn at display resolution, so an outline stays
one crisp pixel wide whatever the voxel size.

Input volumes follow the package convention: arrays in (x, y, z) voxel order of a canonical
RAS+ grid (x increases towards the patient's Right, y towards Anterior, z towards Superior),
CT in Hounsfield units, PET in SUVbw.

Display convention (radiological), shared by every 2-D image this module returns, row 0 at the top:

* axial: anterior at the top, patient's right on the image LEFT (viewed from the feet);
* coronal: superior (head) at the top, patient's right on the image LEFT (viewed from the front);
* sagittal: superior at the top, anterior on the image LEFT (viewed from the patient's left).

So for every plane the image is the voxel plane transposed and flipped on both axes: the
"second" in-plane axis (y for axial, z otherwise) runs bottom-to-top, the first (x, or y for
sagittal) runs from the positive (R / A) side on the left to the negative side on the right.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "WINDOW_PRESETS",
    "VIEWS",
    "DISPLAY_MODES",
    "window_ct",
    "pet_colormap",
    "fuse",
    "gray_rgb",
    "extract_slice",
    "mip",
    "plane_spacing",
    "orientation_labels",
    "organ_color",
    "LESION_COLOR",
    "resize_labels",
    "label_edges",
    "label_ring",
    "overlay_labels",
    "render_plane",
    "to_display",
    "side_by_side",
]

#: CT window presets: name -> (width, level) in HU
WINDOW_PRESETS: Mapping[str, tuple[float, float]] = {
    "Soft tissue": (400.0, 40.0),
    "Lung": (1500.0, -600.0),
    "Bone": (2000.0, 300.0),
}

VIEWS = ("axial", "coronal", "sagittal")
DISPLAY_MODES = ("Fused PET/CT", "CT", "PET")
PET_COLORMAPS = ("hot", "gray_inverted")

#: lesions are magenta: a colour neither the gray CT, the ``hot`` PET map nor any organ hue (below) takes
LESION_COLOR = (1.0, 0.0, 1.0)
#: organ hues spread by the golden ratio over red .. blue, the share of the hue circle that stops short of magenta
ORGAN_HUE_SPAN = 0.72
_GOLDEN = (5**0.5 - 1) / 2
ORGAN_ALPHA = 0.35  # translucent: the anatomy and uptake under an organ stay readable
LESION_FILL_ALPHA = 0.4  # the outline is opaque, the inside a tint, so the lesion's uptake still shows

# array axis removed by each view, and the two in-plane array axes (first, second)
_VIEW_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
_IN_PLANE = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
# letters at (left, right, top, bottom) of the displayed image
_LABELS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


# --------------------------------------------------------------------------- intensities
def window_ct(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map HU to [0, 1]: ``level - width/2`` -> 0 (black), ``level + width/2`` -> 1 (white), clipped."""
    if not width > 0:
        raise ValueError(f"window width must be > 0 HU, got {width}")
    low = level - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - low) / float(width), 0.0, 1.0)


def _unit(suv: np.ndarray, suv_max: float) -> np.ndarray:
    if not suv_max > 0:
        raise ValueError(f"SUV max must be > 0, got {suv_max}")
    return np.clip(np.asarray(suv, dtype=np.float32) / float(suv_max), 0.0, 1.0)


def pet_colormap(suv: np.ndarray, suv_max: float, cmap: str = "hot") -> np.ndarray:
    """SUV -> float RGB in [0, 1], shape ``suv.shape + (3,)``, saturating at ``suv_max``.

    ``hot``: black (SUV 0) -> red (suv_max/3) -> yellow (2/3) -> white (>= suv_max).
    ``gray_inverted``: white background, black at ``suv_max`` (the usual look of a PET MIP).
    """
    t = _unit(suv, suv_max)
    if cmap == "hot":
        return np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)
    if cmap == "gray_inverted":
        return np.repeat((1.0 - t)[..., None], 3, axis=-1)
    raise ValueError(f"cmap must be one of {PET_COLORMAPS}, got {cmap!r}")


def gray_rgb(gray01: np.ndarray) -> np.ndarray:
    """A [0, 1] gray image as float RGB."""
    return np.repeat(np.asarray(gray01, dtype=np.float32)[..., None], 3, axis=-1)


def fuse(ct_gray01: np.ndarray, suv: np.ndarray, suv_max: float, alpha: float = 0.6) -> np.ndarray:
    """PET (``hot``) over windowed CT, float RGB in [0, 1].

    Opacity grows linearly from 0 at SUV 0 to ``alpha`` at half of ``suv_max`` and stays there,
    so tissue without uptake shows the plain CT, background uptake only tints it, and hot spots
    are drawn at full opacity.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay opacity must be in [0, 1], got {alpha}")
    opacity = alpha * np.clip(2.0 * _unit(suv, suv_max), 0.0, 1.0)[..., None]
    return (1.0 - opacity) * gray_rgb(ct_gray01) + opacity * pet_colormap(suv, suv_max, "hot")


# --------------------------------------------------------------------------- geometry
def _check_view(view: str) -> None:
    if view not in _VIEW_AXIS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")


def _orient(plane: np.ndarray) -> np.ndarray:
    """Voxel plane (first, second) -> display image (rows, cols); see the module docstring."""
    return np.ascontiguousarray(plane.T[::-1, ::-1])


def extract_slice(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """One slice of an (x, y, z) RAS+ volume as a display image (module docstring convention).

    ``index`` is the voxel index along the removed axis (z for axial, y for coronal, x for
    sagittal) and is clipped into the volume.
    """
    _check_view(view)
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (x, y, z), got shape {volume.shape}")
    axis = _VIEW_AXIS[view]
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    return _orient(np.take(volume, index, axis=axis))


def mip(volume: np.ndarray, view: str = "coronal") -> np.ndarray:
    """Maximum-intensity projection along the view's axis (coronal: front-to-back), display-oriented."""
    _check_view(view)
    return _orient(np.asarray(volume).max(axis=_VIEW_AXIS[view]))


def plane_spacing(view: str, spacing: Sequence[float]) -> tuple[float, float]:
    """(row, column) pixel size in mm of a display image of ``view``."""
    _check_view(view)
    first, second = _IN_PLANE[view]
    return float(spacing[second]), float(spacing[first])


def slice_position(view: str, other_view: str, index: int, shape: Sequence[int]) -> tuple[str, int]:
    """Where the ``other_view`` slice ``index`` crosses a ``view`` image: ("row"|"col", pixel index)."""
    first, second = _IN_PLANE[view]
    axis = _VIEW_AXIS[other_view]
    if axis == second:
        return "row", shape[second] - 1 - int(index)
    if axis == first:
        return "col", shape[first] - 1 - int(index)
    raise ValueError(f"a {other_view} slice does not cross a {view} image")


def orientation_labels(view: str) -> tuple[str, str, str, str]:
    """Letters at the (left, right, top, bottom) edges of a ``view`` image."""
    _check_view(view)
    return _LABELS[view]


# --------------------------------------------------------------------------- label overlays
def organ_color(label: int) -> tuple[float, float, float]:
    """The fixed RGB colour ([0, 1]) of TotalSegmentator id ``label``: neighbouring ids get distant hues."""
    hue = ORGAN_HUE_SPAN * ((int(label) * _GOLDEN) % 1.0)
    return colorsys.hsv_to_rgb(hue, 0.75, 1.0)


def _palette(labels: np.ndarray) -> np.ndarray:
    """(max id + 1, 3) colour table of the ids in ``labels`` (row 0, background, unused)."""
    top = int(labels.max(initial=0))
    return np.array([organ_color(i) for i in range(top + 1)], dtype=np.float32)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A display-oriented label image resized to ``size`` = (width, height) by nearest neighbour (ids stay ids)."""
    rows, cols = labels.shape
    width, height = size
    row_index = np.minimum(((np.arange(height) + 0.5) * rows / height).astype(int), rows - 1)
    col_index = np.minimum(((np.arange(width) + 0.5) * cols / width).astype(int), cols - 1)
    return labels[np.ix_(row_index, col_index)]


def _neighbours(labels: np.ndarray) -> list[np.ndarray]:
    """The 4-neighbours' labels of every pixel (0 beyond the image border)."""
    padded = np.pad(labels, 1, mode="constant", constant_values=0)
    return [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels with a 4-neighbour of another id (or the image border): the inner outline of each region."""
    edge = np.zeros(labels.shape, dtype=bool)
    for neighbour in _neighbours(labels):
        edge |= neighbour != labels
    return edge & (labels > 0)


def label_ring(labels: np.ndarray) -> np.ndarray:
    """Unlabelled pixels touching a labelled one: a ring just outside the regions, so it hides none of them."""
    ring = np.zeros(labels.shape, dtype=bool)
    for neighbour in _neighbours(labels):
        ring |= neighbour > 0
    return ring & (labels == 0)


def overlay_labels(
    rgb01: np.ndarray, organs: np.ndarray | None = None, lesions: np.ndarray | None = None
) -> np.ndarray:
    """Float RGB with the label maps drawn over it; the label images have the RGB image's (rows, cols).

    Organs: a translucent fill and an opaque inner outline in :func:`organ_color`. Lesions, often a
    few pixels wide: an opaque :data:`LESION_COLOR` outline two pixels wide (inner edge and the ring
    outside) around a translucent fill, so they stand out at any zoom. Other pixels keep their colour.
    """
    out = np.array(rgb01, dtype=np.float32)
    if organs is not None:
        organs = np.asarray(organs)
        inside = organs > 0
        palette = _palette(organs)
        out[inside] = (1.0 - ORGAN_ALPHA) * out[inside] + ORGAN_ALPHA * palette[organs[inside]]
        edge = label_edges(organs)
        out[edge] = palette[organs[edge]]
    if lesions is not None:
        lesions = np.asarray(lesions)
        color = np.asarray(LESION_COLOR, dtype=np.float32)
        inside = lesions > 0
        out[inside] = (1.0 - LESION_FILL_ALPHA) * out[inside] + LESION_FILL_ALPHA * color
        out[label_edges(lesions) | label_ring(lesions)] = color
    return out


def _overlay_image(
    image: Image.Image, view: str, index: int, organs: np.ndarray | None, lesions: np.ndarray | None
) -> Image.Image:
    """``image`` (a display image of ``view``'s slice ``index``) with the label maps drawn over it."""
    planes = [
        None if volume is None else resize_labels(extract_slice(volume, view, index), image.size)
        for volume in (organs, lesions)
    ]
    rgb = overlay_labels(np.asarray(image, dtype=np.float32) / 255.0, *planes)
    return Image.fromarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8), mode="RGB")


# --------------------------------------------------------------------------- display images
def to_display(rgb01: np.ndarray, pixel_mm: tuple[float, float], px_per_mm: float, smooth: bool = True) -> Image.Image:
    """Float RGB [0, 1] -> PIL image resized so one mm is ``px_per_mm`` pixels on both axes."""
    array = np.clip(np.rint(np.asarray(rgb01) * 255.0), 0, 255).astype(np.uint8)
    image = Image.fromarray(array, mode="RGB")
    rows, cols = array.shape[:2]
    size = (max(1, round(cols * pixel_mm[1] * px_per_mm)), max(1, round(rows * pixel_mm[0] * px_per_mm)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST)
    return image


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def _annotate(image: Image.Image, letters: tuple[str, str, str, str]) -> None:
    draw = ImageDraw.Draw(image)
    size = max(12, min(image.size) // 18)
    font = _font(size)
    w, h = image.size
    left, right, top, bottom = letters
    for text, (x, y) in (
        (left, (4, h / 2 - size / 2)),
        (right, (w - size - 2, h / 2 - size / 2)),
        (top, (w / 2 - size / 3, 2)),
        (bottom, (w / 2 - size / 3, h - size - 4)),
    ):
        draw.text((x, y), text, fill=(80, 220, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))


def _draw_crosshair(
    image: Image.Image, view: str, indices: Mapping[str, int], shape: Sequence[int], pixel_mm, px_per_mm: float
) -> None:
    draw = ImageDraw.Draw(image)
    for other in VIEWS:
        if other == view or other not in indices:
            continue
        kind, pixel = slice_position(view, other, indices[other], shape)
        if kind == "row":
            y = int((pixel + 0.5) * pixel_mm[0] * px_per_mm)
            draw.line([(0, y), (image.size[0], y)], fill=(0, 200, 120), width=1)
        else:
            x = int((pixel + 0.5) * pixel_mm[1] * px_per_mm)
            draw.line([(x, 0), (x, image.size[1])], fill=(0, 200, 120), width=1)


def render_plane(
    ct: np.ndarray,
    pet: np.ndarray,
    view: str,
    indices: Mapping[str, int],
    spacing: Sequence[float],
    mode: str = "Fused PET/CT",
    window: tuple[float, float] = WINDOW_PRESETS["Soft tissue"],
    suv_max: float = 5.0,
    alpha: float = 0.6,
    px_per_mm: float = 1.0,
    crosshair: bool = True,
    labels: bool = True,
    organs: np.ndarray | None = None,
    lesions: np.ndarray | None = None,
) -> Image.Image:
    """One view of the tri-planar viewer as a display-ready PIL image.

    ``indices`` maps each view name to its slice index; the slice shown is ``indices[view]``,
    the others are drawn as crosshair lines. ``mode`` is one of :data:`DISPLAY_MODES`.
    ``organs`` (TotalSegmentator ids) and ``lesions`` (instance ids), label maps on the CT grid,
    are drawn over the image when given (:func:`overlay_labels`).
    """
    if mode not in DISPLAY_MODES:
        raise ValueError(f"mode must be one of {DISPLAY_MODES}, got {mode!r}")
    index = indices[view]
    if mode == "PET":
        rgb = pet_colormap(extract_slice(pet, view, index), suv_max, "hot")
    else:
        gray = window_ct(extract_slice(ct, view, index), *window)
        rgb = gray_rgb(gray) if mode == "CT" else fuse(gray, extract_slice(pet, view, index), suv_max, alpha)
    pixel_mm = plane_spacing(view, spacing)
    image = to_display(rgb, pixel_mm, px_per_mm)
    if organs is not None or lesions is not None:
        image = _overlay_image(image, view, index, organs, lesions)
    if crosshair:
        _draw_crosshair(image, view, indices, np.shape(ct), pixel_mm, px_per_mm)
    if labels:
        _annotate(image, orientation_labels(view))
    return image


def render_mip(
    pet: np.ndarray, spacing: Sequence[float], suv_max: float = 5.0, px_per_mm: float = 1.0, labels: bool = True
) -> Image.Image:
    """Coronal PET maximum-intensity projection, inverted gray (white = SUV 0, black >= ``suv_max``)."""
    rgb = pet_colormap(mip(pet, "coronal"), suv_max, "gray_inverted")
    image = to_display(rgb, plane_spacing("coronal", spacing), px_per_mm)
    if labels:
        _annotate(image, orientation_labels("coronal"))
    return image


def display_scale(shape: Sequence[int], spacing: Sequence[float], longest_px: int = 640) -> float:
    """Pixels per mm so the volume's longest extent spans about ``longest_px`` pixels."""
    extent = max(n * s for n, s in zip(shape, spacing))
    return float(longest_px) / float(extent)


def side_by_side(images: Sequence[Image.Image], gap: int = 8, background=(255, 255, 255)) -> Image.Image:
    """Images placed left to right, aligned at the top (the vertex, for coronal views)."""
    width = sum(im.size[0] for im in images) + gap * (len(images) - 1)
    height = max(im.size[1] for im in images)
    canvas = Image.new("RGB", (width, height), background)
    x = 0
    for im in images:
        canvas.paste(im, (x, 0))
        x += im.size[0] + gap
    return canvas


def caption(image: Image.Image, text: str) -> Image.Image:
    """A copy of ``image`` with ``text`` in its top-left corner."""
    image = image.copy()
    size = max(10, min(image.size) // 22)
    ImageDraw.Draw(image).text(
        (6, 4), text, fill=(255, 230, 80), font=_font(size), stroke_width=2, stroke_fill=(0, 0, 0)
    )
    return image
