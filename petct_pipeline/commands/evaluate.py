"""``petct evaluate``: organ volumes and uptake of a generated cohort against a reference, by subgroup, and its
image-level realism, diversity and memorisation."""

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
        "evaluate",
        help="compare generated PET/CT with a reference cohort (organ volumes, SUV, subgroups, plots)",
        description="Segment every subject of a generated cohort (`petct generate --cohort` output) and of a "
        "reference (AutoPET layout, e.g. `petct phantom` output, or another generated cohort), measure organ "
        "volume, SUVmean/max/peak and mean HU, and compare the two per demographic subgroup with statistics "
        "and plots. Also checks image-level realism: a Fréchet distance of the organ segmenter's encoder "
        "features (with its floor between two halves of the reference), MS-SSIM diversity among generated "
        "samples sharing demographics, and with --train-reference a memorisation audit (near copies of "
        "training subjects). Writes subjects.csv, summary.csv, summary.md, anova.csv, trends.csv, "
        "image_checks.json, evaluation.json, plots/*.png, report.md (and memorisation.csv) into --out.",
    )
    parser.add_argument("--generated", type=Path, required=True, help="generated cohort folder (or AutoPET layout)")
    parser.add_argument("--reference", type=Path, required=True, help="reference folder (AutoPET layout or cohort)")
    parser.add_argument("--segmenter", default=None,
                        help="labels (label maps stored with the volumes), totalsegmentator[:fast] (needs the "
                        "package and its weights) or model:PATH (a model trained with training/train.py "
                        "--stage seg); default: the shipped phantom-trained segmenter "
                        "(model:checkpoints/petct-phantom-seg, or $PETCT_SEGMENTER), else labels")
    parser.add_argument("--reference-segmenter", default=None,
                        help="segmenter for the reference only (default: the same as --segmenter)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--subgroups", default="sex_age,bmi",
                        help="comma-separated subgroup families from all, sex, age, sex_age, bmi "
                        "(default sex_age,bmi; 'all' is always included)")
    parser.add_argument("--age-split", type=float, default=65.0,
                        help="adult: age <= this, elder: age > this (years; default 65)")
    parser.add_argument("--bmi-edges", default="25,30", help="BMI band edges in kg/m^2 (default 25,30)")
    parser.add_argument("--organs", default=None,
                        help="comma-separated TotalSegmentator organ names or groups (default: liver, spleen, "
                        "kidney_left, kidney_right, heart, lungs, brain, urinary_bladder, aorta)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--train-reference", type=Path, default=None, metavar="DIR",
                        help="the model's training cohort (any layout --reference takes): audit memorisation, "
                        "i.e. each generated subject's distance to its nearest training subject against the "
                        "held-out reference subjects' distances; writes memorisation.csv")
    parser.add_argument("--feature-model", type=Path, default=None, metavar="PATH",
                        help="organ segmenter whose encoder features the Fréchet distance and the memorisation "
                        "audit use (default: the shipped checkpoints/petct-phantom-seg, or $PETCT_SEGMENTER)")
    parser.add_argument("--no-realism", action="store_true",
                        help="skip the Fréchet distance and MS-SSIM diversity (not with --train-reference)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate
    from ..evaluation.coverage import OK
    from ..evaluation.markdown import realism_lines
    from ..evaluation.subgroups import SubgroupScheme, parse_edges, parse_families
    from ..organs import EVALUATION_ORGANS

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    scheme = SubgroupScheme(families=parse_families(args.subgroups), age_split=args.age_split,
                            bmi_edges=parse_edges(args.bmi_edges))
    organs = EVALUATION_ORGANS
    if args.organs:
        organs = tuple(name.strip() for name in args.organs.split(",") if name.strip())
    result = evaluate(
        args.generated, args.reference, out=args.out, segmenter=args.segmenter or _default_segmenter(),
        reference_segmenter=args.reference_segmenter, workers=args.workers, scheme=scheme, organs=organs,
        plots=not args.no_plots, train_reference=args.train_reference, feature_model=args.feature_model,
        realism=not args.no_realism,
    )
    all_rows = [r for r in result.summary if r["subgroup"] == "all" and r["metric"] in ("volume_ml", "suv_mean")
                and r["organ"] != "body"]
    worst = max(all_rows, key=lambda r: abs(r["deviation_pct"]) if r["deviation_pct"] == r["deviation_pct"] else -1,
                default=None)
    print(f"evaluated {len({(r['cohort'], r['subject'], r['study']) for r in result.subjects})} subjects in "
          f"{result.seconds:.1f} s; report: {result.out_dir / 'report.md'}", file=sys.stdout)
    if worst is not None and worst["deviation_pct"] == worst["deviation_pct"]:
        print(f"largest deviation (all subjects, volume/SUVmean): {worst['organ']} {worst['metric']} "
              f"{worst['deviation_pct']:+.1f}%", file=sys.stdout)
    missing = [f"{r['organ']} ({r['status']})" for r in all_rows if r["metric"] == "volume_ml" and r["status"] != OK]
    if missing:
        print(f"not compared (all subjects): {', '.join(missing)}; counts in summary.csv", file=sys.stdout)
    if result.realism:
        for line in realism_lines(result.realism):
            print(line, file=sys.stdout)
    return 0


def _default_segmenter() -> str:
    from ..checkpoints import default_segmenter

    path = default_segmenter()
    return f"model:{path}" if path is not None else "labels"
