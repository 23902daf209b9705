"""Magnitude-preserving (MP) building blocks of EDM2 (Karras et al. 2024, "Analyzing and Improving the
Training Dynamics of Diffusion Models", section 3 and appendix B), in 3D.

Every operation keeps unit expected magnitude (RMS 1 per element) for unit-magnitude input, so
activations and weights cannot drift in scale during training and no normalisation layer or bias
is needed in the main path. The forced weight normalisation of EDM2 eq. 66 is applied by
``force_weight_normalization`` after each optimiser step (mathematically what EDM2 does at the
start of each training forward), so the forward pass itself never writes to a parameter: that
keeps it safe under gradient checkpointing, DDP and ``torch.compile``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MPConv3d",
    "MPFourier",
    "force_weight_normalization",
    "mp_cat",
    "mp_silu",
    "mp_sum",
    "normalize",
    "resample",
]

#: E[silu(x)^2]^(1/2) for x ~ N(0, 1) (EDM2 eq. 81)
SILU_MAGNITUDE = 0.596


def normalize(x: torch.Tensor, dim: int | tuple[int, ...] | None = None, eps: float = 1e-4) -> torch.Tensor:
    """``x`` scaled to unit RMS over ``dim`` (default: all but the first), computed in float32."""
    if dim is None:
        dim = tuple(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = torch.add(eps, norm, alpha=math.sqrt(norm.numel() / x.numel()))
    return x / norm.to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU rescaled to unit output magnitude for unit-variance Gaussian input (EDM2 eq. 81)."""
    return F.silu(x) / SILU_MAGNITUDE


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """Weighted sum (1 - t) a + t b that keeps unit magnitude for independent unit inputs (EDM2 eq. 88)."""
    dtype = torch.promote_types(a.dtype, b.dtype)  # autocast: bf16 convolutions meet the fp32 main path
    return a.to(dtype).lerp(b.to(dtype), t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, dim: int = 1, t: float = 0.5) -> torch.Tensor:
    """Concatenation whose two parts contribute (1 - t) and t of the magnitude, whatever their widths (eq. 103)."""
    na, nb = a.shape[dim], b.shape[dim]
    scale = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    dtype = torch.promote_types(a.dtype, b.dtype)
    return torch.cat([a.to(dtype) * (scale / math.sqrt(na) * (1 - t)), b.to(dtype) * (scale / math.sqrt(nb) * t)],
                     dim=dim)


def resample(x: torch.Tensor, mode: str = "keep") -> torch.Tensor:
    """EDM2's resampling with the [1, 1] filter in 3D: 2x box average down, nearest-neighbour 2x up."""
    if mode == "keep":
        return x
    if mode == "down":  # = avg_pool3d(x, 2), which CPUs lack in bf16
        b, c, nx, ny, nz = x.shape
        return x.reshape(b, c, nx // 2, 2, ny // 2, 2, nz // 2, 2).mean(dim=(3, 5, 7))
    if mode == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    raise ValueError(f"resample mode must be 'keep', 'down' or 'up', got {mode!r}")


class MPFourier(nn.Module):
    """Fourier features of a scalar with random fixed frequencies, unit magnitude (EDM2 eq. 75)."""

    def __init__(self, num_channels: int, bandwidth: float = 1.0) -> None:
        super().__init__()
        # fixed buffers: saved with the weights so a loaded model embeds the noise level identically
        self.register_buffer("freqs", 2 * math.pi * torch.randn(num_channels) * bandwidth)
        self.register_buffer("phases", 2 * math.pi * torch.rand(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.outer(x.to(torch.float32).reshape(-1), self.freqs.to(torch.float32))
        return ((y + self.phases.to(torch.float32)).cos() * math.sqrt(2)).to(x.dtype)


class MPConv3d(nn.Module):
    """Bias-free 3D convolution (or linear layer, ``kernel=0``) with normalised, fan-in-scaled weights (eq. 47).

    The stored weight is re-normalised to unit RMS per output channel by ``force_weight_normalization``
    (eq. 66); the forward pass normalises again ("traditional" weight normalisation) so the layer is
    magnitude-preserving also between optimiser steps and for weights loaded from elsewhere.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3) -> None:
        super().__init__()
        shape = (out_channels, in_channels, kernel, kernel, kernel) if kernel else (out_channels, in_channels)
        self.weight = nn.Parameter(torch.randn(shape))
        self.kernel = int(kernel)
        with torch.no_grad():
            self.weight.copy_(normalize(self.weight))

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        w = normalize(self.weight.to(torch.float32))
        w = w * (gain / math.sqrt(w[0].numel()))  # unit output magnitude for unit, uncorrelated input
        w = w.to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv3d(x, w, padding=self.kernel // 2)

    @torch.no_grad()
    def force_normalize_(self) -> None:
        """Forced weight normalisation (EDM2 eq. 66): the stored weight back to unit RMS per output channel."""
        self.weight.copy_(normalize(self.weight.to(torch.float32)).to(self.weight.dtype))


@torch.no_grad()
def force_weight_normalization(module: nn.Module) -> int:
    """Apply EDM2's forced weight normalisation to every ``MPConv3d`` in ``module``; returns how many.

    Call it after each optimiser step (the training loop does); a module without MP layers is left alone.
    """
    count = 0
    for layer in module.modules():
        if isinstance(layer, MPConv3d):
            layer.force_normalize_()
            count += 1
    return count
