"""Training configuration files (YAML or JSON): one file describes both stages of a cascade.

Top-level keys::

    name, seed
    data:      layout, demographics_csv, verify, preprocess {PreprocessConfig options except
               spacing/shape}, preprocess_workers, dataloader_num_workers
    encoder:   DemographicEncoder kwargs (base stage)
    training:  defaults of the optimisation options below, for every stage
    base:      grid {spacing, shape}, unet, scheduler, loss {P_mean, P_std}, cfg_dropout,
               validation {...}, train {overrides of `training`}
    sr:        grid, patch_size, unet, scheduler, loss, noise_augmentation, validation, train
    <stage>:   any further stage (a module training/stages/<stage>.py) reads its own section

Unknown keys raise ValueError naming the key and the allowed ones, so a typo never
silently trains with a default.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from diffusers.optimization import SchedulerType

__all__ = ["load_config", "TrainingOptions", "EMAOptions", "training_options", "check_keys"]

TOP_LEVEL_KEYS = ("name", "seed", "data", "encoder", "training", "base", "sr", "seg", "description")
DATA_KEYS = (
    "layout", "demographics_csv", "verify", "preprocess", "preprocess_workers", "dataloader_num_workers",
)


def check_keys(section: dict[str, Any], allowed: tuple[str, ...] | list[str], where: str) -> None:
    if not isinstance(section, dict):
        raise TypeError(f"{where} must be a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


@dataclass
class EMAOptions:
    decay: float = 0.999
    use_warmup: bool = True
    power: float = 0.75
    inv_gamma: float = 1.0
    update_after_step: int = 0


@dataclass
class TrainingOptions:
    """Optimisation options of one stage (the ``training`` section overridden by ``<stage>.train``)."""

    batch_size: int = 1  # per process
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    scale_lr: bool = False  # multiply by batch_size * accumulation * world size
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.0
    adam_epsilon: float = 1e-8
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    max_train_steps: int = 1000
    mixed_precision: str = "auto"  # auto: bf16 on GPUs that support it, fp16 on other GPUs, none on CPU
    gradient_checkpointing: bool = False
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 3
    validation_steps: int = 500  # 0 = only at the end
    log_steps: int = 10
    report_to: str = "none"  # or tensorboard / wandb (accelerate trackers)
    ema: EMAOptions = field(default_factory=EMAOptions)

    def __post_init__(self) -> None:
        if isinstance(self.ema, dict):
            check_keys(self.ema, [f.name for f in fields(EMAOptions)], "training.ema")
            self.ema = EMAOptions(**self.ema)
        positive_ints = ("batch_size", "gradient_accumulation_steps", "max_train_steps", "log_steps")
        for name in positive_ints + ("lr_warmup_steps", "checkpointing_steps", "validation_steps"):
            value = getattr(self, name)
            low = 1 if name in positive_ints else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"training.{name} must be an integer >= {low}, got {value!r}")
        limit = self.checkpoints_total_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"training.checkpoints_total_limit must be null or an integer >= 1, got {limit!r}")
        for name in ("learning_rate", "max_grad_norm", "adam_epsilon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"training.{name} must be a positive number, got {value!r}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ValueError(
                f"training.mixed_precision must be one of auto, no, fp16, bf16; got {self.mixed_precision!r}"
            )
        schedules = [kind.value for kind in SchedulerType]
        if self.lr_scheduler not in schedules:
            raise ValueError(f"training.lr_scheduler must be one of {', '.join(schedules)}; got {self.lr_scheduler!r}")
        if not 0.0 <= float(self.ema.decay) < 1.0:
            raise ValueError(f"training.ema.decay must be in [0, 1), got {self.ema.decay!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError("YAML configs need pyyaml: pip install 'petct-diffusion[train]'") from None
        data = yaml.safe_load(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config must be .yaml, .yml or .json, got {path.name}")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping at the top level")
    return data


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a config file; returns the dict with ``data`` defaults filled in."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    config = _read(path)
    check_keys(config, TOP_LEVEL_KEYS, f"{path.name} (top level)")
    data = {
        "layout": "auto",
        "demographics_csv": None,
        "verify": "header",
        "preprocess": {},
        "preprocess_workers": 1,
        "dataloader_num_workers": 0,
        **config.get("data", {}),
    }
    check_keys(data, DATA_KEYS, f"{path.name} data")
    config["data"] = data
    config.setdefault("name", path.stem)
    config.setdefault("seed", 0)
    config.setdefault("training", {})
    config["_path"] = str(path)
    return config


def training_options(config: dict[str, Any], stage: str) -> TrainingOptions:
    """``training`` defaults overridden by ``<stage>.train``, checked."""
    base = copy.deepcopy(config.get("training", {}))
    override = copy.deepcopy(config.get(stage, {}).get("train", {}))
    allowed = [f.name for f in fields(TrainingOptions)]
    check_keys(base, allowed, "training")
    check_keys(override, allowed, f"{stage}.train")
    ema = {**base.pop("ema", {}), **override.pop("ema", {})}
    merged = {**base, **override, "ema": ema}
    for key in ("learning_rate", "adam_epsilon", "adam_weight_decay"):  # YAML reads 1e-4 as a string
        if isinstance(merged.get(key), str):
            try:
                merged[key] = float(merged[key])
            except ValueError:
                raise ValueError(f"training.{key} must be a number, got {merged[key]!r}") from None
    return TrainingOptions(**merged)
