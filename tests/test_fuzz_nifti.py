"""Fuzzing the NIfTI readers: odd dimensions, dtypes, affines, truncated, bit-flipped and lying headers.

Readers under test: ``io.load_nifti`` (behind evaluation, export and preprocessing), the dataset
scan's ``check_nifti`` (a reason, never an exception), evaluation's ``load_subject`` and the
``petct lesions`` command (exit code 0 or 2 with one line, nothing written on 2).
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct

import nibabel as nib
import numpy as np
import pytest
from hypothesis import strategies as st

from petct_pipeline import Demographics
from petct_pipeline.cli import main
from petct_pipeline.data.study import check_nifti
from petct_pipeline.evaluation.inputs import SubjectInput, load_subject
from petct_pipeline.io import load_nifti
from tests.helpers.fuzz import PROFILES, files_under, fuzz, record, user_error_or_result

DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64, np.uint16, np.int64)
_DIM_OFFSET = 40  # nifti-1 header: dim[8] int16 at byte 40


@st.composite
def nifti_files(draw) -> tuple[str, bytes]:
    """(file name, bytes) of a NIfTI-1 image that may be odd in every way a reader must survive."""
    ndim = draw(st.sampled_from([3, 3, 3, 2, 4, 1, 5]))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = (rng.normal(0, 100, shape) if np.issubdtype(dtype, np.floating) else rng.integers(0, 100, shape))
    data = data.astype(dtype)
    if np.issubdtype(dtype, np.floating) and data.size and draw(st.booleans()):
        data.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    affine = np.diag([*draw(st.lists(st.sampled_from([2.0, -2.0, 4.0, 0.5, 0.0]), min_size=3, max_size=3)), 1.0])
    if draw(st.booleans()):
        affine[draw(st.integers(0, 2)), draw(st.integers(0, 3))] = draw(
            st.sampled_from([0.7, -1.3, np.nan, np.inf, 1e30]))  # shear, a translation, or nonsense
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_data_offset(352)
    header.set_sform(affine, code=1)
    if draw(st.booleans()):
        try:
            header.set_qform(affine, code=1)
        except nib.spatialimages.HeaderDataError:
            pass  # an affine no rotation describes: sform only
    compressed = draw(st.booleans())
    raw = header.binaryblock + b"\0" * 4 + data.tobytes(order="F")
    corruption = draw(st.sampled_from(["none", "none", "truncate", "flip", "huge_dims", "garbage"]))
    if corruption == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif corruption == "flip" and raw:
        position = draw(st.integers(0, len(raw) - 1))
        raw = raw[:position] + bytes([raw[position] ^ (1 << draw(st.integers(0, 7)))]) + raw[position + 1:]
    elif corruption == "huge_dims" and len(raw) >= _DIM_OFFSET + 16:
        dims = draw(st.lists(st.integers(-5, 32767), min_size=4, max_size=4))
        raw = raw[:_DIM_OFFSET] + struct.pack("<4h", *dims) + raw[_DIM_OFFSET + 8:]
    elif corruption == "garbage":
        raw = draw(st.binary(max_size=400))
    if compressed:
        raw = gzip.compress(raw, mtime=0)
        if draw(st.booleans()):
            raw = raw[: draw(st.integers(0, len(raw)))]  # a truncated gzip stream
    return ("image.nii.gz" if compressed else "image.nii"), raw


def _names(path):
    return lambda message: str(path) in message or path.name in message


@pytest.mark.parametrize("profile", PROFILES)
def test_load_nifti_and_the_scan_check_on_any_file(profile, tmp_path):
    def check(case):
        name, raw = case
        path = tmp_path / name
        path.write_bytes(raw)
        reason = check_nifti(path)
        assert reason is None or (isinstance(reason, str) and "\n" not in reason)
        for canonical in (True, False):
            user_error_or_result(lambda c=canonical: load_nifti(path, canonical=c), names=_names(path))
        path.unlink()

    fuzz(profile, 200, nifti_files(), check)


@pytest.mark.parametrize("profile", PROFILES)
def test_evaluation_load_subject_on_any_file(profile, tmp_path):
    woman = Demographics(age=63, sex="F", weight=70, height=165)

    def check(case):
        name, raw = case
        path = tmp_path / name
        path.write_bytes(raw)
        subject = SubjectInput(subject_id="s", study_id="x", layout="generated", directory=tmp_path, ct=path,
                               pet=path, labels=None, demographics=woman)
        error = user_error_or_result(lambda: load_subject(subject), names=_names(path))
        if error is None:
            volumes = load_subject(subject)
            assert volumes.ct.ndim == 3 and np.all(np.isfinite(volumes.affine))
        path.unlink()

    fuzz(profile, 100, nifti_files(), check)


@pytest.mark.parametrize("profile", PROFILES)
def test_petct_lesions_on_any_file(profile, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([{"site": "lung", "diameter_mm": 10, "suv_max": 5}]))
    runs = iter(range(10**9))

    def check(case):
        name, raw = case
        path = tmp_path / name
        path.write_bytes(raw)
        out = tmp_path / f"out{next(runs)}"
        capsys.readouterr()
        code = main(["lesions", "--ct", str(path), "--pet", str(path), "--lesions", str(spec), "--out", str(out)])
        error = capsys.readouterr().err
        assert code in (0, 2), error
        record(f"exit code {code}")
        if code == 2:
            assert error.count("\n") == 1 and ("--ct" in error or "--pet" in error or "lesion" in error), error
            assert files_under(out) == []
        path.unlink()

    fuzz(profile, 60, nifti_files(), check)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A valid 8 mm phantom CT/PET/organ map on disk (uncompressed, so a byte flip stays a readable file)."""
    from petct_pipeline.io import save_nifti
    from petct_pipeline.phantom import generate_phantom

    subject = generate_phantom(Demographics(age=58, sex="M", weight=80, height=178), 3, spacing=8)
    folder = tmp_path_factory.mktemp("study")
    paths = {"--ct": folder / "ct.nii", "--pet": folder / "pet.nii", "--organs": folder / "organs.nii"}
    save_nifti(np.rint(subject.ct_hu).astype(np.int16), subject.affine, paths["--ct"])
    save_nifti(subject.suv.astype(np.float32), subject.affine, paths["--pet"])
    save_nifti(subject.organs.astype(np.uint8), subject.affine, paths["--organs"])
    return {flag: path.read_bytes() for flag, path in paths.items()}


#: how one file of a valid study is damaged: (kind, where (a fraction of the file or of the data), bit, dims)
damages = st.tuples(st.sampled_from(["truncate", "flip_header", "flip_data", "dims"]), st.floats(0, 1),
                    st.integers(0, 7), st.lists(st.integers(-5, 32767), min_size=4, max_size=4))


def damaged(raw: bytes, damage: tuple) -> bytes:
    kind, where, bit, dims = damage
    if kind == "truncate":
        return raw[: int(where * (len(raw) - 1))]
    if kind in ("flip_header", "flip_data"):
        position = int(where * 347) if kind == "flip_header" else 352 + int(where * (len(raw) - 353))
        return raw[:position] + bytes([raw[position] ^ (1 << bit)]) + raw[position + 1:]
    return raw[:_DIM_OFFSET] + struct.pack("<4h", *dims) + raw[_DIM_OFFSET + 8:]


@pytest.mark.parametrize("profile", PROFILES)
def test_petct_lesions_on_a_corrupted_study(profile, study, tmp_path, capsys):
    """A real study with one file damaged: lesions are written (harmless damage) or exit 2 naming the flag."""
    runs = iter(range(10**9))

    def check(case):
        flag, damage = case
        raw = damaged(study[flag], damage)
        folder = tmp_path / f"run{next(runs)}"
        folder.mkdir()
        paths = {name: folder / f"{name[2:]}.nii" for name in study}
        for name, path in paths.items():
            path.write_bytes(raw if name == flag else study[name])
        out = folder / "out"
        capsys.readouterr()
        code = main(["lesions", *(item for name, path in paths.items() for item in (name, str(path))),
                     "--diagnosis", "LYMPHOMA", "--out", str(out)])
        error = capsys.readouterr().err
        assert code in (0, 2), error
        record(f"exit code {code}")
        if code == 2:
            assert error.count("\n") == 1 and (flag in error or str(paths[flag]) in error), error
            assert files_under(out) == []
        else:
            assert sorted(files_under(out))[:2] == ["ct.nii.gz", "lesions.json"]
        shutil.rmtree(folder)

    fuzz(profile, 30, st.tuples(st.sampled_from(sorted(study)), damages), check)


def _image_bytes(shape=(4, 4, 4), affine=None, dims=None) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_data_offset(352)
    header.set_sform(np.eye(4) if affine is None else affine, code=1)
    raw = header.binaryblock + b"\0" * 4 + np.ones(shape, np.float32).tobytes()
    return raw if dims is None else raw[:_DIM_OFFSET] + struct.pack("<4h", *dims) + raw[_DIM_OFFSET + 8:]


@pytest.mark.parametrize("name,raw,fragment", [
    ("t.nii.gz", gzip.compress(_image_bytes())[:-30], "is not a readable NIfTI image"),
    ("n.nii", _image_bytes(affine=np.diag([2.0, np.nan, 2.0, 1.0])), "has a non-finite affine"),
    ("s.nii", _image_bytes(affine=np.diag([2.0, 0.0, 2.0, 1.0])), "has a singular affine"),
    ("e.nii", _image_bytes(shape=(4, 0, 4)), "has an empty axis"),
    ("h.nii", _image_bytes(dims=(3, 32767, 32767, 32767)), "is truncated: its header needs"),
    ("h.nii.gz", gzip.compress(_image_bytes(dims=(3, 30000, 30000, 30000))), "more than a [0-9]+-byte gzip file"),
    ("m.nii.gz", gzip.compress(_image_bytes(dims=(3, 4000, 4000, 9))), "more than a [0-9]+-byte gzip file"),
])
def test_nifti_defects_found_by_fuzzing(tmp_path, name, raw, fragment):
    """Found by the properties above: EOFError, zlib.error, OverflowError and nibabel tracebacks from
    ``petct evaluate`` and ``petct export``, NaN affines or empty axes passed on to the metrics, a singular
    affine that reached ``petct lesions``' reorientation as nibabel's OrientationError (long profile), and (long
    profile) a .nii.gz whose header declares ~40 GB: it was allocated and filled until the kernel killed it."""
    from petct_pipeline.errors import InputError

    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(InputError, match=fragment) as caught:
        load_nifti(path)
    assert str(path) in str(caught.value)
