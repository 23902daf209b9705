#!/usr/bin/env python
"""Train one stage of the petct-diffusion cascade with Hugging Face Accelerate.

    accelerate launch training/train.py --config training/configs/phantom_demo.yaml \\
        --stage base --data_dir DATA --output_dir runs/base [--max_train_steps N] \\
        [--resume_from_checkpoint latest|PATH] [--init_weights PIPELINE_OR_STAGE_DIR]

Two real CPU ranks (plain ``--cpu --num_processes 2`` silently starts one process):

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --main_process_port 0 training/train.py ...

The data folder (AutoPET or nnU-Net layout) is scanned, preprocessed once into a cache
keyed by the preprocessing config (``--cache_dir``, default OUTPUT/cache), and read
from there. Output::

    OUTPUT/checkpoints/checkpoint-<step>/   accelerate state (model, optimiser, lr, RNG, EMA, step)
                                            + petct_state.json (step, world size, state fingerprints)
    OUTPUT/<component>/                     EMA weights, save_pretrained (safetensors), at the end
    OUTPUT/stage.json                       what export.py needs: stage, grid, steps, data summary
    OUTPUT/init_weights.json                the --init_weights source, when the run started from one
    OUTPUT/train_log.json, logs/loss.jsonl  world size, runs, resumes; loss every log_steps
    OUTPUT/validation/*.png                 samples every validation_steps and at the end
    OUTPUT/posthoc_ema/phema-<step>-<std>.safetensors
                                            power-function EMA snapshots (training.posthoc_ema.snapshot_steps > 0);
                                            `python -m training.posthoc_ema` rebuilds any EMA length from them

EDM2 options (Karras et al. 2024): ``<stage>.unet.class: PETCTMPUNet3DModel`` (magnitude-preserving
UNet, whose forced weight normalisation runs here after every optimiser step), ``<stage>.loss.
learned_weighting``, ``training.lr_scheduler: edm2_inverse_sqrt`` with ``lr_ref_steps``, and
``training.posthoc_ema``. GPU options: ``mixed_precision`` (accelerate autocast), ``compile``,
``allow_tf32``, ``adam_fused``, ``gradient_checkpointing`` (both UNets).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig, TrainingOptions, load_config, training_options
from training.edm import make_generator
from training.lr_schedule import EDM2_SCHEDULE, edm2_lr_scheduler
from training.power_ema import PowerFunctionEMA
from training.script_errors import report_user_errors
from training.stages import available_stages, get_stage
from training.step_sampler import StepBatchSampler, item_seed

logger = logging.getLogger("petct.train")

#: command-line flags that override the training options of the same name
TRAINING_FLAGS = ("max_train_steps", "checkpointing_steps", "validation_steps", "mixed_precision", "learning_rate",
                  "lr_scheduler")
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "petct_state.json"
INIT_WEIGHTS_FILE = "init_weights.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="YAML/JSON config (training/configs/)")
    parser.add_argument("--stage", required=True, help=f"stage to train: {', '.join(available_stages())}")
    parser.add_argument("--data_dir", type=Path, required=True, help="AutoPET- or nnU-Net-layout data folder")
    parser.add_argument("--output_dir", type=Path, required=True, help="checkpoints, weights and logs go here")
    parser.add_argument("--max_train_steps", type=int, default=None, help="override training.max_train_steps")
    parser.add_argument("--resume_from_checkpoint", default=None,
                        help="'latest' (newest in OUTPUT/checkpoints; fresh start if none) or a checkpoint folder")
    parser.add_argument("--init_weights", type=Path, default=None,
                        help="start from the weights of a finished stage output or an exported pipeline folder, "
                             "for --stage seg a saved segmenter (its classes mapped by id, new ones added) "
                             "(fine-tuning: optimiser, schedule and EMA start fresh; a resumed checkpoint wins)")
    parser.add_argument("--cache_dir", type=Path, default=None,
                        help="preprocessing cache root (default OUTPUT/cache); share it between stages")
    parser.add_argument("--demographics_csv", type=Path, default=None,
                        help="weight/height table (default: data.demographics_csv or DATA/demographics.csv)")
    parser.add_argument("--checkpointing_steps", type=int, default=None, help="override training.checkpointing_steps")
    parser.add_argument("--validation_steps", type=int, default=None, help="override training.validation_steps")
    parser.add_argument("--mixed_precision", choices=("auto", "no", "fp16", "bf16"), default=None,
                        help="override training.mixed_precision")
    parser.add_argument("--preprocess_workers", type=int, default=None, help="override data.preprocess_workers")
    parser.add_argument("--learning_rate", type=float, default=None, help="override training.learning_rate")
    parser.add_argument("--lr_scheduler", default=None,
                        help="override training.lr_scheduler (a diffusers.optimization name, e.g. linear, cosine); "
                        "on resume the new schedule continues from the checkpoint's step: a cool-down")
    parser.add_argument("--seed", type=int, default=None, help="override the config seed")
    parser.add_argument("--max_train_seconds", type=float, default=None,
                        help="stop cleanly (checkpoint, EMA snapshots, weights) once this run has trained this long: "
                             "equal-compute comparisons; resume later with --resume_from_checkpoint latest")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------ helpers


def apply_overrides(config: TrainConfig, options: TrainingOptions, args: argparse.Namespace
                    ) -> tuple[TrainConfig, TrainingOptions]:
    """The config and training options with the given flags replacing their values (replace checks them again)."""
    given = {name: getattr(args, name) for name in TRAINING_FLAGS if getattr(args, name) is not None}
    options = dataclasses.replace(options, **given)
    data = config.data
    if args.preprocess_workers is not None:
        data = dataclasses.replace(data, preprocess_workers=args.preprocess_workers)
    if args.demographics_csv is not None:
        data = dataclasses.replace(data, demographics_csv=str(args.demographics_csv))
    seed = config.seed if args.seed is None else args.seed
    return dataclasses.replace(config, data=data, seed=seed), options


def resolve_mixed_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def fingerprint(tensors: Any) -> str:
    """sha256 over every tensor in a nested state (dicts in key order, lists in order); floats/ints included."""
    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                digest.update(str(key).encode())
                visit(value[key])
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif isinstance(value, int | float | bool | str) or value is None:
            digest.update(repr(value).encode())

    visit(tensors)
    return digest.hexdigest()


def state_fingerprints(model: torch.nn.Module, optimizer, ema) -> dict[str, str]:
    optimizer_state = optimizer.state_dict()
    return {
        "model_sha256": fingerprint(list(model.parameters())),
        "optimizer_sha256": fingerprint(optimizer_state["state"]),
        "ema_sha256": fingerprint(ema.state_dict()),
    }


def apply_learning_rate(lr_scheduler, learning_rate: float) -> list[float]:
    """Make ``learning_rate`` the schedule's base rate; return the rates now in effect.

    ``accelerator.load_state`` restores the checkpoint's optimizer and scheduler, whose base
    rate is the one the checkpoint was trained with, so without this a resumed run would ignore
    ``--learning_rate`` (e.g. a cool-down) and keep the old rate. The scheduler's own ``step``
    then sets every group's rate (and ``get_last_lr``) at the restored step: it is stepped
    back one step and forward again.
    """
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate wraps it
    scheduler.base_lrs = [learning_rate] * len(scheduler.base_lrs)
    for group in scheduler.optimizer.param_groups:
        group["initial_lr"] = learning_rate
    scheduler.last_epoch -= 1
    scheduler.step()
    return scheduler.get_last_lr()


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """The complete checkpoints, by step. A checkpoint is written under a temporary name and renamed
    when its state file is in, so a kill while saving leaves no ``checkpoint-<step>`` to resume from."""
    folder = output_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := CHECKPOINT_PATTERN.match(p.name)) and (p / STATE_FILE).is_file()]
    return sorted(found)


class TrainState:
    """Counters saved in every checkpoint (registered with accelerate)."""

    def __init__(self) -> None:
        self.global_step = 0
        self.samples_seen = 0

    def state_dict(self) -> dict[str, int]:
        return {"global_step": self.global_step, "samples_seen": self.samples_seen}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step = int(state["global_step"])
        self.samples_seen = int(state["samples_seen"])


def _append_json_run(path: Path, run: dict[str, Any]) -> None:
    from petct_pipeline.io import write_json

    data = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    data["runs"].append(run)
    data.update({k: run[k] for k in ("stage", "world_size", "distributed_type")})
    write_json(data, path)


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from petct_pipeline.data.scan import scan_dataset
    from petct_pipeline.demographic_range import DemographicRange
    from petct_pipeline.io import write_json
    from petct_pipeline.models.mp_layers import force_weight_normalization

    loaded = load_config(args.config)
    stage_cls = get_stage(args.stage)
    config, options = apply_overrides(loaded, training_options(loaded, args.stage), args)
    seed = config.seed
    output_dir = args.output_dir.resolve()
    cache_root = (args.cache_dir or output_dir / "cache").resolve()

    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs"),
                                   total_limit=options.checkpoints_total_limit)
    accelerator = Accelerator(
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(options.mixed_precision),
        log_with=None if options.report_to == "none" else options.report_to,
        project_config=project,
    )
    logging.basicConfig(
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
        format=f"%(asctime)s [rank {accelerator.process_index}] %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    world = accelerator.num_processes
    logger.info(
        "world size %d (%s, device %s, mixed precision %s); stage %s, config %s",
        world, accelerator.distributed_type, accelerator.device, accelerator.mixed_precision, args.stage, args.config,
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    if options.allow_tf32 and accelerator.device.type == "cuda":  # TF32 tensor cores for fp32 matmuls/convs
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_seed(seed)  # identical initial weights on every rank

    stage = stage_cls(config, accelerator)
    data = config.data
    with accelerator.main_process_first():  # rank 0 builds the cache, the others then find it up to date
        scan = scan_dataset(args.data_dir, demographics_csv=data.demographics_csv, layout=data.layout,
                            verify=data.verify)
        dataset = stage.build_dataset(scan, cache_root, data.preprocess_workers if accelerator.is_main_process else 0)
    if scan.skipped:
        logger.warning("%d studies skipped (listed in the cache index and train_log.json):\n%s",
                       len(scan.skipped), scan.summary_text())
    logger.info("%d training samples", len(dataset))

    model = stage.build_model()
    initialised = stage.init_from_pretrained(model, args.init_weights) if args.init_weights else None
    if initialised:
        logger.info("weights of %s loaded from %s", ", ".join(initialised["components"]), initialised["path"])
        if accelerator.is_main_process:  # remembered for resumed runs, which start from a checkpoint instead
            write_json(initialised, output_dir / INIT_WEIGHTS_FILE)
    elif args.resume_from_checkpoint and (output_dir / INIT_WEIGHTS_FILE).is_file():
        initialised = json.loads((output_dir / INIT_WEIGHTS_FILE).read_text())
    if options.gradient_checkpointing:
        stage.enable_gradient_checkpointing(model)
    magnitude_preserving = force_weight_normalization(model) > 0  # EDM2 eq. 66, also before the first step
    if options.compile:
        stage.compile_model(model, options.compile_backend)
    ema = EMAModel(
        model.parameters(), decay=options.ema.decay, use_ema_warmup=options.ema.use_warmup,
        power=options.ema.power, inv_gamma=options.ema.inv_gamma, update_after_step=options.ema.update_after_step,
    )
    learning_rate = options.learning_rate
    if options.scale_lr:
        learning_rate *= options.batch_size * options.gradient_accumulation_steps * world
    fused = options.adam_fused if options.adam_fused is not None else accelerator.device.type == "cuda"
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, betas=(options.adam_beta1, options.adam_beta2),
        weight_decay=options.adam_weight_decay, eps=options.adam_epsilon, fused=fused,
    )
    if options.lr_scheduler == EDM2_SCHEDULE:  # steps * world: accelerate steps a prepared scheduler per process
        lr_scheduler = edm2_lr_scheduler(optimizer, options.lr_warmup_steps * world, options.lr_ref_steps * world)
    else:
        lr_scheduler = get_scheduler(
            options.lr_scheduler, optimizer=optimizer,
            num_warmup_steps=options.lr_warmup_steps * world, num_training_steps=options.max_train_steps * world,
        )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema.to(accelerator.device)
    state = TrainState()
    accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(state)
    posthoc = options.posthoc_ema
    phema = None
    if posthoc.snapshot_steps:  # registered last, so checkpoints of runs without it still load
        phema = PowerFunctionEMA(accelerator.unwrap_model(model).named_parameters(), posthoc.stds)
        accelerator.register_for_checkpointing(phema)
    phema_dir = output_dir / "posthoc_ema"

    resumed: dict[str, Any] | None = None
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            found = checkpoints(output_dir)
            path = found[-1][1] if found else None
            if path is None:
                logger.info("no checkpoint in %s: starting from step 0", output_dir / CHECKPOINT_DIR)
        else:
            path = Path(args.resume_from_checkpoint)
            if not path.is_dir():
                raise FileNotFoundError(f"--resume_from_checkpoint {path}: no such checkpoint folder")
        if path is not None:
            accelerator.load_state(str(path))
            ema.to(accelerator.device)
            resumed = {"checkpoint": str(path), "step": state.global_step,
                       **state_fingerprints(accelerator.unwrap_model(model), optimizer, ema)}
            logger.info("resumed from %s at step %d", path, state.global_step)
            rates = apply_learning_rate(lr_scheduler, learning_rate)
            logger.info("learning rate %g (base %g)", rates[0], learning_rate)

    if accelerator.is_main_process and options.report_to != "none":
        accelerator.init_trackers(f"petct-{args.stage}", config={"stage": args.stage, **options.to_dict()})

    accumulation = options.gradient_accumulation_steps
    start_step = state.global_step
    sampler = StepBatchSampler(len(dataset), options.batch_size, world, accelerator.process_index, seed,
                               start=start_step * accumulation, stop=options.max_train_steps * accumulation)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=data.dataloader_num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )
    run: dict[str, Any] = {
        "stage": args.stage,
        "world_size": world,
        "distributed_type": str(accelerator.distributed_type),
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "config": str(args.config),
        "data_dir": str(args.data_dir),
        "start_step": start_step,
        "max_train_steps": options.max_train_steps,
        "batch_size_per_process": options.batch_size,
        "gradient_accumulation_steps": accumulation,
        "effective_batch_size": options.batch_size * accumulation * world,
        "samples": len(dataset),
        "resumed": resumed,
        "init_weights": initialised,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    loss_log = output_dir / "logs" / "loss.jsonl"
    validation_dir = output_dir / "validation"

    def save_checkpoint() -> Path:
        # written whole under a temporary name, then renamed; older ones go only once the new one is in,
        # so a kill at any moment leaves the last complete checkpoint to resume from
        path = output_dir / CHECKPOINT_DIR / f"checkpoint-{state.global_step}"
        partial = path.with_name(f".{path.name}.partial")
        if accelerator.is_main_process and partial.exists():
            shutil.rmtree(partial)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial))
        accelerator.wait_for_everyone()  # every rank's RNG state is in before the folder is renamed
        if accelerator.is_main_process:
            write_json({"step": state.global_step, "world_size": world, "stage": args.stage,
                        **state_fingerprints(accelerator.unwrap_model(model), optimizer, ema)}, partial / STATE_FILE)
            if path.exists():
                shutil.rmtree(path)
            os.replace(partial, path)
            if options.checkpoints_total_limit is not None:
                existing = checkpoints(output_dir)
                for _, old in existing[: max(0, len(existing) - options.checkpoints_total_limit)]:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        logger.info("saved %s", path)
        return path

    def validate() -> None:
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
            unwrapped.eval()
            try:
                image = stage.validate(unwrapped, state.global_step, validation_dir)
                if image is not None:
                    logger.info("validation image %s", image)
            finally:
                unwrapped.train()
                ema.restore(unwrapped.parameters())
        accelerator.wait_for_everyone()

    progress = tqdm(total=options.max_train_steps, initial=start_step, desc=f"train {args.stage}",
                    disable=not accelerator.is_local_main_process)
    model.train()
    last_checkpoint = start_step if resumed else -1
    last_snapshot = -1
    window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
    started = time.perf_counter()
    micro_step = start_step * accumulation
    for batch in loader:
        generator = make_generator(accelerator.device, item_seed(seed, micro_step, accelerator.process_index, -1))
        with accelerator.accumulate(model):
            loss, logs = stage.loss(model, batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {state.global_step}")
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), options.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if magnitude_preserving and accelerator.sync_gradients:
                force_weight_normalization(model)  # EDM2 eq. 66: weights back to unit norm after the update
        micro_step += 1
        window_loss += float(loss.detach())
        window_count += 1
        state.samples_seen += options.batch_size * world
        if not accelerator.sync_gradients:
            continue
        ema.step(model.parameters())
        state.global_step += 1
        progress.update(1)
        step = state.global_step
        if phema is not None:
            phema.update(step)
            if accelerator.is_main_process and (step % posthoc.snapshot_steps == 0 or step == options.max_train_steps):
                phema.snapshot(phema_dir, step)
                last_snapshot = step
        if step % options.log_steps == 0 or step == options.max_train_steps:
            mean = accelerator.gather(torch.tensor([window_loss / window_count], device=accelerator.device)).mean()
            elapsed = time.perf_counter() - window_start
            record = {"step": step, "loss": round(float(mean), 6), "lr": lr_scheduler.get_last_lr()[0],
                      "samples_per_s": round(window_count * options.batch_size * world / max(elapsed, 1e-9), 4),
                      "ema_decay": round(float(ema.cur_decay_value or 0.0), 6),
                      **{k: round(v, 5) for k, v in logs.items()}}
            progress.set_postfix(loss=f"{record['loss']:.4f}")
            if accelerator.is_main_process:
                loss_log.parent.mkdir(parents=True, exist_ok=True)
                with open(loss_log, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                logger.info("step %d loss %.5f lr %.3g %.3f samples/s", step, record["loss"], record["lr"],
                            record["samples_per_s"])
                accelerator.log({"loss": record["loss"], "lr": record["lr"]}, step=step)
            window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
        if options.checkpointing_steps and step % options.checkpointing_steps == 0:
            save_checkpoint()
            last_checkpoint = step
        if options.validation_steps and step % options.validation_steps == 0 and step != options.max_train_steps:
            validate()
        if step >= options.max_train_steps:
            break
        if args.max_train_seconds is not None:
            over = torch.tensor([float(time.perf_counter() - started > args.max_train_seconds)],
                                device=accelerator.device)
            if float(accelerator.reduce(over, reduction="sum")) > 0:  # every rank stops at the same step
                logger.info("time budget of %.0f s reached at step %d", args.max_train_seconds, step)
                break
    progress.close()
    seconds = time.perf_counter() - started
    if phema is not None and accelerator.is_main_process and last_snapshot != state.global_step:
        phema.snapshot(phema_dir, state.global_step)

    if last_checkpoint != state.global_step:
        save_checkpoint()
    validate()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
        facts = stage.save_final(unwrapped, output_dir)
        ema.restore(unwrapped.parameters())
        trained = state.global_step - start_step
        run.update({
            "end_step": state.global_step,
            "seconds": round(seconds, 2),
            "samples_per_s": round(trained * options.batch_size * accumulation * world / max(seconds, 1e-9), 4),
            "peak_memory_mb": _peak_memory_mb(accelerator.device),
        })
        stage_info = {
            "stage": args.stage,
            "components": list(stage.components),
            "config_name": config.name,
            "config_path": str(args.config),
            "seed": seed,
            "global_step": state.global_step,
            "init_weights": initialised,
            "world_size": world,
            "training": options.to_dict(),
            "data": {"data_dir": str(args.data_dir), **{k: v for k, v in stage.data_info.items() if k != "skipped"},
                     "skipped": stage.data_info.get("skipped", [])},
            "training_range": DemographicRange.from_subjects([study.demographics for study in scan.studies],
                                                             source=str(args.data_dir)).to_dict(),
            **facts,
        }
        write_json(stage_info, output_dir / "stage.json")
        run["skipped"] = len(stage.data_info.get("skipped", []))
        _append_json_run(output_dir / "train_log.json", run)
        logger.info("finished at step %d in %.1f s; weights in %s", state.global_step, seconds, output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # Linux: KiB
    except (ImportError, OSError):
        return math.nan


if __name__ == "__main__":
    sys.exit(report_user_errors("train.py", main))
