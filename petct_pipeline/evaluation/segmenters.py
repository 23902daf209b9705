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
  (:class:`~petct_pipeline.evaluation.segmentation_model.OrganSegmentationModel`), trained
  with ``training/train.py --stage seg``.

A segmenter is pickled to worker processes; heavy state (networks) is loaded lazily there.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..io import load_nifti
from .inputs import EvaluationInput, SubjectInput, SubjectVolumes, same_grid

__all__ = [
    "SEGMENTER_SPECS",
    "SegmenterUnavailableError",
    "Segmenter",
    "LabelsSegmenter",
    "TotalSegmentatorSegmenter",
    "ModelSegmenter",
    "make_segmenter",
]

SEGMENTER_SPECS = ("labels", "totalsegmentator", "totalsegmentator:fast", "model:PATH")


class SegmenterUnavailableError(ValueError):
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
            raise ValueError(f"subject {subject.key}: {str(subject.labels)!r} is not a 3D integer label map")
        labels = labels.astype(np.int16)
        if not same_grid(labels.shape, affine, volumes.shape, volumes.affine):
            from ..data.preprocess import resample

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
            from ..data.preprocess import resample

            labels = resample(labels, result.affine, volumes.shape, volumes.affine, order=0, cval=0)
        return labels


class ModelSegmenter(Segmenter):
    """This package's organ segmentation network, loaded from ``PATH``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.spec = f"model:{path}"
        self._model = None
        self.load()  # fail now (missing folder, wrong format), not in a worker

    def load(self):
        if self._model is None:
            from .segmentation_model import OrganSegmentationModel

            self._model = OrganSegmentationModel.from_pretrained(self.path)
        return self._model

    def __getstate__(self):
        return {"path": self.path, "spec": self.spec, "_model": None}

    def segment(self, subject: SubjectInput, volumes: SubjectVolumes) -> np.ndarray:
        return self.load().predict(volumes.ct, volumes.suv, volumes.affine)

    def describe(self) -> str:
        model = self.load()
        dice = model.info.get("dice")
        text = f"model:{self.path} (PETCTUNet3DModel at {model.spacing_mm:g} mm, {len(model.label_ids)} classes)"
        if isinstance(dice, dict) and dice:
            text += "; held-out Dice " + ", ".join(f"{k} {v:.2f}" for k, v in dice.items() if v is not None)
        return text


def make_segmenter(spec: str | Segmenter) -> Segmenter:
    """A segmenter from its spec string (``labels``, ``totalsegmentator[:fast]``, ``model:PATH``)."""
    if isinstance(spec, Segmenter):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"segmenter must be one of {', '.join(SEGMENTER_SPECS)}, got {spec!r}")
    text = spec.strip()
    if text == "labels":
        return LabelsSegmenter()
    if text in ("totalsegmentator", "totalsegmentator:fast"):
        return TotalSegmentatorSegmenter(fast=text.endswith(":fast"))
    if text.startswith("model:") and text[len("model:"):].strip():
        return ModelSegmenter(text[len("model:"):].strip())
    raise ValueError(f"segmenter must be one of {', '.join(SEGMENTER_SPECS)}, got {spec!r}")
