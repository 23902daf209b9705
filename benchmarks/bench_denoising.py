"""Stage 1's held-out denoising error per noise level: the EDM loss of stage-1 weights on unseen volumes.

Cheaper and less noisy than sampling when checkpoints are early (a few hundred steps), where samples
are still noise and organ measurements mean little: for each held-out volume of ``--reference``
(preprocessed to the stage-1 grid, the benchmarks' shared cache) and each ``--sigmas`` level, the
volume is noised with a fixed seed (same noise for every model), denoised once by each model's stage
1 with its own demographics (guidance 1, no prior), and the error is reported as the EDM-weighted
MSE lambda(sigma) ||D - x||^2 (the training loss without learned weighting; 1.0 = predicting the
mean). Compares networks and EMA lengths at the noise levels where the organ spread is decided.

    python benchmarks/bench_denoising.py --models checkpoints/petct-phantom-demo runs/pipe_mp --limit 120

Results: benchmarks/results/denoising.{json,md} (``--tag`` labels the run).
"""

from __future__ import annotations

import time
from typing import Any

import harness
import numpy as np
import torch
from bench_conditioning import reference_index

from petct_pipeline.models.denoiser import Stage1Denoiser

DEFAULT_SIGMAS = (0.1, 0.3, 1.0, 3.0, 10.0)


@torch.no_grad()
def denoising_errors(pipe, volumes: list[np.ndarray], subjects: list, sigmas: tuple[float, ...], batch_size: int,
                     seed: int = 0) -> dict[str, float]:
    """Mean EDM-weighted MSE of ``pipe``'s stage 1 per noise level over the volumes (fixed noise per volume)."""
    denoiser = Stage1Denoiser(pipe.unet, pipe.demographic_encoder, pipe.scheduler)
    sigma_data = float(pipe.scheduler.config.sigma_data)
    errors = {}
    for sigma in sigmas:
        total, count = 0.0, 0
        for start in range(0, len(volumes), batch_size):
            clean = torch.from_numpy(np.stack(volumes[start:start + batch_size])).float()
            generator = torch.Generator().manual_seed(seed + start)
            noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
            condition = denoiser.condition(subjects[start:start + batch_size], device="cpu")
            denoised = denoiser.denoise(noisy, torch.tensor(sigma), condition)
            weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
            total += float((weight * (denoised - clean) ** 2).mean(dim=(1, 2, 3, 4)).sum())
            count += clean.shape[0]
        errors[f"{sigma:g}"] = total / count
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, reference="--reference", cache_dir=True, tag=True)
    parser.add_argument("--models", nargs="+", required=True, help="pipeline folders (or hub ids) to compare")
    parser.add_argument("--limit", type=int, default=None, help="only the first N reference studies")
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing processes")
    args = parser.parse_args(argv)

    torch.set_grad_enabled(False)
    rows: list[dict[str, Any]] = []
    volumes = subjects = None
    for name in args.models:
        model, pipe = harness.load_pipeline(name)
        if volumes is None:
            index = reference_index(args.reference, pipe, args.cache_dir, args.workers)
            count = min(args.limit or len(index), len(index))
            volumes = [index.load_volume(i).astype(np.float32) for i in range(count)]
            subjects = [index.demographics(i) for i in range(count)]
        start = time.perf_counter()
        errors = denoising_errors(pipe, volumes, subjects, tuple(args.sigmas), args.batch_size)
        info = harness.model_info(model, sr=False)
        rows.append({"model": harness.relative(model), "stage1_trained_steps": info.get("stage1_trained_steps"),
                     "stage1_class": type(pipe.unet).__name__, **{f"loss_sigma_{k}": round(v, 4)
                                                                  for k, v in errors.items()},
                     "seconds": round(time.perf_counter() - start, 1)})
        print(rows[-1], flush=True)
    result = {"rows": rows, "reference": str(args.reference), "subjects": len(volumes), "sigmas": args.sigmas}
    config = {"reference": harness.relative(args.reference), "subjects": len(volumes), "sigmas": args.sigmas,
              "models": [r["model"] for r in rows]}
    print(BENCHMARK.save(args.tag or "cpu", config, result, argv))
    return 0


def table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = list(result["rows"][0])
    return header, [[row[k] for k in header] for row in result["rows"]]


def render(result: dict[str, Any]) -> str:
    header, rows = table(result)
    intro = (f"EDM-weighted MSE of stage 1 on {result['subjects']} held-out volumes of {result['reference']} "
             "per noise level (same noise for every model; lower is better; 1.0 = the mean).")
    return "\n".join([intro, "", *harness.markdown_table(header, rows)]) + "\n"


BENCHMARK = harness.Benchmark("denoising", __doc__, "benchmarks/bench_denoising.py", render, table=table)

if __name__ == "__main__":
    raise SystemExit(main())
