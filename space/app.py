"""Gradio Space: four demographic numbers -> a synthetic whole-body FDG PET/CT you can browse and download.

Run from the repository root or from this folder (the Space runtime's working directory), with the
package installed (``pip install -e ".[space]"`` here; ``requirements.txt`` on a Space)::

    python space/app.py                      # http://127.0.0.1:7860
    PETCT_MODEL=/path/to/pipeline python space/app.py --server-name 0.0.0.0 --server-port 7861

The model is ``$PETCT_MODEL`` (a save_pretrained folder or a hub repo id), else the shipped
checkpoint (``petct_pipeline.checkpoints.default_model``). Generated volumes stay in the
session (``gr.State``): slice sliders, window presets and the SUV scale re-render them without
sampling again. Pixels are made in ``rendering.py`` (radiological display convention).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import rendering  # beside this file: Python puts the script's folder on sys.path
import torch

from petct_pipeline import Demographics, PETCTPipeline
from petct_pipeline.checkpoints import (
    DEFAULT_SEGMENTER_NAME,
    checkpoints_dir,
    default_model,
    default_segmenter,
)
from petct_pipeline.errors import InputError
from petct_pipeline.model_files import model_name
from petct_pipeline.pipeline_petct import (
    DEFAULT_PRIOR_SCALE,
    DEFAULT_SR_STEPS,
    DEFAULT_STEPS,
    default_guidance_scale,
)

logger = logging.getLogger("petct_space")

# --------------------------------------------------------------------------- bounded inputs
#: demo bounds of the demographic inputs (a subset of Demographics' allowed ranges): min, max, unit
FIELD_BOUNDS: dict[str, tuple[float, float, str]] = {
    "age": (5.0, 100.0, "years"),
    "weight": (20.0, 250.0, "kg"),
    "height": (100.0, 220.0, "cm"),
}
STEP_BOUNDS = {"steps": (1, 64), "sr_steps": (1, 32)}
GUIDANCE_BOUNDS = (0.0, 5.0)
PRIOR_BOUNDS = (0.0, 2.0)
SEED_BOUNDS = (0, 2**31 - 1)
SUV_MAX_BOUNDS = (0.5, 30.0)
QUEUE_MAX_SIZE = 16
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "petct-space"
OUTPUT_MAX_AGE_S = 2 * 3600

EXAMPLES = [
    # age, sex, weight, height, seed
    [25, "F", 58, 165, 0],
    [80, "M", 76, 172, 1],
    [52, "M", 135, 178, 2],
    [45, "F", 110, 160, 3],
    [35, "M", 90, 198, 4],
    [14, "F", 45, 155, 5],
]
EXAMPLE_LABELS = [
    "Young woman (25 y)",
    "Elder man (80 y)",
    "High BMI man (43)",
    "High BMI woman (43)",
    "Tall man (198 cm)",
    "Adolescent girl (14 y)",
]


def check_number(label: str, value: Any, low: float, high: float, unit: str = "") -> float:
    """``value`` as a float, or a gr.Error that names the field, the value and the allowed range."""
    unit = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise gr.Error(f"{label} must be a number between {low:g} and {high:g}{unit}, got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise gr.Error(f"{label} = {value:g}{unit} is out of range: allowed {low:g} to {high:g}{unit}.")
    return value


def demographics_from_inputs(age: Any, sex: Any, weight: Any, height: Any) -> Demographics:
    """Validated Demographics, or a gr.Error naming the field and its allowed range."""
    values = {}
    for name, value in (("age", age), ("weight", weight), ("height", height)):
        low, high, unit = FIELD_BOUNDS[name]
        values[name] = check_number(name.capitalize(), value, low, high, unit)
    try:
        subject = Demographics(sex=sex, **values)
    except InputError as error:  # Demographics names the field and the allowed values
        message = str(error)
        raise gr.Error(message[:1].upper() + message[1:] + ".") from None
    return subject


def sampling_from_inputs(
    seed: Any, steps: Any, sr_steps: Any, guidance: Any, prior: Any
) -> tuple[int, int, int, float, float]:
    seed = check_number("Seed", seed, *SEED_BOUNDS)
    if seed != int(seed):
        raise gr.Error(f"Seed must be a whole number, got {seed:g}.")
    steps = check_number("Stage-1 steps", steps, *STEP_BOUNDS["steps"])
    sr_steps = check_number("Super-resolution steps", sr_steps, *STEP_BOUNDS["sr_steps"])
    guidance = check_number("Guidance scale", guidance, *GUIDANCE_BOUNDS)
    prior = check_number("Demographic prior", prior, *PRIOR_BOUNDS)
    return int(seed), int(round(steps)), int(round(sr_steps)), guidance, prior


# --------------------------------------------------------------------------- model
_PIPE: PETCTPipeline | None = None
_PIPE_LOCK = threading.Lock()


def model_location() -> str:
    return default_model()


def model_is_untrained(location: str) -> bool:
    """True when the title of the model folder's card calls its weights untrained (the shipped placeholder)."""
    card = Path(location) / "README.md"
    try:
        lines = card.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    title = next((line for line in lines if line.startswith("# ")), "")
    return "untrained" in title.lower()


def get_pipeline() -> PETCTPipeline:
    """Load the pipeline once per process (generation runs one at a time: concurrency_limit=1)."""
    global _PIPE
    with _PIPE_LOCK:
        if _PIPE is None:
            location = model_location()
            logger.info("loading model from %s", location)
            try:
                pipe = PETCTPipeline.from_pretrained(location)
            except Exception as error:  # missing folder, offline hub, bad files
                logger.exception("could not load the model")
                raise gr.Error(
                    f"Could not load the model from {location!r} ({type(error).__name__}: {error}). "
                    "Set PETCT_MODEL to a saved PETCTPipeline folder or a hub repo id."
                ) from None
            pipe.set_progress_bar_config(disable=True)
            _PIPE = pipe
        return _PIPE


def run_pipeline(
    subjects: list[Demographics], seed: int, steps: int, sr_steps: int, guidance: float, prior: float, progress
):
    """Sample ``subjects`` (all with the same seed) and feed gr.Progress from the step callback.

    ``prior`` is ignored (0) when the model has no demographic prior, so the demo runs any pipeline.
    """
    pipe = get_pipeline()
    # the callback counts steps over both stages: with one generator per subject both run once per subject
    total = len(subjects) * (steps + sr_steps)

    def on_step(_pipe, step, _t, kwargs):
        stage = "stage 1 (coarse)" if kwargs.get("stage") == "base" else "super-resolution"
        progress((min(step + 1, total), total), desc=f"Sampling: {stage}")
        return {}

    progress((0, total), desc="Sampling")
    generators = [torch.Generator().manual_seed(seed) for _ in subjects]
    try:
        output = pipe(
            subjects,
            num_inference_steps=steps,
            sr_num_inference_steps=sr_steps,
            guidance_scale=guidance,
            prior_scale=prior if pipe.demographic_prior is not None else 0.0,
            generator=generators,
            callback_on_step_end=on_step,
        )
    except InputError as error:
        raise gr.Error(str(error)) from None
    except Exception as error:
        logger.exception("generation failed")
        raise gr.Error(f"Generation failed ({type(error).__name__}: {error}). See the server log.") from None
    for subject, record in zip(subjects, output.metadata):
        if record.get("out_of_distribution"):  # generated, but the model extrapolates: say so beside the result
            gr.Warning(f"{subject.sex}, {subject.age:g} y, {subject.weight:g} kg, {subject.height:g} cm is outside "
                       f"this model's training data: {'; '.join(record['out_of_distribution'])}.")
    return output


def new_output_dir() -> Path:
    """A fresh folder for one generation's downloads; folders older than two hours are removed."""
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUTPUT_ROOT.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="subject-", dir=OUTPUT_ROOT))


# --------------------------------------------------------------------------- organ table (optional)
def load_organ_segmenter() -> tuple[Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None, str]:
    """``(segment, description)`` with the evaluation's ``model:PATH`` organ segmenter, or ``(None, why not)``.

    The only place that touches the optional ``petct_pipeline.evaluation`` segmenters. The
    checkpoint is ``$PETCT_SEGMENTER`` or ``checkpoints/petct-phantom-seg``; ``segment(ct, pet,
    affine)`` returns an integer label map with TotalSegmentator ids on the CT/PET grid.
    """
    path = default_segmenter()
    if path is None or not path.exists():
        where = path or checkpoints_dir() / DEFAULT_SEGMENTER_NAME
        return None, f"no organ segmenter checkpoint at `{where}`"
    try:
        from petct_pipeline.evaluation.inputs import SubjectVolumes
        from petct_pipeline.evaluation.segmenters import make_segmenter
    except ImportError as error:
        return None, f"the organ segmenter module is not available ({error})"
    try:
        segmenter = make_segmenter(f"model:{path}")
    except Exception as error:  # an optional feature never breaks the demo
        logger.exception("could not load the organ segmenter")
        return None, f"the organ segmenter at `{path}` could not be loaded ({type(error).__name__}: {error})"

    def segment(ct: np.ndarray, pet: np.ndarray, affine: np.ndarray) -> np.ndarray:
        # the model segmenter reads only the volumes, not the subject's files
        return np.asarray(segmenter.segment(None, SubjectVolumes(ct=ct, suv=pet, affine=affine)))

    return segment, f"`model:{path}`"


_SEGMENTER: tuple[Any, str] | None = None


def organ_segmenter() -> tuple[Any, str]:
    """:func:`load_organ_segmenter`, once per process."""
    global _SEGMENTER
    if _SEGMENTER is None:
        _SEGMENTER = load_organ_segmenter()
    return _SEGMENTER


def organ_table(labels: np.ndarray, pet: np.ndarray, spacing) -> list[list[Any]]:
    """Rows [organ, volume mL, SUVmean, SUVmax] for the evaluation organs present in ``labels``."""
    from petct_pipeline.organs import EVALUATION_ORGANS, organ_mask

    voxel_ml = float(np.prod(spacing)) / 1000.0
    rows = []
    for organ in EVALUATION_ORGANS:
        mask = organ_mask(labels, organ)
        if mask.any():
            values = pet[mask]
            rows.append(
                [
                    organ,
                    round(float(mask.sum()) * voxel_ml, 1),
                    round(float(values.mean()), 2),
                    round(float(values.max()), 2),
                ]
            )
    return rows


def organ_outputs(ct: np.ndarray, pet: np.ndarray, affine: np.ndarray, spacing) -> tuple[Any, Any]:
    """(Dataframe update, note update): the organ table when a segmenter is available, else a note."""
    segment, about = organ_segmenter()
    if segment is None:
        return gr.Dataframe(value=None, visible=False), gr.Markdown(f"Organ table hidden: {about}.")
    try:
        rows = organ_table(segment(ct, pet, affine), pet, spacing)
    except Exception as error:  # an optional feature never breaks the demo
        logger.exception("organ segmentation failed")
        return gr.Dataframe(value=None, visible=False), gr.Markdown(
            f"Organ table unavailable: segmentation failed ({type(error).__name__}: {error})."
        )
    found = f"{len(rows)} of the evaluation organs found" if rows else "none of the evaluation organs found"
    return gr.Dataframe(value=rows, visible=True), gr.Markdown(f"Organs segmented by {about}: {found}.")


# --------------------------------------------------------------------------- rendering glue
def _window(preset: str) -> tuple[float, float]:
    return rendering.WINDOW_PRESETS.get(preset, rendering.WINDOW_PRESETS["Soft tissue"])


def _suv_max(value: Any) -> float:
    try:
        return float(np.clip(float(value), *SUV_MAX_BOUNDS))
    except (TypeError, ValueError):
        return 5.0


def _display_scale(volumes) -> float:
    return rendering.display_scale(volumes["ct"].shape, volumes["spacing"])


def render_slices(volumes, axial, coronal, sagittal, mode, preset, suv_max, alpha, crosshair):
    """The axial, coronal and sagittal images of the session's volumes (re-rendered, never re-sampled)."""
    if not volumes:
        return None, None, None
    ct, pet, spacing = volumes["ct"], volumes["pet"], volumes["spacing"]
    shape = ct.shape
    indices = {
        "axial": int(np.clip(axial or 0, 0, shape[2] - 1)),
        "coronal": int(np.clip(coronal or 0, 0, shape[1] - 1)),
        "sagittal": int(np.clip(sagittal or 0, 0, shape[0] - 1)),
    }
    mode = mode if mode in rendering.DISPLAY_MODES else rendering.DISPLAY_MODES[0]
    alpha = float(np.clip(alpha if alpha is not None else 0.6, 0.0, 1.0))
    window, scale = _window(preset), _display_scale(volumes)
    return tuple(
        rendering.render_plane(
            ct, pet, view, indices, spacing, mode, window, _suv_max(suv_max), alpha, scale, bool(crosshair)
        )
        for view in rendering.VIEWS
    )


def render_viewer(volumes, axial, coronal, sagittal, mode, preset, suv_max, alpha, crosshair):
    """The three slice images and the coronal PET MIP."""
    slices = render_slices(volumes, axial, coronal, sagittal, mode, preset, suv_max, alpha, crosshair)
    if not volumes:
        return (*slices, None)
    return (
        *slices,
        rendering.render_mip(volumes["pet"], volumes["spacing"], _suv_max(suv_max), _display_scale(volumes)),
    )


def generate(
    age,
    sex,
    weight,
    height,
    seed,
    steps,
    sr_steps,
    guidance,
    prior,
    mode,
    preset,
    suv_max,
    alpha,
    crosshair,
    progress=gr.Progress(),
):
    """Sample one subject, save its NIfTI/JSON files and show it."""
    subject = demographics_from_inputs(age, sex, weight, height)
    seed, steps, sr_steps, guidance, prior = sampling_from_inputs(seed, steps, sr_steps, guidance, prior)
    logger.info(
        "generate: %s seed=%d steps=%d+%d guidance=%g prior=%g", subject, seed, steps, sr_steps, guidance, prior
    )
    start = time.perf_counter()
    out = run_pipeline([subject], seed, steps, sr_steps, guidance, prior, progress)
    seconds = time.perf_counter() - start
    out_dir = new_output_dir()
    out.save(out_dir)
    files = [str(out_dir / name) for name in ("ct.nii.gz", "pet_suv.nii.gz", "metadata.json")]

    ct = np.asarray(out.ct[0], dtype=np.float32)
    pet = np.asarray(out.pet[0], dtype=np.float32)
    volumes = {"ct": ct, "pet": pet, "spacing": tuple(out.spacing), "affine": out.affines[0]}
    nx, ny, nz = ct.shape
    middle = {"axial": nz // 2, "coronal": ny // 2, "sagittal": nx // 2}
    images = render_viewer(
        volumes, middle["axial"], middle["coronal"], middle["sagittal"], mode, preset, suv_max, alpha, crosshair
    )

    table, note = organ_outputs(ct, pet, out.affines[0], out.spacing)

    mm = out.spacing[0]
    status = (
        f"Generated in {seconds:.1f} s: {subject.sex}, {subject.age:g} y, {subject.weight:g} kg, "
        f"{subject.height:g} cm (BMI {subject.bmi:.1f}), seed {seed}, {steps}+{sr_steps} steps, "
        f"guidance {guidance:g}, prior {prior:g}. Volume {nx} x {ny} x {nz} voxels of {mm:g} mm."
    )
    sliders = (
        gr.Slider(minimum=0, maximum=nz - 1, value=middle["axial"], step=1, interactive=True),
        gr.Slider(minimum=0, maximum=ny - 1, value=middle["coronal"], step=1, interactive=True),
        gr.Slider(minimum=0, maximum=nx - 1, value=middle["sagittal"], step=1, interactive=True),
    )
    return (volumes, *images, *sliders, files, table, note, status)


# --------------------------------------------------------------------------- counterfactual
CF_DEFAULTS = {"age": (30.0, 80.0), "weight": (60.0, 110.0), "height": (160.0, 190.0)}


def counterfactual_controls(vary: str):
    low, high, unit = FIELD_BOUNDS.get(vary, FIELD_BOUNDS["age"])
    a, b = CF_DEFAULTS.get(vary, CF_DEFAULTS["age"])
    label = f"{vary.capitalize()} ({unit})"
    return (
        gr.Number(value=a, minimum=low, maximum=high, label=f"{label}, subject A"),
        gr.Number(value=b, minimum=low, maximum=high, label=f"{label}, subject B"),
    )


def render_counterfactual(pair, preset, suv_max, alpha):
    """Coronal fused views and coronal PET MIPs of subjects A and B, aligned at the vertex."""
    if not pair:
        return None, None
    spacing = pair["spacing"]
    scale = min(rendering.display_scale(ct.shape, spacing, longest_px=560) for ct in pair["ct"])
    alpha = float(np.clip(alpha if alpha is not None else 0.6, 0.0, 1.0))
    coronal, mips = [], []
    for ct, pet, caption in zip(pair["ct"], pair["pet"], pair["captions"]):
        indices = {"coronal": ct.shape[1] // 2}
        image = rendering.render_plane(
            ct,
            pet,
            "coronal",
            indices,
            spacing,
            "Fused PET/CT",
            _window(preset),
            _suv_max(suv_max),
            alpha,
            scale,
            crosshair=False,
        )
        coronal.append(rendering.caption(image, caption))
        mips.append(rendering.caption(rendering.render_mip(pet, spacing, _suv_max(suv_max), scale), caption))
    return rendering.side_by_side(coronal, background=(0, 0, 0)), rendering.side_by_side(mips)


def body_summary(ct: np.ndarray, pet: np.ndarray, spacing) -> tuple[float, float]:
    """Body volume (L, voxels above -500 HU) and mean SUV inside it."""
    body = ct > -500.0
    litres = float(body.sum()) * float(np.prod(spacing)) / 1e6
    return litres, float(pet[body].mean()) if body.any() else 0.0


def counterfactual(
    age,
    sex,
    weight,
    height,
    seed,
    steps,
    sr_steps,
    guidance,
    prior,
    vary,
    value_a,
    value_b,
    preset,
    suv_max,
    alpha,
    progress=gr.Progress(),
):
    """Two subjects that differ in one demographic only, sampled with the same seed."""
    if vary not in FIELD_BOUNDS:
        raise gr.Error(f"Vary must be one of {', '.join(FIELD_BOUNDS)}, got {vary!r}.")
    base = {"age": age, "weight": weight, "height": height}
    subjects = []
    for value in (value_a, value_b):
        subjects.append(demographics_from_inputs(**{**base, vary: value}, sex=sex))
    seed, steps, sr_steps, guidance, prior = sampling_from_inputs(seed, steps, sr_steps, guidance, prior)
    logger.info("counterfactual: %s seed=%d steps=%d+%d", subjects, seed, steps, sr_steps)
    out = run_pipeline(subjects, seed, steps, sr_steps, guidance, prior, progress)
    unit = FIELD_BOUNDS[vary][2]
    captions = [f"{label}: {vary} {getattr(s, vary):g} {unit}" for label, s in zip("AB", subjects)]
    pair = {
        "ct": [np.asarray(v, dtype=np.float32) for v in out.ct],
        "pet": [np.asarray(v, dtype=np.float32) for v in out.pet],
        "spacing": tuple(out.spacing),
        "captions": captions,
    }
    rows = ["| subject | " + vary + " | body volume (L) | mean body SUV |", "|---|---|---|---|"]
    for caption, subject, ct, pet in zip("AB", subjects, pair["ct"], pair["pet"]):
        litres, suv = body_summary(ct, pet, out.spacing)
        rows.append(f"| {caption} | {getattr(subject, vary):g} {unit} | {litres:.1f} | {suv:.2f} |")
    summary = (
        f"Same seed ({seed}) and {', '.join(k for k in FIELD_BOUNDS if k != vary)} and sex; only {vary} differs.\n\n"
        + "\n".join(rows)
    )
    return (pair, *render_counterfactual(pair, preset, suv_max, alpha), summary)


# --------------------------------------------------------------------------- layout
CSS = """
#viewer-row img, #cf-row img { image-rendering: auto; }
.petct-note { font-size: 0.9em; opacity: 0.85; }
"""


def header_markdown(location: str) -> str:
    text = (
        "# petct-diffusion: whole-body FDG PET/CT from demographics\n"
        "A cascade of two 3D diffusion models samples a synthetic PET/CT (CT in HU, PET in SUV) from age, sex, "
        "weight and height. **Synthetic data for research and teaching only; no clinical use.** "
        f"Model: `{model_name(location)}`."
    )
    if model_is_untrained(location):
        text += (
            "\n\n> The model's weights are an **untrained placeholder**: the volumes are noise, not anatomy, "
            "until trained weights are shipped."
        )
    return text


def build_demo() -> gr.Blocks:
    location = model_location()
    with gr.Blocks(title="petct-diffusion: PET/CT from demographics", delete_cache=(3600, 7200)) as demo:
        volumes = gr.State(None, time_to_live=3600)
        pair = gr.State(None, time_to_live=3600)
        gr.Markdown(header_markdown(location))
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=260):
                age = gr.Slider(*FIELD_BOUNDS["age"][:2], value=50, step=1, label="Age (years)", elem_id="age")
                sex = gr.Radio([("Female", "F"), ("Male", "M")], value="F", label="Sex", elem_id="sex")
                weight = gr.Slider(*FIELD_BOUNDS["weight"][:2], value=70, step=1, label="Weight (kg)", elem_id="weight")
                height = gr.Slider(
                    *FIELD_BOUNDS["height"][:2], value=170, step=1, label="Height (cm)", elem_id="height"
                )
                seed = gr.Number(
                    value=0, minimum=SEED_BOUNDS[0], maximum=SEED_BOUNDS[1], precision=0, label="Seed", elem_id="seed"
                )
                with gr.Accordion("Sampling", open=False):
                    steps = gr.Slider(
                        *STEP_BOUNDS["steps"], value=DEFAULT_STEPS, step=1, label="Stage-1 steps", elem_id="steps"
                    )
                    sr_steps = gr.Slider(
                        *STEP_BOUNDS["sr_steps"],
                        value=DEFAULT_SR_STEPS,
                        step=1,
                        label="Super-resolution steps",
                        elem_id="sr-steps",
                    )
                    guidance = gr.Slider(
                        *GUIDANCE_BOUNDS,
                        value=default_guidance_scale(DEFAULT_PRIOR_SCALE),
                        step=0.1,
                        label="Guidance scale",
                        info="1 = plain conditional model (the default with the prior; 2 without it)",
                        elem_id="guidance",
                    )
                    prior = gr.Slider(
                        *PRIOR_BOUNDS,
                        value=DEFAULT_PRIOR_SCALE,
                        step=0.1,
                        label="Demographic prior",
                        info="weight of the model's linear demographic prior in stage 1 (0 = off; "
                        "ignored if the model has none)",
                        elem_id="prior",
                    )
                generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                status = gr.Markdown(elem_id="status")
                gr.Examples(
                    EXAMPLES,
                    inputs=[age, sex, weight, height, seed],
                    example_labels=EXAMPLE_LABELS,
                    label="Examples (fill the inputs, then Generate)",
                )

            with gr.Column(scale=4):
                with gr.Tabs():
                    with gr.Tab("Viewer", id="viewer"):
                        with gr.Row(elem_id="viewer-row"):
                            slice_images, slice_sliders = [], []
                            for view, letter in (("axial", "z"), ("coronal", "y"), ("sagittal", "x")):
                                with gr.Column(min_width=200):
                                    slice_images.append(
                                        gr.Image(
                                            label=view.capitalize(),
                                            type="pil",
                                            format="png",
                                            height=420,
                                            interactive=False,
                                            elem_id=f"{view}-image",
                                            buttons=["download", "fullscreen"],
                                        )
                                    )
                                    slice_sliders.append(
                                        gr.Slider(
                                            0,
                                            1,
                                            value=0,
                                            step=1,
                                            label=f"{view.capitalize()} slice ({letter})",
                                            interactive=False,
                                            elem_id=f"{view}-slider",
                                        )
                                    )
                        with gr.Row():
                            mode = gr.Radio(
                                list(rendering.DISPLAY_MODES),
                                value=rendering.DISPLAY_MODES[0],
                                label="Display",
                                elem_id="mode",
                            )
                            preset = gr.Radio(
                                list(rendering.WINDOW_PRESETS),
                                value="Soft tissue",
                                label="CT window (W/L 400/40, 1500/-600, 2000/300)",
                                elem_id="preset",
                            )
                        with gr.Row():
                            suv_max = gr.Slider(
                                *SUV_MAX_BOUNDS, value=5.0, step=0.5, label="PET scale: SUV max", elem_id="suv-max"
                            )
                            alpha = gr.Slider(
                                0.0, 1.0, value=0.6, step=0.05, label="PET overlay opacity", elem_id="alpha"
                            )
                            crosshair = gr.Checkbox(value=True, label="Crosshair", elem_id="crosshair")
                        with gr.Row():
                            with gr.Column(scale=1, min_width=200):
                                mip_image = gr.Image(
                                    label="PET MIP (coronal)",
                                    type="pil",
                                    format="png",
                                    height=420,
                                    interactive=False,
                                    elem_id="mip-image",
                                )
                            with gr.Column(scale=2):
                                files = gr.File(
                                    label="Downloads: ct.nii.gz (HU), pet_suv.nii.gz (SUV), metadata.json",
                                    file_count="multiple",
                                    interactive=False,
                                    elem_id="downloads",
                                )
                                organ_note = gr.Markdown(elem_classes=["petct-note"], elem_id="organ-note")
                                organs = gr.Dataframe(
                                    headers=["organ", "volume (mL)", "SUVmean", "SUVmax"],
                                    visible=False,
                                    interactive=False,
                                    label="Organs",
                                    elem_id="organs",
                                )

                    with gr.Tab("Counterfactual", id="counterfactual"):
                        gr.Markdown(
                            "Two subjects with the **same seed** and the demographics on the left, except one "
                            "that differs. Coronal views are aligned at the top of the head."
                        )
                        with gr.Row():
                            vary = gr.Radio(list(FIELD_BOUNDS), value="age", label="Vary", elem_id="cf-vary")
                            low, high, _ = FIELD_BOUNDS["age"]
                            value_a = gr.Number(
                                CF_DEFAULTS["age"][0],
                                minimum=low,
                                maximum=high,
                                label="Age (years), subject A",
                                elem_id="cf-a",
                            )
                            value_b = gr.Number(
                                CF_DEFAULTS["age"][1],
                                minimum=low,
                                maximum=high,
                                label="Age (years), subject B",
                                elem_id="cf-b",
                            )
                        cf_button = gr.Button("Generate pair", variant="primary", elem_id="cf-generate")
                        with gr.Row(elem_id="cf-row"):
                            cf_coronal = gr.Image(
                                label="Coronal PET/CT: A | B",
                                type="pil",
                                format="png",
                                height=460,
                                interactive=False,
                                elem_id="cf-coronal",
                            )
                            cf_mip = gr.Image(
                                label="Coronal PET MIP: A | B",
                                type="pil",
                                format="png",
                                height=460,
                                interactive=False,
                                elem_id="cf-mip",
                            )
                        cf_summary = gr.Markdown(elem_id="cf-summary")

        sampling_inputs = [age, sex, weight, height, seed, steps, sr_steps, guidance, prior]
        display_inputs = [mode, preset, suv_max, alpha, crosshair]
        viewer_outputs = [*slice_images, mip_image]
        generate_button.click(
            generate,
            inputs=[*sampling_inputs, *display_inputs],
            outputs=[volumes, *viewer_outputs, *slice_sliders, files, organs, organ_note, status],
            api_name="generate",
            show_progress_on=slice_images,
            preprocess=False,  # raw values: our own checks name the field and its range (gr.Slider's do not)
            concurrency_limit=1,
            concurrency_id="sampling",
        )
        render_inputs = [volumes, *slice_sliders, *display_inputs]
        render_options = dict(
            api_name=False,
            preprocess=False,
            show_progress="hidden",
            trigger_mode="always_last",
            concurrency_limit=4,
            concurrency_id="render",
        )
        for slider in slice_sliders:  # a slice moved: only the three slice images change
            slider.input(render_slices, inputs=render_inputs, outputs=slice_images, **render_options)
        for control in display_inputs:  # window, SUV scale, overlay: the MIP too
            control.input(render_viewer, inputs=render_inputs, outputs=viewer_outputs, **render_options)

        vary.change(counterfactual_controls, inputs=vary, outputs=[value_a, value_b], api_name=False)
        cf_button.click(
            counterfactual,
            inputs=[*sampling_inputs, vary, value_a, value_b, preset, suv_max, alpha],
            outputs=[pair, cf_coronal, cf_mip, cf_summary],
            api_name="counterfactual",
            preprocess=False,
            concurrency_limit=1,
            concurrency_id="sampling",
        )
        for control in (preset, suv_max, alpha):
            control.input(
                render_counterfactual,
                inputs=[pair, preset, suv_max, alpha],
                outputs=[cf_coronal, cf_mip],
                **render_options,
            )
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=4)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="petct-diffusion Gradio Space")
    parser.add_argument("--server-name", default=None, help="host (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--server-port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--model", default=None, help="pipeline folder or hub repo id (default: $PETCT_MODEL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.model:
        os.environ["PETCT_MODEL"] = args.model
    demo = build_demo()
    demo.launch(server_name=args.server_name, server_port=args.server_port, theme=gr.themes.Soft(), css=CSS)


if __name__ == "__main__":
    main()
