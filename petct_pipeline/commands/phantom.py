"""``petct phantom``: write a synthetic demographic PET/CT population in the AutoPET layout."""

from __future__ import annotations

import argparse
import logging

from ..errors import InputError
from ..seeds import check_seed
from . import SubParsers

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: SubParsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "phantom",
        help="simulate a synthetic whole-body FDG PET/CT population (AutoPET layout)",
        description="Simulate synthetic whole-body FDG PET/CT studies from demographics and write them in the "
        "AutoPET layout with TotalSegmentator organ labels. Either --n (a cohort sampled like AutoPET), "
        "--cohort FILE.csv (age,sex,weight,height[,seed,id]) or one subject (--age --sex --weight --height).",
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--n", type=int, help="number of subjects sampled like the AutoPET cohort")
    parser.add_argument("--cohort", help="CSV with columns age,sex,weight,height[,seed,id]")
    parser.add_argument("--age", type=float, help="single subject: age in years")
    parser.add_argument("--sex", help="single subject: M or F")
    parser.add_argument("--weight", type=float, help="single subject: weight in kg")
    parser.add_argument("--height", type=float, help="single subject: height in cm")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--spacing", type=float, default=2.0, help="isotropic voxel size in mm (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--lesions", action="store_true", help="add FDG-avid lesions (AutoPET's positive rate)")
    parser.add_argument(
        "--fov",
        choices=("whole_body", "model"),
        default="whole_body",
        help="whole_body: vertex to mid-thigh (default); model: geometry.body_slices from the vertex",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..cohort import read_cohort
    from ..demographics import Demographics
    from ..io import writable_dir
    from ..phantom.population import sample_population
    from ..phantom.writer import write_population

    single = [args.age, args.sex, args.weight, args.height]
    ids = None
    modes = sum([args.n is not None, args.cohort is not None, any(v is not None for v in single)])
    if modes != 1:
        raise InputError("give exactly one of --n N, --cohort FILE.csv, or --age/--sex/--weight/--height")
    check_seed(args.seed, "--seed")
    if args.workers < 1:
        raise InputError(f"--workers={args.workers} is out of range: must be >= 1")
    if not 1.0 <= args.spacing <= 12.0:
        raise InputError(f"--spacing={args.spacing:g} is out of range: allowed range [1, 12] mm")
    if args.n is not None:
        if args.n < 1:
            raise InputError(f"--n={args.n} is out of range: the number of subjects must be >= 1")
        subjects = sample_population(args.n, args.seed)
    elif args.cohort is not None:
        rows = read_cohort(args.cohort)
        subjects, ids = [(row.demographics, row.seed) for row in rows], [row.id for row in rows]
    else:
        missing = [name for name, v in zip(("--age", "--sex", "--weight", "--height"), single) if v is None]
        if missing:
            raise InputError(f"single subject needs {', '.join(missing)} as well")
        subjects = [(Demographics(age=args.age, sex=args.sex, weight=args.weight, height=args.height), args.seed)]
    writable_dir(args.out, what="--out")  # fail before any simulation
    studies = write_population(
        subjects,
        args.out,
        seed=args.seed,
        workers=args.workers,
        lesions=args.lesions,
        spacing=args.spacing,
        fov=args.fov,
        ids=ids,
    )
    print(f"wrote {len(studies)} synthetic stud{'y' if len(studies) == 1 else 'ies'} to {args.out}")
    return 0
