"""The subjects of an export: their names in every format, where their labels come from, and the checks
that run before anything is written.

An export reads what :func:`petct_pipeline.evaluation.inputs.discover_inputs` finds (a generated cohort, a
phantom population, an AutoPET or nnU-Net dataset) and plans every subject first, so that bad input (a
missing label map, a label on another grid than its images, a name a format cannot hold) is one error
naming the subject before a single file is written. The checks read NIfTI headers only; the volumes are
loaded one subject at a time while writing (:func:`load_volumes`).

Lesion truth: a generated subject's ``lesions.nii.gz`` (instance ids), an AutoPET study's ``SEG.nii.gz``
(0/1) or an nnU-Net case's ``labelsTr`` file. A generated subject written without any lesion request (its
``metadata.json`` records no diagnosis other than NEGATIVE and no lesion spec) has no lesions by
construction, so its lesion label is all zero; one whose metadata records lesions but lacks the file is
an error, as is an AutoPET study without ``SEG.nii.gz``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import inv_ornt_aff, io_orientation

from ..data.autopet import study_date_from_name
from ..errors import InputError
from ..evaluation.inputs import SubjectInput, discover_inputs, load_subject, same_grid
from ..io import load_nifti, read_json
from ..organs import LABEL_IDS, LABELS
from ..phantom.writer import study_identity
from ..subject_files import METADATA_FILENAME

__all__ = [
    "FORMATS",
    "LABEL_SETS",
    "AUTOPET_MEAN_DOSE_BQ",
    "AUTOPET_UPTAKE_TIME_S",
    "Acquisition",
    "ExportSubject",
    "ExportVolumes",
    "plan_subjects",
    "load_volumes",
    "check_label_set",
]

logger = logging.getLogger(__name__)

FORMATS = ("nnunet", "autopet", "dicom")
LABEL_SETS = ("lesions", "organs")
#: AutoPET's mean injected FDG activity and uptake time (DESIGN.md): what an input that records neither gets
AUTOPET_MEAN_DOSE_BQ = 314.7e6
AUTOPET_UPTAKE_TIME_S = 3600.0

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Acquisition:
    """Injected activity and injection-to-scan time behind a subject's Bq/mL PET; ``source``: input or default."""

    injected_dose_bq: float
    uptake_time_s: float
    source: str


@dataclass(frozen=True)
class ExportSubject:
    """One planned subject: its input, its names in every format and where each of its labels comes from."""

    source: SubjectInput
    #: ``subject`` (PETCT_<hex>), ``study`` (AutoPET study folder name), ``study_date`` (MM-DD-YYYY), ``study_uid``
    identity: dict[str, str]
    patient_id: str  # the cohort's id (generated) or the AutoPET subject: DICOM PatientID
    case_id: str  # nnU-Net case identifier
    acquisition: Acquisition
    lesions: Path | None  # None: no lesions by construction (all-zero label)
    organs: Path | None
    diagnosis: str | None  # NEGATIVE, LYMPHOMA, ...; None when the input does not say
    cohort_id: str | None
    fingerprint: str  # sizes and modification times of the input files: a changed input is exported again

    @property
    def key(self) -> str:
        return self.source.key


@dataclass
class ExportVolumes:
    """A subject's volumes on its PET grid (canonical RAS+): CT (HU), SUVbw, lesion instance ids, organ ids."""

    ct: np.ndarray
    suv: np.ndarray
    affine: np.ndarray
    lesions: np.ndarray  # int16, 0 = background
    organs: np.ndarray | None  # uint8 TotalSegmentator ids

    @property
    def lesion_mask(self) -> np.ndarray:
        """0/1 lesion label (AutoPET's SEG)."""
        return (self.lesions > 0).astype(np.uint8)


def check_label_set(labels: str) -> str:
    if labels not in LABEL_SETS:
        raise InputError(f"--labels {labels!r} is not a label set: choose one of {', '.join(LABEL_SETS)}")
    return labels


def plan_subjects(input_dir: str | os.PathLike, labels: str, needs_lesions: bool, default_dose_bq: float,
                  default_uptake_s: float) -> list[ExportSubject]:
    """Every subject of ``input_dir`` with its names and label sources, checked; InputError names the first bad one.

    ``labels`` is the label set every subject must have (``organs`` needs organ maps); ``needs_lesions``: the
    format writes lesion labels whatever ``labels`` says (the AutoPET layout's SEG.nii.gz).
    """
    check_label_set(labels)
    found = discover_inputs(input_dir, role="--input")
    subjects = [_plan_one(subject, labels, needs_lesions or labels == "lesions", default_dose_bq, default_uptake_s)
                for subject in found.subjects]
    _check_unique([s.case_id for s in subjects], "nnU-Net case id")
    _check_unique([f"{s.identity['subject']}/{s.identity['study']}" for s in subjects], "AutoPET study folder")
    return subjects


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            raise InputError(f"two subjects get the same {what} {name!r}: rename one of them in the input")
        seen.add(name.lower())


def _plan_one(subject: SubjectInput, labels: str, needs_lesions: bool, default_dose_bq: float,
              default_uptake_s: float) -> ExportSubject:
    key = subject.key
    pet_grid = _header_grid(subject.pet, key)
    files = [subject.ct, subject.pet]
    if subject.ct_on_pet_grid:
        _check_same_grid(subject.ct, pet_grid, subject, "CT")
    lesions = _lesion_source(subject) if needs_lesions else None
    if lesions is not None:
        _check_same_grid(lesions, pet_grid, subject, "lesion label")
        files.append(lesions)
    organs = subject.labels
    if labels == "organs" and organs is None:
        raise InputError(f"subject {key}: no organ labels (organs.nii.gz), which --labels organs needs for every "
                         "subject (petct generate writes them unless --no-labels; petct phantom always)")
    if organs is not None:
        _check_organ_names(organs, key)
        _check_same_grid(organs, pet_grid, subject, "organ label")
        files.append(organs)
    if subject.layout == "generated":
        files.append(subject.directory / METADATA_FILENAME)
    if subject.injected_dose_bq is not None and subject.uptake_time_s is not None:
        acquisition = Acquisition(float(subject.injected_dose_bq), float(subject.uptake_time_s), "input")
    else:
        acquisition = Acquisition(float(default_dose_bq), float(default_uptake_s), "default")
    identity = _identity(subject)
    return ExportSubject(
        source=subject,
        identity=identity,
        patient_id=subject.subject_id,
        case_id=_case_id(subject),
        acquisition=acquisition,
        lesions=lesions,
        organs=organs,
        diagnosis=_diagnosis(subject, lesions, needs_lesions),
        cohort_id=subject.subject_id if subject.layout == "generated" else None,
        fingerprint=_fingerprint(files, acquisition),
    )


def _identity(subject: SubjectInput) -> dict[str, str]:
    """AutoPET names kept for an AutoPET input; deterministic PETCT_<hex> names from the id otherwise."""
    if subject.layout != "autopet":
        return study_identity(f"petct-export|{subject.key}")
    made = study_identity(f"petct-export|{subject.key}")
    date = study_date_from_name(subject.study_id)
    return {
        "subject": subject.subject_id,
        "study": subject.study_id,
        "study_date": date.strftime("%m-%d-%Y") if date is not None else made["study_date"],
        "study_uid": made["study_uid"],
    }


def _diagnosis(subject: SubjectInput, lesions: Path | None, lesions_checked: bool) -> str | None:
    if subject.diagnosis:
        return subject.diagnosis.upper()
    if subject.layout == "generated" and lesions_checked and lesions is None:
        return "NEGATIVE"  # generated without lesions
    return None


def _case_id(subject: SubjectInput) -> str:
    """nnU-Net case: the cohort id, the nnU-Net case, or ``<subject>_<study>`` as nnU-Net's own AutoPET conversion."""
    if subject.layout == "generated":
        raw = subject.subject_id
    elif subject.layout == "nnunet":
        raw = subject.study_id
    else:
        raw = f"{subject.subject_id}_{subject.study_id}"
    return _UNSAFE_NAME.sub("_", raw).strip("_.") or hashlib.sha1(raw.encode()).hexdigest()[:10]


def _lesion_source(subject: SubjectInput) -> Path | None:
    if subject.lesions is not None:
        return subject.lesions
    if subject.layout == "generated":
        metadata = read_json(subject.directory / METADATA_FILENAME)
        diagnosis = metadata.get("diagnosis") if isinstance(metadata, dict) else None
        spec = metadata.get("lesion_spec") if isinstance(metadata, dict) else None
        if spec or (diagnosis and str(diagnosis).upper() != "NEGATIVE"):
            what = f"diagnosis {diagnosis}" if diagnosis else "a lesion spec"
            raise InputError(f"subject {subject.key}: metadata.json records {what} but lesions.nii.gz is missing, "
                             "so its lesion labels are unknown")
        return None  # generated without lesions: none by construction
    raise InputError(f"subject {subject.key}: no lesion labels (SEG.nii.gz or labelsTr), which this export needs; "
                     "give --labels organs, or add the study's SEG.nii.gz")


def _check_organ_names(organs: Path, key: str) -> None:
    names = organs.with_name("organs.json")
    if not names.is_file():
        return
    mapping = read_json(names)
    if not isinstance(mapping, dict) or any(LABEL_IDS.get(name) != value for name, value in mapping.items()):
        raise InputError(f"subject {key}: {names.name} does not give TotalSegmentator 'total' ids (name -> id as "
                         "petct_pipeline.organs.LABEL_IDS), so organs.nii.gz cannot be named")


def _header_grid(path: Path, key: str) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, affine) the file has once reoriented to canonical RAS+, from its header alone."""
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for garbage
        raise InputError(f"subject {key}: unreadable NIfTI {str(path)!r}: {error}") from None
    shape = tuple(int(n) for n in image.shape[:3])
    if len(image.shape) not in (3, 4) or (len(image.shape) == 4 and image.shape[3] != 1):
        raise InputError(f"subject {key}: {str(path)!r} must be a 3D volume, got shape {image.shape}")
    orientation = io_orientation(image.affine)
    affine = image.affine @ inv_ornt_aff(orientation, shape)
    canonical_shape = tuple(shape[axis] for axis in np.argsort(orientation[:, 0]))
    return canonical_shape, affine


def _check_same_grid(path: Path, pet_grid: tuple[tuple[int, ...], np.ndarray], subject: SubjectInput,
                     what: str) -> None:
    shape, affine = _header_grid(path, subject.key)
    if not same_grid(shape, affine, *pet_grid):
        raise InputError(f"subject {subject.key}: {what} {Path(path).name} (shape {shape}) is not on the grid of "
                         f"its PET {Path(subject.pet).name} (shape {pet_grid[0]}): image and label must share one "
                         "grid (shape and affine)")


def _fingerprint(files: list[Path], acquisition: Acquisition) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = Path(path).stat()
        digest.update(f"{Path(path).name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update(f"{acquisition.injected_dose_bq!r}|{acquisition.uptake_time_s!r}".encode())
    return digest.hexdigest()[:16]


def load_volumes(subject: ExportSubject, organs: bool) -> ExportVolumes:
    """CT, SUV and labels of one subject on its PET grid; ``organs``: load the organ map too (when it has one)."""
    volumes = load_subject(subject.source)
    shape, affine = volumes.shape, volumes.affine
    if subject.lesions is not None:
        lesions = _load_labels(subject.lesions, subject, shape, affine, "lesion label").astype(np.int16)
    else:
        lesions = np.zeros(shape, np.int16)
    organ_map = None
    if organs and subject.organs is not None:
        organ_map = _load_labels(subject.organs, subject, shape, affine, "organ label")
        unknown = sorted(set(np.unique(organ_map).tolist()) - {0, *LABELS})
        if unknown:
            raise InputError(f"subject {subject.key}: {subject.organs.name} holds ids {unknown[:5]} that are not "
                             f"TotalSegmentator 'total' ids (1..{max(LABELS)})")
        organ_map = organ_map.astype(np.uint8)
    return ExportVolumes(ct=volumes.ct, suv=volumes.suv, affine=affine, lesions=lesions, organs=organ_map)


def _load_labels(path: Path, subject: ExportSubject, shape: tuple[int, ...], affine: np.ndarray,
                 what: str) -> np.ndarray:
    array, label_affine = load_nifti(path, dtype=np.float32)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if not same_grid(array.shape, label_affine, shape, affine):
        raise InputError(f"subject {subject.key}: {what} {path.name} (shape {array.shape}) is not on the PET grid "
                         f"(shape {tuple(shape)}): image and label must share one grid")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or np.any(array != np.rint(array)):
        raise InputError(f"subject {subject.key}: {what} {path.name} must hold non-negative integer ids")
    return array.astype(np.int32)
