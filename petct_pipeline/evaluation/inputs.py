"""Find the subjects of an evaluation input folder and load their CT/PET on one grid.

Two layouts are recognised:

* ``generated``: a cohort written by ``petct generate --cohort``:
  ``DIR/<id>/ct.nii.gz`` (HU), ``DIR/<id>/pet_suv.nii.gz`` (SUVbw), ``DIR/<id>/metadata.json``
  with ``"demographics": {"age", "sex", "weight", "height", ...}``; an optional
  ``DIR/<id>/organs.nii.gz`` label map (TotalSegmentator ids) is used by the ``labels`` segmenter,
  an optional ``DIR/<id>/lesions.nii.gz`` (lesion instance ids) is the subject's lesion truth.
  A single-subject output (the three files directly in ``DIR``) is a cohort of one.
* ``autopet`` (or ``nnunet``): a dataset read by :func:`petct_pipeline.data.scan.scan_dataset`,
  e.g. ``DIR/PETCT_<hash>/<study>/{CT,CTres,PET,SUV,SEG}.nii.gz`` (+ ``organs.nii.gz`` for
  phantoms) with ``Metadata.csv`` and ``demographics.csv`` at the root; ``SEG`` (nnU-Net:
  ``labelsTr``) is the lesion truth. Studies the reader
  cannot use are listed as skipped (with the reader's reason) and left out.

Every subject is measured on its PET (SUV) grid: the CT is ``CTres`` (CT already resampled to
the PET grid) when present, otherwise ``CT`` resampled linearly onto the PET grid.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.preprocess import resample
from ..data.scan import scan_dataset
from ..data.study import StudyRecord
from ..data.suv import activity_to_suv
from ..demographics import Demographics
from ..errors import InputError
from ..geometry import spacing_from_affine
from ..io import load_nifti, read_json
from ..subject_files import CT_FILENAME, LESIONS_FILENAME, METADATA_FILENAME, ORGANS_FILENAME, PET_FILENAME

__all__ = [
    "LAYOUTS",
    "SubjectInput",
    "SubjectVolumes",
    "EvaluationInput",
    "discover_inputs",
    "load_subject",
    "same_grid",
]

logger = logging.getLogger(__name__)

LAYOUTS = ("generated", "autopet", "nnunet")


_GRID_ATOL_MM = 1e-3


@dataclass(frozen=True)
class SubjectInput:
    """One subject (one study) of an evaluation input: file paths and demographics, nothing loaded."""

    subject_id: str
    study_id: str
    layout: str
    directory: Path
    ct: Path
    pet: Path
    labels: Path | None
    demographics: Demographics
    ct_on_pet_grid: bool = True  # False for AutoPET studies without CTres: CT is resampled on load
    pet_is_suv: bool = True  # False: PET in Bq/mL, converted with the dose and uptake time on load
    injected_dose_bq: float | None = None
    uptake_time_s: float | None = None
    lesions: Path | None = None  # lesion label map (generated: instance ids; AutoPET SEG: 0/1), None when absent
    diagnosis: str | None = None  # as the input records it (generated metadata.json, AutoPET Metadata.csv)

    @property
    def key(self) -> str:
        """Unique name within its input folder ("<id>" or "<PETCT_hash>/<study>")."""
        return self.subject_id if not self.study_id else f"{self.subject_id}/{self.study_id}"


@dataclass
class SubjectVolumes:
    """CT (HU) and PET (SUVbw) of one subject on the same RAS grid.

    Non-finite voxels are counted (``nonfinite_ct``/``nonfinite_pet``, a broken generator's
    signature) and replaced by air (-1024 HU) and SUV 0 so that metrics stay defined.
    """

    ct: np.ndarray
    suv: np.ndarray
    affine: np.ndarray
    nonfinite_ct: int = 0
    nonfinite_pet: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.suv.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


@dataclass(frozen=True)
class EvaluationInput:
    """The subjects found in one input folder."""

    root: Path
    layout: str
    subjects: tuple[SubjectInput, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (path, reason)

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def has_labels(self) -> bool:
        return all(subject.labels is not None for subject in self.subjects)


def discover_inputs(directory: str | os.PathLike, role: str = "input") -> EvaluationInput:
    """Find every subject under ``directory`` (generated cohort or AutoPET layout).

    ``role`` ("generated", "reference") only makes error messages name the right option.
    Raises FileNotFoundError for a missing folder or missing files of a subject, ValueError for
    an unrecognised layout or unusable demographics.
    """
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"{role} folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{role} path {str(root)!r} is not a folder")
    if _is_generated(root):
        result = _discover_generated(root, role)
    else:
        try:
            result = _discover_dataset(root, role)
        except (ValueError, NotADirectoryError) as error:
            raise InputError(
                f"{role} folder {str(root)!r} holds neither a generated cohort (<id>/{CT_FILENAME}, "
                f"<id>/{PET_FILENAME}, <id>/{METADATA_FILENAME}) nor a readable AutoPET/nnU-Net dataset "
                f"({error})"
            ) from None
    if not result.subjects:
        reasons = "; ".join(f"{path}: {why}" for path, why in result.skipped[:5])
        raise InputError(f"{role} folder {str(root)!r} ({result.layout} layout) has no usable subject" + (
            f" (skipped: {reasons})" if reasons else ""))
    for path, why in result.skipped:
        logger.warning("%s: skipped %s: %s", role, path, why)
    return result


def _is_generated(root: Path) -> bool:
    if (root / PET_FILENAME).is_file():
        return True
    return any(
        (child / METADATA_FILENAME).is_file() or (child / PET_FILENAME).is_file() for child in _subdirs(root)
    )


def _subdirs(path: Path) -> list[Path]:
    try:
        return [child for child in sorted(path.iterdir()) if child.is_dir()]
    except OSError:
        return []


def _discover_generated(root: Path, role: str) -> EvaluationInput:
    subjects = []
    skipped = []
    # a single-subject `petct generate --out DIR` writes the files into DIR itself
    folders = [root] if (root / PET_FILENAME).is_file() else _subdirs(root)
    for child in folders:
        names = (CT_FILENAME, PET_FILENAME, METADATA_FILENAME)
        present = [(child / name).is_file() for name in names]
        if not any(present):
            skipped.append((str(child), "not a generated subject folder"))
            continue
        if not all(present):
            missing = [name for name, ok in zip(names, present) if not ok]
            raise FileNotFoundError(
                f"{role} subject {str(child)!r} is incomplete: missing {', '.join(missing)} "
                f"(a generated subject needs {', '.join(names)})"
            )
        metadata = read_json(child / METADATA_FILENAME)
        demographics = _demographics(
            metadata.get("demographics") if isinstance(metadata, dict) else None,
            f"{child / METADATA_FILENAME} field 'demographics'",
        )
        labels = child / ORGANS_FILENAME
        lesions = child / LESIONS_FILENAME
        diagnosis = metadata.get("diagnosis") if isinstance(metadata, dict) else None
        subjects.append(
            SubjectInput(
                subject_id=child.name,
                study_id="",
                layout="generated",
                directory=child,
                ct=child / CT_FILENAME,
                pet=child / PET_FILENAME,
                labels=labels if labels.is_file() else None,
                demographics=demographics,
                lesions=lesions if lesions.is_file() else None,
                diagnosis=str(diagnosis) if diagnosis else None,
            )
        )
    return EvaluationInput(root=root, layout="generated", subjects=tuple(subjects), skipped=tuple(skipped))


def _demographics(mapping: Any, where: str) -> Demographics:
    if not isinstance(mapping, dict):
        raise InputError(f"{where} is missing: expected an object with age, sex, weight (kg), height (cm)")
    try:
        return Demographics.from_mapping(mapping)
    except (TypeError, ValueError) as error:
        raise InputError(f"{where}: {error}") from None


def _discover_dataset(root: Path, role: str) -> EvaluationInput:
    scan = scan_dataset(root)
    subjects = [_from_study_record(record, role) for record in scan.studies]
    skipped = tuple((item.path, item.reason) for item in scan.skipped)
    return EvaluationInput(root=root, layout=scan.layout, subjects=tuple(subjects), skipped=skipped)


def _from_study_record(record: StudyRecord, role: str) -> SubjectInput:
    directory = Path(record.directory)
    pet = record.suv if record.suv is not None else record.pet
    ct = record.ctres if record.ctres is not None else record.ct
    if pet is None or ct is None:  # the reader skips such studies; guard against a changed reader
        raise FileNotFoundError(f"{role} study {str(directory)!r} lacks a CT or PET/SUV image")
    return SubjectInput(
        subject_id=str(record.subject_id),
        study_id=str(record.study_id),
        layout=record.layout,
        directory=directory,
        ct=Path(ct),
        pet=Path(pet),
        labels=Path(record.organs) if record.organs is not None else None,
        demographics=record.demographics,
        ct_on_pet_grid=record.ctres is not None,
        pet_is_suv=record.suv is not None,
        injected_dose_bq=record.injected_dose_bq,
        uptake_time_s=record.uptake_time_s,
        lesions=Path(record.seg) if record.seg is not None else None,
        diagnosis=record.diagnosis,
    )


def same_grid(shape_a, affine_a, shape_b, affine_b) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=_GRID_ATOL_MM)


def load_subject(subject: SubjectInput) -> SubjectVolumes:
    """CT (HU) and SUV of one subject on the PET grid; mismatched grids raise InputError naming the files."""
    for path in (subject.ct, subject.pet):
        if not Path(path).is_file():
            raise FileNotFoundError(f"subject {subject.key}: file {str(path)!r} does not exist")
    pet, affine = _load3d(subject.pet, subject.key)
    ct, ct_affine = _load3d(subject.ct, subject.key)
    if not subject.pet_is_suv:
        if subject.injected_dose_bq is None or subject.uptake_time_s is None:
            raise InputError(f"subject {subject.key}: PET {str(subject.pet)!r} is in Bq/mL and there is no "
                             "injected_dose_bq/uptake_time_s to convert it to SUV")
        pet = activity_to_suv(pet, subject.injected_dose_bq, subject.uptake_time_s, subject.demographics.weight)
    if not same_grid(ct.shape, ct_affine, pet.shape, affine):
        if subject.ct_on_pet_grid:
            raise InputError(
                f"subject {subject.key}: CT {str(subject.ct)!r} (shape {ct.shape}) and PET {str(subject.pet)!r} "
                f"(shape {pet.shape}) are not on the same grid (shape and affine must match)"
            )
        ct = resample(np.nan_to_num(ct, nan=-1024.0), ct_affine, pet.shape, affine, order=1, cval=-1024.0,
                      anti_alias=True)
    bad_ct = ~np.isfinite(ct)
    bad_pet = ~np.isfinite(pet)
    nonfinite_ct, nonfinite_pet = int(bad_ct.sum()), int(bad_pet.sum())
    if nonfinite_ct:
        ct[bad_ct] = -1024.0
    if nonfinite_pet:
        pet[bad_pet] = 0.0
    return SubjectVolumes(ct=ct, suv=pet, affine=affine, nonfinite_ct=nonfinite_ct, nonfinite_pet=nonfinite_pet)


def _load3d(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    array, affine = load_nifti(path, dtype=np.float32)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(f"subject {key}: {str(path)!r} must be a 3D volume, got shape {array.shape}")
    return np.array(array, dtype=np.float32), affine
