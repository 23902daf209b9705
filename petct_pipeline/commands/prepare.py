"""``petct prepare``: demographics from DICOM headers, dataset checks, and the preprocessing cache.

Three uses, chosen by the flags given:

    petct prepare --dicom-root DICOM/ --out demographics.csv
        read PatientWeight/Size/Age/Sex (+ dose, uptake time) from DICOM headers (needs pydicom)
    petct prepare --data-dir DATA/ [--demographics demographics.csv]
        scan an AutoPET or nnU-Net folder and list usable and skipped studies
    petct prepare --data-dir DATA/ --cache CACHE/ --spacing 8 [--shape 56 56 96] [--workers 4]
        also preprocess every usable study into CACHE/<config hash>/<data set>/ (index.json + arrays)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import InputError
from . import SubParsers

logger = logging.getLogger(__name__)


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="prepare training data: DICOM demographics, dataset scan, preprocessing cache",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n", 2)[2],
    )
    dicom = parser.add_argument_group("demographics from DICOM")
    dicom.add_argument("--dicom-root", type=Path,
                       help="folder of DICOM series (TCIA layout <subject>/<study>/<series>)")
    dicom.add_argument("--out", type=Path, help="demographics CSV to write (with --dicom-root)")
    data = parser.add_argument_group("dataset scan and cache")
    data.add_argument("--data-dir", type=Path, help="AutoPET-layout or nnU-Net-layout data folder")
    data.add_argument("--demographics", type=Path, help="demographics CSV (default: DATA/demographics.csv)")
    data.add_argument("--layout", choices=("auto", "autopet", "nnunet"), default="auto", help="default: detect")
    data.add_argument("--verify", choices=("header", "full"), default="header",
                      help="image check while scanning: header + gzip size trailer (fast) or full decompression")
    data.add_argument("--summary", type=Path, help="also write the scan/cache summary as JSON here")
    data.add_argument("--cache", type=Path, help="cache root; arrays go to CACHE/<config hash>/<data set>/")
    data.add_argument("--spacing", type=float, default=8.0,
                      help="isotropic voxel size in mm: 2, 4, 8 or 16 (default 8)")
    data.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                      help="grid in voxels (default: 448 x 448 x 768 mm at --spacing, e.g. 56 56 96 at 8 mm)")
    data.add_argument("--workers", type=int, default=1, help="preprocessing processes (default 1)")
    data.add_argument("--keep-outside-body", action="store_true",
                      help="keep the table and everything outside the body mask (default: air / zero uptake)")
    data.add_argument("--ct-source", choices=("auto", "ctres", "ct"), default="auto",
                      help="CT to use: CTres (already on the PET grid) if present, else CT resampled")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dicom_root is not None:
        if args.data_dir is not None or args.cache is not None:
            raise InputError("--dicom-root writes a demographics CSV; run --data-dir/--cache as a second command")
        return _dicom(args)
    if args.data_dir is None:
        raise InputError("give --dicom-root DIR --out FILE.csv, or --data-dir DIR [--cache DIR --spacing MM]")
    return _data(args)


def _dicom(args: argparse.Namespace) -> int:
    if args.out is None:
        raise InputError("--dicom-root needs --out FILE.csv")
    from ..data.dicom_demographics import read_dicom_demographics

    try:
        result = read_dicom_demographics(args.dicom_root)
    except ImportError as error:
        raise InputError(str(error)) from None
    result.write_csv(args.out)
    print(result.summary_text(), file=sys.stderr)
    print(args.out)
    return 0


def _data(args: argparse.Namespace) -> int:
    from ..data.scan import scan_dataset
    from ..io import write_json

    scan = scan_dataset(args.data_dir, demographics_csv=args.demographics, layout=args.layout, verify=args.verify)
    print(scan.summary_text(), file=sys.stderr)
    summary = scan.summary()
    if args.cache is not None:
        from ..data.cache import build_cache
        from ..data.preprocess import PreprocessConfig, default_shape

        if args.workers < 0:
            raise InputError(f"--workers must be >= 0, got {args.workers}")
        spacing = int(args.spacing) if float(args.spacing).is_integer() else args.spacing
        config = PreprocessConfig(
            spacing=spacing,
            shape=tuple(args.shape) if args.shape else default_shape(spacing),
            mask_outside_body=not args.keep_outside_body,
            ct_source=args.ct_source,
        )
        index = build_cache(scan, args.cache, config, num_workers=args.workers, progress=True)
        summary = {"cache": str(index.directory), "config": config.to_dict(), **index.summary,
                   "skipped_studies": index.skipped}
        print(
            f"cache {index.directory}: {len(index)} studies ({index.summary['processed']} processed, "
            f"{index.summary['reused']} reused), {len(index.skipped)} skipped",
            file=sys.stderr,
        )
        print(index.directory)
    if args.summary is not None:
        write_json(summary, args.summary)
    if not scan.studies:
        raise InputError(f"no usable study in {args.data_dir}; see the reasons above")
    return 0
