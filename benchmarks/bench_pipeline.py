"""Per-stage cost of the cascade: NFE, wall time, peak memory, parameters, FLOPs per evaluation.

Two configurations: the shipped default pipeline (timed end to end, stage by stage) and
the paper's size (64 base channels, multipliers [1, 2, 3, 4], 3 blocks per level; stage 1
at 56 x 56 x 96, SR at 2 mm on a 224 x 224 x 384 grid in z-chunks of 96). A full paper-size
run does not fit a 2-core CPU's time budget, so for it we time ``--paper-nfe`` network
evaluations per stage and report total = NFE x measured time per evaluation (labelled
"extrapolated"). Each measurement runs in a fresh process so peak RSS belongs to it.
A sweep over body heights shows SR peak memory staying flat as the body gets longer.

    python benchmarks/bench_pipeline.py                  # CPU, both configs, JSON + Markdown
    python benchmarks/bench_pipeline.py --device cuda    # adds GPU figures when one is present

Results: benchmarks/results/pipeline.{json,md}, one run per device and configuration.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import harness
import torch
from torch.utils.flop_counter import FlopCounterMode

PAPER_UNET = {
    "block_out_channels": (64, 128, 192, 256),
    "layers_per_block": 3,
    "attention_levels": (False, False, False, True),  # 56x56x96 / 8 = 7x7x12 <= 16^3 tokens
    "attention_head_dim": 64,
    "norm_num_groups": 32,
}


def _flops(model: torch.nn.Module, inputs: dict[str, Any]) -> int:
    """FLOPs of one evaluation, counted on the meta device (no compute, exact shapes)."""
    meta_model = type(model).from_config(model.config).to("meta")
    meta_inputs = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model(**meta_inputs)
    return int(counter.get_total_flops())


def _unet_inputs(model, shape: tuple[int, ...], device: torch.device) -> dict[str, Any]:
    batch = shape[0]
    inputs: dict[str, Any] = {"sample": torch.randn(shape, device=device), "timestep": torch.tensor(0.1, device=device)}
    if model.config.conditioning_channels:
        inputs["conditioning"] = torch.randn(batch, model.config.conditioning_channels, *shape[2:], device=device)
    if model.config.embedding_dim:
        inputs["encoder_embedding"] = torch.randn(batch, model.config.embedding_dim, device=device)
    return inputs


# ----------------------------------------------------------------------------- workers (fresh processes)
def shipped_stage(model_path: str, stage: str, device: str, height: float, steps: dict) -> dict[str, Any]:
    """One stage of the shipped pipeline, timed as the pipeline runs it (fresh process: its own peak memory)."""
    from petct_pipeline import Demographics

    torch.set_grad_enabled(False)
    device_ = torch.device(device)
    _, pipe = harness.load_pipeline(model_path, device_)
    subject = Demographics(age=60, sex="M", weight=80, height=height)
    generator = torch.Generator().manual_seed(0)
    calls = {"unet": 0, "sr_unet": 0}
    for name in calls:
        module = getattr(pipe, name)
        original = module.forward

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        module.forward = counted
    start = time.perf_counter()
    if stage == "base":
        from petct_pipeline.pipeline_petct import default_guidance_scale

        # the pipeline's defaults: with guidance, conditional and unconditional rows in one batch of 2
        prior_scale = pipe.default_prior_scale
        guidance = default_guidance_scale(prior_scale)
        pipe.sample_base([subject], steps["base"], guidance, prior_scale, generator)
        nfe, network = calls["unet"], pipe.unet
        shape = (1 if guidance == 1.0 else 2, 2, *pipe.base_shape)
    else:
        low = torch.zeros(1, 2, *pipe.base_shape, device=device_)
        pipe.super_resolve(low, subject, steps["sr"], 0.02, generator)
        nfe, network = calls["sr_unet"], pipe.sr_unet
        shape = (1, 2, *pipe.output_shape[:2], min(96, pipe.output_shape[2]))
    harness.synchronize(device_)
    wall = time.perf_counter() - start
    return {
        "config": "shipped",
        "stage": stage,
        "height_cm": height,
        "steps": steps[stage],
        "nfe": nfe,
        "wall_s": round(wall, 3),
        "peak_memory_mb": round(harness.peak_memory_mb(device_), 1),
        "parameters_m": round(sum(p.numel() for p in network.parameters()) / 1e6, 3),
        "gflops_per_nfe": round(_flops(network, _unet_inputs(network, shape, torch.device("cpu"))) / 1e9, 2),
        "network_input": list(shape),
    }


def paper_stage(stage: str, device: str, steps: int, measured_nfe: int, sr_timed_z: int) -> dict[str, Any]:
    """A paper-size network of one stage: FLOPs, and ``measured_nfe`` timed evaluations extrapolated to NFE."""
    from petct_pipeline import PETCTUNet3DModel

    torch.set_grad_enabled(False)
    device_ = torch.device(device)
    if stage == "base":
        model = PETCTUNet3DModel(**PAPER_UNET, embedding_dim=128)
        shape, evaluations_per_step = (1, 2, 56, 56, 96), 2  # Heun: ~2 evaluations per step
        chunks = 1
    else:
        # full-width chunks make the coarsest level 28x28x12 > 16^3 tokens: no attention in SR
        sr_config = {**PAPER_UNET, "attention_levels": (False,) * 4, "mid_attention": False}
        model = PETCTUNet3DModel(**sr_config, conditioning_channels=5)
        shape, evaluations_per_step = (1, 2, 224, 224, 96), 2
        chunks = 5  # 384 slices in chunks of 96 with 8 overlap -> 5 chunks
    model = model.to(device_).eval()
    flops = _flops(model, _unet_inputs(model, shape, torch.device("cpu")))
    # a 96-slice SR chunk at 64 channels needs many GB on CPU; time a thinner slab and scale by voxels
    timed_shape = shape if stage == "base" else (*shape[:4], min(sr_timed_z, shape[4]))
    voxel_ratio = shape[4] / timed_shape[4]
    inputs = _unet_inputs(model, timed_shape, device_)
    model(**inputs)  # warm-up
    harness.synchronize(device_)
    start = time.perf_counter()
    for _ in range(measured_nfe):
        model(**inputs)
    harness.synchronize(device_)
    per_eval = (time.perf_counter() - start) / measured_nfe * voxel_ratio
    nfe = (evaluations_per_step * steps - 1) * chunks
    return {
        "config": "paper",
        "stage": stage,
        "steps": steps,
        "nfe": nfe,
        "wall_s": round(per_eval * nfe, 1),
        "wall_is": f"extrapolated: NFE x {per_eval:.2f} s per evaluation, timed {measured_nfe}x on "
        f"{'x'.join(map(str, timed_shape))}" + (f", scaled x{voxel_ratio:g} by voxels" if voxel_ratio != 1 else ""),
        "peak_memory_mb": round(harness.peak_memory_mb(device_), 1),
        "peak_memory_input": list(timed_shape),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "gflops_per_nfe": round(flops / 1e9, 1),
        "network_input": list(shape),
    }


# ----------------------------------------------------------------------------- report
ROW_HEADER = ["config", "stage", "height cm", "steps", "NFE", "wall s", "peak MB", "params M", "GFLOPs/NFE",
              "network input"]


def _cells(r: dict[str, Any]) -> list[Any]:
    wall = f"{r['wall_s']}" + (" (extrapolated)" if "wall_is" in r else "")
    return [r["config"], r["stage"], r.get("height_cm", "-"), r["steps"], r["nfe"], wall, r["peak_memory_mb"],
            r["parameters_m"], r["gflops_per_nfe"], "x".join(map(str, r["network_input"]))]


def table(payload: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The run's table, one row per measured stage (also its rows in the collated table)."""
    return ROW_HEADER, [_cells(r) for r in payload["results"]]


def render_markdown(payload: dict[str, Any]) -> str:
    lines = [f"### Pipeline ({payload['device']}, torch {payload['torch']}, {payload.get('processor', '?')}, "
             f"{payload.get('threads', '?')} threads)", "",
             *harness.markdown_table(ROW_HEADER, [[str(c) for c in _cells(r)] for r in payload["results"]])]
    return "\n".join(lines) + "\n"


BENCHMARK = harness.Benchmark("pipeline", __doc__, __file__, render_markdown, table=table)


def run_config(device: str, model: dict[str, Any], sampling: dict[str, Any], heights: list[float],
               paper: dict[str, int] | None) -> dict[str, Any]:
    """What the figures depend on: device, weights, the shipped stages' sampling, body heights, paper settings."""
    return {"device": device, **model, **{k: sampling[k] for k in ("stage1_steps", "sr_steps", "guidance",
                                                                    "prior_scale")},
            "heights_cm": heights, "paper_steps": paper and paper["steps"], "paper_timed_nfe": paper and paper["nfe"],
            "paper_sr_timed_slices": paper and paper["sr_z"]}


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__, model=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="stage-1 steps (default: pipeline default)")
    parser.add_argument("--sr-steps", type=int, default=None, help="SR steps (default: pipeline default)")
    parser.add_argument("--heights", type=float, nargs="+", default=[150.0, 175.0, 200.0])
    parser.add_argument("--paper-steps", type=int, default=100, help="paper: Heun steps per stage")
    parser.add_argument("--paper-nfe", type=int, default=1, help="paper: evaluations actually timed per stage")
    parser.add_argument("--paper-sr-z", type=int, default=None,
                        help="paper SR: slices actually timed per chunk (default 96 on GPU, 16 on CPU)")
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--out", type=Path, default=harness.RESULTS, help="folder of pipeline.json / .md")
    args = parser.parse_args(argv)

    model = harness.resolve_model(args.model)
    model_config = harness.model_info(model)
    sampling = harness.sampling(model_config, args.steps, args.sr_steps)
    steps = {"base": sampling["stage1_steps"], "sr": sampling["sr_steps"]}
    results = [harness.in_fresh_process(shipped_stage, model_path=model, stage="base", device=args.device,
                                        height=175.0, steps=steps)]
    for height in args.heights:  # SR memory must stay flat as the body gets longer
        results.append(harness.in_fresh_process(shipped_stage, model_path=model, stage="sr", device=args.device,
                                                height=height, steps=steps))
        print(json.dumps(results[-1]), flush=True)
    paper = None
    if not args.skip_paper:
        paper = {"steps": args.paper_steps, "nfe": args.paper_nfe,
                 "sr_z": args.paper_sr_z or (96 if torch.device(args.device).type == "cuda" else 16)}
        for stage in ("base", "sr"):
            results.append(harness.in_fresh_process(paper_stage, stage=stage, device=args.device,
                                                    steps=paper["steps"], measured_nfe=paper["nfe"],
                                                    sr_timed_z=paper["sr_z"]))
            print(json.dumps(results[-1]), flush=True)

    payload = {"device": args.device, "torch": torch.__version__,
               "processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "results": results}
    config = run_config(args.device, model_config, sampling, args.heights, paper)
    print(BENCHMARK.save(torch.device(args.device).type, config, payload, argv, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
