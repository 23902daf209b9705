"""Which stage the organ deviations come from: the cascade fed the true 16 mm volume.

``bench_quality`` measures the whole cascade against held-out phantoms, so stage-1 anatomy
errors, SR blur and subgroup sampling noise are mixed. Here stage 1 is replaced by the truth:
each held-out phantom is preprocessed to the base grid exactly as training does and then

* ``upsampled``: trilinearly upsampled to the output grid (what SR starts from),
* ``sr``: refined by the pipeline's SR stage (its default steps), not back-projected,
* ``sr_back_projected``: that output back-projected onto the 16 mm volume in HU and SUV
  (``back_projection.py``), as the pipeline does by default,
* ``fine``: the truth preprocessed straight to the output grid (the floor of the method),

and every variant is written as a generated cohort and compared with the same phantoms by
``petct evaluate``. The subjects are paired, so a deviation here is an error of that path,
not sampling noise: what the SR stage alone costs is ``sr`` minus ``fine``.

    python benchmarks/bench_stage_errors.py --limit 24

Results: benchmarks/results/stage_errors.{json,md}, one run per configuration (``--tag`` labels it);
volumes and reports under --work.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import harness
import torch
import torch.nn.functional as F
from bench_quality import TARGETS, read_deviations
from bench_sr import refine, truth_grids

VARIANTS = ("fine", "upsampled", "sr", "sr_back_projected")


def subset_reference(reference: Path, subjects: list[str], dest: Path) -> Path:
    """An AutoPET-layout folder holding only ``subjects`` of ``reference`` (links plus filtered CSVs)."""
    dest.mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        link = dest / subject
        if not link.exists():
            link.symlink_to((reference / subject).resolve())
    for name, column in (("Metadata.csv", "Subject ID"), ("demographics.csv", "subject")):
        with open(reference / name, newline="") as source, open(dest / name, "w", newline="") as target:
            reader = csv.DictReader(source)
            writer = csv.DictWriter(target, fieldnames=reader.fieldnames)
            writer.writeheader()
            writer.writerows(row for row in reader if row[column] in subjects)
    return dest


def write_variants(args: argparse.Namespace) -> dict[str, Any]:
    """Write one cohort per variant and the matching reference subset under --work; return the timings."""
    from petct_pipeline.data.preprocess import preprocess_study
    from petct_pipeline.data.scan import scan_dataset
    from petct_pipeline.geometry import body_slices, ras_affine
    from petct_pipeline.intensity import from_model_space
    from petct_pipeline.pipeline_output import PETCTPipelineOutput
    from petct_pipeline.pipeline_petct import DEFAULT_BACK_PROJECTION_ITERATIONS, DEFAULT_SR_STEPS

    _, pipe = harness.load_pipeline(args.model)
    sr_steps = args.sr_steps or DEFAULT_SR_STEPS
    base_grid, fine_grid = truth_grids(pipe)
    spacing = (pipe.output_spacing,) * 3
    seconds = dict.fromkeys(VARIANTS, 0.0)
    studies = scan_dataset(args.reference).studies[: args.limit]
    subset_reference(args.reference, sorted({study.subject_id for study in studies}), args.work / "reference")
    if args.evaluate_only:
        return json.loads((args.work / "timing.json").read_text())
    for index, study in enumerate(studies):
        low = pipe.mask_outside_body(torch.from_numpy(preprocess_study(study, base_grid).volume)[None],
                                      [study.demographics])
        body = body_slices(study.demographics.height, pipe.output_spacing, max_slices=pipe.output_shape[2])
        for variant in VARIANTS:
            start = time.perf_counter()
            if variant == "fine":
                volume = torch.from_numpy(preprocess_study(study, fine_grid).volume)[None, ..., -body:]
            elif variant == "upsampled":
                volume = F.interpolate(low, scale_factor=pipe.config.sr_scale, mode="trilinear",
                                       align_corners=False)[..., -body:]
            elif variant == "sr":
                volume = refined = refine(pipe, low, study.demographics, sr_steps, seed=index)
            else:  # the same SR output, back-projected as the pipeline does by default
                volume = pipe.back_project(refined, low, DEFAULT_BACK_PROJECTION_ITERATIONS)
            seconds[variant] += time.perf_counter() - start
            ct, pet = from_model_space(volume[0, 0].float().numpy(), volume[0, 1].float().numpy())
            output = PETCTPipelineOutput(ct=[ct], pet=[pet], affines=[ras_affine(ct.shape, spacing)],
                                         spacing=spacing, demographics=[study.demographics],
                                         metadata=[{"source": f"{variant} of {study.key}"}])
            output.save(args.work / f"generated_{variant}" / study.key.replace("/", "_"))
        print(f"{index + 1}/{len(studies)} {study.key}", flush=True)
    timing = {variant: total / len(studies) for variant, total in seconds.items()}
    timing |= {"subjects": len(studies), "sr_steps": sr_steps,
               "back_projection_iterations": DEFAULT_BACK_PROJECTION_ITERATIONS}
    (args.work / "timing.json").write_text(json.dumps(timing))
    return timing


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, model=True, reference="--reference", tag=True)
    parser.add_argument("--limit", type=int, default=24, help="first N held-out subjects")
    parser.add_argument("--sr-steps", type=int, default=None, help="SR steps (default: the pipeline's)")
    parser.add_argument("--workers", type=int, default=2, help="petct evaluate --workers")
    parser.add_argument("--work", type=Path, default=harness.REPO / "runs" / "stage_errors")
    parser.add_argument("--evaluate-only", action="store_true", help="reuse the volumes --work already holds")
    args = parser.parse_args(argv)

    timing = write_variants(args)
    result: dict[str, Any] = {"model": args.model or "shipped", "reference": str(args.reference),
                              "timing_s_per_subject": timing, "threads": torch.get_num_threads(), "variants": {}}
    for variant in VARIANTS:
        report = args.work / f"report_{variant}"
        harness.run_petct(["evaluate", "--generated", str(args.work / f"generated_{variant}"), "--reference",
                           str(args.work / "reference"), "--out", str(report), "--workers", str(args.workers),
                           "--no-plots", "--subgroups", "sex_age"])
        result["variants"][variant] = read_deviations(report)
    model = harness.model_info(harness.resolve_model(args.model), stage1=False)
    print(BENCHMARK.save(args.tag, run_config(result, model, args.reference), result, argv))
    return 0


def _worst(worst: dict[str, Any]) -> str:
    return f"{worst['abs_pct']:.1f} ({worst['organ']}, {worst['subgroup']})"


def render_markdown(result: dict[str, Any]) -> str:
    """The run's tables: per target metric, each variant's all-subject deviation per organ and worst cell."""
    timing = result["timing_s_per_subject"]
    lines = [f"# Stage errors: the cascade fed the true 16 mm volume ({result['model']})", "",
             f"{timing['subjects']} held-out phantoms of {result['reference']}, paired with themselves; "
             f"SR {timing['sr_steps']} steps ({timing['sr']:.1f} s / subject, {result['threads']} threads; "
             f"back-projection {timing.get('sr_back_projected', 0.0):.1f} s). "
             "Deviation (%) of the all-subject mean from the phantoms' own.", ""]
    for metric in TARGETS:
        organs = list(result["variants"]["fine"]["deviation_pct"][metric]["all"])
        rows = [[variant, *(f"{data['deviation_pct'][metric]['all'][o]:+.1f}" for o in organs),
                 _worst(data["worst"][metric])] for variant, data in result["variants"].items()]
        lines += [f"## {metric}", "", *harness.markdown_table(["variant", *organs, "worst sex x age cell"], rows), ""]
    return "\n".join(lines)


def _largest(deviations: dict[str, float]) -> str:
    """The organ furthest from the phantoms, as 'deviation (organ)'."""
    organ = max((o for o, v in deviations.items() if o != "body" and math.isfinite(v)),
                key=lambda o: abs(deviations[o]))
    return f"{deviations[organ]:+.1f} ({organ})"


def headline_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The collated table's rows, one per variant: its time, the organ furthest off over all subjects and the worst
    sex x age cell, per target metric."""
    timing = result["timing_s_per_subject"]
    return [{"variant": variant, "s_per_subject": None if timing.get(variant) is None else round(timing[variant], 2),
             **{f"largest_all_subject_{metric}_dev_pct": _largest(data["deviation_pct"][metric]["all"])
                for metric in TARGETS},
             **{f"worst_{metric}_cell_pct": _worst(data["worst"][metric]) for metric in TARGETS}}
            for variant, data in result["variants"].items()]


BENCHMARK = harness.Benchmark("stage_errors", __doc__, __file__, render_markdown, headline_rows)


def run_config(result: dict[str, Any], model: dict[str, Any], reference: str | Path) -> dict[str, Any]:
    """What the figures depend on: the SR weights, the phantoms, SR steps and back-projection iterations."""
    from petct_pipeline.pipeline_petct import DEFAULT_BACK_PROJECTION_ITERATIONS

    timing = result["timing_s_per_subject"]
    back_projection = timing.get("back_projection_iterations", DEFAULT_BACK_PROJECTION_ITERATIONS)
    return {**model, "reference": harness.relative(reference), "subjects": timing["subjects"],
            "sr_steps": timing["sr_steps"],
            "back_projection_iterations": back_projection if "sr_back_projected" in result["variants"] else None}


if __name__ == "__main__":
    raise SystemExit(main())
