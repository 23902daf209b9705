"""Seeds: one rule for every entry point (CLI flags, cohort CSVs, the Space), and what reproduces a subject."""

from __future__ import annotations

from typing import Any

import torch

from .errors import InputError, InputTypeError

__all__ = ["MAX_SEED", "check_seed", "check_generator"]

#: the largest seed ``torch.Generator.manual_seed`` keeps as given (negative seeds wrap around to 2**64 - n,
#: so a recorded seed would not be the one the user typed)
MAX_SEED = 2**63 - 1


def check_seed(value: Any, field: str = "seed") -> int:
    """``value`` as a seed in [0, MAX_SEED], or ``InputError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{field} must be an integer in [0, {MAX_SEED}], got {value!r}")
    if not 0 <= value <= MAX_SEED:
        raise InputError(f"{field}={value} is out of range: allowed [0, {MAX_SEED}]")
    return value


def check_generator(generator: Any, batch_size: int) -> None:
    """``generator`` is None, one ``torch.Generator``, or a list of one per subject."""
    items = generator if isinstance(generator, list) else [generator]
    if generator is not None and not all(isinstance(item, torch.Generator) for item in items):
        raise InputTypeError(f"generator must be a torch.Generator, a list of one per subject, or None, "
                             f"got {generator!r}")
    if isinstance(generator, list) and len(generator) != batch_size:
        raise InputError(f"got {len(generator)} generators for a batch of {batch_size} demographics")
