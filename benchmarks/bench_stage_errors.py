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

Results: benchmarks/results/stage_errors_<tag>.{json,md}; volumes and reports under --work.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(ROOT))

from bench_quality import TARGETS, _run, read_deviations  # noqa: E402
from bench_sr import refine, truth_grids  # noqa: E402

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
    from petct_pipeline import PETCTPipeline
    from petct_pipeline.checkpoints import default_model
    from petct_pipeline.data.preprocess import preprocess_study
    from petct_pipeline.data.scan import scan_dataset
    from petct_pipeline.geometry import body_slices, ras_affine
    from petct_pipeline.intensity import from_model_space
    from petct_pipeline.pipeline_output import PETCTPipelineOutput
    from petct_pipeline.pipeline_petct import DEFAULT_BACK_PROJECTION_ITERATIONS, DEFAULT_SR_STEPS

    pipe = PETCTPipeline.from_pretrained(args.model or default_model())
    pipe.set_progress_bar_config(disable=True)
    sr_steps = args.sr_steps or DEFAULT_SR_STEPS
    base_grid, fine_grid = truth_grids(pipe)
    spacing = (pipe.output_spacing,) * 3
    seconds = dict.fromkeys(VARIANTS, 0.0)
    studies = scan_dataset(args.reference).studies[: args.limit]
    subset_reference(args.reference, sorted({study.subject_id for study in studies}), args.work / "reference")
    if args.evaluate_only:
        return json.loads((args.work / "timing.json").read_text())
    for index, study in enumerate(studies):
        low = pipe._mask_outside_body(torch.from_numpy(preprocess_study(study, base_grid).volume)[None],
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
                volume = pipe._back_project(refined, low, DEFAULT_BACK_PROJECTION_ITERATIONS)
            seconds[variant] += time.perf_counter() - start
            ct, pet = from_model_space(volume[0, 0].float().numpy(), volume[0, 1].float().numpy())
            output = PETCTPipelineOutput(ct=[ct], pet=[pet], affines=[ras_affine(ct.shape, spacing)],
                                         spacing=spacing, demographics=[study.demographics],
                                         metadata=[{"source": f"{variant} of {study.key}"}])
            output.save(args.work / f"generated_{variant}" / study.key.replace("/", "_"))
        print(f"{index + 1}/{len(studies)} {study.key}", flush=True)
    timing = {variant: total / len(studies) for variant, total in seconds.items()}
    timing |= {"subjects": len(studies), "sr_steps": sr_steps}
    (args.work / "timing.json").write_text(json.dumps(timing))
    return timing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped weights)")
    parser.add_argument("--reference", type=Path, default=REPO / "data" / "phantoms_heldout")
    parser.add_argument("--limit", type=int, default=24, help="first N held-out subjects")
    parser.add_argument("--sr-steps", type=int, default=None, help="SR steps (default: the pipeline's)")
    parser.add_argument("--workers", type=int, default=2, help="petct evaluate --workers")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "stage_errors")
    parser.add_argument("--evaluate-only", action="store_true", help="reuse the volumes --work already holds")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args(argv)

    timing = write_variants(args)
    result: dict[str, Any] = {"model": args.model or "shipped", "reference": str(args.reference),
                              "timing_s_per_subject": timing, "threads": torch.get_num_threads(),
                              "platform": platform.platform(), "variants": {}}
    for variant in VARIANTS:
        report = args.work / f"report_{variant}"
        _run(["evaluate", "--generated", str(args.work / f"generated_{variant}"), "--reference",
              str(args.work / "reference"), "--out", str(report), "--workers", str(args.workers), "--no-plots",
              "--subgroups", "sex_age"])
        result["variants"][variant] = read_deviations(report)
    out = ROOT / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"stage_errors_{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"stage_errors_{args.tag}.md").write_text(render_markdown(result))
    print((out / f"stage_errors_{args.tag}.md").read_text())
    return 0


def render_markdown(result: dict[str, Any]) -> str:
    timing = result["timing_s_per_subject"]
    lines = [f"# Stage errors: the cascade fed the true 16 mm volume ({result['model']})", "",
             f"{timing['subjects']} held-out phantoms of {result['reference']}, paired with themselves; "
             f"SR {timing['sr_steps']} steps ({timing['sr']:.1f} s / subject, {result['threads']} threads; "
             f"back-projection {timing.get('sr_back_projected', 0.0):.1f} s). "
             "Deviation (%) of the all-subject mean from the phantoms' own.", ""]
    for metric in TARGETS:
        organs = list(result["variants"]["fine"]["deviation_pct"][metric]["all"])
        lines += [f"## {metric}", "", "| variant | " + " | ".join(organs) + " | worst sex x age cell |",
                  "|---|" + "---|" * (len(organs) + 1)]
        for variant, data in result["variants"].items():
            row = data["deviation_pct"][metric]["all"]
            worst = data["worst"][metric]
            lines.append(f"| {variant} | " + " | ".join(f"{row[o]:+.1f}" for o in organs)
                         + f" | {worst['abs_pct']:.1f} ({worst['organ']}, {worst['subgroup']}) |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
