"""``petct lesions``: insert FDG-avid lesions with known truth into an existing PET/CT pair.

Everything is checked (the spec, the diagnosis, the grids, every lesion's place and uptake)
before the first file is written, and each file is written under a temporary name and renamed,
so a failed run writes nothing and the inputs are never touched.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..seeds import MAX_SEED, check_seed
from . import SubParsers

__all__ = ["register", "run", "GRID_TOLERANCE_MM"]

logger = logging.getLogger(__name__)

#: two volumes are on the same grid when their shapes match and their affines agree to this (mm)
GRID_TOLERANCE_MM = 1e-3


def register(subparsers: SubParsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lesions",
        help="insert FDG-avid lesions with known truth into an existing PET/CT",
        description="Insert FDG-avid lesions into a PET/CT pair on one grid (a generated subject, a phantom, an "
        "AutoPET study with CTres.nii.gz and SUV.nii.gz, any orientation): either sampled for --diagnosis the way "
        "AutoPET's positives present, or given by --lesions SPEC.json. Writes ct.nii.gz (HU), pet_suv.nii.gz "
        "(SUVbw), lesions.nii.gz (instance ids 1..N) and lesions.json (per lesion: measured volume, SUVmean/max/"
        "peak, TLG, HU and the requested values) on the input's own grid; the inputs are left untouched.",
    )
    parser.add_argument("--ct", type=Path, required=True, help="CT in HU (NIfTI)")
    parser.add_argument("--pet", type=Path, required=True, help="PET in SUVbw (NIfTI) on the CT's grid")
    parser.add_argument("--organs", type=Path, default=None,
                        help="TotalSegmentator-id organ label map on the same grid (needed for liver, spleen and "
                        "organ-named lesions); copied to the output")
    parser.add_argument("--diagnosis", default=None,
                        help="NEGATIVE, LYMPHOMA, MELANOMA or LUNG_CANCER: lesions sampled like AutoPET's")
    parser.add_argument("--lesions", type=Path, default=None, help="JSON list of lesion specs (docs/lesions.md)")
    parser.add_argument("--seed", type=int, default=0, help=f"random seed in [0, {MAX_SEED}] (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run)
    return parser


def _same_grid(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    return a[0].shape == b[0].shape and np.allclose(a[1], b[1], atol=GRID_TOLERANCE_MM)


def _grid(volume: tuple[np.ndarray, np.ndarray]) -> str:
    spacing = np.sqrt((volume[1][:3, :3] ** 2).sum(axis=0))
    return f"{'x'.join(map(str, volume[0].shape))} voxels of {'x'.join(f'{s:g}' for s in spacing)} mm"


def _load(flag: str, path: Path, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The file on its own grid (no reorientation: the outputs keep it), or one line naming the flag."""
    from nibabel.filebasedimages import ImageFileError

    from ..io import load_nifti

    if not Path(path).is_file():
        raise InputError(f"{flag} {path}: no such file")
    try:
        array, affine = load_nifti(path, dtype=dtype, canonical=False)
    except (ImageFileError, OSError, EOFError, ValueError) as error:
        raise InputError(f"{flag} {path} is not a readable NIfTI image: {error}") from None
    if array.ndim != 3:
        raise InputError(f"{flag} {path} must be a 3D volume, got shape {array.shape}")
    return array, affine


def run(args: argparse.Namespace) -> int:
    from ..io import atomic_path, save_nifti, writable_dir
    from ..lesions import LESIONS_FILENAME, LESIONS_JSON_FILENAME, check_diagnosis, insert_lesions, read_lesion_specs
    from ..subject_files import CT_FILENAME, ORGAN_NAMES_FILENAME, ORGANS_FILENAME, PET_FILENAME

    check_seed(args.seed, "--seed")
    if (args.diagnosis is None) == (args.lesions is None):
        raise InputError("give exactly one of --diagnosis D or --lesions SPEC.json")
    specs = read_lesion_specs(args.lesions) if args.lesions is not None else None
    diagnosis = check_diagnosis(args.diagnosis) if args.diagnosis is not None else None
    out = Path(args.out)
    outputs = {out / name for name in (CT_FILENAME, PET_FILENAME, LESIONS_FILENAME, LESIONS_JSON_FILENAME)}
    if args.organs is not None:
        outputs |= {out / ORGANS_FILENAME, out / ORGAN_NAMES_FILENAME}
    for flag, path in (("--ct", args.ct), ("--pet", args.pet), ("--organs", args.organs),
                       ("--lesions", args.lesions)):
        if path is not None and Path(path).resolve() in {o.resolve() for o in outputs}:
            raise InputError(f"{flag} {path} would be overwritten by the output: choose another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    ct = _load("--ct", args.ct)
    pet = _load("--pet", args.pet)
    if not _same_grid(ct, pet):
        raise InputError(f"--ct and --pet are on different grids (CT {_grid(ct)}, PET {_grid(pet)}): resample the CT "
                         f"onto the PET grid first (AutoPET's CTres.nii.gz is that)")
    organs = None
    if args.organs is not None:
        organ_volume = _load("--organs", args.organs, np.int32)
        if not _same_grid(organ_volume, ct):
            raise InputError(f"--organs is on a different grid ({_grid(organ_volume)}) from the CT ({_grid(ct)})")
        organs = organ_volume[0]
    result = insert_lesions(ct[0], pet[0], ct[1], organs, diagnosis=diagnosis, lesions=specs, generator=args.seed)
    writable_dir(out, what="--out")
    result.save(out)
    if organs is not None:
        label_dtype = np.uint8 if organs.min() >= 0 and organs.max() <= 255 else np.int16
        save_nifti(organs, ct[1], out / ORGANS_FILENAME, dtype=label_dtype, description="organ labels (copy)")
        sidecar = Path(args.organs).with_name(ORGAN_NAMES_FILENAME)
        if sidecar.is_file():  # the id -> name table the phantom and generate write beside their labels
            with atomic_path(out / ORGAN_NAMES_FILENAME) as tmp:
                shutil.copyfile(sidecar, tmp)
    logger.info("lesions: %s", [(r["id"], r["site"], r["suv_max"]) for r in result.records])
    print(f"wrote {len(result.records)} lesion{'' if len(result.records) == 1 else 's'} to {out}")
    return 0
