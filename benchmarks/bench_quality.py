"""Quality of a pipeline against held-out phantoms, and how it changes with stage-1 sampling steps.

For each stage-1 step count it generates the held-out cohort's demographics with
``petct generate --cohort`` and compares the result with the held-out phantoms with
``petct evaluate`` (default segmenter: the shipped phantom-trained one, on both sides). A
small extra cohort (one demographic tuple, several seeds) measures sample diversity. Every
figure comes from the files those two commands write; this script only runs them and
tabulates ``summary.csv``, ``trends.csv`` and ``image_checks.json``.

    petct phantom --n 120 --seed 1000 --spacing 4 --fov model --workers 2 --out data/phantoms_heldout
    python benchmarks/bench_quality.py --sweep-limit 48     # all 120 at 32 steps; 8/16/32/64 on the first 48
    python benchmarks/bench_quality.py --steps --limit 8    # a quick look

Results: benchmarks/results/quality_<tag>.{json,md}; generated volumes and full reports
under --work (default runs/quality).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))

#: the subgroup family the targets are stated for, and the metrics they bound (target |deviation| %)
FAMILY = "sex_age"
#: seed offset of the phantom-twin baseline, far from the seeds of `petct phantom --n` populations
PHANTOM_TWIN_SEED = 50_000
TARGETS = {"volume_ml": 10.0, "suv_mean": 5.0}


def _run(command: list[str]) -> float:
    """Run a petct command (same interpreter), stream its output, return the wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "petct_pipeline.cli", *command], check=True, cwd=REPO)
    return time.perf_counter() - start


def _write_cohort(rows: list[dict[str, str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "age", "sex", "weight", "height", "seed"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def held_out_rows(reference: Path, limit: int | None) -> list[dict[str, str]]:
    """The reference's demographics (demographics.csv written by ``petct phantom``), one seed per row."""
    with open(reference / "demographics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = rows[:limit] if limit else rows
    return [{"id": r["subject"], "age": r["age"], "sex": r["sex"], "weight": r["weight"], "height": r["height"],
             "seed": str(index)} for index, r in enumerate(rows)]


def _model_spacing(model: str) -> float:
    """Output voxel size (mm) of a pipeline (folder or Hub id): base spacing / SR scale of its config."""
    from petct_pipeline import PETCTPipeline

    config = PETCTPipeline.load_config(model)
    return float(config["base_spacing"]) / int(config["sr_scale"])


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_deviations(report: Path) -> dict[str, Any]:
    """Deviation (%) of the generated mean per subgroup x organ for the target metrics, from summary.csv."""
    with open(report / "summary.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["family"] in (FAMILY, "all") and r["metric"] in TARGETS]
    table: dict[str, dict[str, dict[str, float]]] = {metric: {} for metric in TARGETS}
    for r in rows:
        table[r["metric"]].setdefault(r["subgroup"], {})[r["organ"]] = _float(r["deviation_pct"])
    worst = {}
    for metric, groups in table.items():
        values = [(abs(v), g, o) for g, organs in groups.items() for o, v in organs.items()
                  if o != "body" and math.isfinite(v)]
        worst[metric] = max(values) if values else (math.nan, None, None)
    return {"deviation_pct": table, "worst": {m: {"abs_pct": w[0], "subgroup": w[1], "organ": w[2]}
                                              for m, w in worst.items()}}


def read_trends(report: Path) -> dict[str, Any]:
    """Sign agreement of demographic trend coefficients where the reference's trend is significant."""
    with open(report / "trends.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["term"] != "intercept" and r["organ"] != "body"]
    significant = [r for r in rows if _float(r["reference_p"]) < 0.05]
    agree = [r for r in significant if math.copysign(1, _float(r["generated_coef"]))
             == math.copysign(1, _float(r["reference_coef"]))]
    wrong = [f"{r['organ']} {r['metric']} ~ {r['term']}" for r in significant if r not in agree]
    return {"significant_reference_trends": len(significant), "same_sign": len(agree), "opposite_sign": wrong}


def read_checks(report: Path) -> dict[str, Any]:
    checks = json.loads((report / "image_checks.json").read_text())
    generated = checks["nonfinite"]["generated"]
    return {"non_finite_voxels": generated["nonfinite_ct_voxels"] + generated["nonfinite_pet_voxels"],
            "wasserstein": checks["wasserstein"], "diversity": checks["diversity"]}


def main(argv: list[str] | None = None) -> int:
    from petct_pipeline.checkpoints import default_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped weights)")
    parser.add_argument("--reference", type=Path, default=REPO / "data" / "phantoms_heldout")
    parser.add_argument("--segmenter", default=None, help="petct evaluate --segmenter (default: its default)")
    parser.add_argument("--main-steps", type=int, default=32, help="stage-1 steps of the full evaluation")
    parser.add_argument("--steps", type=int, nargs="*", default=[8, 16, 32, 64], help="stage-1 steps to sweep")
    parser.add_argument("--sweep-limit", type=int, default=None, help="sweep on the first N subjects only")
    parser.add_argument("--sr-steps", type=int, default=None, help="SR steps (default: the pipeline's)")
    parser.add_argument("--back-projection-iterations", type=int, default=None,
                        help="SR back-projection iterations (default: the pipeline's, 0 = off)")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="classifier-free guidance of stage 1 (default: the pipeline's, 1 = off)")
    parser.add_argument("--prior-scale", type=float, default=None,
                        help="weight of the demographic prior in stage 1 (default: the pipeline's, 0 = off)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out subjects")
    parser.add_argument("--diversity-seeds", type=int, default=4, help="samples of one demographic tuple (0: skip)")
    parser.add_argument("--workers", type=int, default=2, help="petct evaluate --workers")
    parser.add_argument("--phantom-baseline", action="store_true",
                        help="also evaluate phantoms simulated for the same demographics (new anatomy and noise): "
                        "the deviations a perfect generator would show with this many subjects")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "quality")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args(argv)

    model = args.model or default_model()
    rows = held_out_rows(args.reference, args.limit)
    sweep_rows = rows[: args.sweep_limit] if args.sweep_limit else rows
    common = ["--model", model] + (["--sr-steps", str(args.sr_steps)] if args.sr_steps else [])
    common += ["--guidance-scale", f"{args.guidance_scale:g}"] if args.guidance_scale is not None else []
    common += ["--prior-scale", f"{args.prior_scale:g}"] if args.prior_scale is not None else []
    if args.back_projection_iterations is not None:
        common += ["--back-projection-iterations", str(args.back_projection_iterations)]
    segment = ["--segmenter", args.segmenter] if args.segmenter else []
    results: dict[str, Any] = {
        "model": model, "reference": str(args.reference), "subjects": len(rows), "family": FAMILY,
        "main_steps": args.main_steps, "sweep_subjects": len(sweep_rows), "targets_abs_pct": TARGETS,
        "sr_steps": args.sr_steps, "guidance_scale": args.guidance_scale,
        "prior_scale": args.prior_scale,
        "back_projection_iterations": args.back_projection_iterations,
        "segmenter": args.segmenter or "petct default",
        "machine": {"platform": platform.platform(), "python": platform.python_version()}, "sweep": {},
    }

    def measure(cohort_rows: list[dict[str, str]], steps: int, name: str, generate: bool = True) -> dict[str, Any]:
        generated, report = args.work / f"generated_{name}", args.work / f"report_{name}"
        seconds = math.nan
        if generate:
            cohort = _write_cohort(cohort_rows, args.work / f"cohort_{name}.csv")
            seconds = _run(["generate", "--cohort", str(cohort), "--out", str(generated), "--steps", str(steps),
                            *common])
        _run(["evaluate", "--generated", str(generated), "--reference", str(args.reference), "--out", str(report),
              "--workers", str(args.workers), "--no-plots", *segment])
        return {"subjects": len(cohort_rows), "generate_s": seconds,
                "generate_s_per_subject": seconds / len(cohort_rows), **read_deviations(report),
                "trends": read_trends(report), **read_checks(report)}

    main_name = f"steps{args.main_steps}"
    results["main"] = measure(rows, args.main_steps, main_name)
    _save(results, args.tag)
    if args.phantom_baseline:
        twins = [{**row, "seed": str(PHANTOM_TWIN_SEED + int(row["seed"]))} for row in rows]
        cohort = _write_cohort(twins, args.work / "cohort_phantom_twins.csv")
        spacing = _model_spacing(model)
        seconds = _run(["phantom", "--cohort", str(cohort), "--out", str(args.work / "generated_phantom_twins"),
                        "--spacing", f"{spacing:g}", "--fov", "model", "--workers", str(args.workers)])
        results["phantom_baseline"] = measure(twins, 0, "phantom_twins", generate=False)
        results["phantom_baseline"]["generate_s_per_subject"] = seconds / len(twins)
        _save(results, args.tag)
    for steps in args.steps:
        if steps == args.main_steps and len(sweep_rows) == len(rows):
            results["sweep"][str(steps)] = results["main"]
            continue
        if steps == args.main_steps:  # the first subjects of the main run: same seeds, no need to sample again
            subset = args.work / f"generated_{main_name}_first{len(sweep_rows)}"
            subset.mkdir(parents=True, exist_ok=True)
            for row in sweep_rows:
                link = subset / row["id"]
                if not link.exists():
                    link.symlink_to((args.work / f"generated_{main_name}" / row["id"]).resolve())
            run = measure(sweep_rows, steps, f"{main_name}_first{len(sweep_rows)}", generate=False)
            run["generate_s_per_subject"] = results["main"]["generate_s_per_subject"]
        else:
            run = measure(sweep_rows, steps, f"steps{steps}_first{len(sweep_rows)}")
        results["sweep"][str(steps)] = run
        _save(results, args.tag)
    if args.diversity_seeds > 1:
        first = rows[0]
        same = [{**first, "id": f"seed{seed}", "seed": str(seed)} for seed in range(args.diversity_seeds)]
        run = measure(same, args.main_steps, "diversity")
        results["diversity"] = {"demographics": {k: first[k] for k in ("age", "sex", "weight", "height")},
                                **run["diversity"]}
    _save(results, args.tag)
    return 0


def _save(results: dict[str, Any], tag: str) -> None:
    out = ROOT / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"quality_{tag}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / f"quality_{tag}.md").write_text(render_markdown(results))
    print(f"wrote {out / f'quality_{tag}.md'}", flush=True)


def _row(label: str, run: dict[str, Any]) -> str:
    worst, trends = run["worst"], run["trends"]
    volume, suv = worst["volume_ml"], worst["suv_mean"]
    return (f"| {label} | {run['subjects']} | {run['generate_s_per_subject']:.1f} | "
            f"{volume['abs_pct']:.1f}% ({volume['organ']}, {volume['subgroup']}) | "
            f"{suv['abs_pct']:.1f}% ({suv['organ']}, {suv['subgroup']}) | "
            f"{trends['same_sign']}/{trends['significant_reference_trends']} | {run['non_finite_voxels']} |")


def _or_default(value: Any) -> str:
    return "pipeline default" if value is None else str(value)


def render_markdown(results: dict[str, Any]) -> str:
    header = ["| stage-1 steps | subjects | s / subject | worst organ-volume dev. | worst SUVmean dev. | "
              "trend signs (same/significant) | non-finite voxels |", "|---|---|---|---|---|---|---|"]
    lines = [f"# Quality vs held-out phantoms: {results['model']}", "",
             f"Reference {results['reference']}; segmenter {results['segmenter']}; deviation of the generated "
             f"subgroup mean from the reference's, subgroups {results['family']} (sex x age <=65 / >65) and all; "
             f"guidance scale {_or_default(results.get('guidance_scale'))}; demographic prior scale "
             f"{_or_default(results.get('prior_scale'))}; SR back-projection "
             f"iterations {_or_default(results.get('back_projection_iterations'))}.",
             "", "## Full evaluation", "", *header, _row(str(results["main_steps"]), results["main"])]
    if "phantom_baseline" in results:
        lines.append(_row("phantom twins*", results["phantom_baseline"]))
        lines += ["", "\\* not generated: new phantoms simulated for the same demographics (other seeds), i.e. what a "
                  "perfect generator would score with this many subjects; s / subject is the simulation time."]
    if results["sweep"]:
        lines += ["", f"## Stage-1 steps sweep (first {results['sweep_subjects']} subjects)", "", *header]
        lines += [_row(steps, run) for steps, run in sorted(results["sweep"].items(), key=lambda kv: int(kv[0]))]
    runs = [(f"{results['main_steps']} stage-1 steps", results["main"])]
    if "phantom_baseline" in results:
        runs.append(("phantom twins", results["phantom_baseline"]))
    for metric in TARGETS:
        for label, run in runs:
            table = run["deviation_pct"][metric]
            organs = sorted({o for g in table.values() for o in g if o != "body"})
            lines += ["", f"## {metric}: deviation (%) per subgroup, {label}", "",
                      "| subgroup | " + " | ".join(organs) + " |", "|---" * (len(organs) + 1) + "|"]
            for group, values in table.items():
                lines.append(f"| {group} | " + " | ".join(f"{values.get(o, math.nan):+.1f}" for o in organs) + " |")
    if "diversity" in results:
        d = results["diversity"]
        lines += ["", f"Diversity ({d['demographics']}): mean pairwise distance between same-demographic samples "
                      f"{d.get('mean_within_hu_mad'):.1f} HU / {d.get('mean_within_suv_mad'):.3f} SUV "
                      "(0 = identical samples)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
