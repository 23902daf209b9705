"""EDM training objective (Karras et al. 2022) expressed through a diffusers EDM scheduler.

The scheduler that samples (EDMEulerScheduler / EDMDPMSolverMultistepScheduler) owns the
preconditioning: ``precondition_inputs`` (c_in), ``precondition_noise`` (c_noise, the
network's timestep) and ``precondition_outputs`` (c_skip, c_out). Training calls the same
three methods, so training and sampling cannot disagree about them.

    sigma ~ exp(N(P_mean, P_std^2))
    D(x + n; sigma) = c_skip x_noisy + c_out F(c_in x_noisy, c_noise)
    loss = lambda(sigma) || D - x ||^2,  lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2

With ``learned_weighting`` (EDM2, Karras et al. 2024, eq. 21) the denoiser also returns u(sigma),
a learned log-variance per sample, and the loss becomes lambda ||D - x||^2 / exp(u) + u.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .options import check_int, check_number

__all__ = ["EDMLossConfig", "edm_loss", "make_generator"]


@dataclass(frozen=True)
class EDMLossConfig:
    """``<stage>.loss``: the log-normal distribution of training noise levels."""

    P_mean: float = -1.2
    P_std: float = 1.2
    learned_weighting: bool = False  # EDM2's uncertainty MLP u(sigma) (training/loss_weighting.py)
    weighting_channels: int = 128  # its Fourier features (EDM2: logvar_channels 128)

    def __post_init__(self) -> None:
        check_number(self.P_mean, "loss.P_mean", "a finite number", math.isfinite)
        check_number(self.P_std, "loss.P_std", "a finite number > 0", lambda v: math.isfinite(v) and v > 0)
        check_int(self.weighting_channels, "loss.weighting_channels", 1)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu")
    generator.manual_seed(int(seed) % (2**63 - 1))
    return generator


def edm_loss(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
    scheduler,
    clean: torch.Tensor,
    generator: torch.Generator,
    loss_config: EDMLossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """EDM loss of ``denoiser(model_input, c_noise) -> raw output F`` on a clean batch (B, C, X, Y, Z).

    A denoiser that returns ``(F, u)`` with u of shape (B,) gets EDM2's learned weighting.
    """
    batch = clean.shape[0]
    device = clean.device
    normal = torch.randn(batch, generator=generator, device=generator.device).to(device)
    sigma = torch.exp(normal * loss_config.P_std + loss_config.P_mean)
    sigma_b = sigma.view(batch, *([1] * (clean.ndim - 1)))
    noise = torch.randn(clean.shape, generator=generator, device=generator.device).to(device)
    noisy = clean + noise * sigma_b
    model_input = scheduler.precondition_inputs(noisy, sigma_b)
    c_noise = scheduler.precondition_noise(sigma)
    raw = denoiser(model_input, c_noise)
    logvar = None
    if isinstance(raw, tuple):
        raw, logvar = raw
    denoised = scheduler.precondition_outputs(noisy, raw.float(), sigma_b)
    sigma_data = float(scheduler.config.sigma_data)
    weight = (sigma_b**2 + sigma_data**2) / (sigma_b * sigma_data) ** 2
    per_element = weight * (denoised - clean) ** 2
    logs = {"sigma_mean": float(sigma.mean()), "sigma_min": float(sigma.min()), "sigma_max": float(sigma.max())}
    if logvar is not None:  # EDM2 eq. 21: the loss over its predicted variance, plus the log-variance
        logvar_b = logvar.float().view(batch, *([1] * (clean.ndim - 1)))
        logs["weighted_mse"] = float(per_element.detach().mean())
        logs["logvar_mean"] = float(logvar.detach().mean())
        per_element = per_element / logvar_b.exp() + logvar_b
    return per_element.mean(), logs
