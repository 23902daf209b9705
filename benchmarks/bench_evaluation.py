"""How long ``petct evaluate`` takes for N subjects, and the Dice of a ``model:PATH`` organ segmenter.

Writes a phantom population (``petct_pipeline.phantom``, AutoPET layout with organ labels) at
``--spacing`` mm, then times ``evaluate()`` of the population against itself with the ``labels``
segmenter (``--workers`` processes; plots timed separately). With ``--seg-model PATH`` it also
times the model segmenter on the same subjects and reports its Dice per organ against the
phantoms' label maps (held-out data for a model trained on other phantoms).

    python benchmarks/bench_evaluation.py                                  # 16 subjects at 4 mm
    python benchmarks/bench_evaluation.py --n 32 --spacing 2 --workers 2
    python benchmarks/bench_evaluation.py --seg-model runs/seg/organ_segmenter --n 8 --spacing 8

Results: benchmarks/results/evaluation.{json,md}, one run per configuration (``--tag`` labels it).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

TIMING_HEADER = ["segmenter", "plots", "subjects", "wall s", "s/subject", "load+segment+measure s/subject"]


def _timing_cells(r: dict[str, Any]) -> list[str]:
    return [r["segmenter"], "yes" if r["plots"] else "no", str(r["subjects"]), str(r["wall_s"]),
            str(r["s_per_subject"]), str(r["measure_s_per_subject"])]


def render_markdown(results: dict[str, Any]) -> str:
    """The run's timing table and, with a model segmenter, its Dice per organ."""
    n, spacing, dice = results["subjects_per_cohort"], results["phantom_spacing_mm"], results["dice"]
    lines = [f"Evaluation of {n} + {n} phantom subjects at {spacing:g} mm (grid e.g. "
             f"{'x'.join(map(str, results['phantom_shape_example']))}), {results['workers']} worker(s):", "",
             *harness.markdown_table(TIMING_HEADER, [_timing_cells(r) for r in results["evaluation"]])]
    if dice:
        lines += ["", f"Dice of `{dice['model']}` ({dice['model_spacing_mm']:g} mm model grid) on {dice['studies']} "
                  "phantoms, measured on their own grid:", "",
                  *harness.markdown_table(list(dice["dice"]),
                                          [["–" if v is None else f"{v:.3f}" for v in dice["dice"].values()]])]
    return "\n".join(lines) + "\n"


def headline_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The collated table's rows: one per timed evaluation; the model segmenter's row adds its mean Dice."""
    rows = harness.table_rows(TIMING_HEADER, [_timing_cells(r) for r in results["evaluation"]])
    dice = results["dice"]
    if dice:
        values = [v for v in dice["dice"].values() if v is not None]
        rows[-1]["mean Dice"] = f"{sum(values) / len(values):.3f}"
    return rows


BENCHMARK = harness.Benchmark("evaluation", __doc__, __file__, render_markdown, headline_rows)


def run_config(n: int, spacing: float, workers: int, seed: int, seg_model: Path | None) -> dict[str, Any]:
    return {"subjects_per_cohort": n, "phantom_spacing_mm": spacing, "workers": workers, "seed": seed,
            "seg_model": seg_model and harness.relative(seg_model)}


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, tag=True)
    parser.add_argument("--n", type=int, default=16, help="subjects (phantoms) per cohort")
    parser.add_argument("--spacing", type=float, default=4.0, help="phantom voxel size in mm")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--seg-model", type=Path, default=None, help="also time and score this model segmenter")
    parser.add_argument("--keep", type=Path, default=None, help="write phantoms and reports here instead of a temp dir")
    args = parser.parse_args(argv)

    from petct_pipeline.evaluation import evaluate
    from petct_pipeline.models import OrganSegmentationModel
    from petct_pipeline.organs import EVALUATION_ORGANS
    from petct_pipeline.phantom import sample_population, write_population
    from training.seg_validation import held_out_dice

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_evaluation_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    studies = write_population(sample_population(args.n, seed=args.seed), work / "phantoms", seed=args.seed,
                               spacing=args.spacing, workers=args.workers)
    phantom_seconds = time.perf_counter() - started
    from petct_pipeline.io import load_nifti

    shape = load_nifti(studies[0] / "SUV.nii.gz")[0].shape

    rows = []
    for plots in (False, True):
        result = evaluate(work / "phantoms", work / "phantoms", out=work / f"report_plots{int(plots)}",
                          segmenter="labels", workers=args.workers, plots=plots)
        info = json.loads((result.out_dir / "evaluation.json").read_text())
        rows.append({"segmenter": "labels", "plots": plots, "subjects": info["timing"]["subjects"],
                     "wall_s": info["timing"]["wall_seconds"],
                     "s_per_subject": info["timing"]["seconds_per_subject"],
                     "measure_s_per_subject": info["timing"]["measure_seconds_per_subject"]})

    dice = None
    if args.seg_model is not None:
        result = evaluate(work / "phantoms", work / "phantoms", out=work / "report_model",
                          segmenter=f"model:{args.seg_model}", reference_segmenter="labels", workers=args.workers,
                          plots=False)
        info = json.loads((result.out_dir / "evaluation.json").read_text())
        rows.append({"segmenter": "model (generated side) + labels", "plots": False,
                     "subjects": info["timing"]["subjects"], "wall_s": info["timing"]["wall_seconds"],
                     "s_per_subject": info["timing"]["seconds_per_subject"],
                     "measure_s_per_subject": info["timing"]["measure_seconds_per_subject"]})
        model = OrganSegmentationModel.from_pretrained(args.seg_model)
        dice = held_out_dice(model, work / "phantoms", EVALUATION_ORGANS)
        dice["model"] = str(args.seg_model)
        dice["model_spacing_mm"] = model.spacing_mm
        dice["trained_info"] = model.info

    results = {
        "subjects_per_cohort": args.n,
        "phantom_spacing_mm": args.spacing,
        "phantom_shape_example": list(shape),
        "workers": args.workers,
        "phantom_write_s": round(phantom_seconds, 2),
        "evaluation": rows,
        "dice": dice,
    }
    config = run_config(args.n, args.spacing, args.workers, args.seed, args.seg_model)
    print(BENCHMARK.save(args.tag, config, results, argv), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
