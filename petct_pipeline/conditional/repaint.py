"""Stage-1 inpainting with resampling: RePaint (Lugmayr et al., CVPR 2022) over the stage-1 denoiser.

The Architecture seam (``models.denoiser.KnownVoxels``) already conditions by replacement: the
denoised estimate D(x; sigma) is set to the given values where they are known, at every step of
diffusers' scheduler. Replacement alone lets the unknown channel drift from the known one,
because each step sees the known part only through one noisy estimate (RePaint, Sec. 4.1). RePaint
harmonises by going back: after a step from sigma_i to sigma_{i+1} it adds fresh noise to return
to sigma_i and steps again, ``jumps`` times per step (their resampling with jump length 1).

In RePaint's DDPM notation, with m the known mask:
  eq. 8   x_{t-1} = m * x_{t-1}^known + (1 - m) * x_{t-1}^unknown,
  eq. 8a  x_{t-1}^known ~ N(sqrt(abar_{t-1}) x_0, (1 - abar_{t-1}) I)   (the given voxels, noised),
  eq. 8b  x_{t-1}^unknown ~ the reverse step p(x_{t-1} | x_t) of the model,
  eq. 1   back to t: x_t ~ N(sqrt(1 - beta_t) x_{t-1}, beta_t I).
In the variance-exploding EDM form used here (x = x_0 + sigma n, Karras et al. 2022), eq. 8a is
x^known = values + sigma_{i+1} n, eq. 8b is the Euler step of the probability-flow ODE (Karras
et al. 2022, Alg. 1 without the Heun correction) over the guided D, and eq. 1 is
x_i = x_{i+1} + sqrt(sigma_i^2 - sigma_{i+1}^2) n.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..demographics import Demographics
from ..errors import InputError
from ..models.denoiser import KnownVoxels

__all__ = ["repaint_base", "MAX_JUMPS"]

#: resampling passes per step allowed (1 = plain replacement, no going back)
MAX_JUMPS = 10


@torch.no_grad()
def repaint_base(pipe: Any, subjects: Sequence[Demographics], known: KnownVoxels, num_inference_steps: int,
                 guidance_scale: float, prior_scale: float, generator: torch.Generator | None = None,
                 jumps: int = 2) -> torch.Tensor:
    """Stage 1 of ``pipe`` inpainted around ``known`` with RePaint resampling: (B, 2, *base_shape), model space.

    ``pipe`` is a ``PETCTPipeline`` (its public ``stage1_denoiser``, ``scheduler``'s sigma ramp,
    ``base_shape``, ``device`` and ``mask_outside_body``). The noise levels are the pipeline
    scheduler's for ``num_inference_steps``; ``jumps`` passes are run per step (``jumps`` = 1: the
    replacement sampler, as ``pipe.sample_base(known=...)`` but with an Euler ODE step).
    """
    if isinstance(jumps, bool) or not isinstance(jumps, int) or not 1 <= jumps <= MAX_JUMPS:
        raise InputError(f"jumps must be an integer in [1, {MAX_JUMPS}], got {jumps!r}")
    device = pipe.device
    shape = (len(subjects), 2, *pipe.base_shape)
    known.check_shape(shape)
    denoiser = pipe.stage1_denoiser
    condition = denoiser.condition(subjects, guidance_scale, prior_scale, known, device=device)
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    sigmas = [float(s) for s in pipe.scheduler.sigmas[:num_inference_steps]] + [0.0]
    mask = known.mask.to(device)
    values = known.values.to(device, torch.float32)

    x = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32) * sigmas[0]
    for index in range(num_inference_steps):
        sigma, sigma_next = sigmas[index], sigmas[index + 1]
        for jump in range(jumps):
            denoised = denoiser.denoise(x, torch.tensor(sigma), condition)  # known voxels replaced in D (the seam)
            step = x + (sigma_next - sigma) * (x - denoised) / sigma  # eq. 8b: Euler step of the ODE
            noise = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
            step = torch.where(mask, values + sigma_next * noise, step)  # eq. 8 with 8a: the given voxels, noised
            if jump == jumps - 1 or sigma_next == 0.0:
                x = step
                break
            # eq. 1: back to sigma_i with fresh noise, then step again
            back = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
            x = step + (sigma ** 2 - sigma_next ** 2) ** 0.5 * back
    return pipe.mask_outside_body(known.paste(x), subjects)
