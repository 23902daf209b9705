"""One PET/CT study found on disk, the studies a scan skipped, and the checks that decide which.

Both layout readers (AutoPET, nnU-Net) return a :class:`ScanResult`. A study that cannot
be used (missing or implausible demographics, a missing or damaged image) becomes a
:class:`SkippedStudy` with a reason a person can act on; scanning never raises for one
bad study.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import struct
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..demographics import Demographics
from ..errors import InputError

__all__ = [
    "StudyRecord",
    "SkippedStudy",
    "ScanResult",
    "IMAGE_KINDS",
    "BMI_RANGE",
    "check_nifti",
    "resolve_demographics",
    "study_key",
]

logger = logging.getLogger(__name__)

IMAGE_KINDS = ("ct", "ctres", "pet", "suv", "seg", "organs")
BMI_RANGE = (10.0, 80.0)  # kg/m^2; outside it weight or height is almost surely mis-entered


@dataclass
class StudyRecord:
    """A usable study: image paths (None when absent), validated demographics, acquisition facts."""

    subject_id: str
    study_id: str
    directory: Path
    demographics: Demographics
    ct: Path | None = None
    ctres: Path | None = None
    pet: Path | None = None
    suv: Path | None = None
    seg: Path | None = None
    organs: Path | None = None
    diagnosis: str | None = None
    injected_dose_bq: float | None = None
    uptake_time_s: float | None = None
    layout: str = "autopet"

    @property
    def key(self) -> str:
        return study_key(self.subject_id, self.study_id)

    @property
    def ct_path(self) -> Path | None:
        """CT on the PET grid if the layout has it (CTres), else the original CT."""
        return self.ctres or self.ct

    def image_paths(self) -> dict[str, Path]:
        return {kind: getattr(self, kind) for kind in IMAGE_KINDS if getattr(self, kind) is not None}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "subject_id": self.subject_id,
            "study_id": self.study_id,
            "directory": str(self.directory),
            "layout": self.layout,
            "demographics": {k: getattr(self.demographics, k) for k in ("age", "sex", "weight", "height")},
            "diagnosis": self.diagnosis,
            "injected_dose_bq": self.injected_dose_bq,
            "uptake_time_s": self.uptake_time_s,
        }
        out.update({kind: (str(p) if p is not None else None) for kind in IMAGE_KINDS for p in [getattr(self, kind)]})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyRecord:
        paths = {kind: Path(data[kind]) if data.get(kind) else None for kind in IMAGE_KINDS}
        return cls(
            subject_id=data["subject_id"],
            study_id=data["study_id"],
            directory=Path(data["directory"]),
            demographics=Demographics.from_mapping(data["demographics"]),
            diagnosis=data.get("diagnosis"),
            injected_dose_bq=data.get("injected_dose_bq"),
            uptake_time_s=data.get("uptake_time_s"),
            layout=data.get("layout", "autopet"),
            **paths,
        )


@dataclass(frozen=True)
class SkippedStudy:
    """A study folder (or case) that was left out, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class ScanResult:
    studies: list[StudyRecord] = field(default_factory=list)
    skipped: list[SkippedStudy] = field(default_factory=list)
    layout: str = "autopet"
    root: str = ""

    def summary(self) -> dict[str, Any]:
        """Counts for logs and the cache index: studies used, skipped, and skipped per reason kind."""
        kinds = Counter(_reason_kind(s.reason) for s in self.skipped)
        return {
            "layout": self.layout,
            "root": self.root,
            "studies": len(self.studies),
            "skipped": len(self.skipped),
            "skipped_by_reason": dict(sorted(kinds.items())),
            "skipped_studies": [s.to_dict() for s in self.skipped],
        }

    def summary_text(self) -> str:
        lines = [f"{len(self.studies)} usable studies, {len(self.skipped)} skipped ({self.layout} layout, {self.root})"]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)

    def skip(self, path: str | os.PathLike, reason: str) -> None:
        logger.warning("skipping study %s: %s", path, reason)
        self.skipped.append(SkippedStudy(str(path), reason))


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def study_key(subject_id: str, study_id: str) -> str:
    """A filename-safe unique key for one study: readable prefix plus a short hash of the exact names."""
    import hashlib

    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{subject_id}__{study_id}").strip("_")[:80]
    digest = hashlib.sha1(f"{subject_id}\x00{study_id}".encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


# ---------------------------------------------------------------------------------- checks


def check_nifti(path: str | os.PathLike, full: bool = False) -> str | None:
    """None if ``path`` looks like a complete 3D NIfTI, else a one-line reason.

    Cheap by default: parses the header and, for .nii.gz, compares the gzip size trailer
    with the size the header implies; only on a mismatch (or with ``full=True``) is the
    file decompressed completely to tell a truncated file from an odd writer.
    """
    path = Path(path)
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for garbage
        return f"unreadable NIfTI {path.name}: {type(error).__name__}: {error}"
    shape = image.shape
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        return f"{path.name} is not a 3D volume: shape {shape}"
    if min(shape[:3]) < 1:
        return f"{path.name} has an empty dimension: shape {shape}"
    if not np.all(np.isfinite(image.affine)):
        return f"{path.name} has a non-finite affine"
    header = image.header
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    if path.name.endswith(".gz"):
        suspicious = full or _gzip_trailer_size(path) != expected % 2**32
        if suspicious:
            actual = _gzip_decompressed_size(path)
            if isinstance(actual, str):
                return f"truncated or corrupt gzip in {path.name}: {actual}"
            if actual < expected:
                return f"truncated NIfTI {path.name}: {actual} bytes after decompression, header needs {expected}"
    else:
        actual = path.stat().st_size
        if actual < expected:
            return f"truncated NIfTI {path.name}: {actual} bytes, header needs {expected}"
    return None


def _gzip_trailer_size(path: Path) -> int | None:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < 18:
            return None
        handle.seek(-4, os.SEEK_END)
        return struct.unpack("<I", handle.read(4))[0]


def _gzip_decompressed_size(path: Path) -> int | str:
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as error:
        return f"{type(error).__name__}: {error} (after {total} bytes)"
    return total


def resolve_demographics(values: Mapping[str, Any]) -> Demographics:
    """Validated demographics from merged sources; ValueError naming the missing or implausible field."""
    sex = values.get("sex")
    if isinstance(sex, str) and sex.strip().upper() in ("O", "U", "UNKNOWN", "OTHER"):
        raise InputError(f"sex={sex!r} is not usable: the model is conditioned on M or F")
    demographics = Demographics.from_mapping(values)
    low, high = BMI_RANGE
    if not low <= demographics.bmi <= high:
        raise InputError(
            f"implausible weight/height: weight={demographics.weight:g} kg, height={demographics.height:g} cm "
            f"give BMI {demographics.bmi:.1f}, allowed [{low:g}, {high:g}] kg/m^2 (height must be in cm)"
        )
    if not math.isfinite(demographics.bsa):
        raise InputError("implausible weight/height: non-finite body surface area")
    return demographics
