"""``petct generate``: one subject from flags, or a cohort CSV with one output folder per row."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

from ..checkpoints import default_model
from ..demographics import Demographics
from ..devices import resolve_device
from ..errors import InputError
from ..io import writable_dir
from ..lesions import DIAGNOSES, check_diagnosis, read_lesion_specs
from ..seeds import MAX_SEED, check_seed
from . import SubParsers

logger = logging.getLogger(__name__)

COHORT_COLUMNS = ("id", "age", "sex", "weight", "height", "seed")


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="synthesise PET/CT from demographics",
        description="Synthesise a whole-body FDG PET/CT (ct.nii.gz in HU, pet_suv.nii.gz in SUVbw, "
        "metadata.json, and organ labels organs.nii.gz + organs.json from the shipped organ segmenter) for one "
        "subject given by --age/--sex/--weight/--height, or for every row of --cohort FILE.csv (columns "
        "age,sex,weight,height[,seed,id]; one folder per row).",
    )
    parser.add_argument("--age", type=float, help="age in years")
    parser.add_argument("--sex", help="M or F (male/female accepted)")
    parser.add_argument("--weight", type=float, help="weight in kg")
    parser.add_argument("--height", type=float, help="height in cm")
    parser.add_argument("--cohort", type=Path, help="CSV with columns age,sex,weight,height[,seed,id]")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"random seed in [0, {MAX_SEED}] (cohort: base seed for rows without one)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--model", default=None, help="pipeline folder or hub repo id (default: shipped weights)")
    parser.add_argument("--steps", type=int, default=None, help="stage-1 sampling steps")
    parser.add_argument("--sr-steps", type=int, default=None, help="super-resolution sampling steps")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="classifier-free guidance of stage 1 (1 = off; default: the pipeline's)")
    parser.add_argument("--prior-scale", type=float, default=None,
                        help="weight of the pipeline's demographic prior in stage 1 (0 = off; default: the "
                        "pipeline's, 0 when it has no prior)")
    parser.add_argument("--sr-chunk-size", type=int, default=None, help="SR z-chunk length in slices")
    parser.add_argument("--back-projection-iterations", type=int, default=None,
                        help="iterations correcting the SR output to keep the stage-1 volume's HU and SUV "
                        "(0 = off; default: the pipeline's)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps (default cpu)")
    truth = parser.add_mutually_exclusive_group()
    truth.add_argument("--diagnosis", default=None, metavar="|".join(DIAGNOSES),
                       help="insert FDG-avid lesions sampled as AutoPET's positives of this diagnosis present "
                       "(default NEGATIVE: no lesions; a cohort CSV may give a diagnosis column); writes "
                       "lesions.nii.gz and lesions.json (docs/lesions.md)")
    truth.add_argument("--lesions", type=Path, default=None, metavar="SPEC.json",
                       help="insert these lesions instead: a JSON list of {organ|site, center_mm, diameter_mm, "
                       "suv_max|suv_mean|lesion_to_background, hu, shape, necrotic_fraction}")
    parser.add_argument("--no-labels", dest="labels", action="store_false",
                        help="do not write organs.nii.gz / organs.json (labels come from the organ segmenter, "
                        "checkpoints/petct-phantom-seg or $PETCT_SEGMENTER; about 1 s per subject)")
    parser.set_defaults(func=run)


def _subjects(args: argparse.Namespace) -> list[tuple[str, Demographics, int, str | None]]:
    single = [args.age, args.sex, args.weight, args.height]
    if args.cohort is not None:
        if any(v is not None for v in single):
            raise InputError("give either --cohort or --age/--sex/--weight/--height, not both")
        from ..cohort import read_cohort

        rows = read_cohort(args.cohort, diagnoses=DIAGNOSES)
        if args.lesions is not None and any(row.diagnosis for row in rows):
            raise InputError("--lesions places the same lesions in every subject; remove the cohort's diagnosis "
                             "column or --lesions")
        seeds = [row.seed if row.seed is not None else check_seed(args.seed + index, "--seed + row index")
                 for index, row in enumerate(rows)]
        return [(row.id, row.demographics, seed, row.diagnosis or args.diagnosis) for row, seed in zip(rows, seeds)]
    missing = [f"--{name}" for name, v in zip(("age", "sex", "weight", "height"), single) if v is None]
    if missing:
        raise InputError(f"missing {', '.join(missing)} (or give --cohort FILE.csv)")
    demographics = Demographics(age=args.age, sex=args.sex, weight=args.weight, height=args.height)
    return [("subject", demographics, args.seed, args.diagnosis)]


def _call_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {
        "num_inference_steps": args.steps,
        "sr_num_inference_steps": args.sr_steps,
        "guidance_scale": args.guidance_scale,
        "sr_chunk_size": args.sr_chunk_size,
        "back_projection_iterations": args.back_projection_iterations,
        "prior_scale": args.prior_scale,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


def run(args: argparse.Namespace) -> int:
    import torch
    from diffusers.utils import logging as diffusers_logging

    from ..ground_truth import add_lesions
    from ..organ_labels import label_organs, organ_segmenter
    from ..pipeline_petct import PETCTPipeline, validate_sampling_arguments

    check_seed(args.seed, "--seed")
    if args.diagnosis is not None:
        args.diagnosis = check_diagnosis(args.diagnosis)
    lesion_specs = read_lesion_specs(args.lesions) if args.lesions is not None else None
    subjects = _subjects(args)  # validate every row before any expensive work
    if not args.labels and (lesion_specs is not None or any(s[3] not in (None, "NEGATIVE") for s in subjects)):
        raise InputError("--no-labels: lesions are placed by the organ labels; drop --no-labels or the lesions")
    call_kwargs = _call_kwargs(args)
    validate_sampling_arguments(
        call_kwargs.get("num_inference_steps", 1),
        call_kwargs.get("sr_num_inference_steps", 1),
        call_kwargs.get("guidance_scale", 1.0),
        0.0,
        call_kwargs.get("back_projection_iterations", 0),
        call_kwargs.get("prior_scale", 0.0),
    )
    writable_dir(args.out, what="--out")
    if not args.verbose:
        diffusers_logging.disable_progress_bar()
    segmenter = organ_segmenter() if args.labels else None  # a missing segmenter fails before sampling
    model = args.model or default_model()
    device = resolve_device(args.device)
    pipe = PETCTPipeline.from_pretrained(model).to(device)
    # sampling progress on an interactive terminal (or with -v); quiet in pipes and logs
    pipe.set_progress_bar_config(disable=not (args.verbose or sys.stderr.isatty()), leave=False)

    written = []
    for subject_id, demographics, seed, diagnosis in subjects:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        output = pipe(demographics, generator=generator, **call_kwargs)
        if segmenter is not None:
            label_organs(output, segmenter)
        if lesion_specs is not None or diagnosis is not None:
            add_lesions(output, diagnosis, lesion_specs, [seed], segmenter)
        folder = args.out if args.cohort is None else args.out / subject_id
        output.save(folder)
        written.append((subject_id, demographics, seed, diagnosis))
        logger.info("wrote %s", folder)
        print(folder)
    if args.cohort is not None:
        _write_cohort_index(args.out / "cohort.csv", written)
    return 0


def _write_cohort_index(path: Path, rows: list[tuple[str, Demographics, int, str | None]]) -> None:
    """cohort.csv beside the subjects; a ``diagnosis`` column only when some subject has one."""
    from ..io import atomic_path

    with_diagnosis = any(diagnosis for *_, diagnosis in rows)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((*COHORT_COLUMNS, "diagnosis") if with_diagnosis else COHORT_COLUMNS)
        for subject_id, d, seed, diagnosis in rows:
            row = [subject_id, f"{d.age:g}", d.sex, f"{d.weight:g}", f"{d.height:g}", seed]
            writer.writerow([*row, diagnosis or "NEGATIVE"] if with_diagnosis else row)
