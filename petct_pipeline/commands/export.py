"""``petct export``: a generated cohort, phantom population or AutoPET dataset as nnU-Net v2, AutoPET or DICOM.

Every subject is checked before the first file is written (its labels, their grid, its names), so bad input
is one line naming the subject and the problem, exit code 2, and nothing written. Each subject is then
written under a temporary name and renamed into place; a rerun into the same folder skips the subjects
already there (docs/export.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import InputError
from . import SubParsers

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: SubParsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="write a cohort as an nnU-Net v2 dataset, the AutoPET layout or DICOM PET/CT + SEG",
        description="Export a generated cohort (petct generate --cohort), a phantom population (petct phantom) or "
        "an AutoPET-layout dataset. nnunet: DatasetNNN_Name/ with imagesTr/{case}_0000 (CT, HU), _0001 (PET, SUV), "
        "labelsTr/{case} and dataset.json. autopet: PETCT_*/<study>/{CT,CTres,PET,SUV,SEG}.nii.gz with "
        "Metadata.csv and demographics.csv. dicom: <id>/<study>/{CT,PET,SEG}/ series on one Frame of Reference, "
        "PET in BQML with the headers a standard SUVbw computation needs. A non-empty --out is refused unless it "
        "holds this same export (then it resumes) or --overwrite is given.",
    )
    parser.add_argument("--format", required=True, metavar="nnunet|autopet|dicom", help="output format")
    parser.add_argument("--input", type=Path, required=True, metavar="DIR",
                        help="generated cohort, phantom population or AutoPET-layout folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (nnunet: the nnUNet_raw folder; DatasetNNN_Name/ goes inside)")
    parser.add_argument("--labels", default="lesions", metavar="lesions|organs",
                        help="label set every subject must have: lesions (0/1, as autoPET; a subject without "
                        "lesions gets an all-zero label) or organs (TotalSegmentator names). Default lesions")
    parser.add_argument("--dataset-id", default=None, metavar="N",
                        help="nnunet: dataset id 1..999 (default 500)")
    parser.add_argument("--dataset-name", default=None, metavar="NAME",
                        help="nnunet: dataset name (default PETCTSynthetic)")
    parser.add_argument("--injected-dose-mbq", default="314.7", metavar="MBQ",
                        help="injected FDG activity for subjects whose input records none (default 314.7, "
                        "AutoPET's mean); sets PET Bq/mL (autopet) and the DICOM dose")
    parser.add_argument("--uptake-time-min", default="60", metavar="MIN",
                        help="injection-to-scan time for subjects whose input records none (default 60)")
    parser.add_argument("--overwrite", action="store_true",
                        help="empty a non-empty output folder first (nnunet: the dataset folder)")
    parser.set_defaults(func=run)
    return parser


def _number(text: str, flag: str, low: float, high: float, unit: str) -> float:
    """``text`` as a number in (low, high] (low itself allowed when 0), else InputError naming the flag."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag} {text!r} is not a number") from None
    if not (low < value <= high or value == low == 0):
        raise InputError(f"{flag} {text} is out of range: allowed ({low:g}, {high:g}] {unit}")
    return value


def run(args: argparse.Namespace) -> int:
    from ..export import check_format, export_dataset

    check_format(args.format)
    dose_mbq = _number(args.injected_dose_mbq, "--injected-dose-mbq", 0.001, 1e5, "MBq")
    uptake_min = _number(args.uptake_time_min, "--uptake-time-min", 0.0, 1440.0, "min")
    try:
        result = export_dataset(args.input, args.out, args.format, labels=args.labels, dataset_id=args.dataset_id,
                                dataset_name=args.dataset_name, overwrite=args.overwrite,
                                injected_dose_bq=dose_mbq * 1e6, uptake_time_s=uptake_min * 60.0,
                                progress=True if args.verbose else None)
    except ImportError as error:  # an optional dependency (pydicom, highdicom) is missing
        raise InputError(str(error)) from None
    print(f"exported {len(result.written)} subjects ({len(result.skipped)} already there) in {result.seconds:.1f} s",
          file=sys.stderr)
    print(result.root)
    return 0
