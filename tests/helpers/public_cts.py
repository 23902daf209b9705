"""Real public CTs from PyPI source distributions, fetched on demand (nothing is committed).

TotalSegmentator's sdist (Apache-2.0) ships example CTs: ``tests/reference_files/example_ct.nii.gz``
(122 x 101 x 112 voxels of 3 mm, RAS, int32) and ``tests/reference_files/aorta_report/example_ct.nii.gz``
(233 x 167 x 191 voxels of 1.5 mm, LPS, a chest CT angiography). ``pip download --no-deps
--no-binary :all:`` fetches the archive through the ordinary client; the members are extracted
into a cache folder (``$PETCT_PUBLIC_CT_CACHE``, default ``~/.cache/petct-diffusion/public_cts``).
Without network the fetch returns None and callers skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

__all__ = ["TOTALSEGMENTATOR", "EXAMPLE_CTS", "cache_dir", "fetch_public_ct"]

TOTALSEGMENTATOR = ("totalsegmentator", "2.18.0")
#: name -> path inside the sdist
EXAMPLE_CTS = {
    "totalseg_example": "tests/reference_files/example_ct.nii.gz",
    "totalseg_aorta_chest": "tests/reference_files/aorta_report/example_ct.nii.gz",
}


def cache_dir() -> Path:
    return Path(os.environ.get("PETCT_PUBLIC_CT_CACHE", Path.home() / ".cache" / "petct-diffusion" / "public_cts"))


def fetch_public_ct(name: str, timeout_s: float = 300.0) -> Path | None:
    """The CT ``name`` of ``EXAMPLE_CTS`` as a local file, downloading the sdist once; None when it cannot be had."""
    package, version = TOTALSEGMENTATOR
    folder = cache_dir()
    target = folder / f"{package}-{version}" / EXAMPLE_CTS[name]
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{package}-{version}.tar.gz"
    if not archive.is_file():
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            f"{package}=={version}", "-d", str(folder), "--quiet"], check=True, timeout=timeout_s,
                           capture_output=True)
        except (subprocess.SubprocessError, OSError):
            return None
    if not archive.is_file():
        return None
    try:
        with tarfile.open(archive) as tar:
            tar.extract(f"{package}-{version}/{EXAMPLE_CTS[name]}", folder, filter="data")
    except (tarfile.TarError, KeyError, OSError):
        return None
    return target if target.is_file() else None
