"""Stage 1's organs before SR: volume and SUVmean on the 16 mm grid, generated vs reference, with their spread.

``bench_quality`` runs the whole cascade and ``petct evaluate`` (about 25 s per subject on
2 cores). ``bench_stage_errors`` showed that SR + back-projection keep the organs of the 16 mm
volume within 1.6 %, so what the full cascade misses is mostly stage 1's. This benchmark
measures stage 1 alone on its own grid (about 4 s per subject), the quick check for a new
stage-1 checkpoint or sampler setting:

* reference: the studies of ``--reference`` preprocessed to the stage-1 grid with the training
  preprocessing (cached, shared with ``bench_conditioning`` and ``train.py --cache_dir``);
* generated: stage-1 samples for the same demographics, seed = position in the list;
* both sides segmented by the organ segmenter of ``petct evaluate`` (the shipped one works at
  16 mm) and measured with its metrics;
* per organ and subgroup (all, sex x age): deviation (%) of the generated mean and median from
  the reference's, and the spread ratio, generated SD / reference SD (below 1: the generated
  subjects vary less than the reference; a heavy upper tail that the model does not reproduce
  pulls the mean down while the median still matches).

With ``--start-sigma S`` stage 1 does not start from pure noise but from each reference volume
itself, noised to S (model units; the data's own scale is sigma_data 0.5), and denoises it with
Euler steps on the scheduler's own noise grid below S, conditioned on that subject's
demographics. Sweeping S shows at which noise levels the model loses what the reference had:
at small S it returns the reference, at sigma_max it samples from scratch.

    python benchmarks/bench_stage1_organs.py --limit 120
    python benchmarks/bench_stage1_organs.py --limit 120 --steps 32 --tag cpu_steps32
    python benchmarks/bench_stage1_organs.py --limit 60 --steps 32 --start-sigma 1.0 --tag cpu_from1

Results: benchmarks/results/stage1_organs.{json,md}, one run per configuration (``--tag`` labels it).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from bench_conditioning import (
    Measure,
    generated_measures,
    measure_volumes,
    reference_index,
    reference_measures,
)
from bench_quality import TARGETS

from petct_pipeline import PETCTPipeline
from petct_pipeline.demographics import Demographics
from petct_pipeline.evaluation.metrics import measure_organs
from petct_pipeline.evaluation.statistics import compare, spread_ratio
from petct_pipeline.evaluation.subgroups import SubgroupScheme
from petct_pipeline.geometry import ras_affine
from petct_pipeline.organs import EVALUATION_ORGANS

SCHEME = SubgroupScheme(families=("sex_age",))


def organ_measure(segmenter_path: Path, organs: tuple[str, ...] = EVALUATION_ORGANS) -> Measure:
    """Segment one stage-1-grid volume with the organ segmenter and measure the target metrics per organ."""
    from petct_pipeline.evaluation.segmenters import ModelSegmenter

    model = ModelSegmenter(segmenter_path)

    def measure(ct_hu: np.ndarray, suv: np.ndarray, spacing_mm: float) -> dict[str, dict[str, float]]:
        spacing = (spacing_mm,) * 3
        labels = model.predict(ct_hu, suv, ras_affine(ct_hu.shape, spacing))
        metrics = measure_organs(ct_hu, suv, labels, spacing, organs)
        return {organ: {metric: metrics[organ][metric] for metric in TARGETS} for organ in organs}

    return measure


@torch.no_grad()
def renoised_measures(pipe: PETCTPipeline, volumes: list[np.ndarray], subjects: list[Demographics], start_sigma: float,
                      steps: int, prior_scale: float, batch_size: int, measure: Measure) -> list[dict[str, Any]]:
    """Each reference volume noised to ``start_sigma`` (seed = position) and denoised by stage 1 with Euler steps
    on the scheduler's ``steps``-step noise grid below it; conditional model plus the demographic prior, as the
    pipeline applies it (above the prior's sigma_min)."""
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps)
    grid = scheduler.sigmas.float()
    sigmas = torch.cat([torch.tensor([start_sigma]), grid[grid < start_sigma]])
    denoiser = pipe.stage1_denoiser
    rows = []
    for start in range(0, len(subjects), batch_size):
        chunk = subjects[start : start + batch_size]
        condition = denoiser.condition(chunk, guidance_scale=1.0, prior_scale=prior_scale)
        clean = torch.from_numpy(np.stack(volumes[start : start + batch_size]))
        noise = torch.stack([torch.randn(clean.shape[1:], generator=torch.Generator().manual_seed(start + i))
                             for i in range(len(chunk))])
        x = clean + start_sigma * noise
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):  # Euler: Karras et al. (2022), Algorithm 1
            x = x + (sigma_next - sigma) * (x - denoiser.denoise(x, sigma, condition)) / sigma
        rows += measure_volumes(pipe.mask_outside_body(x, chunk).numpy(), pipe.config.base_spacing, measure)
    return rows


def compare_subgroups(subjects: list[Demographics], generated: list[dict[str, Any]],
                      reference: list[dict[str, Any]], organs: tuple[str, ...]) -> dict[str, Any]:
    """Subgroup -> metric -> organ -> mean / median deviation (%) and spread ratio; subjects are paired by position."""
    members: dict[str, list[int]] = {name: [] for name in SCHEME.names()}
    for position, subject in enumerate(subjects):
        for subgroup in SCHEME.assign(subject).values():
            members[subgroup].append(position)
    table: dict[str, Any] = {}
    for subgroup, positions in members.items():
        for metric in TARGETS:
            for organ in organs:
                row = compare([generated[i][organ][metric] for i in positions],
                              [reference[i][organ][metric] for i in positions])
                table.setdefault(subgroup, {}).setdefault(metric, {})[organ] = {
                    "n": len(positions), "mean_dev_pct": row["deviation_pct"],
                    "median_dev_pct": row["median_deviation_pct"], "spread_ratio": spread_ratio(row)}
    return table


def cell_summary(table: dict[str, Any], organs: tuple[str, ...]) -> dict[str, Any]:
    """Per target metric over the sex x age x organ cells: mean |deviation|, cells within target, worst cell."""
    summary = {}
    for metric, target in TARGETS.items():
        cells = [(abs(table[g][metric][o]["mean_dev_pct"]), g, o) for g in SCHEME.subgroups("sex_age") for o in organs
                 if math.isfinite(table[g][metric][o]["mean_dev_pct"])]
        worst = max(cells)
        summary[metric] = {"mean_abs_dev_pct": float(np.mean([c[0] for c in cells])), "cells": len(cells),
                           "within_target": sum(c[0] <= target for c in cells), "target_pct": target,
                           "worst": {"abs_pct": worst[0], "subgroup": worst[1], "organ": worst[2]}}
    return summary


def _generation(result: dict[str, Any]) -> str:
    if result.get("start_sigma") is None:
        return (f"stage 1 for the same demographics, one seed each, {result['steps']} steps "
                f"({result['algorithm_type']})")
    return (f"each reference volume noised to sigma {result['start_sigma']:g} and denoised by stage 1 for its "
            f"demographics (Euler on the {result['steps']}-step noise grid below it)")


def render_markdown(result: dict[str, Any]) -> str:
    """The run's tables: all subjects per organ (mean, median, spread), then each metric per sex x age cell."""
    table = result["table"]
    # organs the reference has (the bladder is outside the default field of view)
    organs = [o for o in result["organs"] if math.isfinite(table["all"]["volume_ml"][o]["mean_dev_pct"])]
    all_rows = [[organ, *(cell for metric in TARGETS for cell in _all_cells(table["all"][metric][organ]))]
                for organ in organs]
    lines = [f"# Stage-1 organs on the {result['spacing_mm']:g} mm grid: {result['model']}", "",
             f"Reference {result['reference']} ({result['subjects']} subjects, preprocessed to the stage-1 grid); "
             f"generated: {_generation(result)}, guidance "
             f"{result['guidance']:g}, demographic prior {result['prior_scale']:g} "
             f"({result['seconds_per_subject']:.2f} s / subject incl. segmentation). Both segmented by "
             f"{result['segmenter']}.", "",
             "## All subjects", "",
             "Deviation (%) of the generated mean / median from the reference's; spread = generated SD / "
             "reference SD.", "",
             *harness.markdown_table(["organ", *(c for m in TARGETS for c in (f"{m} mean", "median", "spread"))],
                                     all_rows)]
    for metric, summary in result["summary"].items():
        worst = summary["worst"]
        cells = [[subgroup, str(table[subgroup][metric][organs[0]]["n"]),
                  *(f"{table[subgroup][metric][o]['mean_dev_pct']:+.1f}" for o in organs)]
                 for subgroup in SCHEME.subgroups("sex_age")]
        lines += ["", f"## {metric}: deviation (%) of the mean per sex x age subgroup", "",
                  f"Mean |deviation| over the {summary['cells']} cells {summary['mean_abs_dev_pct']:.2f} %, "
                  f"within {summary['target_pct']:g} %: {summary['within_target']}/{summary['cells']}, worst "
                  f"{worst['abs_pct']:.1f} % ({worst['organ']}, {worst['subgroup']}).", "",
                  *harness.markdown_table(["subgroup", "n", *organs], cells)]
    return "\n".join(lines) + "\n"


def _all_cells(row: dict[str, Any]) -> list[str]:
    return [f"{row['mean_dev_pct']:+.1f}", f"{row['median_dev_pct']:+.1f}", f"{row['spread_ratio']:.2f}"]


#: the all-subject figures the model card quotes, as (collated column, metric, organ, statistic)
HEADLINE_CELLS = (("heart_suv_mean_dev_pct", "suv_mean", "heart", "mean_dev_pct"),
                  ("heart_suv_median_dev_pct", "suv_mean", "heart", "median_dev_pct"),
                  ("heart_suv_spread", "suv_mean", "heart", "spread_ratio"),
                  ("kidney_left_suv_spread", "suv_mean", "kidney_left", "spread_ratio"),
                  ("kidney_right_suv_spread", "suv_mean", "kidney_right", "spread_ratio"),
                  ("aorta_volume_dev_pct", "volume_ml", "aorta", "mean_dev_pct"))


def headline_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The collated table's row: the cell summary per metric and the heart / kidney / aorta figures."""
    row: dict[str, Any] = {"s_per_subject": round(result["seconds_per_subject"], 2)}
    for metric, summary in result["summary"].items():
        row[f"mean_abs_{metric}_dev_pct"] = round(summary["mean_abs_dev_pct"], 2)
        row[f"{metric}_cells_within_{summary['target_pct']:g}_pct"] = f"{summary['within_target']}/{summary['cells']}"
    all_subjects = result["table"]["all"]
    for column, metric, organ, statistic in HEADLINE_CELLS:
        if organ in all_subjects[metric]:
            row[column] = round(all_subjects[metric][organ][statistic], 2)
    return [row]


BENCHMARK = harness.Benchmark("stage1_organs", __doc__, __file__, render_markdown, headline_rows)


def run_config(result: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """What the figures depend on: stage 1's weights, reference and subjects, the sampling and the segmenter."""
    return {**model, "reference": harness.relative(result["reference"]), "subjects": result["subjects"],
            "stage1_steps": result["steps"], "algorithm_type": result["algorithm_type"],
            "guidance": result["guidance"], "prior_scale": result["prior_scale"],
            "start_sigma": result.get("start_sigma"), "segmenter": harness.relative(result["segmenter"])}


def main(argv: list[str] | None = None) -> int:
    from petct_pipeline.checkpoints import default_segmenter
    from petct_pipeline.pipeline_petct import DEFAULT_STEPS, default_guidance_scale

    parser = harness.argument_parser(__doc__, model=True, reference="--reference", cache_dir=True, tag=True)
    parser.add_argument("--segmenter", type=Path, default=None,
                        help="organ segmenter folder (default: the shipped checkpoints/petct-phantom-seg)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N reference studies")
    parser.add_argument("--steps", type=int, default=None, help="stage-1 steps (default: the pipeline's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    parser.add_argument("--prior-scale", type=float, default=None,
                        help="weight of the demographic prior (default: the pipeline's, 0 = off)")
    parser.add_argument("--algorithm-type", choices=("dpmsolver++", "sde-dpmsolver++"), default=None,
                        help="stage-1 solver of the EDM DPM-Solver scheduler (default: the pipeline's; "
                             "sde-dpmsolver++ adds fresh noise at every step)")
    parser.add_argument("--start-sigma", type=float, default=None,
                        help="start from each reference volume noised to this level and denoise it (Euler) instead "
                             "of sampling from pure noise; needs guidance 1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    args = parser.parse_args(argv)

    segmenter = args.segmenter or default_segmenter()
    if segmenter is None:
        parser.error("--segmenter: no organ segmenter is shipped in checkpoints/; pass a segmenter folder")
    model, pipe = harness.load_pipeline(args.model)
    if args.algorithm_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, algorithm_type=args.algorithm_type)
    steps = args.steps or DEFAULT_STEPS
    prior_scale = pipe.default_prior_scale if args.prior_scale is None else args.prior_scale
    guidance = default_guidance_scale(prior_scale) if args.guidance is None else args.guidance
    if args.start_sigma is not None and not 0 < args.start_sigma <= pipe.scheduler.config.sigma_max:
        parser.error(f"--start-sigma must be in (0, {pipe.scheduler.config.sigma_max:g}], got {args.start_sigma:g}")
    if args.start_sigma is not None and guidance != 1.0:
        parser.error(f"--start-sigma runs the conditional model only: use --guidance 1, not {guidance:g}")
    organs = tuple(EVALUATION_ORGANS)
    measure = organ_measure(segmenter, organs)

    index = reference_index(args.reference, pipe, args.cache_dir, args.workers)
    reference = reference_measures(index, pipe, args.limit, measure)
    subjects = [subject for subject, _ in reference]
    start = time.perf_counter()
    if args.start_sigma is None:
        generated = generated_measures(pipe, subjects, steps, guidance, prior_scale, args.batch_size, measure)
    else:
        volumes = [index.load_volume(position).astype(np.float32) for position in range(len(subjects))]
        generated = renoised_measures(pipe, volumes, subjects, args.start_sigma, steps, prior_scale,
                                      args.batch_size, measure)
    seconds = (time.perf_counter() - start) / len(subjects)
    table = compare_subgroups(subjects, generated, [values for _, values in reference], organs)
    result = {"model": str(model), "reference": str(args.reference), "segmenter": str(segmenter),
              "subjects": len(subjects), "steps": steps, "algorithm_type": pipe.scheduler.config.algorithm_type,
              "guidance": guidance, "prior_scale": prior_scale, "start_sigma": args.start_sigma,
              "spacing_mm": pipe.config.base_spacing, "seconds_per_subject": seconds, "organs": list(organs),
              "table": table, "summary": cell_summary(table, organs)}
    print(BENCHMARK.save(args.tag, run_config(result, harness.model_info(model, sr=False)), result, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
