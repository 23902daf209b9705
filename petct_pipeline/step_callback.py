"""Step callbacks over both stages of the cascade (diffusers' ``callback_on_step_end`` contract)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from .errors import InputError, InputTypeError

__all__ = ["StepCallback", "CALLBACK_TENSOR_INPUTS"]

#: the tensors a callback may read and replace
CALLBACK_TENSOR_INPUTS = ("latents",)


class StepCallback:
    """Counts sampling steps over stage 1 and the SR stage and runs the user's ``callback_on_step_end``.

    The callback receives ``(pipe, step, timestep, {"latents": x, "stage": "base"|"sr"})`` with ``step``
    counted over both stages; returning ``{"latents": y}`` replaces the sampler's state.
    """

    def __init__(self, pipe: Any, callback: Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]] | None = None,
                 tensor_inputs: Sequence[str] = CALLBACK_TENSOR_INPUTS) -> None:
        if isinstance(tensor_inputs, str) or not isinstance(tensor_inputs, Iterable):
            raise InputTypeError(f"callback_on_step_end_tensor_inputs must be a list of names from "
                                 f"{list(CALLBACK_TENSOR_INPUTS)}, got {tensor_inputs!r}")
        unknown = {repr(name) for name in tensor_inputs if name not in CALLBACK_TENSOR_INPUTS}
        if unknown:
            raise InputError(f"callback_on_step_end_tensor_inputs must be in {list(CALLBACK_TENSOR_INPUTS)}, "
                             f"got {sorted(unknown)}")
        self.pipe = pipe
        self.callback = callback
        self.tensor_inputs = tuple(tensor_inputs)
        self.step = 0

    def __call__(self, stage: str, timestep: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Count one step of ``stage`` and return the (possibly replaced) latents."""
        step = self.step
        self.step += 1
        if self.callback is None:
            return latents
        kwargs: dict[str, Any] = {"latents": latents} if "latents" in self.tensor_inputs else {}
        kwargs["stage"] = stage
        result = self.callback(self.pipe, step, timestep, kwargs) or {}
        return result.get("latents", latents)
