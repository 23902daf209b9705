"""Stage 1's denoiser: noisy volume, noise level and demographics -> the guided denoised estimate.

This is the one place the stage-1 rule lives (in the spirit of EDM2's ``Precond`` and
k-diffusion's denoiser wrappers): classifier-free guidance over conditional and
unconditional rows, the demographic prior's shift above its ``sigma_min``, and known voxels
for inpainting. The pipeline, training's validation sampling and the benchmarks all call it;
samplers are loops over it (diffusers' EDM schedulers, or a plain Euler loop over ``denoise``).

Karras et al. (2022), eq. 7: D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)).
diffusers' EDM schedulers take the raw network output F in ``step()`` and apply c_skip/c_out
themselves, so ``model_output`` returns F with every rule folded in, and ``denoise`` returns D.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from ..demographic_range import DemographicRange
from ..demographics import Demographics
from ..errors import InputError
from .demographic_encoder import DemographicEncoder
from .demographic_prior import DemographicPrior
from .unet_3d import PETCTUNet3DModel
from .unet_3d_mp import PETCTMPUNet3DModel

__all__ = [
    "KnownVoxels",
    "ModelOutput",
    "Stage1Condition",
    "Stage1Denoiser",
    "output_scalings",
    "run_scheduler",
    "sample_with_scheduler",
]


def output_scalings(scheduler, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of an EDM scheduler at ``sigma``, read through its public ``precondition_outputs``."""
    c_skip = scheduler.precondition_outputs(torch.ones(()), torch.zeros(()), sigma)
    c_out = scheduler.precondition_outputs(torch.zeros(()), torch.ones(()), sigma)
    return c_skip, c_out


@dataclass(frozen=True)
class KnownVoxels:
    """Voxels or channels whose clean model-space values are given (inpainting: PET from a given CT).

    ``mask`` (bool, broadcastable to the sampled volume; True = known) and ``values`` (model space,
    broadcastable too). Known voxels replace the denoised estimate at every step, so the sampler's
    trajectory there is the given volume plus the current noise, and the network sees a consistent
    input everywhere else (replacement in x0 space; RePaint, Lugmayr et al. 2022, without resampling).
    """

    mask: torch.Tensor
    values: torch.Tensor

    def __post_init__(self) -> None:
        if self.mask.dtype != torch.bool:
            raise InputError(f"known.mask must be a bool tensor, got {self.mask.dtype}")
        try:
            torch.broadcast_shapes(self.mask.shape, self.values.shape)
        except RuntimeError:
            raise InputError(f"known.mask {tuple(self.mask.shape)} and known.values {tuple(self.values.shape)} "
                             "do not broadcast") from None

    def check_shape(self, shape: Sequence[int]) -> None:
        """Raise ``InputError`` unless mask and values broadcast to the sampled volume's ``shape``."""
        for name, tensor in (("mask", self.mask), ("values", self.values)):
            try:
                if torch.broadcast_shapes(tensor.shape, tuple(shape)) != tuple(shape):
                    raise RuntimeError
            except RuntimeError:
                raise InputError(f"known.{name} has shape {tuple(tensor.shape)}, which does not broadcast to the "
                                 f"sampled volume {tuple(shape)}") from None

    def replace_output(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor,
                       scheduler) -> torch.Tensor:
        """The raw output F whose denoised estimate c_skip x + c_out F equals ``values`` where known."""
        c_skip, c_out = output_scalings(scheduler, sigma)
        mask = self.mask.to(sample.device)
        forced = (self.values.to(sample) - c_skip.to(sample) * sample) / c_out.to(sample)
        return torch.where(mask, forced, model_output)

    def paste(self, volume: torch.Tensor) -> torch.Tensor:
        """``volume`` with the known voxels set to their given values exactly."""
        return torch.where(self.mask.to(volume.device), self.values.to(volume), volume)


@dataclass(frozen=True)
class Stage1Condition:
    """What stage 1 is conditioned on for one batch, prepared once per sampling run by ``Stage1Denoiser.condition``.

    ``embedding`` holds the unconditional rows first, then the conditional ones, when guidance is on.
    ``prior_shift`` is already scaled by ``prior_scale`` (None = no prior).
    """

    embedding: torch.Tensor
    guidance_scale: float
    prior_shift: torch.Tensor | None = None
    prior_sigma_min: float = 0.0
    known: KnownVoxels | None = None

    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale != 1.0


class Stage1Denoiser:
    """The stage-1 score model with its conditioning rules: D(x; sigma, demographics).

    Holds the UNet, the demographic encoder, the EDM scheduler whose preconditioning the UNet was
    trained with, and optionally the demographic prior and the training range. With a range, the
    demographics are clamped to it before they reach the encoder and the prior: neither the UNet's
    embedding nor the linear prior extrapolates without bound (benchmarks/bench_extrapolation.py:
    unbounded, a 250 kg subject's stage-1 volume is noise). Stateless between calls, so one instance
    serves the pipeline, training's validation and any custom sampler.
    """

    def __init__(self, unet: PETCTUNet3DModel | PETCTMPUNet3DModel, demographic_encoder: DemographicEncoder, scheduler,
                 demographic_prior: DemographicPrior | None = None,
                 training_range: DemographicRange | None = None) -> None:
        self.unet = unet
        self.demographic_encoder = demographic_encoder
        self.scheduler = scheduler
        self.demographic_prior = demographic_prior
        self.training_range = training_range

    def condition(self, subjects: Sequence[Demographics], guidance_scale: float = 1.0, prior_scale: float = 0.0,
                  known: KnownVoxels | None = None, device: torch.device | str | None = None) -> Stage1Condition:
        """Embed the subjects (and the null embedding for guidance) and the prior's shift, once per run."""
        if prior_scale > 0 and self.demographic_prior is None:
            raise InputError(f"prior_scale={prior_scale:g} needs a demographic_prior, and this denoiser has none "
                             "(fit one with training/fit_prior.py, or pass prior_scale=0)")
        device = torch.device(device) if device is not None else self.unet.device
        if self.training_range is not None:  # bounded extrapolation: the nearest point of the training range
            subjects = [self.training_range.clamp(subject) for subject in subjects]
        features = self.demographic_encoder.features(list(subjects)).to(device)
        embedding = self.demographic_encoder(features).embedding
        if guidance_scale != 1.0:
            null = self.demographic_encoder(None, batch_size=len(subjects)).embedding
            embedding = torch.cat([null, embedding])
        prior_shift, prior_sigma_min = None, 0.0
        if prior_scale > 0:
            prior = self.demographic_prior
            prior_shift = prior_scale * prior(features.to(prior.device)).to(device)
            prior_sigma_min = float(prior.config.sigma_min)
        return Stage1Condition(embedding.to(self.unet.dtype), float(guidance_scale), prior_shift, prior_sigma_min,
                               known)

    def model_output(self, sample: torch.Tensor, sigma: torch.Tensor, condition: Stage1Condition,
                     model_input: torch.Tensor | None = None) -> torch.Tensor:
        """The raw output F that an EDM scheduler's ``step()`` expects, with guidance, prior and known voxels in.

        ``sample`` is the noisy volume x at noise level ``sigma`` (a scalar tensor, e.g.
        ``scheduler.sigmas[i]``); ``model_input`` is c_in x when the caller already has it (diffusers'
        ``scheduler.scale_model_input``), else it is computed here.
        """
        if model_input is None:
            model_input = self.scheduler.precondition_inputs(sample, sigma)
        timestep = self.scheduler.precondition_noise(sigma)
        if condition.uses_guidance:
            model_input = torch.cat([model_input] * 2)
        output = self.unet(model_input.to(self.unet.dtype), timestep.to(model_input.device),
                           encoder_embedding=condition.embedding).sample.float()
        if condition.uses_guidance:  # Ho & Salimans (2022), eq. 6
            unconditional, conditional = output.chunk(2)
            output = unconditional + condition.guidance_scale * (conditional - unconditional)
        if condition.prior_shift is not None and sigma > condition.prior_sigma_min:
            # the shift moves D; D = c_skip x + c_out F, so F moves by shift / c_out
            _, c_out = output_scalings(self.scheduler, sigma)
            output = output + condition.prior_shift / c_out.to(output.device)
        if condition.known is not None:
            output = condition.known.replace_output(output, sample, sigma, self.scheduler)
        return output

    def denoise(self, sample: torch.Tensor, sigma: torch.Tensor, condition: Stage1Condition) -> torch.Tensor:
        """D(x; sigma): the guided estimate of the clean volume (Karras et al. 2022, eq. 7)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        return self.scheduler.precondition_outputs(sample, self.model_output(sample, sigma, condition), sigma)


#: a stage's raw network output for an EDM scheduler: (noisy sample x, sigma, c_in x) -> F
ModelOutput = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def run_scheduler(
    scheduler,
    model_output: ModelOutput,
    latents: torch.Tensor,
    first_step: int = 0,
    generator: torch.Generator | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
    step_callback: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    stage: str = "base",
    known: KnownVoxels | None = None,
) -> torch.Tensor:
    """diffusers' sampling loop (pipeline_ddpm.py's step 3) over ``model_output``, from ``first_step``.

    The scheduler must have had ``set_timesteps`` (and, for ``first_step`` > 0, ``set_begin_index``)
    called; ``latents`` are at its noise level ``sigmas[first_step]``. ``progress`` wraps the steps
    (a pipeline's ``progress_bar``); ``step_callback(stage, timestep, latents)`` may replace the state.
    ``known`` voxels (which ``model_output`` is expected to honour) are pasted exactly at the end.
    Both stages of the cascade sample with it.
    """
    for index, timestep in enumerate(progress(scheduler.timesteps[first_step:])):
        model_input = scheduler.scale_model_input(latents, timestep)
        output = model_output(latents, scheduler.sigmas[first_step + index], model_input)
        latents = scheduler.step(output, timestep, latents, generator=generator).prev_sample
        if step_callback is not None:
            latents = step_callback(stage, timestep, latents)
    return latents if known is None else known.paste(latents)


def sample_with_scheduler(
    denoiser: Stage1Denoiser,
    condition: Stage1Condition,
    latents: torch.Tensor,
    first_step: int = 0,
    generator: torch.Generator | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
    step_callback: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Stage 1: ``run_scheduler`` with ``denoiser.scheduler`` over the guided denoiser under ``condition``."""

    def guided(sample: torch.Tensor, sigma: torch.Tensor, model_input: torch.Tensor) -> torch.Tensor:
        return denoiser.model_output(sample, sigma, condition, model_input=model_input)

    return run_scheduler(denoiser.scheduler, guided, latents, first_step, generator, progress, step_callback, "base",
                         condition.known)
