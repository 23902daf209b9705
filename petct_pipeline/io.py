"""NIfTI and JSON writing/reading with atomic renames, so a crash never leaves a half file."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import OrientationError
from nibabel.spatialimages import HeaderDataError

from .errors import InputError, InputTypeError

__all__ = [
    "writable_dir",
    "atomic_path",
    "atomic_dir",
    "save_nifti",
    "load_nifti",
    "write_json",
    "read_json",
    "relative_name",
]


def writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` if needed and prove it takes a file, so a run fails before any work, not after."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{what} {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".petct-write-test-"):
            pass
    except OSError as error:
        raise InputError(f"{what} {out} is not writable: {error.strerror or error}") from None
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffixes so writers that dispatch on them (nibabel: .nii.gz) still work
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; finished files are ordinary files
        os.replace(tmp_path, path)
    except OSError as error:
        if error.errno is not None and error.filename in (None, str(tmp_path), tmp_path):
            # the temporary name means nothing to the user: name the file being written
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary sibling folder of ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    except OSError as error:
        written = Path(error.filename) if error.errno is not None and error.filename else None
        if written is not None and (written == staging or written.is_relative_to(staging)):
            # the staging name means nothing to the user: name the file in the folder being written
            raise OSError(error.errno, error.strerror or str(error), str(path / written.relative_to(staging))
                          ) from error
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def save_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    dtype: np.dtype | type | None = None,
    description: str | None = None,
) -> Path:
    """Write an (x, y, z) array with its RAS affine; sform and qform both set, pixdim from the affine."""
    data = np.asarray(array) if dtype is None else np.asarray(array).astype(dtype)
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm", "sec")
    image.set_sform(image.affine, code=1)
    image.set_qform(image.affine, code=1)
    if description:
        image.header["descrip"] = description[:79].encode()
    path = Path(path)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return path


#: deflate's largest compression ratio (a run of one byte): no .nii.gz of n bytes holds more than this times n
_MAX_DEFLATE_RATIO = 1032

#: what nibabel, gzip and numpy raise for a file that is not a usable NIfTI (garbage, truncation, lying headers)
_UNREADABLE: tuple[type[BaseException], ...] = (
    ImageFileError, HeaderDataError, OrientationError, OSError, EOFError, zlib.error, ValueError, struct.error,
    np.linalg.LinAlgError, IndexError, OverflowError,
)


def load_nifti(path: str | os.PathLike, dtype: np.dtype | type = np.float32, canonical: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file reoriented to canonical RAS+ (``canonical=False``: on its own grid); returns (array, affine).

A file that is not a usable image (unreadable, truncated, a non-finite or singular affine, an empty axis, a
header declaring more data than exists) raises ``InputError`` naming the path; a missing file
stays ``FileNotFoundError``.

    ``canonical=False`` is for tools whose outputs must stay on the input's grid and orientation
    (``petct lesions``): the array is the file's voxel order and the affine its own.
    """
    path = Path(path)
    try:
        image = nib.load(str(path))
        shape = tuple(int(n) for n in image.shape)
        if not np.all(np.isfinite(image.affine)):
            raise InputError(f"{path} has a non-finite affine (NaN or inf in its sform/qform); it places no voxel")
        if np.linalg.matrix_rank(image.affine[:3, :3]) < 3:
            raise InputError(f"{path} has a singular affine (a voxel axis with no extent or direction in its "
                             "sform/qform); it has no orientation")
        if 0 in shape:
            raise InputError(f"{path} has an empty axis: shape {shape}")
        needed = int(image.header.get_data_offset()) + math.prod(shape) * image.get_data_dtype().itemsize
        size = path.stat().st_size
        if not path.name.endswith(".gz") and size < needed:
            raise InputError(f"{path} is truncated: its header needs {needed} bytes, the file has {size}")
        if path.name.endswith(".gz") and needed > _MAX_DEFLATE_RATIO * size + 4096:
            # checked before reading: a lying header would otherwise allocate (and fill) all it declares
            raise InputError(f"{path} is truncated or its header is corrupt: it declares {needed} bytes of image, "
                             f"more than a {size}-byte gzip file can hold")
        if canonical:
            image = nib.as_closest_canonical(image)
        return np.asarray(image.dataobj, dtype=dtype), image.affine
    except (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise
    except MemoryError:  # a header that declares far more voxels than the file (or any machine) holds
        raise InputError(f"{path}: its header declares shape {image.shape} of {image.get_data_dtype()}, more than "
                         "fits in memory; the header is corrupt or the image too large") from None
    except _UNREADABLE as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise InputError(f"{path} is not a readable NIfTI image ({type(error).__name__}: {reason})") from None


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise InputTypeError(f"not JSON serialisable: {type(value).__name__}")


def relative_name(path: str | os.PathLike, start: str | os.PathLike) -> str:
    """``path`` relative to ``start`` in POSIX form, for reports that must not record local absolute paths."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
