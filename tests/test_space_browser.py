"""End to end: `python space/app.py` in a subprocess, driven by headless Chromium and by gradio_client.

The app serves a tiny random pipeline (tests/helpers/pipelines.make_tiny_pipeline saved with save_pretrained,
passed through PETCT_MODEL), so a generation takes about a second. The browser test needs
Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`; Playwright cannot
download its own browser here) and is skipped, loudly, only when that binary is missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.helpers.space_server import run_space_server

SPACE = Path(__file__).resolve().parents[1] / "space"

REPO = SPACE.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def space_server(tmp_path_factory):
    yield from run_space_server(tmp_path_factory.mktemp("space"))


def _expected_shape(model_dir: Path, height_cm: float) -> tuple[int, int, int]:
    from petct_pipeline import PETCTPipeline
    from petct_pipeline.geometry import body_slices

    pipe = PETCTPipeline.from_pretrained(model_dir)
    nx, ny, nz = pipe.output_shape
    return nx, ny, body_slices(height_cm, pipe.output_spacing, max_slices=nz)


def _set_number(page, elem_id: str, value) -> None:
    """Type into a slider's / number's number box and commit it as a user would (Enter + blur)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def _image_src(page, elem_id: str) -> str | None:
    image = page.locator(f"#{elem_id} img")
    return image.first.get_attribute("src") if image.count() else None


def _wait_for_new_src(page, elem_id: str, old: str | None, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        src = _image_src(page, elem_id)
        if src and src != old:
            return src
        page.wait_for_timeout(100)
    raise AssertionError(f"#{elem_id} image did not change within {timeout_s} s (still {old})")


def _settled_src(page, elem_id: str, quiet_s: float = 1.0, timeout_s: float = 30.0) -> str | None:
    """The image's src once it has not changed for ``quiet_s`` (pending re-renders have landed)."""
    deadline = time.monotonic() + timeout_s
    src, since = _image_src(page, elem_id), time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)
        current = _image_src(page, elem_id)
        if current != src:
            src, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return src
    raise AssertionError(f"#{elem_id} image kept changing for {timeout_s} s")


@pytest.mark.browser
@pytest.mark.slow
def test_space_in_browser(space_server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            "!!! /usr/bin/chromium is MISSING: the Space browser test was NOT run. "
            "Install Debian's Chromium (apt-get install -y chromium; .ci/run does) to run it. !!!"
        )
    from playwright.sync_api import sync_playwright

    age, weight, height, seed = 72, 95, 181, 3
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1480, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(60_000)
            page.goto(space_server.url)
            page.wait_for_selector("#generate")

            # an example fills the inputs
            page.get_by_text("Elder man (80 y)").click()
            page.wait_for_function("document.querySelector('#age input[type=number]').value === '80'")
            assert page.locator('#sex [data-testid="Male-radio-label"] input').is_checked()

            # demographics
            page.locator('#sex [data-testid="Female-radio-label"]').click()
            _set_number(page, "age", age)
            page.locator('#sex [data-testid="Male-radio-label"]').click()
            _set_number(page, "weight", weight)
            _set_number(page, "height", height)
            _set_number(page, "seed", seed)
            page.locator("#generate").click()

            # the viewer fills in and the status names the subject we asked for
            status = page.locator("#status")
            status.filter(has_text="Generated in").wait_for()
            assert f"M, {age} y, {weight} kg, {height} cm" in status.inner_text(), status.inner_text()
            for elem_id in ("axial-image", "coronal-image", "sagittal-image", "mip-image"):
                page.locator(f"#{elem_id} img").wait_for()
            assert space_server.generations() == 1
            organ_note = page.locator("#organ-note").inner_text()
            if space_server.has_segmenter:
                assert "Organs segmented by model:" in organ_note, organ_note
                assert page.locator("#organs").is_visible()
                assert "SUVmean" in page.locator("#organs").inner_text()
            else:
                assert "Organ table hidden: no organ segmenter checkpoint" in organ_note, organ_note
                assert not page.locator("#organs").is_visible()
            # the default diagnosis inserts no lesions: the lesion table stays hidden
            assert page.locator('#diagnosis [data-testid="Negative-radio-label"] input').is_checked()
            assert "NEGATIVE: no lesions" in page.locator("#lesion-note").inner_text()
            assert not page.locator("#lesions").is_visible()

            # a slice slider re-renders its view from the session's volumes, without sampling again
            axial_before = _image_src(page, "axial-image")
            coronal_before = _image_src(page, "coronal-image")
            status_before = status.inner_text()
            slider = page.locator("#axial-slider input[type=range]")
            value_before = int(slider.input_value())
            slider.focus()
            for _ in range(3):
                slider.press("ArrowUp")
            axial_after = _wait_for_new_src(page, "axial-image", axial_before)
            assert int(slider.input_value()) == value_before + 3
            # the crosshair of the coronal view follows the axial slice
            _wait_for_new_src(page, "coronal-image", coronal_before)
            bytes_before = page.request.get(axial_before).body()
            bytes_after = page.request.get(axial_after).body()
            assert bytes_before != bytes_after
            # a CT window preset re-renders too
            sagittal_before = _settled_src(page, "sagittal-image")
            page.locator('#mode [data-testid="CT-radio-label"]').click()
            page.locator('#preset [data-testid="Lung-radio-label"]').click()
            _wait_for_new_src(page, "sagittal-image", sagittal_before)
            assert status.inner_text() == status_before
            assert space_server.generations() == 1, "moving a slider must not sample again"

            # an overlay toggle re-renders from the session too
            page.locator("#show-organs input").check()
            page.wait_for_timeout(500)
            assert space_server.generations() == 1, "an overlay toggle must not sample again"

            # downloads: valid NIfTI with the expected shapes, the JSON sidecar and, when labelled, the organs
            expected_files = {"ct.nii.gz", "pet_suv.nii.gz", "metadata.json"}
            if space_server.has_segmenter:
                expected_files |= {"organs.nii.gz", "organs.json"}
            links = page.locator("#downloads a[download]")
            assert links.count() == len(expected_files), page.locator("#downloads").inner_html()
            downloaded = {}
            for i in range(len(expected_files)):
                with page.expect_download() as info:
                    links.nth(i).click()
                download = info.value
                target = tmp_path / download.suggested_filename
                download.save_as(target)
                downloaded[download.suggested_filename] = target
            assert set(downloaded) == expected_files
            expected = _expected_shape(space_server.model_dir, height)
            ct = nib.load(downloaded["ct.nii.gz"])
            pet = nib.load(downloaded["pet_suv.nii.gz"])
            assert ct.shape == expected and pet.shape == expected
            assert nib.aff2axcodes(ct.affine) == ("R", "A", "S")
            np.testing.assert_allclose(ct.affine, pet.affine)
            assert np.asarray(ct.dataobj).dtype == np.int16
            assert np.all(np.isfinite(pet.get_fdata())) and pet.get_fdata().min() >= 0
            metadata = json.loads(downloaded["metadata.json"].read_text())
            assert metadata["demographics"]["age"] == age and metadata["demographics"]["sex"] == "M"
            assert metadata["seed"] == seed and metadata["shape"] == list(expected)

            # counterfactual tab: same seed, age 30 vs 80, side by side
            page.get_by_role("tab", name="Counterfactual").click()
            page.locator("#cf-generate").click()
            page.locator("#cf-summary").filter(has_text="only age differs").wait_for()
            page.locator("#cf-coronal img").wait_for()
            page.locator("#cf-mip img").wait_for()
            page.get_by_role("tab", name="Viewer").click()
            page.locator("#axial-image img").wait_for()

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "space.png"), full_page=True)
        finally:
            browser.close()
    assert "Traceback" not in space_server.log(), space_server.log()[-3000:]


@pytest.mark.slow
def test_space_api_friendly_errors(space_server):
    """Out-of-range inputs come back as one readable message naming the field and range."""
    from gradio_client import Client

    client = Client(space_server.url, verbose=False)
    display = ("Fused PET/CT", "Soft tissue", 5.0, 0.6, True, False, True)  # ..., crosshair, organs, lesions
    good = {"age": 40, "sex": "F", "weight": 70, "height": 170, "seed": 0, "steps": 2, "sr_steps": 1, "guidance": 1.0,
            "prior": 0.6}
    cases = [
        ({"age": 150}, ["Age", "150", "5 to 100"]),
        ({"weight": 400}, ["Weight", "400", "20 to 250"]),
        ({"height": 20}, ["Height", "20", "100 to 220"]),
        ({"sex": "X"}, ["Sex", "F", "M"]),
        ({"steps": 500}, ["Stage-1 steps", "1 to 64"]),
        ({"guidance": 9}, ["Guidance scale", "0 to 5"]),
        ({"prior": -1}, ["Demographic prior", "0 to 2"]),
        ({"age": 5, "weight": 250, "height": 100}, ["BMI 250.0", "no human", "[10, 100]"]),
        ({"diagnosis": "CANCER"}, ["'CANCER'", "not a diagnosis", "NEGATIVE", "LUNG_CANCER"]),
    ]
    before = space_server.generations()
    for change, words in cases:
        inputs = {**good, "diagnosis": "NEGATIVE", **change}
        with pytest.raises(Exception) as error:
            client.predict(*inputs.values(), *display, api_name="/generate")
        message = str(error.value)
        for word in words:
            assert word in message, (change, message)
        assert "Traceback" not in message
    assert space_server.generations() == before
    # the counterfactual validates the varied value the same way
    with pytest.raises(Exception, match="Age = 130 years is out of range: allowed 5 to 100 years"):
        client.predict(*good.values(), "age", 30, 130, "Soft tissue", 5.0, 0.6, api_name="/counterfactual")
