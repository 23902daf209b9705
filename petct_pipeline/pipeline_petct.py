"""PETCTPipeline: demographics -> low-resolution CT+PET (stage 1) -> residual super-resolution (stage 2).

Stage 1 samples a 2-channel volume on a coarse whole-body grid from the demographic
embedding, with classifier-free guidance (conditional and unconditional rows batched in
one forward). Stage 2 denoises the residual between the fine volume and the trilinearly
upsampled coarse one, conditioned on that (noise-augmented) upsampled volume and on
xyz coordinate maps; it runs in overlapping z-chunks whose outputs are blended at every
step, so its memory is flat in body length. Both stages use diffusers EDM schedulers,
which apply the Karras et al. (2022) preconditioning around the raw network output.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.schedulers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler
from diffusers.utils.torch_utils import randn_tensor

from . import __version__
from .back_projection import back_project
from .demographics import Demographics
from .geometry import body_slices, coordinate_grid, ras_affine
from .intensity import from_model_space, hu_to_model, suv_to_model
from .models import DemographicEncoder, DemographicPrior, PETCTUNet3DModel
from .pipeline_output import PETCTPipelineOutput
from .zchunks import blend_weights, plan_z_chunks

__all__ = ["PETCTPipeline", "PETCTPipelineOutput", "default_guidance_scale", "validate_sampling_arguments"]

logger = logging.getLogger(__name__)

EDMScheduler = EDMEulerScheduler | EDMDPMSolverMultistepScheduler
_MAX_STEPS = 1000
_MAX_BACK_PROJECTION = 100
_COMMIT_IN_PATH = re.compile(r"snapshots[/\\]([0-9a-f]{40})")


#: default sampling steps of stage 1 and of the SR stage, chosen on measurements of the shipped model
#: (model_card.md: with the demographic prior, 16 stage-1 steps matched the 120 held-out phantoms
#: better than 8, organ-volume mean |deviation| 4.8 vs 5.4 %; 1-2 SR steps beat 4); the full cascade
#: stays well under a minute on 2 CPU cores with them
DEFAULT_STEPS = 16
DEFAULT_SR_STEPS = 2
#: default classifier-free guidance of stage 1 without a demographic prior (1 = the plain conditional
#: model): the shipped score model follows the demographics too weakly at 1 (benchmarks/
#: bench_conditioning.py: body volume ~ weight at 0.46 of the data's slope at 1, 0.98 at 2), so it is
#: extrapolated away from the unconditional prediction
DEFAULT_GUIDANCE_SCALE = 2.0
#: default guidance when the demographic prior is in use: the prior supplies the demographic effects,
#: and guidance 2 on top of it cancelled the sexes' difference in enclosed air (bench_conditioning:
#: +124 mL at 2, +599 mL at 1, held-out phantoms +481 mL)
DEFAULT_GUIDANCE_SCALE_WITH_PRIOR = 1.0
#: default iterations of back-projecting the SR output onto the stage-1 volume in HU and SUV
#: (back_projection.py): fed the true 16 mm volumes of 24 held-out phantoms, the SR stage's organ
#: SUVmean bias fell from up to 12.5 % to within 1.3 % (benchmarks/bench_stage_errors.py); 6
#: iterations take about 1.6 s per subject on 2 CPU cores
DEFAULT_BACK_PROJECTION_ITERATIONS = 6
#: default weight of the demographic prior's shift (models/demographic_prior.py) when the pipeline has one
DEFAULT_PRIOR_SCALE = 0.6
_MAX_PRIOR_SCALE = 5.0


class PETCTPipeline(DiffusionPipeline):
    """Cascaded 3D diffusion pipeline that synthesises whole-body FDG PET/CT from demographics.

    Components: ``demographic_encoder`` (features -> embedding, with a learned null
    embedding), ``unet`` + ``scheduler`` (stage 1 on ``base_shape`` voxels of
    ``base_spacing`` mm), ``sr_unet`` + ``sr_scheduler`` (stage 2, ``sr_scale`` times finer);
    optionally ``demographic_prior``, a linear model of the demographic effects that stage 1 adds to
    its denoised estimate at high noise (``prior_scale``).
    """

    model_cpu_offload_seq = "demographic_encoder->unet->sr_unet"
    _optional_components = ["demographic_prior"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        demographic_encoder: DemographicEncoder,
        unet: PETCTUNet3DModel,
        scheduler: EDMScheduler,
        sr_unet: PETCTUNet3DModel,
        sr_scheduler: EDMScheduler,
        demographic_prior: DemographicPrior | None = None,
        base_shape: list[int] = (28, 28, 48),
        base_spacing: float = 16.0,
        sr_scale: int = 4,
        sr_noise_level: float = 0.02,
    ) -> None:
        super().__init__()
        self.register_modules(
            demographic_encoder=demographic_encoder,
            unet=unet,
            scheduler=scheduler,
            sr_unet=sr_unet,
            sr_scheduler=sr_scheduler,
            demographic_prior=demographic_prior,
        )
        self.register_to_config(
            base_shape=[int(n) for n in base_shape],
            base_spacing=float(base_spacing),
            sr_scale=int(sr_scale),
            sr_noise_level=float(sr_noise_level),
        )
        self._check_geometry()

    # ------------------------------------------------------------------ geometry
    def _check_geometry(self) -> None:
        base_shape = tuple(self.config.base_shape)
        if len(base_shape) != 3 or min(base_shape) < 1:
            raise ValueError(f"base_shape must be three positive ints, got {base_shape}")
        if self.config.sr_scale < 1:
            raise ValueError(f"sr_scale must be >= 1, got {self.config.sr_scale}")
        if self.unet.config.in_channels != 2 or self.unet.config.out_channels != 2:
            raise ValueError("unet must map 2 channels (CT, PET) to 2 channels")
        if self.sr_unet.config.conditioning_channels != 5:
            raise ValueError(
                "sr_unet needs conditioning_channels=5 (upsampled CT+PET and xyz coordinate maps), "
                f"got {self.sr_unet.config.conditioning_channels}"
            )
        prior = self.demographic_prior
        if prior is not None:
            if list(prior.config.shape) != list(base_shape):
                raise ValueError(f"demographic_prior was fitted on grid {list(prior.config.shape)}, "
                                 f"but base_shape is {list(base_shape)}")
            if prior.config.num_features != self.demographic_encoder.num_features:
                raise ValueError(f"demographic_prior takes {prior.config.num_features} features, the "
                                 f"demographic_encoder gives {self.demographic_encoder.num_features}")

    @property
    def base_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.config.base_shape)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return tuple(n * self.config.sr_scale for n in self.base_shape)

    @property
    def output_spacing(self) -> float:
        return self.config.base_spacing / self.config.sr_scale

    @property
    def default_prior_scale(self) -> float:
        """``DEFAULT_PRIOR_SCALE`` when the pipeline has a demographic prior, else 0 (off)."""
        return DEFAULT_PRIOR_SCALE if self.demographic_prior is not None else 0.0

    @staticmethod
    def _downsampling_factor(unet: PETCTUNet3DModel) -> int:
        return 2 ** (len(unet.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _as_demographics(demographics: Any) -> list[Demographics]:
        items = [demographics] if isinstance(demographics, Demographics | dict) else demographics
        if not isinstance(items, Sequence) or isinstance(items, str) or len(items) == 0:
            raise TypeError(
                f"demographics must be a Demographics, a dict or a non-empty list of them, got {demographics!r}"
            )
        return [Demographics.from_mapping(d) if isinstance(d, dict) else _checked_demographics(d) for d in items]

    def check_inputs(
        self,
        num_inference_steps: int,
        sr_num_inference_steps: int,
        guidance_scale: float,
        sr_noise_level: float,
        sr_chunk_size: int,
        sr_chunk_overlap: int,
        output_type: str,
        generator: Any,
        batch_size: int,
        back_projection_iterations: int,
        prior_scale: float,
    ) -> None:
        validate_sampling_arguments(
            num_inference_steps, sr_num_inference_steps, guidance_scale, sr_noise_level, back_projection_iterations,
            prior_scale,
        )
        if prior_scale > 0 and self.demographic_prior is None:
            raise ValueError(f"prior_scale={prior_scale:g} needs a demographic_prior component, and this pipeline "
                             "has none (fit one with training/fit_prior.py, or pass prior_scale=0)")
        factor = self._downsampling_factor(self.sr_unet)
        if isinstance(sr_chunk_size, bool) or not isinstance(sr_chunk_size, int) or sr_chunk_size < factor:
            raise ValueError(f"sr_chunk_size must be an integer >= {factor}, got {sr_chunk_size!r}")
        if sr_chunk_size % factor:
            raise ValueError(
                f"sr_chunk_size must be a multiple of {factor} (the SR UNet's downsampling), got {sr_chunk_size}"
            )
        if isinstance(sr_chunk_overlap, bool) or not isinstance(sr_chunk_overlap, int):
            raise ValueError(f"sr_chunk_overlap must be an integer in [0, {sr_chunk_size}), got {sr_chunk_overlap!r}")
        if not 0 <= sr_chunk_overlap < sr_chunk_size:
            raise ValueError(f"sr_chunk_overlap must be in [0, sr_chunk_size={sr_chunk_size}), got {sr_chunk_overlap}")
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch_size} demographics")

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        demographics: Demographics | dict | Sequence[Demographics | dict],
        num_inference_steps: int = DEFAULT_STEPS,
        sr_num_inference_steps: int = DEFAULT_SR_STEPS,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        sr_noise_level: float | None = None,
        sr_chunk_size: int = 96,
        sr_chunk_overlap: int = 8,
        back_projection_iterations: int = DEFAULT_BACK_PROJECTION_ITERATIONS,
        prior_scale: float | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> PETCTPipelineOutput | tuple:
        """Generate one PET/CT per entry of ``demographics``.

        ``guidance_scale`` 1 is the plain conditional model; above 1 it extrapolates away
        from the unconditional (null-embedding) prediction (default: ``DEFAULT_GUIDANCE_SCALE_WITH_PRIOR``
        while the demographic prior is in use, else ``DEFAULT_GUIDANCE_SCALE``). ``generator`` may be one
        generator or one per subject (then a batch equals the single calls). The callback
        receives ``(pipe, step, timestep, {"latents": ..., "stage": "base"|"sr"})`` with
        ``step`` counted over both stages; returning ``{"latents": x}`` replaces the state.
        ``back_projection_iterations`` (0 = off) corrects the SR output until it downsamples to
        the stage-1 volume in HU and SUV, so SR adds detail without changing organ means.
        ``prior_scale`` weights the ``demographic_prior``'s shift (default ``DEFAULT_PRIOR_SCALE`` when
        the pipeline has a prior, else 0 = off).
        """
        subjects = self._as_demographics(demographics)
        batch_size = len(subjects)
        sr_noise_level = self.config.sr_noise_level if sr_noise_level is None else sr_noise_level
        prior_scale = self.default_prior_scale if prior_scale is None else prior_scale
        if guidance_scale is None:
            guidance_scale = default_guidance_scale(prior_scale)
        self.check_inputs(
            num_inference_steps,
            sr_num_inference_steps,
            guidance_scale,
            sr_noise_level,
            sr_chunk_size,
            sr_chunk_overlap,
            output_type,
            generator,
            batch_size,
            back_projection_iterations,
            prior_scale,
        )
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs must be in {self._callback_tensor_inputs}, got {unknown}"
            )

        generators = generator if isinstance(generator, list) else [generator] * batch_size
        step_counter = _StepCounter(callback_on_step_end, callback_on_step_end_tensor_inputs)

        low_res = self._sample_base(subjects, num_inference_steps, guidance_scale, prior_scale, generator, step_counter)
        outputs_ct, outputs_pet, affines, metadata = [], [], [], []
        spacing = (self.output_spacing,) * 3
        for index, subject in enumerate(subjects):
            volume = self._sample_super_resolution(
                low_res[index : index + 1],
                subject,
                sr_num_inference_steps,
                sr_noise_level,
                sr_chunk_size,
                sr_chunk_overlap,
                generators[index],
                step_counter,
            )
            volume = self._back_project(volume, low_res[index : index + 1], back_projection_iterations)
            ct, pet = from_model_space(volume[0, 0].float(), volume[0, 1].float())
            affines.append(ras_affine(tuple(ct.shape), spacing))
            if output_type == "np":
                ct, pet = ct.cpu().numpy(), pet.cpu().numpy()
            outputs_ct.append(ct)
            outputs_pet.append(pet)
            sidecar = self._sidecar(
                generators[index],
                num_inference_steps,
                sr_num_inference_steps,
                guidance_scale,
                sr_noise_level,
                back_projection_iterations,
                prior_scale,
            )
            metadata.append(sidecar)

        self.maybe_free_model_hooks()
        if not return_dict:
            return outputs_ct, outputs_pet, affines
        return PETCTPipelineOutput(
            ct=outputs_ct, pet=outputs_pet, affines=affines, spacing=spacing, demographics=subjects, metadata=metadata
        )

    def _sample_base(
        self,
        subjects: list[Demographics],
        num_inference_steps: int,
        guidance_scale: float,
        prior_scale: float,
        generator: torch.Generator | list[torch.Generator] | None,
        step_counter: _StepCounter,
    ) -> torch.Tensor:
        """Stage 1: (B, 2, *base_shape) model-space volumes, air/zero outside each body.

        With ``prior_scale`` > 0 the denoised estimate is moved by ``prior_scale`` times the prior's
        shift at every step whose noise level is above the prior's ``sigma_min``. The shift is added
        to the network output divided by the scheduler's output scaling c_out, so any EDM scheduler
        takes it as part of its own prediction.
        """
        device, dtype = self._execution_device, self.unet.dtype
        batch_size = len(subjects)
        features = self.demographic_encoder.features(subjects).to(device)
        embedding = self.demographic_encoder(features).embedding
        do_guidance = guidance_scale != 1.0
        if do_guidance:
            null = self.demographic_encoder(None, batch_size=batch_size).embedding
            embedding = torch.cat([null, embedding])
        embedding = embedding.to(dtype)
        prior_shift = None
        if prior_scale > 0:
            prior_shift = prior_scale * self.demographic_prior(features.to(self.demographic_prior.device)).to(device)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch_size, 2, *self.base_shape)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        latents = latents * self.scheduler.init_noise_sigma
        for index, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents] * 2) if do_guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            output = self.unet(model_input.to(dtype), t, encoder_embedding=embedding).sample.float()
            if do_guidance:
                unconditional, conditional = output.chunk(2)
                output = unconditional + guidance_scale * (conditional - unconditional)
            sigma = self.scheduler.sigmas[index]
            if prior_shift is not None and sigma > self.demographic_prior.config.sigma_min:
                c_out = self.scheduler.precondition_outputs(torch.zeros(()), torch.ones(()), sigma)
                output = output + prior_shift / c_out.to(device)
            latents = self.scheduler.step(output, t, latents, generator=_first(generator)).prev_sample
            latents = step_counter(self, t, latents, "base")
        return self._mask_outside_body(latents, subjects)

    def _mask_outside_body(self, volume: torch.Tensor, subjects: list[Demographics]) -> torch.Tensor:
        """Set slices below each subject's scan length (geometry.body_slices) to air / zero uptake."""
        background = torch.tensor([hu_to_model(-1000.0), suv_to_model(0.0)], device=volume.device, dtype=volume.dtype)
        nz = volume.shape[-1]
        volume = volume.clone()
        for index, subject in enumerate(subjects):
            body = body_slices(subject.height, self.config.base_spacing, max_slices=nz)
            volume[index, :, :, :, : nz - body] = background.view(2, 1, 1, 1)
        return volume

    def _sample_super_resolution(
        self,
        low_res: torch.Tensor,
        subject: Demographics,
        num_inference_steps: int,
        sr_noise_level: float,
        chunk_size: int,
        chunk_overlap: int,
        generator: torch.Generator | None,
        step_counter: _StepCounter,
    ) -> torch.Tensor:
        """Stage 2 for one subject: (1, 2, X, Y, body z) at the output resolution, in model space."""
        device, dtype = self._execution_device, self.sr_unet.dtype
        scale = self.config.sr_scale
        full_shape = self.output_shape
        factor = self._downsampling_factor(self.sr_unet)
        body = body_slices(subject.height, self.output_spacing, max_slices=full_shape[2])
        length = min(full_shape[2], math.ceil(body / factor) * factor)
        z_start = full_shape[2] - length

        upsampled = F.interpolate(low_res, scale_factor=scale, mode="trilinear", align_corners=False)
        upsampled = upsampled[..., z_start:]
        residual_noise = randn_tensor((1, 2, *full_shape[:2], length), generator=generator, device=device)
        augment_noise = randn_tensor(upsampled.shape, generator=generator, device=device)
        condition_volume = upsampled + sr_noise_level * augment_noise
        coords = torch.from_numpy(coordinate_grid(full_shape, (0, 0, z_start), (*full_shape[:2], length)))
        conditioning = torch.cat([condition_volume, coords[None].to(device)], dim=1).to(dtype)

        chunks = plan_z_chunks(length, min(chunk_size, length), chunk_overlap)
        weights = [w.to(device).view(1, 1, 1, 1, -1) for w in blend_weights(chunks, length)]
        self.sr_scheduler.set_timesteps(num_inference_steps, device=device)
        residual = residual_noise * self.sr_scheduler.init_noise_sigma
        for t in self.progress_bar(self.sr_scheduler.timesteps):
            model_input = self.sr_scheduler.scale_model_input(residual, t)
            output = torch.zeros_like(residual)
            for (start, stop), weight in zip(chunks, weights):
                chunk_out = self.sr_unet(
                    model_input[..., start:stop].to(dtype), t, conditioning=conditioning[..., start:stop]
                ).sample
                output[..., start:stop] += weight * chunk_out.float()
            residual = self.sr_scheduler.step(output, t, residual, generator=generator).prev_sample
            residual = step_counter(self, t, residual, "sr")
        volume = upsampled + residual
        # crop away the padding added to reach a multiple of the UNet's downsampling
        return volume[..., length - body :]

    def _back_project(self, volume: torch.Tensor, low_res: torch.Tensor, iterations: int) -> torch.Tensor:
        """back_project the SR output (last ``body`` slices of the grid) onto its (1, 2, *base_shape) input."""
        if iterations <= 0:
            return volume
        body = volume.shape[-1]
        full = F.interpolate(low_res.float(), scale_factor=self.config.sr_scale, mode="trilinear", align_corners=False)
        full[..., -body:] = volume.float()
        return back_project(full, low_res, iterations)[..., -body:].to(volume.dtype)

    def _sidecar(
        self,
        generator: torch.Generator | None,
        steps: int,
        sr_steps: int,
        guidance_scale: float,
        sr_noise_level: float,
        back_projection_iterations: int,
        prior_scale: float,
    ) -> dict[str, Any]:
        name_or_path = str(self.config.get("_name_or_path", "") or "")
        commit = _COMMIT_IN_PATH.search(name_or_path)
        return {
            "generator": "petct-diffusion",
            "version": __version__,
            "model": getattr(self, "_petct_model_id", None) or name_or_path or None,
            "revision": getattr(self, "_petct_revision", None) or (commit.group(1) if commit else None),
            "seed": generator.initial_seed() if isinstance(generator, torch.Generator) else None,
            "num_inference_steps": steps,
            "sr_num_inference_steps": sr_steps,
            "guidance_scale": guidance_scale,
            "sr_noise_level": sr_noise_level,
            "back_projection_iterations": back_projection_iterations,
            "prior_scale": prior_scale,
            "scheduler": type(self.scheduler).__name__,
            "sr_scheduler": type(self.sr_scheduler).__name__,
        }

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> PETCTPipeline:
        """Load from a local folder or a hub repo id (offline: the local hub cache); never unpickles."""
        kwargs.setdefault("use_safetensors", True)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        pipe._petct_model_id = str(pretrained_model_name_or_path)
        pipe._petct_revision = kwargs.get("revision") or _resolved_commit(pretrained_model_name_or_path, kwargs)
        return pipe


def default_guidance_scale(prior_scale: float) -> float:
    """Stage 1's default guidance: lower while the demographic prior is in use (``prior_scale`` > 0)."""
    return DEFAULT_GUIDANCE_SCALE_WITH_PRIOR if prior_scale > 0 else DEFAULT_GUIDANCE_SCALE


def validate_sampling_arguments(
    num_inference_steps: int,
    sr_num_inference_steps: int,
    guidance_scale: float,
    sr_noise_level: float,
    back_projection_iterations: int = 0,
    prior_scale: float = 0.0,
) -> None:
    """Checks that need no model, so the CLI can reject bad flags before loading weights."""
    for name, value, low, high in (
        ("num_inference_steps", num_inference_steps, 1, _MAX_STEPS),
        ("sr_num_inference_steps", sr_num_inference_steps, 1, _MAX_STEPS),
        ("back_projection_iterations", back_projection_iterations, 0, _MAX_BACK_PROJECTION),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    for name, value, high in (
        ("guidance_scale", guidance_scale, 20.0),
        ("sr_noise_level", sr_noise_level, 1.0),
        ("prior_scale", prior_scale, _MAX_PRIOR_SCALE),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number in [0, {high:g}], got {value!r}")
        if not 0.0 <= value <= high:
            raise ValueError(f"{name}={value:g} is out of range: allowed [0, {high:g}]")


class _StepCounter:
    """Counts steps over both stages and runs the user's ``callback_on_step_end``."""

    def __init__(self, callback: Callable | None, tensor_inputs: Sequence[str]) -> None:
        self.callback = callback
        self.tensor_inputs = tuple(tensor_inputs)
        self.step = 0

    def __call__(self, pipe: PETCTPipeline, t: torch.Tensor, latents: torch.Tensor, stage: str) -> torch.Tensor:
        step = self.step
        self.step += 1
        if self.callback is None:
            return latents
        kwargs: dict[str, Any] = {"latents": latents} if "latents" in self.tensor_inputs else {}
        kwargs["stage"] = stage
        result = self.callback(pipe, step, t, kwargs) or {}
        return result.get("latents", latents)


def _resolved_commit(name_or_path: str | Path, kwargs: dict[str, Any]) -> str | None:
    """The hub commit a repo id resolved to (read from the local cache), for the sidecar."""
    if Path(name_or_path).is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(str(name_or_path), "model_index.json", cache_dir=kwargs.get("cache_dir"))
    match = _COMMIT_IN_PATH.search(str(cached)) if isinstance(cached, str) else None
    return match.group(1) if match else None


def _first(generator: torch.Generator | list[torch.Generator] | None) -> torch.Generator | None:
    return generator[0] if isinstance(generator, list) else generator


def _checked_demographics(value: Any) -> Demographics:
    if not isinstance(value, Demographics):
        raise TypeError(f"each demographics entry must be a Demographics or a dict, got {type(value).__name__}")
    return value
