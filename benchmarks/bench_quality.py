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

Results: benchmarks/results/quality.{json,md}, one run per configuration (``--tag`` labels it);
generated volumes and full reports under --work (default runs/quality).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import harness

#: the subgroup family the targets are stated for, and the metrics they bound (target |deviation| %)
FAMILY = "sex_age"
#: seed offset of the phantom-twin baseline, far from the seeds of `petct phantom --n` populations
PHANTOM_TWIN_SEED = 50_000
TARGETS = {"volume_ml": 10.0, "suv_mean": 5.0}


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
    parser = harness.argument_parser(__doc__, model=True, reference="--reference", tag=True)
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
    parser.add_argument("--work", type=Path, default=harness.REPO / "runs" / "quality")
    args = parser.parse_args(argv)

    model = harness.resolve_model(args.model)
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
        "segmenter": args.segmenter or "petct default", "sweep": {},
    }
    model_config = harness.model_info(model)
    sampling = harness.sampling(model_config, args.main_steps, args.sr_steps, args.guidance_scale, args.prior_scale,
                                args.back_projection_iterations)
    config = run_config(model_config, sampling, args.reference, len(rows), args.steps, len(sweep_rows),
                        results["segmenter"], args.phantom_baseline, args.diversity_seeds)

    def save() -> None:
        BENCHMARK.save(args.tag, config, results, argv)
        print(f"wrote {harness.relative(harness.RESULTS / 'quality.md')} (run {args.tag})", flush=True)

    def measure(cohort_rows: list[dict[str, str]], steps: int, name: str, generate: bool = True) -> dict[str, Any]:
        generated, report = args.work / f"generated_{name}", args.work / f"report_{name}"
        seconds = math.nan
        if generate:
            cohort = _write_cohort(cohort_rows, args.work / f"cohort_{name}.csv")
            seconds = harness.run_petct(["generate", "--cohort", str(cohort), "--out", str(generated),
                                         "--steps", str(steps), *common])
        harness.run_petct(["evaluate", "--generated", str(generated), "--reference", str(args.reference),
                           "--out", str(report), "--workers", str(args.workers), "--no-plots", *segment])
        return {"subjects": len(cohort_rows), "generate_s": seconds,
                "generate_s_per_subject": seconds / len(cohort_rows), **read_deviations(report),
                "trends": read_trends(report), **read_checks(report)}

    main_name = f"steps{args.main_steps}"
    results["main"] = measure(rows, args.main_steps, main_name)
    save()
    if args.phantom_baseline:
        twins = [{**row, "seed": str(PHANTOM_TWIN_SEED + int(row["seed"]))} for row in rows]
        cohort = _write_cohort(twins, args.work / "cohort_phantom_twins.csv")
        spacing = _model_spacing(model)
        seconds = harness.run_petct(["phantom", "--cohort", str(cohort), "--out",
                                     str(args.work / "generated_phantom_twins"), "--spacing", f"{spacing:g}",
                                     "--fov", "model", "--workers", str(args.workers)])
        results["phantom_baseline"] = measure(twins, 0, "phantom_twins", generate=False)
        results["phantom_baseline"]["generate_s_per_subject"] = seconds / len(twins)
        save()
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
        save()
    if args.diversity_seeds > 1:
        first = rows[0]
        same = [{**first, "id": f"seed{seed}", "seed": str(seed)} for seed in range(args.diversity_seeds)]
        run = measure(same, args.main_steps, "diversity")
        results["diversity"] = {"demographics": {k: first[k] for k in ("age", "sex", "weight", "height")},
                                **run["diversity"]}
    save()
    return 0


HEADER = ["stage-1 steps", "subjects", "s / subject", "worst organ-volume dev.", "worst SUVmean dev.",
          "trend signs (same/significant)", "non-finite voxels"]


def _worst(worst: dict[str, Any]) -> str:
    return f"{worst['abs_pct']:.1f}% ({worst['organ']}, {worst['subgroup']})"


def _cells(label: str, run: dict[str, Any]) -> list[str]:
    worst, trends = run["worst"], run["trends"]
    return [label, str(run["subjects"]), f"{run['generate_s_per_subject']:.1f}", _worst(worst["volume_ml"]),
            _worst(worst["suv_mean"]), f"{trends['same_sign']}/{trends['significant_reference_trends']}",
            str(run["non_finite_voxels"])]


def _or_default(value: Any) -> str:
    return "pipeline default" if value is None else str(value)


def render_markdown(results: dict[str, Any]) -> str:
    """The run's tables: full evaluation (and phantom twins), the steps sweep, deviations per subgroup x organ."""
    full = [_cells(str(results["main_steps"]), results["main"])]
    if "phantom_baseline" in results:
        full.append(_cells("phantom twins*", results["phantom_baseline"]))
    lines = [f"# Quality vs held-out phantoms: {results['model']}", "",
             f"Reference {results['reference']}; segmenter {results['segmenter']}; deviation of the generated "
             f"subgroup mean from the reference's, subgroups {results['family']} (sex x age <=65 / >65) and all; "
             f"guidance scale {_or_default(results.get('guidance_scale'))}; demographic prior scale "
             f"{_or_default(results.get('prior_scale'))}; SR back-projection "
             f"iterations {_or_default(results.get('back_projection_iterations'))}.",
             "", "## Full evaluation", "", *harness.markdown_table(HEADER, full)]
    if "phantom_baseline" in results:
        lines += ["", "\\* not generated: new phantoms simulated for the same demographics (other seeds), i.e. what a "
                  "perfect generator would score with this many subjects; s / subject is the simulation time."]
    if results["sweep"]:
        lines += ["", f"## Stage-1 steps sweep (first {results['sweep_subjects']} subjects)", "",
                  *harness.markdown_table(HEADER, [_cells(steps, run) for steps, run in _sweep(results)])]
    runs = [(f"{results['main_steps']} stage-1 steps", results["main"])]
    if "phantom_baseline" in results:
        runs.append(("phantom twins", results["phantom_baseline"]))
    for metric in TARGETS:
        for label, run in runs:
            table = run["deviation_pct"][metric]
            organs = sorted({o for g in table.values() for o in g if o != "body"})
            lines += ["", f"## {metric}: deviation (%) per subgroup, {label}", "",
                      *harness.markdown_table(["subgroup", *organs], [
                          [group, *(f"{values.get(o, math.nan):+.1f}" for o in organs)]
                          for group, values in table.items()])]
    if "diversity" in results:
        d = results["diversity"]
        lines += ["", f"Diversity ({d['demographics']}): mean pairwise distance between same-demographic samples "
                      f"{d.get('mean_within_hu_mad'):.1f} HU / {d.get('mean_within_suv_mad'):.3f} SUV "
                      "(0 = identical samples)."]
    return "\n".join(lines) + "\n"


def _sweep(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(results["sweep"].items(), key=lambda kv: int(kv[0]))


def cell_summary(run: dict[str, Any]) -> dict[str, Any]:
    """Per target metric over the sex x age x organ cells: mean |deviation| and cells within target."""
    summary = {}
    for metric, target in TARGETS.items():
        cells = [abs(v) for group, organs in run["deviation_pct"][metric].items() if group != "all"
                 for organ, v in organs.items() if organ != "body" and math.isfinite(v)]
        summary[metric] = {"mean_abs_dev_pct": sum(cells) / len(cells) if cells else math.nan,
                           "within_target": f"{sum(c <= target for c in cells)}/{len(cells)}"}
    return summary


def _headline(evaluation: str, run: dict[str, Any]) -> dict[str, Any]:
    cells, worst, trends = cell_summary(run), run["worst"], run["trends"]
    wasserstein = run.get("wasserstein") or {}
    return {"evaluation": evaluation, "subjects_evaluated": run["subjects"],
            "s_per_subject": round(run["generate_s_per_subject"], 1),
            "mean_abs_volume_dev_pct": round(cells["volume_ml"]["mean_abs_dev_pct"], 2),
            "mean_abs_suv_mean_dev_pct": round(cells["suv_mean"]["mean_abs_dev_pct"], 2),
            f"volume_cells_within_{TARGETS['volume_ml']:g}_pct": cells["volume_ml"]["within_target"],
            f"suv_mean_cells_within_{TARGETS['suv_mean']:g}_pct": cells["suv_mean"]["within_target"],
            "worst_volume_cell": _worst(worst["volume_ml"]), "worst_suv_mean_cell": _worst(worst["suv_mean"]),
            "trend_signs": f"{trends['same_sign']}/{trends['significant_reference_trends']}",
            "w1_hu": round(wasserstein["hu"], 1) if "hu" in wasserstein else None,
            "w1_suv": round(wasserstein["suv"], 3) if "suv" in wasserstein else None,
            "non_finite_voxels": run["non_finite_voxels"]}


def headline_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The collated table's rows: the full evaluation (with the diversity check: distance between samples of one
    demographic tuple), the phantom twins, each sweep setting; deviations over the sex x age x organ cells, as the
    model card quotes them."""
    full = _headline(f"full ({results['main_steps']} steps)", results["main"])
    if "diversity" in results:
        full["same_demographics_hu_mad"] = round(results["diversity"]["mean_within_hu_mad"], 1)
        full["same_demographics_suv_mad"] = round(results["diversity"]["mean_within_suv_mad"], 3)
    rows = [full]
    if "phantom_baseline" in results:
        rows.append(_headline("phantom twins", results["phantom_baseline"]))
    rows += [_headline(f"sweep {steps} steps (first {results['sweep_subjects']})", run)
             for steps, run in _sweep(results)]
    return rows


BENCHMARK = harness.Benchmark("quality", __doc__, __file__, render_markdown, headline_rows)


def run_config(model: dict[str, Any], sampling: dict[str, Any], reference: str | Path, subjects: int,
               sweep_steps: list[int], sweep_subjects: int, segmenter: str, phantom_baseline: bool,
               diversity_seeds: int) -> dict[str, Any]:
    """What the figures depend on: weights, reference and subjects, the sampling settings as the pipeline
    resolves them, the sweep, the segmenter and the extra checks."""
    return {**model, "reference": harness.relative(reference), "subjects": subjects, **sampling,
            "sweep_steps": list(sweep_steps), "sweep_subjects": sweep_subjects if sweep_steps else None,
            "segmenter": segmenter, "phantom_baseline": phantom_baseline,
            "diversity_seeds": diversity_seeds if diversity_seeds > 1 else 0}


if __name__ == "__main__":
    raise SystemExit(main())
