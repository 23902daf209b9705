"""The ``demographics.csv`` table: weight/height (and age, sex, dose, uptake time) per study.

AutoPET's metadata CSV has age and sex but not weight or height, which live only in the
DICOM headers. ``petct prepare --dicom-root`` writes this table from DICOM; users may
also write it by hand. Columns (header names are case-insensitive, extra columns kept):

    subject,study,age,sex,weight,height[,injected_dose_bq,uptake_time_s]

``weight`` in kg, ``height`` in cm (a ``height_m`` column in metres is accepted too),
``age`` in years or DICOM style ("063Y"), empty cells mean unknown. ``study`` is the
study folder name (``MM-DD-YYYY-NA-PET-CT ...``) or empty when a subject has one study.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from ..io import atomic_path

__all__ = [
    "DEMOGRAPHICS_COLUMNS",
    "DemographicsTable",
    "read_demographics_csv",
    "write_demographics_csv",
    "parse_age",
    "normalise_name",
]

DEMOGRAPHICS_COLUMNS = ("subject", "study", "age", "sex", "weight", "height", "injected_dose_bq", "uptake_time_s")
_AGE_UNITS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}
_AGE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([YMWD]?)\s*$", re.IGNORECASE)


def parse_age(value: Any) -> float | None:
    """Years from 63, "63", "063Y", "006M", "010W", "020D"; None for empty/unknown; ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputTypeError(f"age must be a number or a DICOM age string like '063Y', got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text == "" or text.lower() in ("nan", "na", "n/a", "unknown", "none"):
        return None
    match = _AGE_PATTERN.match(text)
    if not match:
        raise InputError(f"age must be a number of years or a DICOM age string like '063Y', got {value!r}")
    return float(match.group(1)) * _AGE_UNITS[(match.group(2) or "Y").upper()]


def normalise_name(name: str) -> str:
    """Folder/ID names compared case-insensitively with runs of whitespace collapsed ("KM  -" == "km -")."""
    return re.sub(r"\s+", " ", str(name).strip()).lower()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "nan", "NaN", "NA", "N/A"))


@dataclass
class DemographicsTable:
    """Rows of a demographics.csv, looked up by (subject, study)."""

    rows: list[dict[str, str]] = field(default_factory=list)
    source: str | None = None

    def lookup(self, subject: str, study: str | None = None) -> dict[str, str] | None:
        """The row for this subject and study; a subject-only row (empty study) or a subject's only row also match."""
        subject_key = normalise_name(subject)
        candidates = [row for row in self.rows if normalise_name(row.get("subject", "")) == subject_key]
        if not candidates:
            return None
        if study is not None:
            study_key = normalise_name(study)
            exact = [row for row in candidates if normalise_name(row.get("study", "")) == study_key]
            if exact:
                return exact[0]
            generic = [row for row in candidates if _blank(row.get("study"))]
            if generic:
                return generic[0]
            return candidates[0] if len(candidates) == 1 else None
        return candidates[0] if len(candidates) == 1 else None

    def values(self, subject: str, study: str | None = None) -> dict[str, Any]:
        """Non-empty fields of the matching row, parsed: age (years), sex, weight (kg), height (cm), dose, time."""
        row = self.lookup(subject, study)
        return {} if row is None else parse_row(row, where=f"{self.source or 'demographics table'} row {subject}")


def parse_row(row: Mapping[str, Any], where: str = "demographics row") -> dict[str, Any]:
    """Parse the known columns of one row; empty cells are left out. Bad numbers raise InputError naming the cell."""
    out: dict[str, Any] = {}
    if not _blank(row.get("age")):
        out["age"] = parse_age(row["age"])
    if not _blank(row.get("sex")):
        out["sex"] = str(row["sex"]).strip()
    for key in ("weight", "height", "injected_dose_bq", "uptake_time_s"):
        if not _blank(row.get(key)):
            out[key] = _number(row[key], key, where)
    if "height" not in out and not _blank(row.get("height_m")):
        out["height"] = 100.0 * _number(row["height_m"], "height_m", where)
    return out


def _number(value: Any, name: str, where: str) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise InputError(f"{where}: {name} must be a number, got {value!r}") from None


def read_demographics_csv(path: str | os.PathLike) -> DemographicsTable:
    """Read a demographics.csv (header required; a ``subject`` column is mandatory)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demographics CSV not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise InputError(f"{path}: empty file, expected a header with columns {', '.join(DEMOGRAPHICS_COLUMNS)}")
    names = {name: name.strip().lower() for name in reader.fieldnames}
    if "subject" not in names.values():
        raise InputError(
            f"{path}: no 'subject' column; got columns {list(reader.fieldnames)}, "
            f"expected {', '.join(DEMOGRAPHICS_COLUMNS)}"
        )
    rows = [{names[k]: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return DemographicsTable(rows=rows, source=str(path))


def write_demographics_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write rows with the standard columns first (then any extra ones), atomically; None -> empty cell."""
    rows = list(rows)
    extra = [key for row in rows for key in row if key not in DEMOGRAPHICS_COLUMNS]
    columns = list(DEMOGRAPHICS_COLUMNS) + list(dict.fromkeys(extra))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)
