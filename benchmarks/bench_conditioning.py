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

Results: benchmarks/results/conditioning_<tag>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))

from petct_pipeline import PETCTPipeline  # noqa: E402
from petct_pipeline.data.preprocess import PreprocessConfig  # noqa: E402
from petct_pipeline.demographics import Demographics  # noqa: E402
from petct_pipeline.evaluation.statistics import fit_ols  # noqa: E402
from petct_pipeline.intensity import from_model_space  # noqa: E402

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
    from petct_pipeline.pipeline_petct import _StepCounter

    rows = []
    for start in range(0, len(subjects), batch_size):
        chunk = subjects[start : start + batch_size]
        generators = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        # the pipeline's own stage-1 sampler; one generator per subject draws the same noise as single calls
        low_res = pipe._sample_base(chunk, steps, guidance, prior_scale, generators, _StepCounter(None, ()))
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
    guidance = [str(g) for g in results["guidance"]]
    lines = [f"# Stage-1 conditioning: {results['model']}", "",
             f"Reference {results['reference']} ({results['subjects']} subjects, their demographics, one seed each), "
             f"{results['steps']} stage-1 steps, demographic prior scale {results.get('prior_scale', 0)}. "
             "Regression coefficient per unit (kg, cm, M vs F, year) on each side; "
             "ratio = generated / reference where the reference's p < 0.05.", "",
             "| measure ~ term | reference (p) | " + " | ".join(f"guidance {g}" for g in guidance) + " |",
             "|---" * (2 + len(guidance)) + "|"]
    reference = results["reference_fit"]
    for measure in MEASURES:
        lines.append(f"| {measure} mean | {reference[measure]['mean']['coef']:.1f} | "
                     + " | ".join(f"{results['generated'][g]['fit'][measure]['mean']['coef']:.1f}" for g in guidance)
                     + " |")
        for term in TERMS:
            ref = reference[measure][term]
            cells = [f"{results['generated'][g]['fit'][measure][term]['coef']:+.3g}" for g in guidance]
            lines.append(f"| {measure} ~ {term} | {ref['coef']:+.3g} ({ref['p']:.2g}) | " + " | ".join(cells) + " |")
    lines.append("| **median slope ratio** | 1 | "
                 + " | ".join(f"**{results['generated'][g]['slope_ratio']['median']:.2f}**" for g in guidance) + " |")
    lines += ["", "s / subject (stage 1 only): "
              + ", ".join(f"guidance {g}: {results['generated'][g]['seconds_per_subject']:.2f}" for g in guidance)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from petct_pipeline.checkpoints import default_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline folder or Hub id (default: the shipped weights)")
    parser.add_argument("--reference", type=Path, default=REPO / "data" / "phantoms_heldout")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache",
                        help="preprocessing cache root (shared with training/train.py --cache_dir)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N reference studies")
    parser.add_argument("--steps", type=int, default=None, help="stage-1 steps (default: the pipeline's)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0], help="guidance scales to compare")
    parser.add_argument("--prior-scale", type=float, default=None,
                        help="weight of the demographic prior (default: the pipeline's, 0 = off)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args(argv)

    from petct_pipeline.pipeline_petct import DEFAULT_STEPS

    model = args.model or default_model()
    steps = args.steps or DEFAULT_STEPS
    pipe = PETCTPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    prior_scale = pipe.default_prior_scale if args.prior_scale is None else args.prior_scale
    index = reference_index(args.reference, pipe, args.cache_dir, args.workers)
    reference = reference_measures(index, pipe, args.limit)
    subjects = [subject for subject, _ in reference]
    reference_fit = slopes(subjects, [values for _, values in reference])
    results: dict[str, Any] = {
        "model": str(model), "reference": str(args.reference), "subjects": len(subjects), "steps": steps,
        "guidance": args.guidance, "prior_scale": prior_scale, "reference_fit": reference_fit, "generated": {},
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
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
    out = ROOT / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"conditioning_{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"conditioning_{args.tag}.md").write_text(render_markdown(results))
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
