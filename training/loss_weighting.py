"""EDM2's learned per-noise-level loss weighting (Karras et al. 2024, section 5 "uncertainty", eq. 21).

A tiny MP network u(sigma) -- Fourier features of c_noise and one linear layer -- predicts the
log-variance of the loss at each noise level. Training minimises ``loss / exp(u) + u``: wherever
the loss is large (hard noise levels) it is down-weighted, so every noise level contributes about
equally to the gradient, without hand-tuning lambda(sigma). The module is trained with the denoiser
and is not needed at sampling, so it is not part of the exported pipeline.
"""

from __future__ import annotations

import torch
from torch import nn

from petct_pipeline.models.mp_layers import MPConv3d, MPFourier

__all__ = ["LearnedLossWeighting"]


class LearnedLossWeighting(nn.Module):
    """u(sigma): c_noise (B,) -> log-variance (B,), EDM2's ``logvar_fourier`` + ``logvar_linear``."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.fourier = MPFourier(channels)
        self.linear = MPConv3d(channels, 1, kernel=0)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return self.linear(self.fourier(c_noise.reshape(-1).float())).reshape(-1)
