"""Fault injection for the writers: a disk that fills up or refuses the Nth file, and the checks after it.

Every finished file in the library is published by ``petct_pipeline.io.atomic_path``'s
``os.replace``; ``WriteFaults`` stands in for io.py's ``os`` module, so the Nth publication
finds its temporary file half written and fails as a full disk (ENOSPC), a refused write (EACCES)
or a read-only filesystem (EROFS) would. Nothing else of ``os`` changes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import types
from pathlib import Path

__all__ = ["WriteFaults", "snapshot", "hidden_leftovers"]


class WriteFaults(types.SimpleNamespace):
    """io.py's ``os`` with ``replace`` counting publications and failing the ``fail_at``-th (1-based)."""

    def __init__(self, fail_at: int | None = None, code: int = errno.ENOSPC) -> None:
        super().__init__()
        self.fail_at, self.code, self.published, self.failed_path = fail_at, code, 0, None

    def __getattr__(self, name: str):
        return getattr(os, name)

    def replace(self, src, dst) -> None:
        self.published += 1
        if self.published == self.fail_at:
            data = Path(src).read_bytes()
            Path(src).write_bytes(data[: len(data) // 2])  # the disk filled up half-way through this file
            self.failed_path = str(dst)
            raise OSError(self.code, os.strerror(self.code), str(src))
        os.replace(src, dst)


def snapshot(folder: Path) -> dict[str, str]:
    """{relative name: sha256} of every visible file below ``folder``."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not _hidden(p, folder)}


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary files or folders (dot-names) left below ``folder``: what a crash must not leave."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".*"))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
