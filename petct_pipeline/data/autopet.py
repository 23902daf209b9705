"""Reader for the AutoPET (TCIA FDG-PET-CT-Lesions) NIfTI layout.

::

    <root>/PETCT_<10 hex>/<MM-DD-YYYY>-NA-PET-CT Ganzkoerper  primaer mit KM-<5 digits>/
        CT.nii.gz  CTres.nii.gz  PET.nii.gz  SUV.nii.gz  SEG.nii.gz  [organs.nii.gz]
        [acquisition.json  {injected_dose_bq, uptake_time_s, weight_kg}]
    <root>/Metadata.csv       Subject ID, Study UID, Study Description, Study Date,
                              Series Description, diagnosis, age ("063Y"), sex (M/F),
                              Modality, File Location   (one row per series)
    <root>/demographics.csv   subject, study, age, sex, weight, height[, dose, time]

Subject folders may also sit one level down (``<root>/FDG-PET-CT-Lesions/PETCT_*``).
Age and sex come from the metadata CSV, weight and height from ``demographics.csv``
(written by ``petct prepare --dicom-root`` or by hand); a value in demographics.csv wins.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import read_json
from .demographics_csv import DemographicsTable, normalise_name, parse_age, read_demographics_csv
from .study import IMAGE_KINDS, ScanResult, SkippedStudy, StudyRecord, check_nifti, resolve_demographics

__all__ = [
    "scan_autopet",
    "read_autopet_metadata",
    "study_date_from_name",
    "ScanResult",
    "StudyRecord",
    "SkippedStudy",
    "AUTOPET_FILES",
    "METADATA_FILENAMES",
]

logger = logging.getLogger(__name__)

AUTOPET_FILES = {
    "ct": "CT.nii.gz",
    "ctres": "CTres.nii.gz",
    "pet": "PET.nii.gz",
    "suv": "SUV.nii.gz",
    "seg": "SEG.nii.gz",
    "organs": "organs.nii.gz",
}
METADATA_FILENAMES = ("Metadata.csv", "metadata.csv", "Clinical Metadata FDG PET_CT Lesions.csv")
DEMOGRAPHICS_FILENAME = "demographics.csv"
ACQUISITION_FILENAME = "acquisition.json"
_SUBJECT_PATTERN = re.compile(r"^PETCT_[0-9a-fA-F]+$")
_DATE_IN_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{4})")


def scan_autopet(
    root: str | os.PathLike,
    demographics_csv: str | os.PathLike | None = None,
    metadata_csv: str | os.PathLike | None = None,
    verify: str = "header",
) -> ScanResult:
    """Find every study under ``root``; return the usable ones and the skipped ones with reasons.

    Args:
        root: folder holding ``PETCT_*`` subject folders (directly or one level down).
        demographics_csv: weight/height table; default ``<root>/demographics.csv`` if present.
        metadata_csv: AutoPET metadata; default the first of :data:`METADATA_FILENAMES` in ``root``.
        verify: "header" (parse headers, check gzip size trailers: cheap and catches truncation)
            or "full" (decompress every image completely).
    """
    if verify not in ("header", "full"):
        raise InputError(f"verify must be 'header' or 'full', got {verify!r}")
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"AutoPET data directory not found: {root}")
    result = ScanResult(layout="autopet", root=str(root))

    metadata_path = Path(metadata_csv) if metadata_csv else _first_existing(root, METADATA_FILENAMES)
    metadata = read_autopet_metadata(metadata_path) if metadata_path else []
    if metadata_path is None:
        logger.warning("no metadata CSV (%s) in %s: age and sex must come from demographics.csv",
                       " / ".join(METADATA_FILENAMES), root)
    table = _demographics_table(root, demographics_csv)

    subjects = _subject_dirs(root)
    if not subjects:
        raise InputError(f"no PETCT_<id> subject folders found in {root} (AutoPET layout expected)")
    for subject_dir in subjects:
        study_dirs = sorted(p for p in subject_dir.iterdir() if p.is_dir())
        if not study_dirs:
            result.skip(subject_dir, "images: subject folder has no study folder")
        for study_dir in study_dirs:
            _scan_study(result, subject_dir.name, study_dir, metadata, table, verify)
    logger.info("%s", result.summary_text().splitlines()[0])
    return result


def _first_existing(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def _demographics_table(root: Path, demographics_csv: str | os.PathLike | None) -> DemographicsTable:
    if demographics_csv is not None:
        return read_demographics_csv(demographics_csv)
    if (root / DEMOGRAPHICS_FILENAME).is_file():
        return read_demographics_csv(root / DEMOGRAPHICS_FILENAME)
    logger.warning("no %s in %s: weight and height are unknown unless given per study", DEMOGRAPHICS_FILENAME, root)
    return DemographicsTable()


def _subject_dirs(root: Path) -> list[Path]:
    found = [p for p in root.iterdir() if p.is_dir() and _SUBJECT_PATTERN.match(p.name)]
    if not found:  # TCIA downloads put them in a collection folder
        for child in sorted(p for p in root.iterdir() if p.is_dir()):
            found += [p for p in child.iterdir() if p.is_dir() and _SUBJECT_PATTERN.match(p.name)]
    return sorted(found)


# ---------------------------------------------------------------------------------- metadata


def read_autopet_metadata(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of the AutoPET metadata CSV with lower-case keys ("subject id", "file location", ...)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "subject id" not in [f.strip().lower() for f in reader.fieldnames]:
        raise InputError(
            f"{path}: not an AutoPET metadata CSV; expected columns Subject ID, Study Date, diagnosis, age, sex, "
            f"Modality, File Location; got {reader.fieldnames}"
        )
    return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def _parse_date(text: str) -> date | None:
    text = text.strip()
    for fmt in ("%m-%d-%Y", "%Y-%m-%d", "%Y%m%d", "%m/%d/%Y", "%d.%m.%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def study_date_from_name(name: str) -> date | None:
    """The date an AutoPET study folder's name starts with (``MM-DD-YYYY-NA-...``), None when it has none."""
    match = _DATE_IN_NAME.match(name)
    return _parse_date("-".join(match.groups())) if match else None


def _metadata_for_study(metadata: list[dict[str, str]], subject: str, study: str) -> dict[str, str]:
    """Merged metadata rows of one study, matched by File Location, else Study Date, else the only study."""
    subject_key = normalise_name(subject)
    rows = [r for r in metadata if normalise_name(r.get("subject id", "")) == subject_key]
    if not rows:
        return {}
    study_key = normalise_name(study)
    matched = [
        r for r in rows
        if study_key in {normalise_name(part) for part in re.split(r"[\\/]", r.get("file location", ""))}
    ]
    if not matched:
        study_date = study_date_from_name(study)
        matched = [r for r in rows if study_date is not None and _parse_date(r.get("study date", "")) == study_date]
    if not matched and len({r.get("study uid") or r.get("study date") for r in rows}) == 1:
        matched = rows
    merged: dict[str, str] = {}
    for row in matched:
        for key, value in row.items():
            if value and not merged.get(key):
                merged[key] = value
    return merged


# ---------------------------------------------------------------------------------- one study


def _scan_study(
    result: ScanResult,
    subject: str,
    study_dir: Path,
    metadata: list[dict[str, str]],
    table: DemographicsTable,
    verify: str,
) -> None:
    study = study_dir.name
    label = f"{subject}/{study}"
    paths = {kind: study_dir / name for kind, name in AUTOPET_FILES.items()}
    paths = {kind: (p if p.is_file() else None) for kind, p in paths.items()}

    meta = _metadata_for_study(metadata, subject, study)
    values: dict[str, Any] = {}
    try:
        if meta.get("age"):
            values["age"] = parse_age(meta["age"])
        if meta.get("sex"):
            values["sex"] = meta["sex"]
        values.update({k: v for k, v in table.values(subject, study).items() if v is not None})
    except ValueError as error:
        result.skip(label, f"demographics: {error}")
        return
    acquisition = _acquisition(study_dir)
    if isinstance(acquisition, str):
        result.skip(label, f"acquisition: {acquisition}")
        return
    dose = values.get("injected_dose_bq", acquisition.get("injected_dose_bq"))
    uptake = values.get("uptake_time_s", acquisition.get("uptake_time_s"))

    try:
        demographics = resolve_demographics(values)
    except (ValueError, TypeError) as error:
        result.skip(label, f"demographics: {error}")
        return

    if paths["ct"] is None and paths["ctres"] is None:
        result.skip(label, "images: no CT.nii.gz or CTres.nii.gz")
        return
    if paths["suv"] is None:
        if paths["pet"] is None:
            result.skip(label, "images: no SUV.nii.gz or PET.nii.gz")
            return
        if dose is None or uptake is None:
            result.skip(
                label,
                "acquisition: SUV.nii.gz is missing and PET.nii.gz (Bq/mL) cannot be converted without "
                "injected_dose_bq and uptake_time_s (demographics.csv or acquisition.json)",
            )
            return
    for kind in IMAGE_KINDS:
        if paths[kind] is not None:
            problem = check_nifti(paths[kind], full=verify == "full")
            if problem:
                result.skip(label, f"images: {problem}")
                return

    result.studies.append(
        StudyRecord(
            subject_id=subject,
            study_id=study,
            directory=study_dir,
            demographics=demographics,
            diagnosis=meta.get("diagnosis") or None,
            injected_dose_bq=float(dose) if dose is not None else None,
            uptake_time_s=float(uptake) if uptake is not None else None,
            layout="autopet",
            **paths,
        )
    )


def _acquisition(study_dir: Path) -> dict[str, float] | str:
    path = study_dir / ACQUISITION_FILENAME
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
        keys = ("injected_dose_bq", "uptake_time_s", "weight_kg")
        return {k: float(data[k]) for k in keys if data.get(k) is not None}
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        return f"unreadable {ACQUISITION_FILENAME}: {error}"
