"""Segmenter back-ends: one small interface returning TotalSegmentator-id label maps.

``make_segmenter(spec)`` understands:

* ``labels``: the label map stored with the volumes (``organs.nii.gz``, as phantoms and
  AutoPET-layout datasets with organ labels have); resampled (nearest neighbour) to the PET
  grid when it lies on another grid.
* ``totalsegmentator`` / ``totalsegmentator:fast``: TotalSegmentator's Python API on the CT
  (task ``total``; ``fast`` = its 3 mm model). Needs the package *and* its weights on this
  machine; without them it raises an error saying how to get them. It never downloads
  and never falls back to another segmenter silently.
* ``model:PATH``: this package's small 3D segmentation network
  (:class:`~petct_pipeline.models.OrganSegmentationModel`), trained with ``training/train.py
  --stage seg``. The segmenter runs it as the training cache feeds it: the volume is resampled
  to the model's isotropic grid (anti-aliased), masked to the body, padded with air to the
  network's size multiple, segmented, and the label map resampled back (nearest neighbour).
  A network trained on random crops (``input_region: body`` in its ``segmenter.json``) sees the
  body's bounding box only, so its labels do not depend on how much air or which field of view
  surrounds the body; one trained on whole grids sees the whole grid, as it did in training.

A segmenter is pickled to worker processes; heavy state (networks) is loaded lazily there.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.preprocess import AIR_HU, OUTSIDE_BODY_MODEL, resample
from ..errors import InputError, InputTypeError
from ..geometry import body_length_mm
from ..intensity import hu_to_model, suv_to_model
from ..io import load_nifti
from ..model_files import model_name
from ..models.organ_segmentation import OrganSegmentationModel
from .inputs import EvaluationInput, SubjectInput, SubjectVolumes, same_grid
from .metrics import body_mask

__all__ = [
    "SEGMENTER_SPECS",
    "SegmenterUnavailableError",
    "Segmenter",
    "LabelsSegmenter",
    "TotalSegmentatorSegmenter",
    "ModelSegmenter",
    "GridVolumes",
    "ModelInput",
    "on_model_grid",
    "model_input",
    "crop_input",
    "make_segmenter",
]

SEGMENTER_SPECS = ("labels", "totalsegmentator", "totalsegmentator:fast", "model:PATH")


class SegmenterUnavailableError(InputError):
    """The requested segmenter cannot run here (package, weights or label maps missing); says how to fix it."""


class Segmenter(ABC):
    """Returns a TotalSegmentator-id label map on the subject's PET grid."""

    #: the spec string that made it (reported in the evaluation outputs)
    spec: str = ""

    def check(self, cohort: EvaluationInput, role: str) -> None:  # noqa: B027 (optional hook)
        """Fail before any work if this segmenter cannot handle ``cohort`` (default: nothing to check)."""

    @abstractmethod
    def segment(self, subject: SubjectInput, volumes: SubjectVolumes) -> np.ndarray:
        """Integer label map with the shape of ``volumes.suv``."""

    def describe(self) -> str:
        return self.spec


class LabelsSegmenter(Segmenter):
    spec = "labels"

    def check(self, cohort: EvaluationInput, role: str) -> None:
        missing = [subject for subject in cohort.subjects if subject.labels is None]
        if missing:
            example = missing[0].directory / "organs.nii.gz"
            raise SegmenterUnavailableError(
                f"--segmenter labels needs a label map beside every {role} subject, but {len(missing)} of "
                f"{len(cohort)} have none (e.g. {str(example)!r} does not exist); use --segmenter "
                "totalsegmentator or model:PATH for volumes without labels"
            )

    def segment(self, subject: SubjectInput, volumes: SubjectVolumes) -> np.ndarray:
        if subject.labels is None:
            raise SegmenterUnavailableError(f"subject {subject.key} has no organs.nii.gz for --segmenter labels")
        labels, affine = load_nifti(subject.labels, dtype=np.float32)
        if labels.ndim == 4 and labels.shape[3] == 1:
            labels = labels[..., 0]
        if labels.ndim != 3 or not np.all(np.mod(labels, 1) == 0) or labels.min(initial=0) < 0:
            raise InputError(f"subject {subject.key}: {str(subject.labels)!r} is not a 3D integer label map")
        labels = labels.astype(np.int16)
        if not same_grid(labels.shape, affine, volumes.shape, volumes.affine):
            labels = resample(labels, affine, volumes.shape, volumes.affine, order=0, cval=0)
        return labels


def _totalseg_weights_dir() -> Path:
    """Where TotalSegmentator looks for weights (its config.get_weights_dir, without importing it)."""
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    if os.environ.get("TOTALSEG_HOME_DIR"):
        home = Path(os.environ["TOTALSEG_HOME_DIR"])
    else:
        home = (Path("/tmp") if str(Path.home()) == "/" else Path.home()) / ".totalsegmentator"
    return home / "nnunet" / "results"


class TotalSegmentatorSegmenter(Segmenter):
    """TotalSegmentator (task ``total``) on the CT; ``fast`` uses its 3 mm model."""

    #: nnU-Net datasets holding the weights of the "total" task (totalseg_download_weights -t total / total_fast)
    DATASETS = {False: (291, 292, 293, 294, 295), True: (297,)}

    def __init__(self, fast: bool = False, device: str = "cpu") -> None:
        self.fast = bool(fast)
        self.device = device
        self.spec = "totalsegmentator:fast" if fast else "totalsegmentator"

    def availability_problem(self) -> str | None:
        """None when the package and the weights are present, else what is missing and how to get it."""
        task = "total_fast" if self.fast else "total"
        if importlib.util.find_spec("totalsegmentator") is None:
            return ("--segmenter totalsegmentator needs the TotalSegmentator package: `pip install TotalSegmentator` "
                    f"(Apache-2.0; pulls nnU-Net), then its weights: `totalseg_download_weights -t {task}`; "
                    "or use --segmenter labels / model:PATH")
        weights = _totalseg_weights_dir()
        missing = [n for n in self.DATASETS[self.fast]
                   if not (weights.is_dir() and any(weights.glob(f"Dataset{n}_*")))]
        if missing:
            return (f"TotalSegmentator is installed but the weights of task '{task}' are not in {weights} "
                    f"(missing nnU-Net datasets {', '.join(map(str, missing))}): run `totalseg_download_weights -t "
                    f"{task}` on a machine with internet access and copy the folder here, pointing "
                    "TOTALSEG_WEIGHTS_PATH (or TOTALSEG_HOME_DIR) at it; this evaluation never downloads "
                    "and never falls back to another segmenter")
        return None

    def check(self, cohort: EvaluationInput, role: str) -> None:
        problem = self.availability_problem()
        if problem:
            raise SegmenterUnavailableError(problem)

    def segment(self, subject: SubjectInput, volumes: SubjectVolumes) -> np.ndarray:
        problem = self.availability_problem()
        if problem:
            raise SegmenterUnavailableError(problem)
        import nibabel as nib
        from totalsegmentator.python_api import totalsegmentator

        image = nib.Nifti1Image(volumes.ct.astype(np.int16), volumes.affine)
        result = totalsegmentator(image, None, ml=True, task="total", fast=self.fast, device=self.device,
                                  quiet=True)
        result = nib.as_closest_canonical(result)
        labels = np.asarray(result.dataobj, dtype=np.int16)
        if not same_grid(labels.shape, result.affine, volumes.shape, volumes.affine):
            labels = resample(labels, result.affine, volumes.shape, volumes.affine, order=0, cval=0)
        return labels


class ModelSegmenter(Segmenter):
    """This package's organ segmentation network: loaded from ``PATH``, or a model in memory (training's validation)."""

    def __init__(self, source: str | os.PathLike | OrganSegmentationModel) -> None:
        if isinstance(source, OrganSegmentationModel):
            self.path: Path | None = None
            self.spec = "model:(in memory)"
            self._model: OrganSegmentationModel | None = source
        else:
            self.path = Path(source)
            self.spec = f"model:{source}"
            self._model = None
            self.load()  # fail now (missing folder, wrong format), not in a worker

    def load(self) -> OrganSegmentationModel:
        if self._model is None:
            self._model = OrganSegmentationModel.from_pretrained(self.path)
        return self._model

    def __getstate__(self) -> dict:
        # a model from a folder is loaded again in the worker rather than pickled
        return {**self.__dict__, "_model": None} if self.path is not None else dict(self.__dict__)

    def segment(self, subject: SubjectInput | None, volumes: SubjectVolumes) -> np.ndarray:
        height = subject.demographics.height if subject is not None else None
        return self.predict(volumes.ct, volumes.suv, volumes.affine, height)

    def predict(self, ct: np.ndarray, suv: np.ndarray, affine: np.ndarray, height_cm: float | None = None
                ) -> np.ndarray:
        """Label map (TotalSegmentator ids, int16) on the grid of ``ct``/``suv`` (HU, SUVbw, canonical RAS).

        A network trained on crops sees the body's bounding box only. Its normalisation layers pool over what it
        sees, so a whole-body scan and a scan of the cascade's shorter field of view would label the
        same organs slightly differently; with ``height_cm`` the top of the body (the cascade's field
        of view for that height, ``geometry.body_length_mm``: a common vertex-aligned crop) is
        labelled from that crop alone, and only what lies below it from the whole scan.
        """
        model = self.load()
        grid = on_model_grid(model, ct, suv, affine)
        whole = crop_input(model, grid)
        labels = _grid_labels(model, whole)
        if height_cm is not None and whole.box is not None and model.input_region == "body":
            top = crop_input(model, grid, body_length_mm(height_cm))
            if top.shape[2] < whole.shape[2]:
                labels[top.box] = _grid_labels(model, top)[top.box]
        if same_grid(whole.grid_shape, whole.affine, ct.shape, affine):
            return labels
        return resample(labels, whole.affine, ct.shape, affine, order=0, cval=0).astype(np.int16)

    def describe(self) -> str:
        model = self.load()
        dice = model.info.get("dice")
        where = self.spec if self.path is None else f"model:{model_name(self.path)}"
        stride = f", UNet at {model.spacing_mm * model.input_stride:g} mm" if model.input_stride > 1 else ""
        text = f"{where} (PETCTUNet3DModel, labels at {model.spacing_mm:g} mm{stride}, {len(model.label_ids)} classes)"
        if isinstance(dice, dict) and dice:
            text += "; held-out Dice " + ", ".join(f"{k} {v:.2f}" for k, v in dice.items() if v is not None)
        return text


@dataclass
class GridVolumes:
    """A subject's CT (HU), PET (SUVbw) and body mask on a model's grid: resampled once, cropped as needed."""

    ct: np.ndarray
    suv: np.ndarray
    body: np.ndarray
    affine: np.ndarray  # RAS affine of the model grid


@dataclass
class ModelInput:
    """A volume as an :class:`OrganSegmentationModel` sees it (also what its encoder features are pooled over).

    A model trained on random crops (``input_region == "body"``) sees the body's bounding box only,
    so its cost follows the body, not the field of view, and air around the body changes nothing;
    a model trained on whole grids sees the whole grid, as in training.
    """

    volume: torch.Tensor  # (1, 2, X', Y', Z') model-space CT and PET of the box, padded with air to the multiple
    shape: tuple[int, int, int]  # the unpadded box (X, Y, Z)
    box: tuple[slice, slice, slice] | None  # where the box lies in the model grid; None: no body at all
    grid_shape: tuple[int, int, int]  # the whole model grid
    affine: np.ndarray  # RAS affine of the model grid
    body: np.ndarray  # body mask on the whole model grid; outside it CT is air and PET zero


def on_model_grid(model: OrganSegmentationModel, ct: np.ndarray, suv: np.ndarray, affine: np.ndarray
                  ) -> GridVolumes:
    """``ct``/``suv`` (HU, SUVbw, canonical RAS) on ``model``'s grid (anti-aliased), with the body mask there."""
    shape, model_affine = model.model_grid(ct.shape, affine)
    ct_m = _on_grid(ct, affine, shape, model_affine, AIR_HU)
    suv_m = np.clip(_on_grid(suv, affine, shape, model_affine, 0.0), 0.0, None)
    return GridVolumes(ct_m, suv_m, body_mask(ct_m, model_affine), model_affine)


def model_input(model: OrganSegmentationModel, ct: np.ndarray, suv: np.ndarray, affine: np.ndarray,
                top_mm: float | None = None) -> ModelInput:
    """``ct``/``suv`` (HU, SUVbw, canonical RAS) as ``model`` sees them (:func:`on_model_grid`, :func:`crop_input`)."""
    return crop_input(model, on_model_grid(model, ct, suv, affine), top_mm)


def crop_input(model: OrganSegmentationModel, grid: GridVolumes, top_mm: float | None = None) -> ModelInput:
    """The network input cut from ``grid``: masked to the body, the body's box (or the whole grid), padded.

    ``top_mm`` keeps only the top ``top_mm`` of the body (from its highest slice down): a common,
    vertex-aligned field of view for descriptors that pool over the whole volume.
    """
    shape = tuple(grid.body.shape)
    box = _input_box(model, grid.body, top_mm) if grid.body.any() else None
    if box is not None:
        ct_m, suv_m, inside = grid.ct[box].copy(), grid.suv[box].copy(), grid.body[box]
    else:
        ct_m, suv_m, inside = grid.ct.copy(), grid.suv.copy(), grid.body
    ct_m[~inside] = AIR_HU
    suv_m[~inside] = 0.0
    volume = torch.from_numpy(np.stack([hu_to_model(ct_m), suv_to_model(suv_m)]).astype(np.float32))[None]
    return ModelInput(_pad_with_air(volume, model.spatial_multiple), tuple(ct_m.shape), box, shape,
                      grid.affine, grid.body)


def _input_box(model: OrganSegmentationModel, body: np.ndarray, top_mm: float | None
               ) -> tuple[slice, slice, slice]:
    """Where the network input lies in the model grid (``body`` is not empty)."""
    whole = tuple(slice(0, n) for n in body.shape)
    body_box = _bounding_box(body)
    box = body_box if model.input_region == "body" else whole
    if top_mm is None:
        return box
    slices = max(1, int(np.ceil(top_mm / model.spacing_mm)))
    keep = slice(max(body_box[2].start, body_box[2].stop - slices), body_box[2].stop)
    if model.input_region == "grid":
        return (whole[0], whole[1], keep)
    top = np.zeros_like(body)
    top[:, :, keep] = body[:, :, keep]
    return _bounding_box(top)  # the box of that part of the body (hips and legs may be wider)


def _grid_labels(model: OrganSegmentationModel, prepared: ModelInput) -> np.ndarray:
    """The network's labels (TotalSegmentator ids) on the whole model grid; zero outside the input's box and body."""
    labels = np.zeros(prepared.grid_shape, dtype=np.int16)
    if prepared.box is not None:
        size = prepared.shape
        logits = model.logits(prepared.volume)
        classes = logits[:, :, : size[0], : size[1], : size[2]].argmax(dim=1)[0].cpu().numpy()
        classes[~prepared.body[prepared.box]] = 0
        labels[prepared.box] = model.classes_to_ids(classes)
    return labels


def _on_grid(image: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int], target_affine: np.ndarray,
             fill: float) -> np.ndarray:
    """``image`` on the model grid (anti-aliased); a copy when it already lies there."""
    if same_grid(image.shape, affine, shape, target_affine):
        return np.array(image, dtype=np.float32)
    return resample(image, affine, shape, target_affine, order=1, cval=fill, anti_alias=True)


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The smallest box holding every true voxel of a non-empty 3D ``mask``."""
    box = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def _pad_with_air(volume: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad a model-space (B, 2, X, Y, Z) volume at the far ends to a multiple of ``multiple``: air, no uptake."""
    pad = [(-n) % multiple for n in volume.shape[2:]]
    if not any(pad):
        return volume
    widths = (0, pad[2], 0, pad[1], 0, pad[0])
    ct = F.pad(volume[:, :1], widths, value=OUTSIDE_BODY_MODEL[0])
    pet = F.pad(volume[:, 1:], widths, value=OUTSIDE_BODY_MODEL[1])
    return torch.cat([ct, pet], dim=1)


def make_segmenter(spec: str | Segmenter) -> Segmenter:
    """A segmenter from its spec string (``labels``, ``totalsegmentator[:fast]``, ``model:PATH``)."""
    if isinstance(spec, Segmenter):
        return spec
    if not isinstance(spec, str):
        raise InputTypeError(f"segmenter must be one of {', '.join(SEGMENTER_SPECS)}, got {spec!r}")
    text = spec.strip()
    if text == "labels":
        return LabelsSegmenter()
    if text in ("totalsegmentator", "totalsegmentator:fast"):
        return TotalSegmentatorSegmenter(fast=text.endswith(":fast"))
    if text.startswith("model:") and text[len("model:"):].strip():
        return ModelSegmenter(text[len("model:"):].strip())
    raise InputError(f"segmenter must be one of {', '.join(SEGMENTER_SPECS)}, got {spec!r}")
