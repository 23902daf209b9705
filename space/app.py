"""Gradio Space: four demographic numbers -> a synthetic whole-body FDG PET/CT you can browse and download.

Run from the repository root or from this folder (the Space runtime's working directory), with the
package installed (``pip install -e ".[space]"`` here; ``requirements.txt`` on a Space)::

    python space/app.py                      # http://127.0.0.1:7860
    PETCT_MODEL=/path/to/pipeline python space/app.py --server-name 0.0.0.0 --server-port 7861

The model is ``$PETCT_MODEL`` (a save_pretrained folder or a hub repo id), else the shipped
checkpoint (``petct_pipeline.checkpoints.default_model``). Each subject is labelled by the organ
segmenter and, with a diagnosis other than NEGATIVE, gets FDG-avid lesions with known truth
(``petct_pipeline.ground_truth.add_lesions``, as ``petct generate --diagnosis``). Generated volumes
and label maps stay in the session (``gr.State``): slice sliders, window presets, the SUV scale and
the overlay toggles re-render them without sampling again. Pixels are made in ``rendering.py``
(radiological display convention).
"""

from __future__ import annotations

import argparse
import html
import logging
import math
import os
import shutil
import tempfile
import threading
import time
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
from petct_pipeline.evaluation.segmenters import ModelSegmenter
from petct_pipeline.ground_truth import add_lesions
from petct_pipeline.lesions import DIAGNOSES, LESIONS_FILENAME, LESIONS_JSON_FILENAME, check_diagnosis
from petct_pipeline.model_files import model_name
from petct_pipeline.organ_labels import label_organs, organ_segmenter
from petct_pipeline.organs import EVALUATION_ORGANS, LABELS, organ_mask
from petct_pipeline.pipeline_output import (
    CT_FILENAME,
    METADATA_FILENAME,
    ORGAN_NAMES_FILENAME,
    ORGANS_FILENAME,
    PET_FILENAME,
    PETCTPipelineOutput,
)
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
#: the diagnosis that inserts no lesions (the default, and the demo's generation without known lesions)
NO_LESIONS = "NEGATIVE"
#: what a generation may offer for download, in this order (the ones it wrote)
DOWNLOAD_FILES = (
    CT_FILENAME,
    PET_FILENAME,
    METADATA_FILENAME,
    ORGANS_FILENAME,
    ORGAN_NAMES_FILENAME,
    LESIONS_FILENAME,
    LESIONS_JSON_FILENAME,
)

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
        raise gr.Error(_sentence(str(error))) from None
    return subject


def _sentence(message: str) -> str:
    """A library error message as a sentence for the UI."""
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def diagnosis_from_input(value: Any) -> str:
    """The diagnosis as one of ``DIAGNOSES``, or a gr.Error naming the allowed values."""
    try:
        return check_diagnosis(value)
    except InputError as error:
        raise gr.Error(_sentence(str(error))) from None


def sampling_from_inputs(
    seed: Any, steps: Any, sr_steps: Any, guidance: Any, prior: Any
) -> tuple[int, int, int, float, float]:
    seed = check_number("Seed", seed, *SEED_BOUNDS)
    if seed != int(seed):
        raise gr.Error(f"Seed must be a whole number, got {seed:g}.")
    steps = check_number("Stage-1 steps", steps, *STEP_BOUNDS["steps"])
    sr_steps = check_number("Super-resolution steps", sr_steps, *STEP_BOUNDS["sr_steps"])
    for label, count in (("Stage-1 steps", steps), ("Super-resolution steps", sr_steps)):
        if count != int(count):  # the API bypasses the slider's step of 1: 2.5 must not quietly become 2
            raise gr.Error(f"{label} must be a whole number, got {count:g}.")
    guidance = check_number("Guidance scale", guidance, *GUIDANCE_BOUNDS)
    prior = check_number("Demographic prior", prior, *PRIOR_BOUNDS)
    return int(seed), int(steps), int(sr_steps), guidance, prior


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


# --------------------------------------------------------------------------- known truth: organ labels and lesions
def load_organ_segmenter() -> tuple[ModelSegmenter | None, str]:
    """``(segmenter, description)``: the organ segmenter of ``petct generate``, or ``(None, why not)``.

    The checkpoint is ``$PETCT_SEGMENTER`` or ``checkpoints/petct-phantom-seg``. Without it the demo
    still generates NEGATIVE subjects; the organ table and overlay hide themselves, and no lesions can
    be placed (they are placed by the organ labels).
    """
    path = default_segmenter()
    if path is None or not path.exists():
        where = path or checkpoints_dir() / DEFAULT_SEGMENTER_NAME
        return None, f"no organ segmenter checkpoint at `{where}`"
    try:
        segmenter = organ_segmenter(path)
    except Exception as error:  # an optional feature never breaks the demo
        logger.exception("could not load the organ segmenter")
        return None, f"the organ segmenter at `{path}` could not be loaded ({type(error).__name__}: {error})"
    return segmenter, f"`model:{path}`"


_SEGMENTER: tuple[ModelSegmenter | None, str] | None = None


def space_segmenter() -> tuple[ModelSegmenter | None, str]:
    """:func:`load_organ_segmenter`, once per process."""
    global _SEGMENTER
    if _SEGMENTER is None:
        _SEGMENTER = load_organ_segmenter()
    return _SEGMENTER


def check_lesions_possible(diagnosis: str) -> None:
    """Before sampling: a diagnosis with lesions needs the organ segmenter, or a gr.Error says why there is none."""
    segmenter, about = space_segmenter()
    if diagnosis != NO_LESIONS and segmenter is None:
        raise gr.Error(
            f"Diagnosis {diagnosis}: lesions are placed by the organ labels, but there is {about}. "
            f"Choose {NO_LESIONS}, or set PETCT_SEGMENTER to an organ segmenter folder."
        )


def label_subject(output: PETCTPipelineOutput, required: bool) -> str | None:
    """Fill ``output.organs`` with the Space's segmenter; None when labelled, else the note saying why not.

    The labels feed the organ table, the overlay, the download and lesion placement, so the
    segmenter runs once per subject. Without lesions (``required`` False) a failure only hides them.
    """
    if output.organs:  # already labelled (a pipeline that labels its outputs): never segment twice
        return None
    segmenter, about = space_segmenter()
    if segmenter is None:
        return f"Organ table hidden: {about}."
    try:
        label_organs(output, segmenter)
    except Exception as error:  # the demo reports it; the log keeps the traceback
        logger.exception("organ segmentation failed")
        why = f"segmentation failed ({type(error).__name__}: {error})"
        if required:
            raise gr.Error(f"Lesions are placed by the organ labels, and the organ {why}. See the log.") from None
        return f"Organ table unavailable: {why}."
    return None


def insert_known_lesions(output: PETCTPipelineOutput, diagnosis: str, seed: int) -> None:
    """Lesions sampled for ``diagnosis`` into the labelled subject; the seed fixes them, as in ``petct generate``."""
    try:
        add_lesions(output, diagnosis, None, [seed])
    except InputError as error:
        raise gr.Error(_sentence(str(error))) from None
    except Exception as error:
        logger.exception("lesion insertion failed")
        raise gr.Error(f"Lesion insertion failed ({type(error).__name__}: {error}). See the server log.") from None


ORGAN_HEADERS = ("organ", "volume (mL)", "SUVmean", "SUVmax")


def organ_table(labels: np.ndarray, pet: np.ndarray, spacing) -> list[list[Any]]:
    """Rows [organ, volume mL, SUVmean, SUVmax] for the evaluation organs present in ``labels``."""
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


def organ_outputs(output: PETCTPipelineOutput, problem: str | None) -> tuple[Any, Any]:
    """(Dataframe update, note update): the organ table of the labelled subject, or the note ``problem``."""
    if problem is not None or not output.organs:
        return gr.Dataframe(value=None, visible=False), gr.Markdown(problem or "Organ table hidden: no labels.")
    rows = organ_table(output.organs[0], np.asarray(output.pet[0], dtype=np.float32), output.spacing)
    found = f"{len(rows)} of the evaluation organs found" if rows else "none of the evaluation organs found"
    made_by = output.organ_segmenter or space_segmenter()[1]
    table = gr.Dataframe(value=rows, headers=list(ORGAN_HEADERS), visible=True)
    return table, gr.Markdown(f"Organs segmented by {made_by}: {found}.")


#: the per-lesion table: (header, lesions.json field); the requested quantity is suv_max, suv_mean or
#: lesion_to_background, and "measured" is that quantity on the written volumes
LESION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("site", "site"),
    ("organ", "organ"),
    ("diameter (mm)", "diameter_mm"),
    ("volume (mL)", "volume_ml"),
    ("SUVmax", "suv_max"),
    ("SUVmean", "suv_mean"),
    ("SUVpeak", "suv_peak"),
    ("TLG (SUV x mL)", "tlg"),
    ("HU mean", "hu_mean"),
    ("requested", "requested_quantity"),
    ("requested value", "requested_value"),
    ("measured", "measured_value"),
)
LESION_HEADERS = tuple(header for header, _ in LESION_COLUMNS)
TABLE_DIGITS = 2  # lesions.json keeps 4; two are what a table reader compares


def _cell(value: Any) -> Any:
    """A lesions.json value as a table cell: floats rounded for reading, a missing value blank."""
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, TABLE_DIGITS)
    return value


def lesion_table(records: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per lesions.json record, in :data:`LESION_COLUMNS` order."""
    return [[_cell(record.get(field)) for _, field in LESION_COLUMNS] for record in records]


def lesion_outputs(output: PETCTPipelineOutput) -> tuple[Any, Any]:
    """(Dataframe update, note update): the per-lesion truth of the subject's insertion; hidden without one."""
    if not output.lesions:
        return gr.Dataframe(value=None, visible=False), gr.Markdown(
            f"{NO_LESIONS}: no lesions. Choose a diagnosis to insert FDG-avid lesions with known truth."
        )
    insertion = output.lesions[0]
    rows = lesion_table(insertion.records)
    note = (
        f"{insertion.diagnosis}: {len(rows)} lesion{'s' if len(rows) != 1 else ''} inserted (seed {insertion.seed}); "
        f"values measured on the written volumes, as in `{LESIONS_JSON_FILENAME}`."
    )
    if insertion.not_placed:
        missed = len(insertion.not_placed)
        note += f" {missed} sampled lesion(s) found no room (`not_placed` in {LESIONS_JSON_FILENAME})."
    return gr.Dataframe(value=rows, headers=list(LESION_HEADERS), visible=bool(rows)), gr.Markdown(note)


def _swatch(color: tuple[float, float, float], name: str) -> str:
    rgb = ",".join(str(round(255 * c)) for c in color)
    return (
        f'<span style="display:inline-block;margin:0 10px 2px 0;white-space:nowrap">'
        f'<span style="display:inline-block;width:0.9em;height:0.9em;vertical-align:middle;'
        f'background:rgb({rgb});border:1px solid #555"></span> {html.escape(name)}</span>'
    )


def overlay_legend(volumes: dict[str, Any] | None) -> str:
    """HTML key of the overlay colours: every organ in the subject's label map by name, and the lesions."""
    if not volumes:
        return ""
    items = []
    if volumes.get("organs") is not None:
        for label in np.unique(volumes["organs"]):
            if label:
                items.append(_swatch(rendering.organ_color(int(label)), LABELS.get(int(label), f"label {label}")))
    if volumes.get("lesions") is not None:
        count = int(volumes["lesions"].max(initial=0))
        items.append(_swatch(rendering.LESION_COLOR, f"lesions ({count})"))
    return f'<div class="petct-note">Overlay colours: {"".join(items)}</div>' if items else ""


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


def render_slices(
    volumes, axial, coronal, sagittal, mode, preset, suv_max, alpha, crosshair, show_organs=False, show_lesions=True
):
    """The axial, coronal and sagittal images of the session's volumes (re-rendered, never re-sampled).

    ``show_organs`` / ``show_lesions`` draw the subject's organ labels and lesion instances over the slices.
    """
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
    organs = volumes.get("organs") if show_organs else None
    lesions = volumes.get("lesions") if show_lesions else None
    return tuple(
        rendering.render_plane(
            ct,
            pet,
            view,
            indices,
            spacing,
            mode,
            window,
            _suv_max(suv_max),
            alpha,
            scale,
            bool(crosshair),
            organs=organs,
            lesions=lesions,
        )
        for view in rendering.VIEWS
    )


def render_viewer(
    volumes, axial, coronal, sagittal, mode, preset, suv_max, alpha, crosshair, show_organs=False, show_lesions=True
):
    """The three slice images and the coronal PET MIP."""
    slices = render_slices(
        volumes, axial, coronal, sagittal, mode, preset, suv_max, alpha, crosshair, show_organs, show_lesions
    )
    if not volumes:
        return (*slices, None)
    return (
        *slices,
        rendering.render_mip(volumes["pet"], volumes["spacing"], _suv_max(suv_max), _display_scale(volumes)),
    )


def session_volumes(output: PETCTPipelineOutput) -> dict[str, Any]:
    """What the session keeps of subject 0 to re-render it: volumes, grid and, when made, its label maps."""
    return {
        "ct": np.asarray(output.ct[0], dtype=np.float32),
        "pet": np.asarray(output.pet[0], dtype=np.float32),
        "spacing": tuple(output.spacing),
        "affine": output.affines[0],
        "organs": np.asarray(output.organs[0]) if output.organs else None,
        "lesions": np.asarray(output.lesions[0].instances) if output.lesions else None,
    }


def start_slices(volumes: dict[str, Any]) -> tuple[dict[str, int], int | None]:
    """Where the viewer opens, and on which lesion: the volume's middle, or the largest lesion's central voxel,
    so a subject with lesions opens on one (a middle slice often misses them all)."""
    nx, ny, nz = volumes["ct"].shape
    lesions = volumes.get("lesions")
    if lesions is None or not lesions.any():
        return {"axial": nz // 2, "coronal": ny // 2, "sagittal": nx // 2}, None
    ids, counts = np.unique(lesions[lesions > 0], return_counts=True)
    largest = int(ids[np.argmax(counts)])
    voxels = np.argwhere(lesions == largest)
    x, y, z = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    return {"axial": int(z), "coronal": int(y), "sagittal": int(x)}, largest


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
    diagnosis,
    mode,
    preset,
    suv_max,
    alpha,
    crosshair,
    show_organs,
    show_lesions,
    progress=gr.Progress(),
):
    """Sample one subject, label its organs, insert the diagnosis' lesions, save its files and show it."""
    subject = demographics_from_inputs(age, sex, weight, height)
    seed, steps, sr_steps, guidance, prior = sampling_from_inputs(seed, steps, sr_steps, guidance, prior)
    diagnosis = diagnosis_from_input(diagnosis)
    check_lesions_possible(diagnosis)  # before the expensive sampling
    logger.info(
        "generate: %s seed=%d steps=%d+%d guidance=%g prior=%g diagnosis=%s",
        subject, seed, steps, sr_steps, guidance, prior, diagnosis,
    )
    start = time.perf_counter()
    out = run_pipeline([subject], seed, steps, sr_steps, guidance, prior, progress)
    sampled = time.perf_counter()
    progress(None, desc="Labelling organs")
    organ_problem = label_subject(out, required=diagnosis != NO_LESIONS)
    if diagnosis != NO_LESIONS:
        progress(None, desc="Inserting lesions")
        insert_known_lesions(out, diagnosis, seed)
    finished = time.perf_counter()
    out_dir = new_output_dir()
    out.save(out_dir)
    files = [str(out_dir / name) for name in DOWNLOAD_FILES if (out_dir / name).is_file()]

    volumes = session_volumes(out)
    nx, ny, nz = volumes["ct"].shape
    start_at, lesion_id = start_slices(volumes)
    images = render_viewer(
        volumes,
        start_at["axial"],
        start_at["coronal"],
        start_at["sagittal"],
        mode,
        preset,
        suv_max,
        alpha,
        crosshair,
        show_organs,
        show_lesions,
    )
    organ_rows, organ_note = organ_outputs(out, organ_problem)
    lesion_rows, lesion_note = lesion_outputs(out)

    mm = out.spacing[0]
    status = (
        f"Generated in {finished - start:.1f} s (sampling {sampled - start:.1f} s, labels and lesions "
        f"{finished - sampled:.1f} s): {subject.sex}, {subject.age:g} y, {subject.weight:g} kg, "
        f"{subject.height:g} cm (BMI {subject.bmi:.1f}), seed {seed}, {steps}+{sr_steps} steps, "
        f"guidance {guidance:g}, prior {prior:g}, diagnosis {diagnosis}. Volume {nx} x {ny} x {nz} voxels of {mm:g} mm."
    )
    if lesion_id is not None:
        status += f" The slices open on lesion {lesion_id}, the largest."
    sliders = (
        gr.Slider(minimum=0, maximum=nz - 1, value=start_at["axial"], step=1, interactive=True),
        gr.Slider(minimum=0, maximum=ny - 1, value=start_at["coronal"], step=1, interactive=True),
        gr.Slider(minimum=0, maximum=nx - 1, value=start_at["sagittal"], step=1, interactive=True),
    )
    legend = overlay_legend(volumes)
    return (volumes, *images, *sliders, files, organ_rows, organ_note, lesion_rows, lesion_note, legend, status)


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


# --------------------------------------------------------------------------- PET from an uploaded CT
def _upload_path(upload: Any) -> Path:
    """The local path of a gr.File value (a path string, a file object or a dict, depending on the client)."""
    if isinstance(upload, dict):
        upload = upload.get("path") or upload.get("name")
    upload = getattr(upload, "name", upload)
    if not upload:
        raise gr.Error("Upload a CT first: a NIfTI file (.nii or .nii.gz) in HU.")
    return Path(str(upload))


def pet_from_uploaded_ct(upload, age, sex, weight, height, seed, steps, sr_steps, offset, suv_max, alpha,
                         progress=gr.Progress()):
    """The PET that fits an uploaded CT and the demographics (pipe.pet_from_ct), on the CT's own grid."""
    from petct_pipeline.conditional import check_offset, read_ct

    subject = demographics_from_inputs(age, sex, weight, height)
    seed, steps, sr_steps, _, _ = sampling_from_inputs(seed, steps, sr_steps, 1.0, 0.0)
    path = _upload_path(upload)
    try:
        offset_mm = check_offset(None if offset in (None, "") else float(offset))
        ct = read_ct(path)
    except (InputError, ValueError) as error:
        raise gr.Error(_sentence(str(error).replace(f"--ct {path}", "the uploaded file"))) from None
    progress(None, desc="Sampling the PET for this CT")
    start = time.perf_counter()
    try:
        output = get_pipeline().pet_from_ct(ct, subject, ct_offset_mm=offset_mm, num_inference_steps=steps,
                                            sr_num_inference_steps=sr_steps,
                                            generator=torch.Generator().manual_seed(seed))
    except InputError as error:
        raise gr.Error(_sentence(str(error))) from None
    out_dir = new_output_dir()
    output.save(out_dir)
    files = [str(out_dir / name) for name in (PET_FILENAME, METADATA_FILENAME) if (out_dir / name).is_file()]
    spacing = tuple(float(v) for v in np.sqrt((ct.affine[:3, :3] ** 2).sum(axis=0)))
    scale = rendering.display_scale(ct.hu.shape, spacing, longest_px=560)
    indices = {"coronal": ct.hu.shape[1] // 2}
    fused = rendering.render_plane(ct.hu, output.pet_canonical, "coronal", indices, spacing, "Fused PET/CT",
                                   _window("Soft tissue"), _suv_max(suv_max), float(np.clip(alpha or 0.6, 0, 1)),
                                   scale, crosshair=False)
    pet_mip = rendering.render_mip(output.pet_canonical, spacing, _suv_max(suv_max), scale)
    record = output.metadata["ct_to_pet"]
    placement = record["placement"]
    grid = " x ".join(map(str, ct.file_shape))
    status = (f"PET generated in {time.perf_counter() - start:.1f} s on the CT's grid ({grid} voxels, "
              f"{record['input_ct']['orientation']}): the CT's top slice placed {placement['offset_mm']:.0f} mm "
              f"below the vertex ({'given' if placement['method'] == 'given' else 'estimated'}); "
              f"{100 * record['pet_generated_where']['body_fraction_covered']:.0f} % of its body inside the model's "
              "frame (the PET is 0 outside it).")
    for warning in record["warnings"]:
        if warning.startswith("body size"):
            gr.Warning(_sentence(warning))
    return fused, pet_mip, files, status


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
                diagnosis = gr.Radio(
                    [(name.replace("_", " ").capitalize(), name) for name in DIAGNOSES],
                    value=NO_LESIONS,
                    label="Diagnosis",
                    info="lesions sampled as in AutoPET's positive studies, with known truth (the seed fixes them); "
                    "Negative: none",
                    elem_id="diagnosis",
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
                            show_organs = gr.Checkbox(value=False, label="Organ labels", elem_id="show-organs")
                            show_lesions = gr.Checkbox(value=True, label="Lesions", elem_id="show-lesions")
                        legend = gr.HTML(elem_id="overlay-legend")
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
                                    label="Downloads: ct.nii.gz (HU), pet_suv.nii.gz (SUV), metadata.json; "
                                    "organs.nii.gz + organs.json (organ labels); lesions.nii.gz + lesions.json "
                                    "(with a diagnosis)",
                                    file_count="multiple",
                                    interactive=False,
                                    elem_id="downloads",
                                )
                                organ_note = gr.Markdown(elem_classes=["petct-note"], elem_id="organ-note")
                                organs = gr.Dataframe(
                                    headers=list(ORGAN_HEADERS),
                                    visible=False,
                                    interactive=False,
                                    label="Organs",
                                    elem_id="organs",
                                )
                                lesion_note = gr.Markdown(elem_classes=["petct-note"], elem_id="lesion-note")
                                lesions = gr.Dataframe(
                                    headers=list(LESION_HEADERS),
                                    visible=False,
                                    interactive=False,
                                    label="Lesions (known truth)",
                                    elem_id="lesions",
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

                    with gr.Tab("PET from your CT", id="from-ct"):
                        gr.Markdown(
                            "Upload a CT (NIfTI, HU, any orientation; a chest or an abdomen is fine) and the PET "
                            "that fits it and the demographics on the left is generated on exactly its grid: the CT "
                            "is known, the PET sampled ([docs](https://github.com/petct-diffusion/petct-diffusion/"
                            "blob/main/docs/ct_to_pet.md)). The model learned synthetic phantoms only."
                        )
                        with gr.Row():
                            ct_upload = gr.File(label="CT (.nii / .nii.gz)", file_types=[".nii", ".gz"],
                                                elem_id="ct-upload")
                            ct_offset = gr.Number(None, label="Offset of its top slice below the vertex (mm; empty: "
                                                  "estimated)", elem_id="ct-offset")
                        ct_button = gr.Button("Generate the PET", variant="primary", elem_id="ct-generate")
                        with gr.Row():
                            ct_fused = gr.Image(label="Coronal PET/CT", type="pil", format="png", height=460,
                                                interactive=False, elem_id="ct-fused")
                            ct_mip = gr.Image(label="Coronal PET MIP", type="pil", format="png", height=460,
                                              interactive=False, elem_id="ct-mip")
                        ct_files = gr.File(label="Download (pet_suv.nii.gz, metadata.json)", file_count="multiple",
                                           interactive=False, elem_id="ct-files")
                        ct_status = gr.Markdown(elem_id="ct-status")

        sampling_inputs = [age, sex, weight, height, seed, steps, sr_steps, guidance, prior]
        display_inputs = [mode, preset, suv_max, alpha, crosshair, show_organs, show_lesions]
        viewer_outputs = [*slice_images, mip_image]
        generate_button.click(
            generate,
            inputs=[*sampling_inputs, diagnosis, *display_inputs],
            outputs=[
                volumes,
                *viewer_outputs,
                *slice_sliders,
                files,
                organs,
                organ_note,
                lesions,
                lesion_note,
                legend,
                status,
            ],
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
        for control in display_inputs:  # window, SUV scale, PET opacity, label overlays: the MIP too
            control.input(render_viewer, inputs=render_inputs, outputs=viewer_outputs, **render_options)

        ct_button.click(
            pet_from_uploaded_ct,
            inputs=[ct_upload, age, sex, weight, height, seed, steps, sr_steps, ct_offset, suv_max, alpha],
            outputs=[ct_fused, ct_mip, ct_files, ct_status],
            api_name="pet_from_ct",
            concurrency_limit=1,
            concurrency_id="sampling",
        )
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
