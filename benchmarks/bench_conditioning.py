"""How strongly stage 1 follows the demographics: regression slopes of coarse anatomy, generated vs reference.

A trained stage 1 can denoise well and still mostly ignore its demographic embedding; the
organ-level trends of ``petct evaluate`` show that only after full generation and
segmentation. This benchmark looks at stage 1 alone, on its own grid, so a few dozen
subjects take about a minute on CPU:

* reference: the studies of ``--reference`` (AutoPET layout, e.g. the held-out phantoms),
  preprocessed to the pipeline's stage-1 grid with the training preprocessing (cached);
* generated: stage-1 samples for the same demographics, one seed each, per guidance scale;
* measures: body volume (CT > -500 HU), enclosed air (air surrounded by body in an axial
  slice: lungs, airways, gas) and mean body SUV;
* each measure is regressed on weight, height, sex (M = 1) and age on both sides
  (``petct_pipeline.evaluation.statistics.fit_ols``). ``slope ratio`` = generated / reference
  coefficient, over the terms significant in the reference (p < 0.05): 1 is a model that
  follows the demographics as strongly as the data, 0 one that ignores them.

    python benchmarks/bench_conditioning.py --reference data/phantoms_heldout --guidance 1 2 3

Results: benchmarks/results/conditioning.{json,md}, one run per configuration (``--tag`` labels it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from scipy import ndimage

from petct_pipeline import PETCTPipeline
from petct_pipeline.data.preprocess import PreprocessConfig
from petct_pipeline.demographics import Demographics
from petct_pipeline.evaluation.statistics import fit_ols
from petct_pipeline.intensity import from_model_space

TERMS = ("weight", "height", "sex", "age")
MEASURES = ("body_ml", "enclosed_air_ml", "body_suv_mean")
BODY_HU = PreprocessConfig.body_threshold_hu  # the training preprocessing's body threshold


#: what a benchmark measures on one stage-1-grid volume: (CT in HU, SUV, spacing in mm) -> named values
Measure = Callable[[np.ndarray, np.ndarray, float], dict[str, Any]]


def coarse_anatomy(ct_hu: np.ndarray, suv: np.ndarray, spacing_mm: float) -> dict[str, float]:
    """Body volume, air enclosed by the body slice by slice (mL) and mean body SUV of one volume."""
    body = ct_hu > BODY_HU
    filled = np.stack([ndimage.binary_fill_holes(body[..., z]) for z in range(body.shape[-1])], axis=-1)
    voxel_ml = spacing_mm**3 / 1000.0
    return {"body_ml": float(body.sum() * voxel_ml), "enclosed_air_ml": float((filled & ~body).sum() * voxel_ml),
            "body_suv_mean": float(suv[body].mean()) if body.any() else math.nan}


def reference_index(reference: Path, pipe: PETCTPipeline, cache_root: Path, workers: int):
    """The reference studies preprocessed to the stage-1 grid (training preprocessing), as a cache index."""
    from petct_pipeline.data.cache import build_cache
    from petct_pipeline.data.scan import scan_dataset

    config = PreprocessConfig(spacing=pipe.config.base_spacing, shape=tuple(pipe.config.base_shape),
                              include_organs=False)
    return build_cache(scan_dataset(reference), cache_root, config, num_workers=workers)  # whole set, once


def measure_volumes(volumes: Iterable[np.ndarray], spacing_mm: float, measure: Measure) -> list[dict[str, Any]]:
    """``measure`` of each model-space (2, X, Y, Z) volume, in HU and SUV."""
    return [measure(*from_model_space(volume[0], volume[1]), spacing_mm) for volume in volumes]


def reference_measures(index, pipe: PETCTPipeline, limit: int | None, measure: Measure = coarse_anatomy
                       ) -> list[tuple[Demographics, dict[str, Any]]]:
    """The first ``limit`` studies of a stage-1-grid cache ``index`` (``reference_index``), measured, with their
    demographics."""
    positions = range(min(limit or len(index), len(index)))
    volumes = (index.load_volume(position).astype(np.float32) for position in positions)
    values = measure_volumes(volumes, pipe.config.base_spacing, measure)
    return [(index.demographics(position), value) for position, value in zip(positions, values, strict=True)]


@torch.no_grad()
def generated_measures(pipe: PETCTPipeline, subjects: list[Demographics], steps: int, guidance: float,
                       prior_scale: float, batch_size: int, measure: Measure = coarse_anatomy
                       ) -> list[dict[str, Any]]:
    """Stage-1 samples (seed = position in the list) measured like the reference."""
    rows = []
    for start in range(0, len(subjects), batch_size):
        chunk = subjects[start : start + batch_size]
        generators = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        # the pipeline's own stage-1 sampler; one generator per subject draws the same noise as single calls
        low_res = pipe.sample_base(chunk, steps, guidance, prior_scale, generators)
        rows += measure_volumes(low_res.float().numpy(), pipe.config.base_spacing, measure)
    return rows


def slopes(subjects: list[Demographics], values: list[dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    predictors = {"weight": [s.weight for s in subjects], "height": [s.height for s in subjects],
                  "sex": [float(s.is_male) for s in subjects], "age": [s.age for s in subjects]}
    result = {}
    for measure in MEASURES:
        fit = fit_ols([v[measure] for v in values], predictors)
        result[measure] = {term: dict(zip(("coef", "se", "p"), fit.coefficient(term), strict=True)) for term in TERMS}
        result[measure]["mean"] = {"coef": float(np.nanmean([v[measure] for v in values]))}
    return result


def slope_ratio(generated: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Generated / reference coefficient over the reference's significant terms, and its median."""
    ratios = {f"{m} ~ {t}": generated[m][t]["coef"] / reference[m][t]["coef"]
              for m in MEASURES for t in TERMS if reference[m][t]["p"] < 0.05}
    return {"per_term": ratios, "median": float(np.median(list(ratios.values()))) if ratios else math.nan}


def render_markdown(results: dict[str, Any]) -> str:
    """The run's table: reference and generated coefficients per measure and term, per guidance scale."""
    guidance = [str(g) for g in results["guidance"]]
    generated, reference = results["generated"], results["reference_fit"]
    rows = []
    for measure in MEASURES:
        rows.append([f"{measure} mean", f"{reference[measure]['mean']['coef']:.1f}",
                     *(f"{generated[g]['fit'][measure]['mean']['coef']:.1f}" for g in guidance)])
        for term in TERMS:
            ref = reference[measure][term]
            rows.append([f"{measure} ~ {term}", f"{ref['coef']:+.3g} ({ref['p']:.2g})",
                         *(f"{generated[g]['fit'][measure][term]['coef']:+.3g}" for g in guidance)])
    rows.append(["**median slope ratio**", "1",
                 *(f"**{generated[g]['slope_ratio']['median']:.2f}**" for g in guidance)])
    lines = [f"# Stage-1 conditioning: {results['model']}", "",
             f"Reference {results['reference']} ({results['subjects']} subjects, their demographics, one seed each), "
             f"{results['steps']} stage-1 steps, demographic prior scale {results.get('prior_scale', 0)}. "
             "Regression coefficient per unit (kg, cm, M vs F, year) on each side; "
             "ratio = generated / reference where the reference's p < 0.05.", "",
             *harness.markdown_table(["measure ~ term", "reference (p)", *(f"guidance {g}" for g in guidance)], rows),
             "", "s / subject (stage 1 only): "
             + ", ".join(f"guidance {g}: {generated[g]['seconds_per_subject']:.2f}" for g in guidance)]
    return "\n".join(lines) + "\n"


#: the coefficients the model card quotes, as (collated column, measure, term)
HEADLINE_TERMS = (("body_ml_per_kg", "body_ml", "weight"), ("enclosed_air_ml_male", "enclosed_air_ml", "sex"),
                  ("enclosed_air_ml_per_cm", "enclosed_air_ml", "height"),
                  ("body_suv_per_kg", "body_suv_mean", "weight"))


def headline_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The collated table's rows: the reference's coefficients, then each guidance scale's with its median slope
    ratio and time."""
    def coefficients(fit: dict[str, Any]) -> dict[str, float]:
        return {column: float(f"{fit[measure][term]['coef']:.3g}") for column, measure, term in HEADLINE_TERMS}

    rows = [{"guidance_scale": "reference", **coefficients(results["reference_fit"])}]
    for g, generated in results["generated"].items():
        rows.append({"guidance_scale": g, "median_slope_ratio": round(generated["slope_ratio"]["median"], 2),
                     **coefficients(generated["fit"]), "s_per_subject": round(generated["seconds_per_subject"], 2)})
    return rows


BENCHMARK = harness.Benchmark("conditioning", __doc__, __file__, render_markdown, headline_rows)


def run_config(results: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """What the figures depend on: stage 1's weights, the reference and subjects, steps, prior, guidance scales."""
    return {**model, "reference": harness.relative(results["reference"]), "subjects": results["subjects"],
            "stage1_steps": results["steps"], "prior_scale": results.get("prior_scale", 0.0),
            "guidance_scales": results["guidance"]}


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, model=True, reference="--reference", cache_dir=True, tag=True)
    parser.add_argument("--limit", type=int, default=None, help="only the first N reference studies")
    parser.add_argument("--steps", type=int, default=None, help="stage-1 steps (default: the pipeline's)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0], help="guidance scales to compare")
    parser.add_argument("--prior-scale", type=float, default=None,
                        help="weight of the demographic prior (default: the pipeline's, 0 = off)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    args = parser.parse_args(argv)

    from petct_pipeline.pipeline_petct import DEFAULT_STEPS

    model, pipe = harness.load_pipeline(args.model)
    steps = args.steps or DEFAULT_STEPS
    prior_scale = pipe.default_prior_scale if args.prior_scale is None else args.prior_scale
    index = reference_index(args.reference, pipe, args.cache_dir, args.workers)
    reference = reference_measures(index, pipe, args.limit)
    subjects = [subject for subject, _ in reference]
    reference_fit = slopes(subjects, [values for _, values in reference])
    results: dict[str, Any] = {
        "model": str(model), "reference": str(args.reference), "subjects": len(subjects), "steps": steps,
        "guidance": args.guidance, "prior_scale": prior_scale, "reference_fit": reference_fit, "generated": {},
    }
    for guidance in args.guidance:
        start = time.perf_counter()
        values = generated_measures(pipe, subjects, steps, guidance, prior_scale, args.batch_size)
        seconds = time.perf_counter() - start
        fit = slopes(subjects, values)
        results["generated"][str(guidance)] = {"fit": fit, "slope_ratio": slope_ratio(fit, reference_fit),
                                               "seconds_per_subject": seconds / len(subjects)}
        median = results["generated"][str(guidance)]["slope_ratio"]["median"]
        print(f"guidance {guidance}: median slope ratio {median:.2f} ({seconds / len(subjects):.2f} s / subject)",
              flush=True)
    print(BENCHMARK.save(args.tag, run_config(results, harness.model_info(model, sr=False)), results, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
