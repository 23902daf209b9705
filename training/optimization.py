"""Optimisation options of one stage: the config's ``training`` section, overridden by ``<stage>.train``.

Frozen, so an override is ``dataclasses.replace``, which checks the values again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from diffusers.optimization import SchedulerType

from petct_pipeline.errors import InputError

from .lr_schedule import EDM2_SCHEDULE
from .options import check_int, check_number

__all__ = ["EMAOptions", "PostHocEMAOptions", "TrainingOptions"]

#: fields that must be integers >= 1, and those that may be 0 ("never" / "only at the end")
POSITIVE_INTS = ("batch_size", "gradient_accumulation_steps", "max_train_steps", "log_steps")
NON_NEGATIVE_INTS = ("lr_warmup_steps", "lr_ref_steps", "checkpointing_steps", "validation_steps")
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
class PostHocEMAOptions:
    """``training.posthoc_ema``: power-function EMAs tracked for post-hoc reconstruction (EDM2 section 3.1).

    ``snapshot_steps`` 0 = off; otherwise both EMAs are written to OUTPUT/posthoc_ema every that many
    steps and at the end, and ``python -m training.posthoc_ema`` rebuilds any sigma_rel from them.
    """

    stds: tuple[float, ...] = (0.05, 0.10)
    snapshot_steps: int = 0

    def __post_init__(self) -> None:
        check_int(self.snapshot_steps, "training.posthoc_ema.snapshot_steps", 0)
        if not self.stds or any(isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s < 0.28
                                for s in self.stds):
            # sigma_rel of a power function is below sqrt(1/12) ~ 0.289 (gamma -> 0)
            raise InputError(f"training.posthoc_ema.stds must be numbers in (0, 0.28), got {self.stds!r}")


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
    lr_scheduler: str = "constant_with_warmup"  # a diffusers.optimization name, or edm2_inverse_sqrt
    lr_warmup_steps: int = 0
    lr_ref_steps: int = 70000  # edm2_inverse_sqrt: constant until this step, then 1/sqrt(step / lr_ref_steps)
    max_grad_norm: float = 1.0
    max_train_steps: int = 1000
    mixed_precision: str = "auto"  # auto: bf16 on GPUs that support it, fp16 on other GPUs, none on CPU
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the UNet (nn.Module.compile: state-dict keys unchanged)
    compile_backend: str = "inductor"  # torch.compile backend; "aot_eager" traces without code generation
    allow_tf32: bool = True  # TF32 matmuls and convolutions on Ampere+ GPUs (no effect on CPU)
    adam_fused: bool | None = None  # fused AdamW kernel; None = on CUDA only
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 3
    validation_steps: int = 500  # 0 = only at the end
    log_steps: int = 10
    report_to: str = "none"  # or tensorboard / wandb (accelerate trackers)
    ema: EMAOptions = field(default_factory=EMAOptions)
    posthoc_ema: PostHocEMAOptions = field(default_factory=PostHocEMAOptions)

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
        schedules = [kind.value for kind in SchedulerType] + [EDM2_SCHEDULE]
        if self.lr_scheduler not in schedules:
            raise InputError(f"training.lr_scheduler must be one of {', '.join(schedules)}; got {self.lr_scheduler!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
