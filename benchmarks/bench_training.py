"""Training throughput and peak memory per stage for the shipped training configs.

For each config (training/configs/<name>.yaml) and stage (base, sr) a fresh process
builds exactly what ``training/train.py`` builds (the stage's model, AdamW, EMA, the
Accelerator with the config's mixed precision and gradient checkpointing), then times
``--warmup`` + ``--steps`` optimisation steps of the stage's own loss on batches of the
stage's shapes (base: whole low-resolution volumes; sr: random patches + upsampled input
+ coordinate maps). Batches are synthetic tensors, so the figures are the model's cost;
reading the float16 cache (memory-mapped .npy) is not included. Also timed: preprocessing
one AutoPET-sized study (400 x 400 x 326 PET grid at 2.04 x 2.04 x 3 mm, .nii.gz) into the
8 mm and 2 mm caches.

    python benchmarks/bench_training.py                          # CPU, both configs
    python benchmarks/bench_training.py --device cuda            # on a GPU
    python benchmarks/bench_training.py --configs phantom_demo --steps 5

Peak memory: max allocated CUDA memory on a GPU; peak RSS of the measuring process on CPU
(includes ~0.4 GB of Python + torch), plus its increase over the RSS just before the
first step.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import harness


def synthetic_batch(stage, batch_size: int, generator) -> dict[str, Any]:
    import torch

    from petct_pipeline.geometry import coordinate_grid

    if stage.name == "base":
        shape = tuple(stage.preprocess_config(stage.grid).shape)
        return {
            "volume": torch.randn((batch_size, 2, *shape), generator=generator) * 0.5,
            "age": torch.full((batch_size,), 60.0),
            "sex": ["M", "F"] * (batch_size // 2) + ["M"] * (batch_size % 2),
            "weight": torch.full((batch_size,), 80.0),
            "height": torch.full((batch_size,), 175.0),
        }
    patch = tuple(stage.patch)
    full = tuple(stage.preprocess_config(stage.grid).shape)
    coords = torch.from_numpy(coordinate_grid(full, (0, 0, 0), patch))
    return {
        "fine": torch.randn((batch_size, 2, *patch), generator=generator) * 0.5,
        "upsampled": torch.randn((batch_size, 2, *patch), generator=generator) * 0.5,
        "coords": coords[None].expand(batch_size, -1, -1, -1, -1).contiguous(),
    }


def measure_stage(config_name: str, stage_name: str, device: str, steps: int, warmup: int,
                  batch_size: int | None) -> dict[str, Any]:
    import torch
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    from training.config import load_config, training_options
    from training.edm import make_generator
    from training.stages import get_stage
    from training.train import resolve_mixed_precision

    config = load_config(harness.REPO / "training" / "configs" / f"{config_name}.yaml")
    options = training_options(config, stage_name)
    batch = batch_size or options.batch_size
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=resolve_mixed_precision(
        "no" if device == "cpu" else options.mixed_precision))
    stage = get_stage(stage_name)(config, accelerator)
    torch.manual_seed(0)
    model = stage.build_model()
    if options.gradient_checkpointing:
        stage.enable_gradient_checkpointing(model)
    parameters = sum(p.numel() for p in model.parameters())
    ema = EMAModel(model.parameters(), decay=options.ema.decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema.to(accelerator.device)
    generator = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(stage, batch, generator) for _ in range(min(2, warmup + steps))]
    dev = accelerator.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = harness.current_rss_mb()
    times = []
    for step in range(warmup + steps):
        data = batches[step % len(batches)]
        harness.synchronize(dev)
        start = time.perf_counter()
        loss, _ = stage.loss(model, data, make_generator(dev, step))
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), options.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(model.parameters())
        harness.synchronize(dev)
        times.append(time.perf_counter() - start)
    timed = times[warmup:]
    seconds = sum(timed) / len(timed)
    peak = harness.peak_memory_mb(dev)
    shape = (list(stage.preprocess_config(stage.grid).shape) if stage_name == "base" else list(stage.patch))
    return {
        "config": config_name,
        "stage": stage_name,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "mixed_precision": accelerator.mixed_precision,
        "gradient_checkpointing": options.gradient_checkpointing,
        "batch_size": batch,
        "config_batch_size": options.batch_size,
        "sample_shape": [2, *shape],
        "spacing_mm": float(stage.grid.spacing),
        "params_m": round(parameters / 1e6, 3),
        "steps_timed": len(timed),
        "seconds_per_step": round(seconds, 4),
        "samples_per_s": round(batch / seconds, 4),
        "peak_memory_mb": round(peak, 1),
        "memory_increase_mb": None if dev.type == "cuda" else round(peak - rss_before, 1),
        "final_loss": round(float(loss.detach()), 5),
        "torch_threads": torch.get_num_threads(),
    }


def measure_preprocessing(spacing: float) -> dict[str, Any]:
    import numpy as np

    from petct_pipeline.data.preprocess import PreprocessConfig, default_shape, preprocess_study
    from petct_pipeline.data.study import StudyRecord
    from petct_pipeline.demographics import Demographics
    from petct_pipeline.io import save_nifti

    shape, voxel = (400, 400, 326), (2.0364, 2.0364, 3.0)
    x = (np.arange(shape[0]) - shape[0] / 2) * voxel[0]
    z = np.arange(shape[2]) * voxel[2]
    X, Y, Z = np.meshgrid(x, x, z, indexing="ij", sparse=True)
    body = (X / 170.0) ** 2 + (Y / 110.0) ** 2 <= 1.0
    body = body & (Z < 930.0)
    ct = np.where(body, 40.0, -1000.0).astype(np.int16)
    suv = np.where(body, 1.5, 0.0).astype(np.float32)
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = [x[0], x[0], -900.0]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        save_nifti(ct, affine, folder / "CTres.nii.gz")
        save_nifti(suv, affine, folder / "SUV.nii.gz")
        record = StudyRecord("PETCT_bench", "study", folder, Demographics(age=60, sex="M", weight=80, height=178),
                             ctres=folder / "CTres.nii.gz", suv=folder / "SUV.nii.gz")
        config = PreprocessConfig(spacing=spacing, shape=default_shape(spacing))
        start = time.perf_counter()
        result = preprocess_study(record, config)
        seconds = time.perf_counter() - start
    return {
        "task": "preprocess one study",
        "native_shape": list(shape),
        "spacing_mm": spacing,
        "output_shape": list(result.volume.shape),
        "seconds": round(seconds, 3),
        "peak_memory_mb": round(harness.peak_memory_mb(), 1),
        "cache_mb_float16": round(result.volume.size * 2 / 2**20, 2),
    }


TRAINING_HEADER = ["config", "stage", "device", "precision", "grad ckpt", "batch", "sample (C x X x Y x Z)", "mm",
                   "params M", "s/step", "samples/s", "peak MB", "+MB over start"]
PREPROCESSING_HEADER = ["preprocessing", "native grid", "output", "s/study", "peak MB", "cache MB/study (float16)"]


def _training_cells(r: dict[str, Any]) -> list[str]:
    batch = f"{r['batch_size']}" + ("" if r["batch_size"] == r["config_batch_size"]
                                    else f" (config {r['config_batch_size']})")
    return [r["config"], r["stage"], r["device"], r["mixed_precision"], "yes" if r["gradient_checkpointing"] else "no",
            batch, " x ".join(map(str, r["sample_shape"])), f"{r['spacing_mm']:g}", str(r["params_m"]),
            str(r["seconds_per_step"]), str(r["samples_per_s"]), str(r["peak_memory_mb"]),
            "-" if r["memory_increase_mb"] is None else str(r["memory_increase_mb"])]


def _preprocessing_cells(p: dict[str, Any]) -> list[str]:
    return [f"{p['spacing_mm']:g} mm", " x ".join(map(str, p["native_shape"])), " x ".join(map(str, p["output_shape"])),
            str(p["seconds"]), str(p["peak_memory_mb"]), str(p["cache_mb_float16"])]


def render_markdown(payload: dict[str, Any]) -> str:
    """The run's tables: optimisation steps per config and stage, then preprocessing per grid."""
    lines = harness.markdown_table(TRAINING_HEADER, [_training_cells(r) for r in payload["training"]])
    if payload["preprocessing"]:
        lines += ["", *harness.markdown_table(PREPROCESSING_HEADER,
                                              [_preprocessing_cells(p) for p in payload["preprocessing"]])]
    return "\n".join(lines) + "\n"


def headline_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The collated table's rows: one per trained stage (its device is the configuration's), then one per
    preprocessing grid."""
    rows = harness.table_rows(TRAINING_HEADER, [_training_cells(r) for r in payload["training"]])
    return ([{k: v for k, v in row.items() if k != "device"} for row in rows]
            + harness.table_rows(PREPROCESSING_HEADER, [_preprocessing_cells(p) for p in payload["preprocessing"]]))


BENCHMARK = harness.Benchmark("training", __doc__, __file__, render_markdown, headline_rows)


def run_config(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments the figures depend on (``vars(args)`` without the output folder)."""
    keys = ("device", "configs", "stages", "steps", "warmup", "batch_size", "cpu_paper_batch_size",
            "cpu_paper_steps")
    return {**{k: arguments[k] for k in keys}, "preprocessing_timed": not arguments["no_preprocessing"]}


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--configs", nargs="+", default=["phantom_demo", "autopet_paper"])
    parser.add_argument("--stages", nargs="+", default=["base", "sr"])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=None, help="override every config's batch size")
    parser.add_argument("--cpu_paper_batch_size", type=int, default=1,
                        help="batch size for autopet_paper on CPU (its config batch needs a GPU); 0 = config's")
    parser.add_argument("--cpu_paper_steps", type=int, default=1, help="timed steps for autopet_paper on CPU")
    parser.add_argument("--no_preprocessing", action="store_true", help="skip the preprocessing timing")
    parser.add_argument("--out", type=Path, default=harness.RESULTS, help="folder of training.json / .md")
    args = parser.parse_args(argv)

    rows = []
    for config in args.configs:
        for stage in args.stages:
            paper_on_cpu = config == "autopet_paper" and args.device == "cpu"
            batch = args.batch_size or (args.cpu_paper_batch_size or None if paper_on_cpu else None)
            steps = args.cpu_paper_steps if paper_on_cpu else args.steps
            row = harness.in_fresh_process(measure_stage, config_name=config, stage_name=stage, device=args.device,
                                           steps=steps, warmup=args.warmup, batch_size=batch)
            rows.append(row)
            print(f"{config:14s} {stage:4s} {row['samples_per_s']:9.4f} samples/s  "
                  f"{row['seconds_per_step']:9.3f} s/step  peak {row['peak_memory_mb']:9.1f} MB", flush=True)
    preprocessing = []
    if not args.no_preprocessing:
        for spacing in (8.0, 2.0):
            result = harness.in_fresh_process(measure_preprocessing, spacing=spacing)
            preprocessing.append(result)
            print(f"preprocess {spacing:g} mm: {result['seconds']} s/study, peak {result['peak_memory_mb']} MB",
                  flush=True)
    payload = {"training": rows, "preprocessing": preprocessing}
    table = BENCHMARK.save(args.device, run_config(vars(args)), payload, argv, args.out)
    print()
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
