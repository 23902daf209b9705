"""Overlapping z-chunks with smooth blending weights for the super-resolution stage.

The SR network only ever sees ``chunk_size`` slices at once, so its memory does not grow
with body length. Each step's network outputs are blended with weights that ramp
linearly across overlaps; where a single chunk covers the volume all weights are one and
the result equals the unchunked computation exactly.
"""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["plan_z_chunks", "blend_weights"]


def plan_z_chunks(length: int, chunk_size: int, overlap: int) -> list[tuple[int, int]]:
    """Start/stop pairs covering ``[0, length)`` with chunks of ``chunk_size`` overlapping by >= ``overlap``."""
    if chunk_size < 1:
        raise InputError(f"sr_chunk_size must be >= 1, got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise InputError(f"sr_chunk_overlap must be in [0, sr_chunk_size={chunk_size}), got {overlap}")
    if length <= chunk_size:
        return [(0, length)]
    stride = chunk_size - overlap
    starts = list(range(0, length - chunk_size, stride)) + [length - chunk_size]
    return [(start, start + chunk_size) for start in starts]


def blend_weights(chunks: list[tuple[int, int]], length: int) -> list[torch.Tensor]:
    """Per-chunk 1D weights (over z) that ramp across each overlap and sum to one everywhere."""
    raw = []
    for index, (start, stop) in enumerate(chunks):
        weight = torch.ones(stop - start, dtype=torch.float64)
        if index > 0:
            ramp = chunks[index - 1][1] - start
            if ramp > 0:
                weight[:ramp] = torch.arange(1, ramp + 1, dtype=torch.float64) / (ramp + 1)
        if index < len(chunks) - 1:
            ramp = stop - chunks[index + 1][0]
            if ramp > 0:
                weight[-ramp:] = torch.minimum(
                    weight[-ramp:], torch.arange(ramp, 0, -1, dtype=torch.float64) / (ramp + 1)
                )
        raw.append(weight)
    total = torch.zeros(length, dtype=torch.float64)
    for (start, stop), weight in zip(chunks, raw):
        total[start:stop] += weight
    return [(weight / total[start:stop]).float() for (start, stop), weight in zip(chunks, raw)]
