"""Pixels of the Space (space/rendering.py): CT windows, PET colour maps, fusion, MIP, orientation."""

from __future__ import annotations

import numpy as np
import pytest
import rendering  # space/rendering.py (pytest's pythonpath has space/)


# --------------------------------------------------------------------------- CT window
@pytest.mark.parametrize(
    ("preset", "width", "level"),
    [("Soft tissue", 400, 40), ("Lung", 1500, -600), ("Bone", 2000, 300)],
)
def test_window_presets_map_their_edges_to_black_and_white(preset, width, level):
    assert rendering.WINDOW_PRESETS[preset] == (width, level)
    low, high = level - width / 2, level + width / 2
    hu = np.array([low - 100, low, level, high, high + 100])
    np.testing.assert_allclose(rendering.window_ct(hu, width, level), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_soft_tissue_window_values():
    # W400/L40 spans -160..240 HU: water 0 HU -> 0.4, liver 60 HU -> 0.55, fat -100 HU -> 0.15, air -> 0
    out = rendering.window_ct(np.array([0.0, 60.0, -100.0, -1000.0, 1000.0]), 400, 40)
    np.testing.assert_allclose(out, [0.4, 0.55, 0.15, 0.0, 1.0], atol=1e-6)
    assert out.dtype == np.float32


def test_lung_window_separates_air_and_lung_parenchyma():
    air, lung, soft = rendering.window_ct(np.array([-1000.0, -850.0, 40.0]), *rendering.WINDOW_PRESETS["Lung"])
    assert air < lung < soft
    np.testing.assert_allclose(
        [air, lung, soft], [(-1000 + 1350) / 1500, (-850 + 1350) / 1500, (40 + 1350) / 1500], atol=1e-6
    )


def test_window_rejects_non_positive_width():
    with pytest.raises(ValueError, match="width"):
        rendering.window_ct(np.zeros(3), 0, 40)


# --------------------------------------------------------------------------- PET colour maps
def test_hot_colormap_values_and_saturation():
    suv = np.array([0.0, 1.0, 2.0, 3.0, 6.0, -1.0])
    rgb = rendering.pet_colormap(suv, suv_max=3.0, cmap="hot")
    assert rgb.shape == (6, 3)
    np.testing.assert_allclose(rgb[0], [0, 0, 0])  # SUV 0: black
    np.testing.assert_allclose(rgb[1], [1, 0, 0], atol=1e-6)  # a third of the max: red
    np.testing.assert_allclose(rgb[2], [1, 1, 0], atol=1e-6)  # two thirds: yellow
    np.testing.assert_allclose(rgb[3], [1, 1, 1])  # the max: white
    np.testing.assert_allclose(rgb[4], [1, 1, 1])  # above the max saturates
    np.testing.assert_allclose(rgb[5], [0, 0, 0])  # negative (never from the pipeline) clips to black


def test_suv_max_scales_the_colormap():
    suv = np.full((2, 2), 2.5)
    assert rendering.pet_colormap(suv, 5.0)[0, 0, 0] == pytest.approx(1.0)  # 0.5 of the range: full red
    assert rendering.pet_colormap(suv, 5.0)[0, 0, 1] == pytest.approx(0.5)
    np.testing.assert_allclose(rendering.pet_colormap(suv, 2.5)[0, 0], [1, 1, 1])


def test_inverted_gray_colormap():
    rgb = rendering.pet_colormap(np.array([0.0, 2.5, 5.0, 10.0]), 5.0, cmap="gray_inverted")
    np.testing.assert_allclose(rgb[:, 0], [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(rgb[:, 0], rgb[:, 2])


def test_colormap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="SUV max"):
        rendering.pet_colormap(np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="cmap"):
        rendering.pet_colormap(np.zeros(2), 1.0, cmap="jet")


# --------------------------------------------------------------------------- fusion
def test_fuse_shows_plain_ct_without_uptake_and_blends_with_uptake():
    ct = np.array([[0.2, 0.8]], dtype=np.float32)
    no_uptake = rendering.fuse(ct, np.zeros_like(ct), suv_max=5.0, alpha=0.6)
    np.testing.assert_allclose(no_uptake[0, :, 0], [0.2, 0.8], atol=1e-6)
    np.testing.assert_allclose(no_uptake[..., 0], no_uptake[..., 2])  # gray

    hot = rendering.fuse(ct, np.full_like(ct, 5.0), suv_max=5.0, alpha=0.6)  # white in "hot"
    np.testing.assert_allclose(hot[0, 0], 0.4 * 0.2 + 0.6 * 1.0, atol=1e-6)
    np.testing.assert_allclose(hot[0, 1], 0.4 * 0.8 + 0.6 * 1.0, atol=1e-6)

    # opacity ramps to alpha at half the SUV max: SUV 1.25 of max 5 -> half of alpha
    ramp = rendering.fuse(np.zeros((1, 1)), np.full((1, 1), 1.25), suv_max=5.0, alpha=0.6)
    red = rendering.pet_colormap(np.full((1, 1), 1.25), 5.0)[0, 0, 0]
    np.testing.assert_allclose(ramp[0, 0], [0.3 * red, 0.0, 0.0], atol=1e-6)


def test_fuse_alpha_bounds():
    ct = np.full((2, 2), 0.5)
    np.testing.assert_allclose(rendering.fuse(ct, np.full((2, 2), 9.0), 5.0, alpha=0.0), rendering.gray_rgb(ct))
    np.testing.assert_allclose(rendering.fuse(ct, np.full((2, 2), 9.0), 5.0, alpha=1.0), np.ones((2, 2, 3)))
    with pytest.raises(ValueError, match="opacity"):
        rendering.fuse(ct, ct, 5.0, alpha=1.5)


# --------------------------------------------------------------------------- orientation and MIP
def test_axial_slice_orientation_anterior_top_patient_right_on_image_left():
    nx, ny, nz = 4, 5, 6
    volume = np.zeros((nx, ny, nz))
    volume[nx - 1, ny - 1, 2] = 1.0  # right-anterior corner of slice z=2
    image = rendering.extract_slice(volume, "axial", 2)
    assert image.shape == (ny, nx)  # rows = A-P, columns = R-L
    assert image[0, 0] == 1.0 and image.sum() == 1.0  # top-left: anterior, patient's right
    assert rendering.orientation_labels("axial") == ("R", "L", "A", "P")


def test_coronal_slice_orientation_superior_top_patient_right_on_image_left():
    nx, ny, nz = 4, 5, 6
    volume = np.zeros((nx, ny, nz))
    volume[nx - 1, 3, nz - 1] = 1.0  # right, superior (head) in coronal plane y=3
    volume[0, 3, 0] = 2.0  # left, inferior
    image = rendering.extract_slice(volume, "coronal", 3)
    assert image.shape == (nz, nx)
    assert image[0, 0] == 1.0 and image[-1, -1] == 2.0
    assert rendering.orientation_labels("coronal") == ("R", "L", "S", "I")


def test_sagittal_slice_orientation_superior_top_anterior_on_image_left():
    nx, ny, nz = 4, 5, 6
    volume = np.zeros((nx, ny, nz))
    volume[1, ny - 1, nz - 1] = 1.0  # anterior, superior
    image = rendering.extract_slice(volume, "sagittal", 1)
    assert image.shape == (nz, ny)
    assert image[0, 0] == 1.0 and image.sum() == 1.0
    assert rendering.orientation_labels("sagittal") == ("A", "P", "S", "I")


def test_slice_index_is_clipped_and_view_checked():
    volume = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    np.testing.assert_array_equal(
        rendering.extract_slice(volume, "axial", 99), rendering.extract_slice(volume, "axial", 3)
    )
    with pytest.raises(ValueError, match="view"):
        rendering.extract_slice(volume, "oblique", 0)


def test_coronal_mip_is_max_over_anterior_posterior_in_display_orientation():
    rng = np.random.default_rng(0)
    pet = rng.random((4, 5, 6)).astype(np.float32)
    pet[2, 1, 4] = 50.0  # a hot spot anywhere along y shows in the MIP
    projection = rendering.mip(pet, "coronal")
    assert projection.shape == (6, 4)
    np.testing.assert_allclose(projection, pet.max(axis=1).T[::-1, ::-1])
    assert projection[6 - 1 - 4, 4 - 1 - 2] == 50.0
    # every coronal slice is bounded by the MIP
    for y in range(5):
        assert np.all(rendering.extract_slice(pet, "coronal", y) <= projection)


def test_plane_spacing_and_crosshair_positions():
    spacing = (2.0, 3.0, 5.0)
    assert rendering.plane_spacing("axial", spacing) == (3.0, 2.0)
    assert rendering.plane_spacing("coronal", spacing) == (5.0, 2.0)
    assert rendering.plane_spacing("sagittal", spacing) == (5.0, 3.0)
    shape = (4, 5, 6)
    assert rendering.slice_position("coronal", "axial", 0, shape) == ("row", 5)  # lowest slice: bottom row
    assert rendering.slice_position("coronal", "sagittal", 3, shape) == ("col", 0)  # rightmost x: left column
    assert rendering.slice_position("axial", "coronal", 4, shape) == ("row", 0)  # most anterior: top row


# --------------------------------------------------------------------------- display images
def test_render_plane_keeps_physical_aspect_and_marks_uptake():
    nx, ny, nz = 8, 6, 10
    ct = np.full((nx, ny, nz), 40.0)
    pet = np.zeros((nx, ny, nz))
    pet[nx - 1, :, nz - 1] = 10.0  # right, superior edge of every coronal slice
    spacing = (4.0, 4.0, 8.0)
    image = rendering.render_plane(
        ct,
        pet,
        "coronal",
        {"coronal": 3},
        spacing,
        mode="Fused PET/CT",
        suv_max=5.0,
        alpha=1.0,
        px_per_mm=0.5,
        crosshair=False,
        labels=False,
    )
    assert image.size == (nx * 4 * 0.5, nz * 8 * 0.5)  # (width, height) in pixels: 16 x 40
    pixels = np.asarray(image)
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # saturated uptake, top-left (superior, patient's right)
    level = round(0.5 * 255)  # 40 HU in W400/L40
    assert tuple(pixels[-1, -1]) == (level, level, level)
    ct_only = np.asarray(
        rendering.render_plane(
            ct, pet, "coronal", {"coronal": 3}, spacing, mode="CT", px_per_mm=0.5, labels=False, crosshair=False
        )
    )
    assert np.all(ct_only == level)


def test_render_plane_draws_crosshair_of_the_other_slices():
    ct = np.full((8, 8, 8), -1000.0)
    pet = np.zeros((8, 8, 8))
    indices = {"axial": 6, "coronal": 2, "sagittal": 5}
    image = np.asarray(
        rendering.render_plane(ct, pet, "coronal", indices, (1, 1, 1), mode="CT", px_per_mm=1.0, labels=False)
    )
    assert image.shape == (8, 8, 3)
    green = (image[..., 1] > 150) & (image[..., 0] < 50)
    assert green[8 - 1 - 6].all()  # the axial slice as a row
    assert green[:, 8 - 1 - 5].all()  # the sagittal slice as a column
    assert green.sum() == 8 + 8 - 1


def test_render_mip_and_side_by_side():
    pet = np.zeros((4, 4, 8))
    pet[0, 2, 0] = 9.0  # patient's left, inferior
    mip_image = np.asarray(rendering.render_mip(pet, (1.0, 1.0, 1.0), suv_max=3.0, px_per_mm=1.0, labels=False))
    assert mip_image.shape == (8, 4, 3)
    assert tuple(mip_image[-1, -1]) == (0, 0, 0)  # bottom-right: black (inverted gray, saturated)
    assert tuple(mip_image[0, 0]) == (255, 255, 255)
    from PIL import Image

    pair = rendering.side_by_side([Image.new("RGB", (3, 5), "red"), Image.new("RGB", (4, 2), "blue")], gap=2)
    assert pair.size == (9, 5)
    pixels = np.asarray(pair)
    assert tuple(pixels[0, 5]) == (0, 0, 255) and tuple(pixels[4, 5]) == (255, 255, 255)  # top-aligned


def test_display_scale_fits_longest_extent():
    assert rendering.display_scale((112, 112, 177), (4.0, 4.0, 4.0), longest_px=708) == pytest.approx(1.0)
