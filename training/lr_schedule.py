"""EDM2's learning-rate schedule (Karras et al. 2024, section 3 / training_loop ``learning_rate_schedule``).

    lr(t) = lr_ref * min(t / t_warmup, 1) / sqrt(max(t / t_ref, 1))

a linear warm-up, then a constant rate until ``t_ref`` and an inverse-square-root decay after it.
EDM2 pairs it with forced weight normalisation: with weights of fixed norm the effective step size is
the learning rate itself, so it has to decay for the weights to settle. Counted in optimiser steps
here (EDM2 counts images; ``t_ref`` = ref_batches).
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["EDM2_SCHEDULE", "edm2_lr_factor", "edm2_lr_scheduler"]

#: the ``training.lr_scheduler`` name that selects this schedule
EDM2_SCHEDULE = "edm2_inverse_sqrt"


def edm2_lr_factor(step: int, warmup_steps: int, ref_steps: int) -> float:
    """The multiplier of the base learning rate after ``step`` optimiser steps."""
    factor = 1.0 / math.sqrt(max(step / ref_steps, 1.0)) if ref_steps > 0 else 1.0
    if warmup_steps > 0:
        factor *= min(step / warmup_steps, 1.0)
    return factor


def edm2_lr_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, ref_steps: int) -> LambdaLR:
    """A ``LambdaLR`` with ``edm2_lr_factor`` (steps as the scheduler counts them)."""
    return LambdaLR(optimizer, lambda step: edm2_lr_factor(step, warmup_steps, ref_steps))
