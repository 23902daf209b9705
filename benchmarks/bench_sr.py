"""Super-resolution stage alone: how close its 4 mm output is to the truth, per step count and sigma_max.

Stage 1 is taken out of the loop: each held-out phantom is preprocessed to the base grid
(16 mm) and to the output grid (4 mm) exactly as training does, the SR stage of a pipeline
refines the 16 mm volume, and the result is compared with the 4 mm truth inside the body.
Step count 0 is the SR stage's own input (trilinear upsampling), the baseline SR must beat.
Besides the error it reports a texture ratio: mean |Laplacian| of the CT inside the body,
generated over truth (1 = as sharp as the truth, > 1 = grainier, < 1 = smoother). These
figures choose ``DEFAULT_SR_STEPS`` and the exported SR scheduler's ``sigma_max``.

    python benchmarks/bench_sr.py --limit 4 --steps 0 1 2 4 --sigma-max 2 0.5

Results: benchmarks/results/sr.{json,md}, one run per configuration (``--tag`` labels it).
"""

from __future__ import annotations

import json
import time
from typing import Any

import harness
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def truth_grids(pipe) -> tuple[Any, Any]:
    """The preprocessing of ``pipe``'s base grid and output grid: the truth as training sees it."""
    from petct_pipeline.data.preprocess import PreprocessConfig

    base = PreprocessConfig(spacing=pipe.config.base_spacing, shape=pipe.base_shape, include_organs=False)
    fine = PreprocessConfig(spacing=pipe.output_spacing, shape=pipe.output_shape, include_organs=False)
    return base, fine


def refine(pipe, low: torch.Tensor, demographics, steps: int, seed: int) -> torch.Tensor:
    """The SR stage alone on a (1, 2, *base_shape) volume, chunked and noise-augmented as the pipeline does."""
    return pipe.super_resolve(low, demographics, steps, generator=torch.Generator().manual_seed(seed))


def compare(ct: np.ndarray, pet: np.ndarray, true_ct: np.ndarray, true_pet: np.ndarray) -> dict[str, float]:
    """Errors inside the true body (CT > -500 HU) in HU and SUV, and the CT texture ratio."""
    body = true_ct > -500.0
    texture, true_texture = (np.abs(ndimage.laplace(v, mode="nearest")) for v in (ct, true_ct))
    return {
        "ct_mae_hu": float(np.abs(ct - true_ct)[body].mean()),
        "pet_mae_suv": float(np.abs(pet - true_pet)[body].mean()),
        "ct_texture_ratio": float(texture[body].mean() / true_texture[body].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    from diffusers import EDMDPMSolverMultistepScheduler

    from petct_pipeline.data.preprocess import preprocess_study
    from petct_pipeline.data.scan import scan_dataset
    from petct_pipeline.geometry import body_slices
    from petct_pipeline.intensity import from_model_space

    parser = harness.argument_parser(__doc__, model=True, reference="--data", tag=True)
    parser.add_argument("--limit", type=int, default=4, help="held-out subjects")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1, 2, 4], help="SR steps (0: upsampling only)")
    parser.add_argument("--sigma-max", type=float, nargs="+", default=None,
                        help="SR sigma_max values (default: the pipeline's)")
    args = parser.parse_args(argv)

    model, pipe = harness.load_pipeline(args.model)
    scale, config = pipe.config.sr_scale, pipe.sr_scheduler.config
    sigmas = args.sigma_max or [float(config.sigma_max)]
    base_grid, fine_grid = truth_grids(pipe)
    studies = scan_dataset(args.data).studies[: args.limit]

    rows: list[dict[str, Any]] = []
    for index, study in enumerate(studies):
        low = torch.from_numpy(preprocess_study(study, base_grid).volume)[None]
        fine = preprocess_study(study, fine_grid).volume
        body = body_slices(study.demographics.height, pipe.output_spacing, max_slices=fine.shape[-1])
        true_ct, true_pet = from_model_space(fine[0, ..., -body:], fine[1, ..., -body:])
        for sigma_max in sigmas:
            pipe.sr_scheduler = EDMDPMSolverMultistepScheduler.from_config(config, sigma_max=sigma_max)
            for steps in args.steps:
                if steps == 0 and sigma_max != sigmas[0]:
                    continue  # the upsampling baseline does not depend on sigma_max
                start = time.perf_counter()
                if steps == 0:
                    volume = F.interpolate(low, scale_factor=scale, mode="trilinear", align_corners=False)[..., -body:]
                else:
                    volume = refine(pipe, low, study.demographics, steps, seed=index)
                seconds = time.perf_counter() - start
                ct, pet = from_model_space(volume[0, 0].numpy(), volume[0, 1].numpy())
                row = {"subject": study.key, "steps": steps, "sigma_max": None if steps == 0 else sigma_max,
                       "seconds": seconds, **compare(ct, pet, true_ct, true_pet)}
                rows.append(row)
                print(json.dumps(row), flush=True)

    result = {"model": model, "data": str(args.data), "subjects": len(studies), "threads": torch.get_num_threads(),
              "summary": summarise(rows), "rows": rows}
    print(BENCHMARK.save(args.tag, run_config(result, harness.model_info(model, stage1=False)), result, argv))
    return 0


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of each metric per (sigma_max, steps) setting, in the order first seen."""
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        settings.setdefault((row["sigma_max"], row["steps"]), []).append(row)
    metrics = ("ct_mae_hu", "pet_mae_suv", "ct_texture_ratio", "seconds")
    return [{"sigma_max": sigma, "steps": steps, "subjects": len(group),
             **{m: float(np.mean([r[m] for r in group])) for m in metrics}}
            for (sigma, steps), group in settings.items()]


HEADER = ["SR steps", "sigma_max", "CT MAE (HU)", "PET MAE (SUV)", "CT texture ratio", "s / subject"]


def _cells(s: dict[str, Any]) -> list[str]:
    sigma = "upsampling only" if s["steps"] == 0 else f"{s['sigma_max']:g}"
    return [str(s["steps"]), sigma, f"{s['ct_mae_hu']:.1f}", f"{s['pet_mae_suv']:.3f}", f"{s['ct_texture_ratio']:.2f}",
            f"{s['seconds']:.1f}"]


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Mean errors per SR setting (the run's table, also its rows in the collated table)."""
    return HEADER, [_cells(s) for s in result["summary"]]


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"# SR stage alone: {result['model']}", "",
             f"{result['subjects']} phantoms of {result['data']} preprocessed to the base grid and refined; "
             f"errors inside the body against the 4 mm truth; {result['threads']} torch thread(s).", "",
             *harness.markdown_table(*table(result))]
    return "\n".join(lines) + "\n"


BENCHMARK = harness.Benchmark("sr", __doc__, __file__, render_markdown, table=table)


def run_config(result: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """What the figures depend on: the SR weights, the data and subjects, the SR steps and sigma_max swept."""
    summary = result["summary"]
    return {**model, "reference": harness.relative(result["data"]), "subjects": result["subjects"],
            "sr_steps_swept": list(dict.fromkeys(s["steps"] for s in summary)),
            "sigma_max_swept": list(dict.fromkeys(s["sigma_max"] for s in summary if s["sigma_max"] is not None))}


if __name__ == "__main__":
    raise SystemExit(main())
