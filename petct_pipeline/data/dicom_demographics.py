"""Weight, height, age, sex, dose and uptake time from DICOM headers (pydicom, optional extra).

AutoPET's NIfTI release dropped PatientWeight and PatientSize; they survive only in the
DICOM headers of the TCIA download. Real headers are messy, and every case below occurs
in practice: empty UIDs and IDs, PatientAge "063Y" or empty (then birth date + study
date), PatientSize in metres (sometimes in cm), sex "O", weight 0, pixel data in
JPEG-2000 (never decoded here: only headers are read, ``stop_before_pixels``).

Grouping: a study is the folder above a series folder (TCIA: ``<subject>/<study>/<series>/``),
named like the AutoPET NIfTI study folder, so the rows match ``scan_autopet``. The
subject is PatientID, or the folder above the study when PatientID is empty. Files
directly in ``dicom_root`` form one study named by StudyInstanceUID (or the folder name).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import InputError
from .demographics_csv import parse_age, write_demographics_csv

__all__ = ["read_dicom_demographics", "DicomDemographicsResult", "require_pydicom", "header_values"]

logger = logging.getLogger(__name__)

_TAGS = [
    "PatientID", "PatientAge", "PatientBirthDate", "PatientSex", "PatientWeight", "PatientSize",
    "StudyInstanceUID", "StudyDate", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "Modality", "Units", "DecayCorrection", "RadiopharmaceuticalInformationSequence",
]
_DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")


def require_pydicom():
    """Import pydicom or raise ImportError saying how to install it."""
    try:
        import pydicom
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading DICOM headers needs pydicom, an optional dependency: "
            "pip install 'petct-diffusion[train]' (or: pip install pydicom)"
        ) from None
    return pydicom


@dataclass
class DicomDemographicsResult:
    """One row per study (demographics.csv columns) and the problems found, per study."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    files_read: int = 0

    def write_csv(self, path: str | os.PathLike) -> Path:
        return write_demographics_csv(self.rows, path)

    def summary_text(self) -> str:
        complete = sum(1 for row in self.rows if not self.problems.get(_label(row)))
        lines = [f"{len(self.rows)} studies from {self.files_read} DICOM headers; {complete} complete"]
        for label, problems in self.problems.items():
            if problems:
                lines.append(f"  {label}: {'; '.join(problems)}")
        return "\n".join(lines)


def _label(row: dict[str, Any]) -> str:
    return f"{row['subject']}/{row['study']}"


def read_dicom_demographics(dicom_root: str | os.PathLike, files_per_series: int = 2) -> DicomDemographicsResult:
    """Read a few headers per series folder under ``dicom_root`` and merge them into one row per study."""
    pydicom = require_pydicom()
    root = Path(dicom_root)
    if not root.is_dir():
        raise NotADirectoryError(f"DICOM root not found: {root}")
    result = DicomDemographicsResult()
    studies: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for series_dir, files in _series_folders(root):
        headers = []
        for path in files:
            values = _read_header(pydicom, path)
            if values is None:
                continue
            result.files_read += 1
            headers.append(values)
            if len(headers) >= files_per_series:
                break
        if not headers:
            continue
        merged = _merge(headers)
        subject, study = _study_identity(root, series_dir, merged)
        studies[(subject, study)].append(merged)
    if not studies:
        raise InputError(f"no DICOM files found under {root}")
    for (subject, study), series in sorted(studies.items()):
        row, problems = _study_row(subject, study, series)
        result.rows.append(row)
        result.problems[_label(row)] = problems
        for problem in problems:
            logger.warning("%s/%s: %s", subject, study, problem)
    return result


def _series_folders(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        candidates = [Path(folder) / f for f in sorted(files) if not f.startswith(".")]
        if candidates:
            yield Path(folder), candidates


def _read_header(pydicom, path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            preamble = handle.read(132)
        force = path.suffix.lower() in _DICOM_SUFFIXES
        if preamble[128:132] != b"DICM" and not force:
            return None
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS, force=force)
    except Exception as error:  # a broken file is one problem, never the end of the run
        logger.debug("not a readable DICOM file %s: %s", path, error)
        return None
    return header_values(dataset)


def header_values(dataset: Any) -> dict[str, Any]:
    """The fields we use from one pydicom Dataset, as plain Python values ('' and 0 mean unknown)."""

    def text(name: str) -> str:
        value = dataset.get(name)
        return "" if value is None else str(value).strip()

    def number(name: str) -> float | None:
        value = dataset.get(name)
        if value is None or str(value).strip() == "":
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if number > 0 else None

    values: dict[str, Any] = {name: text(name) for name in _TAGS[:-1]}
    values["PatientWeight"] = number("PatientWeight")
    values["PatientSize"] = number("PatientSize")
    sequence = dataset.get("RadiopharmaceuticalInformationSequence")
    if sequence:
        item = sequence[0]
        values["RadionuclideTotalDose"] = _float_or_none(item.get("RadionuclideTotalDose"))
        values["RadionuclideHalfLife"] = _float_or_none(item.get("RadionuclideHalfLife"))
        values["RadiopharmaceuticalStartDateTime"] = str(item.get("RadiopharmaceuticalStartDateTime") or "").strip()
        values["RadiopharmaceuticalStartTime"] = str(item.get("RadiopharmaceuticalStartTime") or "").strip()
    return values


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _merge(headers: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for values in headers:
        for key, value in values.items():
            if value not in (None, "") and merged.get(key) in (None, ""):
                merged[key] = value
            merged.setdefault(key, value)
    return merged


def _study_identity(root: Path, series_dir: Path, values: dict[str, Any]) -> tuple[str, str]:
    depth = len(series_dir.relative_to(root).parts)
    if depth >= 2:
        study_dir = series_dir.parent
        study = study_dir.name
        fallback_subject = study_dir.parent.name if study_dir.parent != root else study_dir.name
    else:
        study_dir = series_dir
        study = values.get("StudyInstanceUID") or values.get("StudyDate") or study_dir.name
        fallback_subject = study_dir.name
    return values.get("PatientID") or fallback_subject, study


def _parse_dicom_datetime(date_text: str, time_text: str) -> datetime | None:
    text = (date_text or "") + (time_text or "")
    text = text.split("+")[0].split("-")[0] if len(text) > 14 else text
    for fmt in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S", "%Y%m%d%H%M"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _study_row(subject: str, study: str, series: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """One demographics.csv row; PET series first (their weight is the one SUV used)."""
    ordered = sorted(series, key=lambda s: 0 if s.get("Modality") == "PT" else 1)
    problems: list[str] = []

    def first(key: str) -> Any:
        values = [s.get(key) for s in ordered if s.get(key) not in (None, "")]
        return values[0] if values else None

    weights = {round(float(s["PatientWeight"]), 1) for s in ordered if s.get("PatientWeight")}
    if len(weights) > 1 and max(weights) - min(weights) > 1.0:
        problems.append(f"PatientWeight differs between series {sorted(weights)}; used the PET value")
    weight = first("PatientWeight")
    if weight is None:
        problems.append("PatientWeight missing or 0")
    height = first("PatientSize")
    if height is None:
        problems.append("PatientSize missing or 0")
    elif height > 3.0:
        problems.append(f"PatientSize={height:g} looks like cm, not m; used as cm")
    else:
        height = height * 100.0

    age: float | None = None
    raw_age = first("PatientAge")
    try:
        age = parse_age(raw_age)
    except ValueError:
        problems.append(f"PatientAge={raw_age!r} unreadable")
    if age is None:
        birth, study_date = first("PatientBirthDate"), first("StudyDate")
        try:
            born = datetime.strptime(birth, "%Y%m%d").date()
            seen = datetime.strptime(study_date, "%Y%m%d").date()
            age = _years_between(born, seen)
        except (TypeError, ValueError):
            problems.append("PatientAge missing (and no PatientBirthDate + StudyDate)")

    sex = (first("PatientSex") or "").upper()
    if sex not in ("M", "F"):
        problems.append(f"PatientSex={sex!r} is neither M nor F" if sex else "PatientSex missing")
        sex = ""

    dose, uptake = _dose_and_uptake(ordered, problems)
    row = {
        "subject": subject,
        "study": study,
        "age": round(age, 2) if age is not None else None,
        "sex": sex or None,
        "weight": weight,
        "height": round(height, 1) if height is not None else None,
        "injected_dose_bq": dose,
        "uptake_time_s": uptake,
        "modalities": "+".join(sorted({s.get("Modality") or "?" for s in ordered})),
    }
    return row, problems


def _years_between(born: date, seen: date) -> float:
    return round((seen - born).days / 365.25, 2)


def _dose_and_uptake(series: list[dict[str, Any]], problems: list[str]) -> tuple[float | None, float | None]:
    pet = [s for s in series if s.get("Modality") == "PT"]
    if not pet:
        return None, None
    values = pet[0]
    dose = values.get("RadionuclideTotalDose")
    if dose is not None and dose < 1e5:  # some consoles store MBq
        problems.append(f"RadionuclideTotalDose={dose:g} looks like MBq; converted to Bq")
        dose = dose * 1e6
    if dose is None:
        problems.append("RadionuclideTotalDose missing")
    start = _parse_dicom_datetime(values.get("RadiopharmaceuticalStartDateTime", ""), "")
    if start is None and values.get("RadiopharmaceuticalStartTime"):
        day = values.get("SeriesDate") or values.get("StudyDate") or values.get("AcquisitionDate")
        start = _parse_dicom_datetime(day or "", values["RadiopharmaceuticalStartTime"])
    reference = _parse_dicom_datetime(values.get("SeriesDate") or values.get("StudyDate") or "",
                                      values.get("SeriesTime", ""))
    if reference is None:
        reference = _parse_dicom_datetime(values.get("AcquisitionDate") or "", values.get("AcquisitionTime", ""))
    if start is None or reference is None:
        problems.append("injection or series time missing: uptake_time_s unknown")
        return dose, None
    uptake = (reference - start).total_seconds()
    if uptake < 0 and not values.get("RadiopharmaceuticalStartDateTime"):
        uptake += 86400.0  # injected before midnight, scanned after
    if not 0 <= uptake <= 86400:
        problems.append(f"uptake time {uptake:g} s is implausible")
        return dose, None
    return dose, round(uptake, 1)
