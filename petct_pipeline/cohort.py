"""A cohort CSV: one subject per row with age, sex, weight, height and optional seed and id.

Shared by ``petct phantom --cohort`` and ``petct generate --cohort`` so that a phantom
"twin" can be made for every generated subject. Columns (header required, any order,
case-insensitive): ``age`` (years), ``sex`` (M/F or male/female), ``weight`` (kg),
``height`` (cm), optional ``seed`` (integer in [0, 2**63 - 1]), ``diagnosis`` (``petct generate``:
NEGATIVE, LYMPHOMA, MELANOMA or LUNG_CANCER) and ``id`` (default ``row<N>``;
it names the subject's output folder, so it must be one plain folder name: no path separators,
no ``..``, not absolute). A bad row raises ``InputError`` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .demographics import Demographics
from .errors import InputError
from .seeds import MAX_SEED, check_seed

__all__ = ["CohortRow", "read_cohort", "check_subject_id", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS"]

REQUIRED_COLUMNS = ("age", "sex", "weight", "height")
OPTIONAL_COLUMNS = ("seed", "id", "diagnosis")


@dataclass(frozen=True)
class CohortRow:
    """One cohort subject: an identifier, validated demographics, an optional seed and diagnosis."""

    id: str
    demographics: Demographics
    seed: int | None = None
    diagnosis: str | None = None


def _parse_seed(text: str, where: str) -> int | None:
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: field 'seed' must be an integer in [0, {MAX_SEED}], got {text!r}") from None
    if not value.is_integer():
        raise InputError(f"{where}: field 'seed' must be an integer in [0, {MAX_SEED}], got {text!r}")
    try:
        return check_seed(int(text) if text.lstrip("+-").isdigit() else int(value), "field 'seed'")
    except InputError as error:
        raise InputError(f"{where}: {error}") from None


#: characters that would make an id escape or confuse its output folder (path separators, NUL, controls)
_FORBIDDEN_ID_CHARACTERS = set('/\\\0:*?"<>|') | {chr(code) for code in range(32)}


def _parse_diagnosis(text: str, diagnoses: Collection[str] | None, where: str) -> str | None:
    if text == "" or diagnoses is None:
        return None
    name = text.upper()
    if name not in diagnoses:
        raise InputError(f"{where}: field 'diagnosis' must be one of {', '.join(diagnoses)}, got {text!r}")
    return name


def check_subject_id(subject_id: str, where: str = "id") -> str:
    """``subject_id`` if it is one plain folder name, else ``InputError`` naming ``where``.

    Ids become output folders (``OUT/<id>/``): a separator, ``..``, an absolute path or a
    leading dot would write outside ``OUT`` or hide the folder, so they are refused.
    """
    bad = sorted({repr(c) for c in subject_id if c in _FORBIDDEN_ID_CHARACTERS})
    if not subject_id or subject_id.startswith(".") or bad or subject_id != subject_id.strip() or len(subject_id) > 200:
        reason = (f"characters {', '.join(bad)} are not allowed" if bad else
                  "it must not be empty, start with '.', carry surrounding spaces or exceed 200 characters")
        raise InputError(f"{where}: id {subject_id!r} is not a plain folder name ({reason}); use letters, digits, "
                         "'-', '_' and '.' inside the name")
    return subject_id


def read_cohort(path: str | os.PathLike, diagnoses: Collection[str] | None = None) -> list[CohortRow]:
    """Read and validate a cohort CSV; see the module docstring for the columns.

    ``diagnoses``: the values a ``diagnosis`` column may hold (case-insensitive; an empty cell = none
    given); a caller that does not pass it does not use the column (``diagnosis`` stays None).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cohort file {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
                         f"{error.start}); save the cohort as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _read_rows(path, reader, diagnoses)
    except csv.Error as error:  # an unterminated quote, a field over the csv module's size limit
        raise InputError(f"{path}: near line {reader.line_num + 1}: {error}") from None


def _read_rows(path: Path, reader: csv.DictReader, diagnoses: Collection[str] | None) -> list[CohortRow]:
    """The rows of an opened cohort CSV (csv.Error propagates to read_cohort, which names the line)."""
    if reader.fieldnames is None:
        raise InputError(f"{path}: empty cohort file; expected a header with {', '.join(REQUIRED_COLUMNS)}")
    columns: dict[str, str] = {}
    for name in reader.fieldnames:
        key = name.strip().lower()
        if key in columns and key in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
            raise InputError(f"{path}: line 1: column {key!r} appears twice ({columns[key]!r} and {name!r}); "
                             "which one is meant is not clear")
        columns.setdefault(key, name)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise InputError(
            f"{path}: line 1: missing column(s) {', '.join(missing)}; "
            f"required: {', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    rows: list[CohortRow] = []
    seen: set[str] = set()
    for raw in reader:
        line = reader.line_num
        where = f"{path}: line {line}"
        cells = [*(value for key, value in raw.items() if key is not None), *raw.get(None, [])]
        if all((value or "").strip() == "" for value in cells):
            continue  # blank line
        if None in raw:  # more cells than the header names: a shifted row (an unquoted comma)
            width = len(reader.fieldnames) + len(raw[None])
            raise InputError(f"{where}: {width} fields but the header names {len(reader.fieldnames)}; "
                             "quote cells that contain a comma")
        values = {key: (raw.get(columns[key]) or "").strip() for key in columns if key in columns}
        for field in REQUIRED_COLUMNS:
            if values.get(field, "") == "":
                raise InputError(f"{where}: field {field!r} is empty")
        parsed: dict[str, object] = {"sex": values["sex"]}
        for field in ("age", "weight", "height"):
            try:
                parsed[field] = float(values[field])
            except ValueError:
                raise InputError(f"{where}: field {field!r} must be a number, got {values[field]!r}") from None
        try:
            demographics = Demographics(**parsed)
        except (ValueError, TypeError) as error:
            field = next((name for name in REQUIRED_COLUMNS if str(error).startswith(name)), "value")
            raise InputError(f"{where}: field {field!r}: {error}") from None
        seed = _parse_seed(values.get("seed", ""), where) if "seed" in values else None
        subject_id = check_subject_id(values.get("id", "") or f"row{len(rows) + 1}", f"{where}: field 'id'")
        if subject_id in seen:
            raise InputError(f"{where}: field 'id': duplicate id {subject_id!r}")
        seen.add(subject_id)
        diagnosis = _parse_diagnosis(values.get("diagnosis", ""), diagnoses, where)
        rows.append(CohortRow(id=subject_id, demographics=demographics, seed=seed, diagnosis=diagnosis))
    if not rows:
        raise InputError(f"{path}: the cohort file has a header but no subjects")
    return rows
