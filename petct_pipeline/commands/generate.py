"""``petct generate``: one subject from flags, or a cohort CSV with one output folder per row.

A cohort runs in :mod:`petct_pipeline.cohort_generation`: sharded over the processes of an
``accelerate launch ... -m petct_pipeline generate --cohort ...`` and over ``--shard K/N`` jobs,
resumable from ``DIR/manifest.jsonl``, one failing row recorded without stopping the others.
"""

from __future__ import annotations

import argparse
import logging
import os
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
    given = parser.add_argument_group(
        "PET from a given CT", "With --ct, generate the PET that fits that CT (the CT channel is known, the PET "
        "sampled): pet_suv.nii.gz on exactly the CT's grid, ct.nii.gz (the input, values unchanged), organs and "
        "metadata.json (placement in the body, what was done). docs/ct_to_pet.md.")
    given.add_argument("--ct", type=Path, default=None, metavar="PATH",
                       help="the CT: a NIfTI file or a folder holding one DICOM series (HU, any orientation, "
                       "0.3-10 mm)")
    given.add_argument("--ct-offset-mm", type=float, default=None, metavar="MM",
                       help="distance from the vertex (top of the head) down to the CT's top slice; default: "
                       "estimated from the CT's body and lung profiles")
    given.add_argument("--ct-method", default=None, choices=("replacement", "repaint"),
                       help="stage-1 conditioning: replacement (default) or RePaint resampling")
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
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:1, mps (default cpu; under accelerate launch with several "
                        "processes, each process's own device, and cuda means each process's own GPU)")
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
    scale = parser.add_argument_group(
        "cohorts at scale", "Run under `accelerate launch [--multi_gpu --num_processes N ...] -m petct_pipeline "
        "generate --cohort ...` to split the rows over processes (GPUs, nodes). A rerun skips rows that "
        "DIR/manifest.jsonl records as complete and whose files still have their sha256.")
    scale.add_argument("--shard", default=None, metavar="K/N",
                       help="generate only shard K of N (1-based; rows K, K+N, K+2N, ...): one task of a job array")
    scale.add_argument("--batch-size", type=int, default=1, metavar="N",
                       help="cohort rows per pipeline call (default 1); each row keeps its own generator, so its "
                       "files are the same bytes at any batch size")
    scale.add_argument("--overwrite", action="store_true",
                       help="regenerate every row, even those already complete in --out")
    parser.set_defaults(func=run)


def _subjects(args: argparse.Namespace) -> list:
    """The planned subjects (``cohort_generation.Subject``): every cohort row, or the one subject of the flags."""
    from ..cohort_generation import Subject, plan_subjects

    single = [args.age, args.sex, args.weight, args.height]
    if args.cohort is not None:
        if any(v is not None for v in single):
            raise InputError("give either --cohort or --age/--sex/--weight/--height, not both")
        from ..cohort import read_cohort

        rows = read_cohort(args.cohort, diagnoses=DIAGNOSES)
        if args.lesions is not None and any(row.diagnosis for row in rows):
            raise InputError("--lesions places the same lesions in every subject; remove the cohort's diagnosis "
                             "column or --lesions")
        return plan_subjects(rows, args.seed, args.diagnosis)
    for flag, given in (("--shard", args.shard is not None), ("--batch-size", args.batch_size != 1)):
        if given:
            raise InputError(f"{flag} splits a --cohort; one subject from --age/--sex/--weight/--height has none")
    missing = [f"--{name}" for name, v in zip(("age", "sex", "weight", "height"), single) if v is None]
    if missing:
        raise InputError(f"missing {', '.join(missing)} (or give --cohort FILE.csv)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("accelerate launch with several processes splits a --cohort; generate one subject in "
                         "one process")
    demographics = Demographics(age=args.age, sex=args.sex, weight=args.weight, height=args.height)
    return [Subject(0, "subject", demographics, args.seed, args.diagnosis)]


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
    from diffusers.utils import logging as diffusers_logging

    from ..cohort_generation import Generation, check_batch_size, generate_outputs, parse_shard, run_cohort
    from ..organ_labels import organ_segmenter
    from ..pipeline_petct import PETCTPipeline, validate_sampling_arguments

    check_seed(args.seed, "--seed")
    if args.ct is not None:
        return run_ct(args)
    for flag, value in (("--ct-offset-mm", args.ct_offset_mm), ("--ct-method", args.ct_method)):
        if value is not None:
            raise InputError(f"{flag} goes with --ct PATH (the PET of a given CT)")
    if args.diagnosis is not None:
        args.diagnosis = check_diagnosis(args.diagnosis)
    lesion_specs = read_lesion_specs(args.lesions) if args.lesions is not None else None
    shard = parse_shard(args.shard) if args.shard is not None else None
    batch_size = check_batch_size(args.batch_size)
    subjects = _subjects(args)  # validate every row before any expensive work
    if not args.labels and (lesion_specs is not None or any(s.diagnosis not in (None, "NEGATIVE") for s in subjects)):
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
    if args.device is not None:
        resolve_device(args.device)  # a bad --device is one line before anything is loaded
    writable_dir(args.out, what="--out")
    if not args.verbose:
        diffusers_logging.disable_progress_bar()
    segmenter = organ_segmenter() if args.labels else None  # a missing segmenter fails before sampling
    generation = Generation(call_kwargs, segmenter, lesion_specs)
    model = args.model or default_model()

    if args.cohort is None:
        pipe = PETCTPipeline.from_pretrained(model).to(resolve_device(args.device or "cpu"))
        # sampling progress on an interactive terminal (or with -v); quiet in pipes and logs
        pipe.set_progress_bar_config(disable=not (args.verbose or sys.stderr.isatty()), leave=False)
        (output,) = generate_outputs(pipe, subjects, generation)
        output.save(args.out)
        logger.info("wrote %s", args.out)
        print(args.out)
        return 0

    state = _process_state()
    device = _cohort_device(args.device, state)
    pipe = PETCTPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)  # one bar for the whole cohort instead
    return run_cohort(pipe, subjects, generation, args.out, state=state, device=device, shard=shard,
                      batch_size=batch_size, overwrite=args.overwrite, cohort_name=str(args.cohort))


def run_ct(args: argparse.Namespace) -> int:
    """``petct generate --ct PATH ...``: the PET that fits a given CT, every input checked before writing."""
    from diffusers.utils import logging as diffusers_logging

    from ..conditional import check_offset, read_ct
    from ..organ_labels import organ_segmenter
    from ..pipeline_petct import PETCTPipeline, validate_sampling_arguments

    for flag, given in (("--cohort", args.cohort is not None), ("--diagnosis", args.diagnosis is not None),
                        ("--lesions", args.lesions is not None), ("--shard", args.shard is not None),
                        ("--batch-size", args.batch_size != 1)):
        if given:
            raise InputError(f"--ct generates the PET of one given CT; {flag} is not supported with it")
    missing = [f"--{name}" for name in ("age", "sex", "weight", "height") if getattr(args, name) is None]
    if missing:
        raise InputError(f"--ct needs the subject's demographics: missing {', '.join(missing)}")
    subject = Demographics(age=args.age, sex=args.sex, weight=args.weight, height=args.height)
    offset = check_offset(args.ct_offset_mm)
    call_kwargs = _call_kwargs(args)
    call_kwargs.pop("sr_chunk_size", None)
    validate_sampling_arguments(call_kwargs.get("num_inference_steps", 1), call_kwargs.get("sr_num_inference_steps", 1),
                                call_kwargs.get("guidance_scale", 1.0), 0.0,
                                call_kwargs.get("back_projection_iterations", 0), call_kwargs.get("prior_scale", 0.0))
    if args.device is not None:
        resolve_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if Path(args.ct).resolve().parent == out.resolve() and Path(args.ct).name in ("ct.nii.gz", "pet_suv.nii.gz"):
        raise InputError(f"--ct {args.ct} would be overwritten by the output: choose another --out")
    ct = read_ct(args.ct)  # every check of the CT before the model is loaded
    if not args.verbose:
        diffusers_logging.disable_progress_bar()
    segmenter = organ_segmenter() if args.labels else None
    pipe = PETCTPipeline.from_pretrained(args.model or default_model()).to(resolve_device(args.device or "cpu"))
    pipe.set_progress_bar_config(disable=not (args.verbose or sys.stderr.isatty()), leave=False)
    import torch

    output = pipe.pet_from_ct(ct, subject, ct_offset_mm=offset, generator=torch.Generator().manual_seed(args.seed),
                              method=args.ct_method or "replacement", segmenter=segmenter, **call_kwargs)
    writable_dir(out, what="--out")
    output.save(out)
    logger.info("wrote %s", out)
    print(out)
    return 0


def _process_state():
    """accelerate's ``PartialState``: this process's rank among those ``accelerate launch`` started (or one)."""
    from datetime import timedelta

    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from ..cohort_generation import PROCESS_GROUP_TIMEOUT_S

    # CPU processes (gloo) as accelerate's own state decides them: ACCELERATE_USE_CPU, or no GPU to run on
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    return PartialState(cpu=cpu, timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))


def _cohort_device(name: str | None, state):
    """``--device``, else cpu; with several processes, unset or a bare ``cuda`` is each process's own device."""
    several = state.num_processes > 1
    if name is None:
        return resolve_device(str(state.device) if several else "cpu")
    if several and name == "cuda":
        return resolve_device(f"cuda:{state.local_process_index}")
    return resolve_device(name)
