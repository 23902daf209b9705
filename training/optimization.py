"""Optimisation options of one stage: the config's ``training`` section, overridden by ``<stage>.train``.

Frozen, so an override is ``dataclasses.replace``, which checks the values again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from diffusers.optimization import SchedulerType

from petct_pipeline.errors import InputError

from .options import check_int, check_number

__all__ = ["EMAOptions", "TrainingOptions"]

#: fields that must be integers >= 1, and those that may be 0 ("never" / "only at the end")
POSITIVE_INTS = ("batch_size", "gradient_accumulation_steps", "max_train_steps", "log_steps")
NON_NEGATIVE_INTS = ("lr_warmup_steps", "checkpointing_steps", "validation_steps")
POSITIVE_NUMBERS = ("learning_rate", "max_grad_norm", "adam_epsilon")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass(frozen=True)
class EMAOptions:
    """diffusers ``EMAModel`` settings of the weights that are validated and saved."""

    decay: float = 0.999
    use_warmup: bool = True
    power: float = 0.75
    inv_gamma: float = 1.0
    update_after_step: int = 0

    def __post_init__(self) -> None:
        check_number(self.decay, "training.ema.decay", "in [0, 1)", lambda v: 0.0 <= v < 1.0)


@dataclass(frozen=True)
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
        for name in POSITIVE_INTS + NON_NEGATIVE_INTS:
            check_int(getattr(self, name), f"training.{name}", 1 if name in POSITIVE_INTS else 0)
        limit = self.checkpoints_total_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError(f"training.checkpoints_total_limit must be null or an integer >= 1, got {limit!r}")
        for name in POSITIVE_NUMBERS:
            check_number(getattr(self, name), f"training.{name}", "a positive number", lambda v: v > 0)
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError(f"training.mixed_precision must be one of {', '.join(MIXED_PRECISION)}; "
                             f"got {self.mixed_precision!r}")
        schedules = [kind.value for kind in SchedulerType]
        if self.lr_scheduler not in schedules:
            raise InputError(f"training.lr_scheduler must be one of {', '.join(schedules)}; got {self.lr_scheduler!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
