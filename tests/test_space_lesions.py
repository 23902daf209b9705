"""Known truth in the Space: diagnosis choice, organ and lesion overlays, the per-lesion table.

Rendering is checked pixel by pixel on small label maps; the Generate callback runs in-process on a
tiny random pipeline (16 mm output, fine enough for a lesion's background shell) with an organ
"segmenter" that labels fixed boxes of the body, so lesions can be placed in its liver and spleen.
"""

from __future__ import annotations

import json

import app  # space/app.py (pytest's pythonpath has space/)
import gradio as gr
import nibabel as nib
import numpy as np
import pytest
import rendering
from scipy import ndimage

from petct_pipeline import PETCTPipeline
from petct_pipeline.organs import LABEL_IDS
from tests.helpers.pipelines import make_tiny_pipeline

LIVER, SPLEEN = LABEL_IDS["liver"], LABEL_IDS["spleen"]
DISPLAY = ("CT", "Soft tissue", 5.0, 0.6, False)  # mode, preset, SUV max, PET opacity, crosshair
SAMPLING = (50, "F", 70, 170, 3, 1, 1, 1.0, 0.6)  # age, sex, weight, height, seed, steps, SR steps, guidance, prior
ORGAN_TINT = rendering.ORGAN_ALPHA
LESION_TINT = rendering.LESION_FILL_ALPHA


# --------------------------------------------------------------------------- overlay rendering
def _labelled_volume():
    """A uniform 40 HU cube, a liver box and a 3-voxel lesion deep inside it, on a 1 mm grid (display = voxels)."""
    ct = np.full((10, 10, 10), 40.0)
    pet = np.zeros_like(ct)
    organs = np.zeros(ct.shape, np.uint8)
    organs[1:9, 1:9, 1:9] = LIVER
    lesions = np.zeros(ct.shape, np.int16)
    lesions[4:7, 4:7, 4:7] = 1
    return ct, pet, organs, lesions


def _render(ct, pet, organs=None, lesions=None) -> np.ndarray:
    image = rendering.render_plane(ct, pet, "axial", {"axial": 5}, (1.0, 1.0, 1.0), mode="CT", px_per_mm=1.0,
                                   crosshair=False, labels=False, organs=organs, lesions=lesions)
    return np.asarray(image).astype(int)


def test_overlays_colour_the_labelled_pixels_and_nothing_else():
    ct, pet, organs, lesions = _labelled_volume()
    plain = _render(ct, pet)
    drawn = _render(ct, pet, organs, lesions)
    organ_slice, lesion_slice = (rendering.extract_slice(v, "axial", 5) for v in (organs, lesions))
    organ_px, lesion_px = organ_slice > 0, lesion_slice > 0
    assert organ_px.sum() == 64 and lesion_px.sum() == 9
    np.testing.assert_array_equal(drawn[~organ_px], plain[~organ_px])  # unlabelled: the plain CT

    liver = np.asarray(rendering.organ_color(LIVER))
    organ_edge = rendering.label_edges(organ_slice)
    assert organ_edge.sum() == 28  # the 8 x 8 box's inner outline: opaque liver colour
    np.testing.assert_allclose(drawn[organ_edge], np.broadcast_to(np.rint(255 * liver), (28, 3)), atol=1)

    magenta = np.asarray(rendering.LESION_COLOR)
    outline = rendering.label_edges(lesion_slice) | rendering.label_ring(lesion_slice)
    assert outline.sum() == 8 + 12  # the 3 x 3 lesion's edge and the ring just outside it
    np.testing.assert_array_equal(drawn[outline], np.broadcast_to(255 * magenta, (20, 3)))

    gray = plain[0, 0] / 255.0
    tinted = (1 - ORGAN_TINT) * gray + ORGAN_TINT * liver
    organ_inside = organ_px & ~organ_edge & ~outline & ~lesion_px
    assert organ_inside.sum() == 36 - 12 - 9
    np.testing.assert_allclose(drawn[organ_inside], np.broadcast_to(np.rint(255 * tinted), (15, 3)), atol=1)
    centre = drawn[lesion_px & ~outline]  # the lesion sits in the liver: tinted over its tint
    assert len(centre) == 1
    np.testing.assert_allclose(centre[0], np.rint(255 * ((1 - LESION_TINT) * tinted + LESION_TINT * magenta)), atol=1)


def test_overlays_are_drawn_at_display_resolution_with_whole_ids():
    labels = np.array([[0, 5], [7, 0]])
    resized = rendering.resize_labels(labels, (6, 4))  # (width, height)
    assert resized.shape == (4, 6) and set(np.unique(resized)) == {0, 5, 7}
    np.testing.assert_array_equal(resized[:2, 3:], 5)
    np.testing.assert_array_equal(resized[2:, :3], 7)
    # the 3-voxel lesion shown 3 pixels per voxel: a crisp two-pixel outline of the 9 x 9 pixel square
    ct, pet, _, lesions = _labelled_volume()
    image = rendering.render_plane(ct, pet, "axial", {"axial": 5}, (1.0, 1.0, 1.0), mode="CT", px_per_mm=3.0,
                                   crosshair=False, labels=False, lesions=lesions)
    magenta = np.all(np.asarray(image) == (255, 0, 255), axis=-1)
    assert magenta.sum() == (4 * 9 - 4) + 4 * 9  # inner edge + outer ring


def test_organ_colours_differ_from_each_other_and_from_the_lesions():
    colours = {label: np.asarray(rendering.organ_color(label)) for label in range(1, 118)}
    magenta = np.asarray(rendering.LESION_COLOR)
    assert min(np.abs(c - magenta).sum() for c in colours.values()) > 0.3
    neighbours = [np.abs(colours[i] - colours[i + 1]).sum() for i in range(1, 117)]
    assert min(neighbours) > 0.1  # lung lobes, kidneys and vertebrae (consecutive ids) stay apart


def test_overlay_toggles_off_give_the_plain_image():
    ct, pet, organs, lesions = _labelled_volume()
    volumes = {"ct": ct, "pet": pet, "spacing": (1.0, 1.0, 1.0), "organs": organs, "lesions": lesions}
    plain = {**volumes, "organs": None, "lesions": None}
    args = (5, 5, 5, *DISPLAY)
    off = app.render_slices(volumes, *args, False, False)
    for image, reference in zip(off, app.render_slices(plain, *args, True, True)):
        np.testing.assert_array_equal(np.asarray(image), np.asarray(reference))
    organs_only = app.render_slices(volumes, *args, True, False)
    both = app.render_slices(volumes, *args, True, True)
    for image_off, image_organs, image_both in zip(off, organs_only, both):
        assert not np.array_equal(np.asarray(image_off), np.asarray(image_organs))
        assert not np.array_equal(np.asarray(image_organs), np.asarray(image_both))


# --------------------------------------------------------------------------- the Generate callback
class BoxSegmenter:
    """Labels two fixed boxes of the body liver and spleen (a stand-in for the organ segmenter network)."""

    def predict(self, ct: np.ndarray, pet: np.ndarray, affine: np.ndarray) -> np.ndarray:
        nx, ny, nz = ct.shape
        labels = np.zeros(ct.shape, np.uint8)
        for label, xs in ((LIVER, slice(nx // 4, nx // 2)), (SPLEEN, slice(nx // 2, 3 * nx // 4))):
            box = (xs, slice(ny // 4, 3 * ny // 4), slice(nz // 3, nz // 2))
            labels[box][ct[box] > -500] = label
        return labels

    def describe(self) -> str:
        return "box stand-in"


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The app module serving the tiny pipeline at 16 mm with the box segmenter; downloads in a temporary folder."""
    pipe = PETCTPipeline(**make_tiny_pipeline().components, base_shape=(8, 8, 12), base_spacing=64.0, sr_scale=4)
    pipe.set_progress_bar_config(disable=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app, "_PIPE", pipe)
        patch.setattr(app, "_SEGMENTER", (BoxSegmenter(), "box stand-in"))
        patch.setattr(app, "OUTPUT_ROOT", tmp_path_factory.mktemp("space-out"))
        yield app


def _generate(space, diagnosis, show_organs=True, show_lesions=True):
    result = space.generate(*SAMPLING, diagnosis, *DISPLAY, show_organs, show_lesions)
    names = ("volumes", "axial", "coronal", "sagittal", "mip", "slider_z", "slider_y", "slider_x", "files",
             "organs", "organ_note", "lesions", "lesion_note", "legend", "status")
    assert len(result) == len(names)
    return dict(zip(names, result))


@pytest.fixture(scope="module")
def lymphoma(space):
    return _generate(space, "LYMPHOMA")


@pytest.fixture(scope="module")
def negative(space):
    return _generate(space, "NEGATIVE")


def _file(result, name):
    return next(path for path in result["files"] if path.endswith("/" + name))


def test_a_diagnosis_gives_the_lesion_table_of_its_records(lymphoma):
    truth = json.loads(open(_file(lymphoma, "lesions.json")).read())
    records = truth["lesions"]
    assert truth["diagnosis"] == "LYMPHOMA" and records, truth
    table = lymphoma["lesions"]
    assert table.visible and table.value["headers"] == list(app.LESION_HEADERS)
    rows = table.value["data"]
    assert len(rows) == len(records) == truth["n_lesions"]
    for row, record in zip(rows, records):
        for (header, field), cell in zip(app.LESION_COLUMNS, row):
            value = record[field]
            if isinstance(value, float):
                assert cell == pytest.approx(round(value, app.TABLE_DIGITS), abs=1e-9), (header, cell, value)
            else:
                assert cell == ("" if value is None else value), (header, cell, value)
    assert {"id", "site", "SUVmax", "SUVpeak", "TLG (SUV x mL)", "HU mean", "requested value"} <= set(
        table.value["headers"])
    assert f"LYMPHOMA: {len(records)} lesion" in lymphoma["lesion_note"].value
    assert "diagnosis LYMPHOMA" in lymphoma["status"]


def test_the_viewer_opens_on_the_largest_lesion(lymphoma, negative):
    lesions = lymphoma["volumes"]["lesions"]
    ids, counts = np.unique(lesions[lesions > 0], return_counts=True)
    largest = int(ids[np.argmax(counts)])
    at = (lymphoma["slider_x"].value, lymphoma["slider_y"].value, lymphoma["slider_z"].value)
    assert lesions[at] == largest and f"open on lesion {largest}" in lymphoma["status"]
    for view in ("axial", "coronal", "sagittal"):  # its magenta outline shows in every view
        assert np.all(np.asarray(lymphoma[view]) == (255, 0, 255), axis=-1).any(), view
    shape = negative["volumes"]["ct"].shape  # without lesions: the middle of the volume
    assert (negative["slider_x"].value, negative["slider_y"].value, negative["slider_z"].value) == tuple(
        n // 2 for n in shape)


def test_a_diagnosis_downloads_lesions_and_organs_that_match_the_viewer(lymphoma):
    names = [path.rsplit("/", 1)[1] for path in lymphoma["files"]]
    assert names == list(app.DOWNLOAD_FILES)
    volumes = lymphoma["volumes"]
    instances = np.asarray(nib.load(_file(lymphoma, "lesions.nii.gz")).dataobj)
    np.testing.assert_array_equal(instances, volumes["lesions"])
    np.testing.assert_array_equal(np.asarray(nib.load(_file(lymphoma, "organs.nii.gz")).dataobj), volumes["organs"])
    pet = np.asarray(nib.load(_file(lymphoma, "pet_suv.nii.gz")).dataobj)
    record = json.loads(open(_file(lymphoma, "lesions.json")).read())["lesions"][0]
    assert float(pet[instances == record["id"]].max()) == pytest.approx(record["suv_max"], rel=1e-3)
    assert json.loads(open(_file(lymphoma, "metadata.json")).read())["diagnosis"] == "LYMPHOMA"
    assert "lesions (" in lymphoma["legend"] and "liver" in lymphoma["legend"] and "spleen" in lymphoma["legend"]
    # slices through a lesion show its magenta outline in every view, and only with the toggle on
    x, y, z = np.argwhere(volumes["lesions"] == record["id"])[0]
    for show, expected in ((True, True), (False, False)):
        images = app.render_slices(volumes, z, y, x, *DISPLAY, False, show)
        assert [np.all(np.asarray(image) == (255, 0, 255), axis=-1).any() for image in images] == [expected] * 3


def test_negative_has_organ_labels_and_no_lesion_table(negative):
    names = [path.rsplit("/", 1)[1] for path in negative["files"]]
    assert names == ["ct.nii.gz", "pet_suv.nii.gz", "metadata.json", "organs.nii.gz", "organs.json"]
    assert not negative["lesions"].visible and negative["lesions"].value["data"] in (None, [])
    assert negative["lesion_note"].value.startswith("NEGATIVE: no lesions")
    assert negative["volumes"]["lesions"] is None and negative["volumes"]["organs"] is not None
    assert negative["organs"].visible and "liver" in [row[0] for row in negative["organs"].value["data"]]
    assert "lesions (" not in negative["legend"] and "liver" in negative["legend"]


def test_the_seed_fixes_the_lesions_and_they_change_only_their_neighbourhood(space, lymphoma, negative):
    again = _generate(space, "LYMPHOMA", show_organs=False, show_lesions=False)
    np.testing.assert_array_equal(again["volumes"]["lesions"], lymphoma["volumes"]["lesions"])
    np.testing.assert_array_equal(again["volumes"]["pet"], lymphoma["volumes"]["pet"])
    # the same seed samples the same subject; a lesion changes the CT and PET within its box only
    spacing = lymphoma["volumes"]["spacing"]
    far = ndimage.distance_transform_edt(lymphoma["volumes"]["lesions"] == 0, sampling=spacing) > 48.0
    assert far.any() and not far.all()
    np.testing.assert_array_equal(negative["volumes"]["organs"], lymphoma["volumes"]["organs"])
    # (the insertion writes its boxes' CT in whole HU, as the int16 file keeps it)
    for channel, rounding in (("ct", 0.5), ("pet", 0.0)):
        np.testing.assert_allclose(lymphoma["volumes"][channel][far], negative["volumes"][channel][far], rtol=0,
                                   atol=rounding)
        assert not np.allclose(negative["volumes"][channel], lymphoma["volumes"][channel], rtol=0, atol=1.0)


@pytest.mark.parametrize(("diagnosis", "words"), [
    ("CANCER", ["'CANCER'", "not a diagnosis", "NEGATIVE", "LYMPHOMA", "MELANOMA", "LUNG_CANCER"]),
    (None, ["Diagnosis must be one of", "NEGATIVE"]),
])
def test_a_bad_diagnosis_is_one_message_before_any_sampling(space, monkeypatch, diagnosis, words):
    monkeypatch.setattr(space, "run_pipeline", _no_sampling)
    with pytest.raises(gr.Error) as error:
        space.generate(*SAMPLING, diagnosis, *DISPLAY, True, True)
    for word in words:
        assert word in error.value.message, error.value.message
    assert "Traceback" not in error.value.message


def test_lesions_without_an_organ_segmenter_are_refused_before_sampling(space, monkeypatch):
    monkeypatch.setattr(space, "_SEGMENTER", (None, "no organ segmenter checkpoint at `nowhere`"))
    monkeypatch.setattr(space, "run_pipeline", _no_sampling)
    with pytest.raises(gr.Error, match="lesions are placed by the organ labels, but there is no organ segmenter"):
        space.generate(*SAMPLING, "MELANOMA", *DISPLAY, True, True)


def _no_sampling(*args, **kwargs):
    raise AssertionError("the inputs must be refused before sampling")
