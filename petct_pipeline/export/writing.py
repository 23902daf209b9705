"""What every export format shares: the output folder's rules, one atomic step per subject, resuming.

* The output folder must be empty, or hold an unfinished or finished export of the same input with the same
  options (its ``export.json`` says so): then the export resumes and subjects already written, whose input
  files have not changed since, are skipped (as a rerun of ``petct generate --cohort`` would redo nothing).
  Anything else is refused unless ``overwrite`` is given, which empties the folder first (only after every
  subject has passed its checks, so bad input never deletes anything).
* Each subject is written into a hidden staging folder beside its destination and then renamed into place,
  folder by folder (an AutoPET or DICOM study) or file by file (nnU-Net's three files, label last), so an
  interrupted export never leaves a half-written study. ``export.json`` records each subject when it is in
  place; the format's index files (dataset.json, Metadata.csv, ...) are written last, from every subject.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nibabel.filebasedimages import ImageFileError

from .. import __version__
from ..errors import InputError
from ..io import read_json, write_json
from .subjects import ExportSubject, ExportVolumes, load_volumes

__all__ = ["MANIFEST", "FormatWriter", "ExportResult", "run_export"]

logger = logging.getLogger(__name__)

MANIFEST = "export.json"
_STAGING_PREFIX = ".export-staging-"


class FormatWriter(ABC):
    """One output format: where it writes, what a finished subject consists of, how a subject is written."""

    name: str = ""
    #: the format writes organ labels when the subject has them (otherwise only with ``--labels organs``)
    copies_organs: bool = False

    def __init__(self, labels: str) -> None:
        self.labels = labels

    def root(self, out: Path) -> Path:
        """The folder the export owns (nnU-Net: the ``DatasetNNN_Name`` folder inside ``out``)."""
        return out

    def prepare(self, out: Path, subjects: Sequence[ExportSubject]) -> None:  # noqa: B027 - optional hook
        """Checks and cohort-wide settings that need every subject (e.g. nnU-Net's label ids); may raise InputError."""

    def config(self) -> dict[str, Any]:
        """Everything besides the subjects that changes what is written (compared when resuming)."""
        return {"labels": self.labels}

    @abstractmethod
    def outputs(self, subject: ExportSubject) -> list[str]:
        """Paths, relative to the root, that a finished subject consists of, in the order they are put in place."""

    @abstractmethod
    def write(self, subject: ExportSubject, volumes: ExportVolumes, staging: Path) -> dict[str, Any]:
        """Write the subject's :meth:`outputs` under ``staging`` (same relative paths); returns what export.json
        records about it."""

    @abstractmethod
    def finish(self, root: Path, subjects: Sequence[ExportSubject], records: dict[str, dict[str, Any]]) -> None:
        """Write the index files from every subject (``records``: what :meth:`write` returned, by subject key)."""


@dataclass
class ExportResult:
    """Where the export went and which subjects were written now or found finished."""

    root: Path
    format: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith(_STAGING_PREFIX)) if root.is_dir() else []


def _check_not_overlapping(input_dir: Path, root: Path) -> None:
    source, target = input_dir.resolve(), root.resolve()
    if source == target or source in target.parents or target in source.parents:
        raise InputError(f"--out {str(root)!r} and --input {str(input_dir)!r} overlap: the export must go to a "
                         "folder outside the input, and the input must not lie inside it")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return ", ".join(keys) or "nothing"


def _open_root(root: Path, manifest: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """The records of a resumable earlier export in ``root`` ({} for a fresh one); refuses any other content."""
    entries = _entries(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"--out {str(root)!r} exists and is not a folder")
    if not entries:
        return {}
    if overwrite:
        logger.info("--overwrite: removing the %d entries of %s", len(entries), root)
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return {}
    previous = read_json(root / MANIFEST) if (root / MANIFEST).is_file() else None
    if not isinstance(previous, dict) or "config" not in previous:
        raise InputError(f"--out {str(root)!r} is not empty ({len(entries)} entries, no {MANIFEST} of an earlier "
                         "export): give --overwrite to replace its contents, or an empty folder")
    if previous["config"] != manifest["config"]:
        different = _differences(previous["config"], manifest["config"])
        raise InputError(f"--out {str(root)!r} holds another export (different {different}): give --overwrite to "
                         "replace it, or another folder")
    return dict(previous.get("subjects") or {})


def _place(staging: Path, root: Path, relative: list[str]) -> None:
    """Rename each staged output onto its destination (a folder replaces the old one as a whole)."""
    for name in relative:
        source, target = staging / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir() and target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}old-", dir=root))
            os.replace(target, trash / "old")
            os.replace(source, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(source, target)


def run_export(writer: FormatWriter, subjects: Sequence[ExportSubject], input_dir: Path, out: Path,
               overwrite: bool = False, progress: bool | None = None) -> ExportResult:
    """Write every subject with ``writer`` into ``out`` (see the module docstring); returns what was done.

    ``progress``: show a progress bar (None: only on an interactive terminal)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    root = writer.root(out)
    _check_not_overlapping(input_dir, root)
    writer.prepare(out, subjects)
    manifest: dict[str, Any] = {
        "synthetic": True,
        "written_by": f"petct export (petct-diffusion {__version__})",
        "format": writer.name,
        "config": {"format": writer.name, **writer.config(), "subjects": sorted(s.key for s in subjects)},
        "complete": False,
    }
    records = _open_root(root, manifest, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(f"{_STAGING_PREFIX}*"):  # an earlier run's interrupted subject
        shutil.rmtree(leftover, ignore_errors=True)
    manifest["subjects"] = records
    write_json(manifest, root / MANIFEST)
    result = ExportResult(root=root, format=writer.name)
    bar = tqdm(subjects, desc=f"export {writer.name}", unit="subject",
               disable=None if progress is None else not progress)
    for subject in bar:
        done = records.get(subject.key)
        outputs = writer.outputs(subject)
        if done and done.get("fingerprint") == subject.fingerprint and all((root / p).exists() for p in outputs):
            result.skipped.append(subject.key)
            continue
        try:
            volumes = load_volumes(subject, organs=writer.copies_organs or writer.labels == "organs")
        except (OSError, EOFError, zlib.error, ImageFileError, InputError) as error:  # a damaged file: the user's
            if isinstance(error, InputError) and str(error).startswith(f"subject {subject.key}:"):
                raise  # already names the subject (a grid or label problem)
            raise InputError(f"subject {subject.key}: cannot read its volumes: {error}") from None
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
        try:
            record = writer.write(subject, volumes, staging)
            _place(staging, root, outputs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        records[subject.key] = {"fingerprint": subject.fingerprint, "outputs": outputs, **record}
        write_json(manifest, root / MANIFEST)
        result.written.append(subject.key)
    writer.finish(root, subjects, records)
    manifest["complete"] = True
    write_json(manifest, root / MANIFEST)
    result.seconds = time.perf_counter() - start
    logger.info("exported %d subjects to %s (%d already there)", len(result.written), root, len(result.skipped))
    return result
