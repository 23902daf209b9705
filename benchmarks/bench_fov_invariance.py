"""Field-of-view and voxel-size invariance of organ statistics: whole-body vs the model's slab, 4 vs 2 mm, vs labels.

For each phantom of a population (``petct_pipeline.phantom``, ``--n`` subjects) it writes the study
whole-body at 4 mm (vertex to mid-thigh, as AutoPET's scans), the same voxels cropped to the
cascade's field of view, and the same subject whole-body at 2 mm; measures organ volume and
SUVmean on each with the segmenter (default: the shipped ``checkpoints/petct-phantom-seg``) and
with the phantom's true labels (``petct_pipeline.evaluation.invariance``); and reports, per organ
and metric, the percent difference of the cohort mean (what `petct evaluate`'s organ table shows)
and the median and 90th percentile of the per-subject absolute differences.

    python benchmarks/bench_fov_invariance.py                  # 50 subjects
    python benchmarks/bench_fov_invariance.py --n 8 --no-2mm   # quick look

Results: benchmarks/results/fov_invariance.{json,md}.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import harness
import numpy as np

SEGMENTER = harness.REPO / "checkpoints" / "petct-phantom-seg"
#: (label, measured version/source, baseline version/source)
COMPARISONS = (
    ("model FOV vs whole body (segmenter)", ("model_fov_4mm", "segmenter"), ("whole_body_4mm", "segmenter")),
    ("2 mm vs 4 mm (segmenter)", ("whole_body_2mm", "segmenter"), ("whole_body_4mm", "segmenter")),
    ("segmenter vs labels, whole body 4 mm", ("whole_body_4mm", "segmenter"), ("whole_body_4mm", "labels")),
    ("segmenter vs labels, model FOV 4 mm", ("model_fov_4mm", "segmenter"), ("model_fov_4mm", "labels")),
    ("segmenter vs labels, whole body 2 mm", ("whole_body_2mm", "segmenter"), ("whole_body_2mm", "labels")),
    ("labels 2 mm vs 4 mm", ("whole_body_2mm", "labels"), ("whole_body_4mm", "labels")),
)
HEADER = ["comparison", "organ", "metric", "subjects", "cohort mean diff %", "median |diff| %", "p90 |diff| %",
          "within 2 %"]


def measure_subject(demographics, seed: int, segmenter, with_2mm: bool) -> dict[str, dict[str, Any]]:
    """version -> source (labels / segmenter) -> organ -> metric, for one phantom."""
    from petct_pipeline.evaluation.invariance import StudyVersion, crop_to_model_fov, measure_version
    from petct_pipeline.phantom import generate_phantom

    versions = []
    for spacing in (4.0, 2.0) if with_2mm else (4.0,):
        phantom = generate_phantom(demographics, seed=seed, spacing=spacing)
        versions.append(StudyVersion(f"whole_body_{spacing:g}mm", phantom.ct_hu, phantom.suv, phantom.organs,
                                     phantom.affine))
        if spacing == 4.0:
            versions.append(crop_to_model_fov(versions[0], demographics.height, "model_fov_4mm"))
    out: dict[str, dict[str, Any]] = {}
    for version in versions:
        started = time.perf_counter()
        measured = measure_version(version, segmenter, demographics.height)
        out[version.name] = {"labels": measure_version(version, None), "segmenter": measured,
                             "segmenter_seconds": time.perf_counter() - started}
    return out


def compare(subjects: list[dict[str, Any]], organs: tuple[str, ...], metrics: tuple[str, ...]) -> list[dict]:
    rows = []
    for label, (version, source), (base_version, base_source) in COMPARISONS:
        if version not in subjects[0] or base_version not in subjects[0]:
            continue
        for organ in organs:
            for metric in metrics:
                measured = np.array([s[version][source][organ][metric] for s in subjects], dtype=float)
                baseline = np.array([s[base_version][base_source][organ][metric] for s in subjects], dtype=float)
                ok = np.isfinite(measured) & np.isfinite(baseline) & (baseline != 0)
                per_subject = np.abs(100.0 * (measured[ok] - baseline[ok]) / baseline[ok])
                cohort = 100.0 * (measured[ok].mean() - baseline[ok].mean()) / baseline[ok].mean()
                rows.append({"comparison": label, "organ": organ, "metric": metric, "subjects": int(ok.sum()),
                             "cohort_mean_diff_pct": round(float(cohort), 2),
                             "median_abs_diff_pct": round(float(np.median(per_subject)), 2),
                             "p90_abs_diff_pct": round(float(np.percentile(per_subject, 90)), 2),
                             "within_2pct": bool(abs(cohort) <= 2.0)})
    return rows


def _cells(row: dict[str, Any]) -> list[Any]:
    return [row["comparison"], row["organ"], row["metric"], row["subjects"], row["cohort_mean_diff_pct"],
            row["median_abs_diff_pct"], row["p90_abs_diff_pct"], "yes" if row["within_2pct"] else "no"]


def render_markdown(results: dict[str, Any]) -> str:
    timing = results.get("segment_measure_s_whole_body_4mm", {"median": "?", "max": "?"})
    lines = [f"{results['subjects']} phantoms (population seed {results['seed']}), segmenter "
             f"`{results['segmenter']}`, {results['seconds_per_subject']} s per subject (all versions); segmenting "
             f"and measuring one whole-body 4 mm study: median {timing['median']} s, max {timing['max']} s:", "",
             *harness.markdown_table(HEADER, [_cells(r) for r in results["rows"]])]
    return "\n".join(lines) + "\n"


def table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Headline: per comparison, how many organ x metric cells have their cohort mean within 2 %."""
    summary: dict[str, list[bool]] = {}
    worst: dict[str, float] = {}
    for row in results["rows"]:
        summary.setdefault(row["comparison"], []).append(row["within_2pct"])
        worst[row["comparison"]] = max(worst.get(row["comparison"], 0.0), abs(row["cohort_mean_diff_pct"]))
    header = ["comparison", "cells within 2 %", "worst cohort mean diff %"]
    return header, [[name, f"{sum(flags)}/{len(flags)}", round(worst[name], 2)] for name, flags in summary.items()]


BENCHMARK = harness.Benchmark("fov_invariance", __doc__, __file__, render_markdown, table=table)


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, tag=True)
    parser.add_argument("--n", type=int, default=50, help="phantoms (default 50)")
    parser.add_argument("--seed", type=int, default=2000, help="population seed (default 2000: not a training seed)")
    parser.add_argument("--segmenter", type=Path, default=SEGMENTER, help="model segmenter folder")
    parser.add_argument("--no-2mm", dest="with_2mm", action="store_false", help="skip the 2 mm versions")
    args = parser.parse_args(argv)

    from petct_pipeline.evaluation import ModelSegmenter
    from petct_pipeline.evaluation.invariance import INVARIANCE_METRICS, INVARIANCE_ORGANS
    from petct_pipeline.phantom import sample_population

    segmenter = ModelSegmenter(args.segmenter)
    population = sample_population(args.n, seed=args.seed)
    started = time.perf_counter()
    subjects = [measure_subject(demographics, args.seed + index, segmenter, args.with_2mm)
                for index, demographics in enumerate(population)]
    seconds = time.perf_counter() - started
    segment_seconds = [s["whole_body_4mm"]["segmenter_seconds"] for s in subjects]
    results = {"subjects": args.n, "seed": args.seed, "segmenter": harness.relative(args.segmenter),
               "seconds_per_subject": round(seconds / args.n, 2),
               "segment_measure_s_whole_body_4mm": {"median": round(float(np.median(segment_seconds)), 2),
                                                    "max": round(float(np.max(segment_seconds)), 2)},
               "rows": compare(subjects, INVARIANCE_ORGANS, INVARIANCE_METRICS)}
    config = {"n": args.n, "seed": args.seed, "segmenter": harness.relative(args.segmenter), "with_2mm": args.with_2mm}
    print(BENCHMARK.save(args.tag, config, results, argv), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
