"""GPU check at the paper's size: training samples/s and peak memory, cascade inference time and memory, MFU.

What ``benchmarks/gpu_check.sh`` runs on one GPU (under 8 minutes on an H100-class GPU):

* training: each stage of ``training/configs/autopet_paper.yaml`` (EDM2's magnitude-preserving UNet,
  64 base channels x [1, 2, 3, 4], 3 blocks) built exactly as ``train.py`` builds it -- the stage's
  model and loss (learned weighting), bf16 autocast through accelerate's ``mixed_precision``, TF32,
  fused AdamW, forced weight normalisation after each step, gradient checkpointing as configured,
  optionally ``torch.compile`` -- timed on synthetic batches of the stage's shapes;
* inference: the full cascade at 2 mm (224 x 224 x 384 for a 178 cm subject: stage 1 at 8 mm,
  SR x4 in z-chunks) with random weights of the paper's size, at the pipeline's default steps,
  in bf16; wall time and peak memory per subject (goal: <= 5 s on one H100);
* model FLOP utilisation: FLOPs counted per network evaluation (``FlopCounterMode`` on the meta
  device) x evaluations, over the wall time and the GPU's dense bf16 peak.

``--tiny`` runs every code path at a toy size on CPU (bf16 autocast on CPU, compile on CPU), which is
what the test suite does; its figures mean nothing.

    bash benchmarks/gpu_check.sh                       # on the GPU machine
    python benchmarks/bench_gpu.py --device cuda [--compile]
    python benchmarks/bench_gpu.py --tiny --device cpu --steps 1 --warmup 1 --no-save

Results: benchmarks/results/gpu_check.{json,md} (``--tag`` labels the run).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from typing import Any

import harness
import torch
from torch.utils.flop_counter import FlopCounterMode

#: dense bf16 tensor-core peaks (TFLOP/s, SXM parts, no sparsity) by device-name fragment
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 125.0, "L4": 121.0}
#: toy sizes for --tiny: same classes and code paths, seconds on a CPU
TINY_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_levels": [False, True],
             "attention_head_dim": 8}


def _config(tiny: bool):
    from training.config import load_config

    config = load_config(harness.REPO / "training" / "configs" / "autopet_paper.yaml")
    if not tiny:
        return config
    import dataclasses

    stages = {name: dict(section) for name, section in config.stages.items()}
    stages["base"] = {**stages["base"], "grid": {"spacing": 16, "shape": [8, 8, 16]},
                      "unet": {"class": "PETCTMPUNet3DModel", **TINY_UNET}}
    stages["sr"] = {**stages["sr"], "grid": {"spacing": 8, "shape": [16, 16, 32]}, "patch_size": [8, 8, 16],
                    "unet": {"class": "PETCTMPUNet3DModel", **TINY_UNET, "attention_levels": [False, False],
                             "mid_attention": False}}
    return dataclasses.replace(config, stages=stages, encoder={"embedding_dim": 16, "hidden_dim": 16})


def _flops(model: torch.nn.Module, inputs: dict[str, Any]) -> int:
    """FLOPs of one forward evaluation, counted on the meta device (exact shapes, no compute)."""
    meta = type(model).from_config(model.config).to("meta")
    meta_inputs = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(**meta_inputs)
    return int(counter.get_total_flops())


def _unet_inputs(model, batch: int, spatial: tuple[int, ...]) -> dict[str, Any]:
    inputs: dict[str, Any] = {"sample": torch.randn(batch, 2, *spatial), "timestep": torch.zeros(batch)}
    if model.config.conditioning_channels:
        inputs["conditioning"] = torch.randn(batch, model.config.conditioning_channels, *spatial)
    if model.config.embedding_dim:
        inputs["encoder_embedding"] = torch.randn(batch, model.config.embedding_dim)
    return inputs


def _peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def measure_training(config, stage_name: str, device: str, steps: int, warmup: int, compile_: str | None,
                     mixed_precision: str, peak_tflops: float | None) -> dict[str, Any]:
    """Samples/s, peak memory and MFU of ``steps`` optimiser steps of one stage, as train.py runs them."""
    from accelerate import Accelerator
    from bench_training import synthetic_batch

    from petct_pipeline.models.mp_layers import force_weight_normalization
    from training.config import training_options
    from training.edm import make_generator
    from training.stages import get_stage

    options = training_options(config, stage_name)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
    dev = accelerator.device
    if options.allow_tf32 and dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    stage = get_stage(stage_name)(config, accelerator)
    torch.manual_seed(0)
    model = stage.build_model()
    if options.gradient_checkpointing:
        stage.enable_gradient_checkpointing(model)
    if compile_:
        stage.compile_model(model, compile_)
    fused = options.adam_fused if options.adam_fused is not None else dev.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate,
                                  betas=(options.adam_beta1, options.adam_beta2), fused=fused)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = options.batch_size
    generator = torch.Generator().manual_seed(0)
    data = [synthetic_batch(stage, batch, generator) for _ in range(2)]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for step in range(warmup + steps):
        harness.synchronize(dev)
        start = time.perf_counter()
        loss, _ = stage.loss(model, data[step % 2], make_generator(dev, step))
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        force_weight_normalization(model)
        harness.synchronize(dev)
        times.append(time.perf_counter() - start)
    seconds = sum(times[warmup:]) / max(len(times) - warmup, 1)
    unet = accelerator.unwrap_model(model).unet
    spatial = tuple(stage.preprocess_config(stage.grid).shape) if stage_name == "base" else tuple(stage.patch)
    flops = 3 * _flops(unet, _unet_inputs(unet, batch, spatial))  # forward + backward ~ 3 forwards
    return {
        "measure": f"train {stage_name}",
        "shape": [batch, 2, *spatial],
        "mixed_precision": accelerator.mixed_precision,
        "compile": compile_,
        "gradient_checkpointing": options.gradient_checkpointing,
        "params_m": round(sum(p.numel() for p in unet.parameters()) / 1e6, 2),
        "seconds": round(seconds, 4),
        "samples_per_s": round(batch / seconds, 3),
        "peak_memory_gb": round(harness.peak_memory_mb(dev) / 1024, 2),
        "tflop": round(flops / 1e12, 4),
        "mfu_pct": round(100 * flops / seconds / (peak_tflops * 1e12), 1) if peak_tflops else None,
        "first_step_s": round(times[0], 2),
    }


def measure_inference(config, device: str, compile_: str | None, peak_tflops: float | None, height: float,
                      repeats: int, dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """Full-cascade wall time and peak memory per subject at the pipeline's defaults, random paper-size weights."""
    from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler

    from petct_pipeline import DemographicEncoder, Demographics, PETCTPipeline
    from petct_pipeline.pipeline_petct import DEFAULT_SR_STEPS, DEFAULT_STEPS
    from training.stage_options import build_unet

    base, sr = config.stages["base"], config.stages["sr"]
    torch.manual_seed(0)
    encoder = DemographicEncoder(**config.encoder)
    unet = build_unet(base["unet"], "base", in_channels=2, out_channels=2, conditioning_channels=0,
                      embedding_dim=encoder.config.embedding_dim)
    sr_unet = build_unet(sr["unet"], "sr", in_channels=2, out_channels=2, conditioning_channels=5, embedding_dim=0)
    for model in (unet, sr_unet):  # random init leaves MP output gains at 0; make every layer compute
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("gain"):
                    parameter.fill_(1.0)
    scale = int(round(float(base["grid"]["spacing"]) / float(sr["grid"]["spacing"])))
    pipe = PETCTPipeline(demographic_encoder=encoder, unet=unet, scheduler=EDMDPMSolverMultistepScheduler(),
                         sr_unet=sr_unet, sr_scheduler=EDMEulerScheduler(sigma_data=0.1, sigma_max=10.0),
                         base_shape=list(base["grid"]["shape"]), base_spacing=float(base["grid"]["spacing"]),
                         sr_scale=scale)
    dev = torch.device(device)
    pipe.to(dev, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    if compile_:
        unet.compile(backend=compile_)
        sr_unet.compile(backend=compile_)
    calls = {"unet": [], "sr_unet": []}
    for name in calls:
        module = getattr(pipe, name)
        original = module.forward

        def counted(*args, _name=name, _original=original, **kwargs):
            sample = kwargs.get("sample", args[0] if args else None)
            calls[_name].append(tuple(sample.shape))
            return _original(*args, **kwargs)

        module.forward = counted
    subject = Demographics(age=60, sex="M", weight=80, height=height)
    with torch.inference_mode():
        pipe(subject, generator=torch.Generator().manual_seed(0))  # warm-up (and compilation)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for values in calls.values():
            values.clear()
        harness.synchronize(dev)
        start = time.perf_counter()
        for _ in range(repeats):
            output = pipe(subject, generator=torch.Generator().manual_seed(0))
        harness.synchronize(dev)
    seconds = (time.perf_counter() - start) / repeats
    flops = 0
    for name, shapes in calls.items():
        network = getattr(pipe, name)
        for shape in sorted(set(shapes)):
            flops += shapes.count(shape) * _flops(network, _unet_inputs(network, shape[0], shape[2:]))
    flops //= repeats
    return {
        "measure": "cascade inference",
        "shape": list(output.ct[0].shape),
        "mixed_precision": "bf16 weights" if dtype == torch.bfloat16 else "fp32",
        "compile": compile_,
        "gradient_checkpointing": None,
        "params_m": round((sum(p.numel() for p in unet.parameters())
                           + sum(p.numel() for p in sr_unet.parameters())) / 1e6, 2),
        "seconds": round(seconds, 3),
        "samples_per_s": round(1 / seconds, 3),
        "peak_memory_gb": round(harness.peak_memory_mb(dev) / 1024, 2),
        "tflop": round(flops / 1e12, 3),
        "mfu_pct": round(100 * flops / seconds / (peak_tflops * 1e12), 1) if peak_tflops else None,
        "first_step_s": None,
        "nfe": {name: len(shapes) // repeats for name, shapes in calls.items()},
        "steps": {"base": DEFAULT_STEPS, "sr": DEFAULT_SR_STEPS},
    }


COLUMNS = ("measure", "shape", "mixed_precision", "compile", "gradient_checkpointing", "params_m", "seconds",
           "samples_per_s", "peak_memory_gb", "tflop", "mfu_pct")


def table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    return list(COLUMNS), [[row.get(c) for c in COLUMNS] for row in result["rows"]]


def render(result: dict[str, Any]) -> str:
    header, rows = table(result)
    lines = [f"Device {result['device_name']} (peak {result['peak_tflops']} TFLOP/s bf16), "
             f"torch {result['torch']}, {'tiny code-path check' if result['tiny'] else 'autopet_paper size'}.", ""]
    return "\n".join(lines + harness.markdown_table(header, rows)) + "\n"


BENCHMARK = harness.Benchmark("gpu_check", __doc__, "benchmarks/bench_gpu.py", render, table=table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: check the code paths on CPU")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per stage")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="torch.compile the networks (default backend inductor; the first step compiles)")
    parser.add_argument("--mixed_precision", default=None, choices=("no", "bf16", "fp16"),
                        help="default: bf16 (also on CPU, which checks the autocast path)")
    parser.add_argument("--inference_dtype", default="bf16", choices=("bf16", "fp32"), help="cascade weights")
    parser.add_argument("--height", type=float, default=178.0, help="subject height (cm): the 2 mm field of view")
    parser.add_argument("--repeats", type=int, default=2, help="timed cascade runs")
    parser.add_argument("--peak_tflops", type=float, default=None, help="override the GPU's dense bf16 peak")
    parser.add_argument("--skip", nargs="*", default=[], choices=("base", "sr", "inference"))
    parser.add_argument("--tag", default=None)
    parser.add_argument("--no-save", dest="save", action="store_false")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    config = _config(args.tiny)
    peak = _peak_tflops(device, args.peak_tflops)
    precision = args.mixed_precision or "bf16"
    rows = []
    for stage in ("base", "sr"):
        if stage not in args.skip:
            rows.append(measure_training(config, stage, args.device, args.steps, args.warmup, args.compile,
                                         precision, peak))
            print(json.dumps(rows[-1]), flush=True)
    if "inference" not in args.skip:
        dtype = torch.bfloat16 if args.inference_dtype == "bf16" else torch.float32
        rows.append(measure_inference(config, args.device, args.compile, peak, args.height, args.repeats, dtype))
        print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows, "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or "cpu", "peak_tflops": peak, "torch": torch.__version__,
              "tiny": args.tiny}
    if args.save:
        label = args.tag or f"{device.type}{'_tiny' if args.tiny else ''}"
        print(BENCHMARK.save(label, {"device": result["device_name"], "tiny": args.tiny}, result, argv))
    else:
        print(render(result))
    return 0 if all(math.isfinite(r["seconds"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
