"""``DIR/manifest.jsonl``: one JSON record per finished or failed cohort row, safe under concurrent writers.

``petct generate --cohort`` appends a record when a row is written (``status`` "ok", its files with
their sha256) or fails (``status`` "failed", ``reason``). Several processes append to the same
file: accelerate ranks, ``--shard`` jobs of a job array, on one machine or on a shared filesystem.
Each record is one ``os.write`` of one line on a descriptor opened with ``O_APPEND``, under an
exclusive POSIX record lock (``fcntl.lockf``, which NFS honours), then ``fsync``-ed: two writers never
interleave, and a record that returned is on disk. A writer killed mid-write (kill -9) can leave at
most a torn last line; the next writer ends it with a newline before its own record, and readers
ignore a line that is not a complete JSON object, so that row counts as not done and is redone.
Later records of an id supersede earlier ones.

A row is *complete and verified* when its latest record says "ok" and every file it lists exists
with the recorded sha256 (:func:`verify_record`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_FILENAME", "file_sha256", "append_record", "locked", "read_manifest", "ManifestContents",
           "verify_record", "RecordReader"]

logger = logging.getLogger(__name__)

MANIFEST_FILENAME = "manifest.jsonl"


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _exclusive(fd: int) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): O_APPEND alone keeps single writes whole on local disks
        yield
        return
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold the manifest's exclusive lock (creating the file if needed): no record is appended meanwhile."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with _exclusive(fd):
            yield
    finally:
        os.close(fd)


def append_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line: locked, a single write, fsync-ed; a torn last line is ended first."""
    line = json.dumps(record, separators=(",", ":"), sort_keys=False, allow_nan=False).encode() + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with _exclusive(fd):
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a writer died mid-line: keep its fragment on a line of its own
            written = os.write(fd, line)
            if written != len(line):  # a full disk: say so instead of leaving a fragment unnoticed
                raise OSError(f"{path}: wrote {written} of {len(line)} bytes of a manifest record")
            os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ManifestContents:
    """What a manifest holds: every valid record in file order, the latest per id, and the lines ignored."""

    records: list[dict[str, Any]]
    latest: dict[str, dict[str, Any]]
    ignored_lines: list[int]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or record.get("status") not in (
            "ok", "failed"):
        return None
    return record


def read_manifest(path: str | os.PathLike) -> ManifestContents:
    """Every complete record of ``path`` (none when it does not exist); torn or foreign lines are ignored."""
    path = Path(path)
    records: list[dict[str, Any]] = []
    ignored: list[int] = []
    if path.is_file():
        for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not line.strip():
                continue
            record = _parse(line)
            if record is None:
                ignored.append(number)
            else:
                records.append(record)
    if ignored:  # a writer killed mid-record: a row it left without a record counts as not done
        logger.info("%s: ignored %d line(s) that are not complete records (line %s)", path, len(ignored),
                    ", ".join(map(str, ignored[:5])))
    latest = {}
    for record in records:
        latest[record["id"]] = record
    return ManifestContents(records, latest, ignored)


def verify_record(record: Mapping[str, Any] | None, root: str | os.PathLike) -> str | None:
    """None when ``record`` is an "ok" record whose every file exists under ``root`` with its sha256, else why not."""
    if record is None:
        return "no record"
    if record.get("status") != "ok":
        return f"last attempt {record.get('status')}: {record.get('reason')}"
    files = record.get("files")
    if not isinstance(files, list) or not files:
        return "the record lists no files"
    root = Path(root)
    for entry in files:
        try:
            relative, expected = entry["path"], entry["sha256"]
        except (TypeError, KeyError):
            return "a file entry lacks its path or sha256"
        path = root / relative
        if not path.is_file():
            return f"{relative} is missing"
        if file_sha256(path) != expected:
            return f"{relative} differs from its recorded sha256"
    return None


class RecordReader:
    """Reads the records appended to a manifest after it was opened, as they arrive (for a progress bar)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.is_file() else 0
        self.pending = b""

    def new_records(self) -> list[dict[str, Any]]:
        """The complete records appended since the last call."""
        if not self.path.is_file():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        *lines, self.pending = (self.pending + data).split(b"\n")
        return [record for record in map(_parse, lines) if record is not None]
