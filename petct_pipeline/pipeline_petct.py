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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.schedulers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler
from diffusers.utils.torch_utils import randn_tensor

from . import __version__
from .back_projection import back_project
from .demographic_range import DemographicRange
from .demographics import Demographics
from .errors import InputError, InputTypeError, ModelLoadError
from .geometry import body_slices, coordinate_grid, ras_affine
from .ground_truth import add_lesions, check_lesion_request, lesion_seed
from .intensity import from_model_space, hu_to_model, suv_to_model
from .model_files import (
    check_pipeline_folder,
    check_weights_cover,
    component_failure,
    components,
    folder_fingerprint,
    looks_like_path,
    model_name,
)
from .models import DemographicEncoder, DemographicPrior, PETCTMPUNet3DModel, PETCTUNet3DModel
from .models.denoiser import KnownVoxels, Stage1Denoiser, run_scheduler, sample_with_scheduler
from .pipeline_output import PETCTPipelineOutput
from .seeds import check_generator
from .step_callback import CALLBACK_TENSOR_INPUTS, StepCallback
from .zchunks import blend_weights, plan_z_chunks

__all__ = [
    "PETCTPipeline",
    "PETCTPipelineOutput",
    "default_guidance_scale",
    "validate_sampling_arguments",
    "DEFAULT_STEPS",
    "DEFAULT_SR_STEPS",
    "DEFAULT_SR_CHUNK_SIZE",
    "DEFAULT_SR_CHUNK_OVERLAP",
    "DEFAULT_BACK_PROJECTION_ITERATIONS",
    "DEFAULT_PRIOR_SCALE",
]

logger = logging.getLogger(__name__)

EDMScheduler = EDMEulerScheduler | EDMDPMSolverMultistepScheduler
_MAX_STEPS = 1000
_MAX_BACK_PROJECTION = 100
_COMMIT_IN_PATH = re.compile(r"snapshots[/\\]([0-9a-f]{40})")


#: default sampling steps of stage 1 and of the SR stage, chosen on measurements of the shipped model
#: (docs/experiments.md, entry 9: with the demographic prior, 16 stage-1 steps matched the 120 held-out phantoms
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
#: SR z-chunk length and overlap in output slices: the paper's 96-slice chunks with 8 overlap
DEFAULT_SR_CHUNK_SIZE = 96
DEFAULT_SR_CHUNK_OVERLAP = 8
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
    _callback_tensor_inputs = list(CALLBACK_TENSOR_INPUTS)

    def __init__(
        self,
        demographic_encoder: DemographicEncoder,
        unet: PETCTUNet3DModel | PETCTMPUNet3DModel,  # the FiLM or EDM2's magnitude-preserving UNet
        scheduler: EDMScheduler,
        sr_unet: PETCTUNet3DModel | PETCTMPUNet3DModel,
        sr_scheduler: EDMScheduler,
        demographic_prior: DemographicPrior | None = None,
        base_shape: list[int] = (28, 28, 48),
        base_spacing: float = 16.0,
        sr_scale: int = 4,
        sr_noise_level: float = 0.02,
        training_range: dict[str, Any] | None = None,
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
            training_range=None if training_range is None else DemographicRange.from_dict(training_range).to_dict(),
        )
        self._check_geometry()

    # ------------------------------------------------------------------ geometry
    def _check_geometry(self) -> None:
        base_shape = tuple(self.config.base_shape)
        if len(base_shape) != 3 or min(base_shape) < 1:
            raise InputError(f"base_shape must be three positive ints, got {base_shape}")
        if self.config.sr_scale < 1:
            raise InputError(f"sr_scale must be >= 1, got {self.config.sr_scale}")
        if self.unet.config.in_channels != 2 or self.unet.config.out_channels != 2:
            raise InputError("unet must map 2 channels (CT, PET) to 2 channels")
        if self.sr_unet.config.conditioning_channels != 5:
            raise InputError(
                "sr_unet needs conditioning_channels=5 (upsampled CT+PET and xyz coordinate maps), "
                f"got {self.sr_unet.config.conditioning_channels}"
            )
        prior = self.demographic_prior
        if prior is not None:
            if list(prior.config.shape) != list(base_shape):
                raise InputError(f"demographic_prior was fitted on grid {list(prior.config.shape)}, "
                                 f"but base_shape is {list(base_shape)}")
            if prior.config.num_features != self.demographic_encoder.num_features:
                raise InputError(f"demographic_prior takes {prior.config.num_features} features, the "
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
    def training_range(self) -> DemographicRange | None:
        """The demographics the weights were trained on (model_index.json), None when the folder records none."""
        recorded = self.config.get("training_range")
        return None if recorded is None else DemographicRange.from_dict(recorded)

    def out_of_distribution(self, subjects: Sequence[Demographics]) -> list[list[str] | None]:
        """Per subject, why it lies outside the training range ([] inside; None: no range recorded); warns once each.

        Such a subject still generates (it is inside human limits), but the model extrapolates.
        """
        recorded = self.training_range
        if recorded is None:
            return [None] * len(subjects)
        found = [recorded.reasons(subject) for subject in subjects]
        for subject, reasons in zip(subjects, found):
            if reasons:
                logger.warning("out of the training distribution (%s %g y %g kg %g cm): %s; %s", subject.sex,
                               subject.age, subject.weight, subject.height, "; ".join(reasons), recorded.describe())
        return found

    @property
    def default_prior_scale(self) -> float:
        """``DEFAULT_PRIOR_SCALE`` when the pipeline has a demographic prior, else 0 (off)."""
        return DEFAULT_PRIOR_SCALE if self.demographic_prior is not None else 0.0

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def prepare_subjects(demographics: Demographics | dict | Sequence[Demographics | dict]) -> list[Demographics]:
        """One ``Demographics`` per subject from a ``Demographics``, a dict, or a non-empty list of them."""
        items = [demographics] if isinstance(demographics, Demographics | dict) else demographics
        if not isinstance(items, Sequence) or isinstance(items, str) or len(items) == 0:
            raise InputTypeError(
                f"demographics must be a Demographics, a dict or a non-empty list of them, got {demographics!r}"
            )
        return [Demographics.from_dict(d) if isinstance(d, dict) else _checked_demographics(d) for d in items]

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
            raise InputError(f"prior_scale={prior_scale:g} needs a demographic_prior component, and this pipeline "
                             "has none (fit one with training/fit_prior.py, or pass prior_scale=0)")
        self.check_chunking(sr_chunk_size, sr_chunk_overlap)
        if output_type not in ("np", "pt"):
            raise InputError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        check_generator(generator, batch_size)

    def check_chunking(self, chunk_size: int, chunk_overlap: int) -> None:
        """The SR z-chunks must be whole multiples of the SR UNet's downsampling and overlap less than a chunk."""
        factor = self.sr_unet.spatial_multiple
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < factor:
            raise InputError(f"sr_chunk_size must be an integer >= {factor}, got {chunk_size!r}")
        if chunk_size % factor:
            raise InputError(
                f"sr_chunk_size must be a multiple of {factor} (the SR UNet's downsampling), got {chunk_size}"
            )
        if isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int):
            raise InputError(f"sr_chunk_overlap must be an integer in [0, {chunk_size}), got {chunk_overlap!r}")
        if not 0 <= chunk_overlap < chunk_size:
            raise InputError(f"sr_chunk_overlap must be in [0, sr_chunk_size={chunk_size}), got {chunk_overlap}")

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
        sr_chunk_size: int = DEFAULT_SR_CHUNK_SIZE,
        sr_chunk_overlap: int = DEFAULT_SR_CHUNK_OVERLAP,
        back_projection_iterations: int = DEFAULT_BACK_PROJECTION_ITERATIONS,
        prior_scale: float | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = CALLBACK_TENSOR_INPUTS,
        diagnosis: str | None = None,
        lesions: Sequence[Mapping[str, Any]] | None = None,
        ct: Any = None,
        ct_offset_mm: float | None = None,
    ) -> PETCTPipelineOutput | tuple | Any:
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
        ``diagnosis`` (NEGATIVE, LYMPHOMA, MELANOMA, LUNG_CANCER) or ``lesions`` (spec objects as in
        ``petct generate --lesions``) insert FDG-avid lesions with known truth into every subject
        (``output.lesions``), placed by the organ labels of the shipped segmenter (``output.organs``);
        the generator's seed fixes them too. Needs ``output_type="np"``.
        ``ct`` (a NIfTI path, a DICOM series folder or a ``conditional.InputCT``) generates the PET that fits that
        CT instead (``pet_from_ct``: one subject, the CT's own grid, returns a ``conditional.CTtoPETOutput``).
        """
        if ct is not None:
            if diagnosis is not None or lesions is not None or callback_on_step_end is not None:
                raise InputError("ct=... generates the PET of a given CT; diagnosis, lesions and callbacks are not "
                                 "supported with it")
            if output_type != "np" or not return_dict:
                raise InputError("ct=... returns a CTtoPETOutput (numpy, on the CT's grid): leave output_type='np' "
                                 "and return_dict=True")
            return self.pet_from_ct(ct, demographics, ct_offset_mm=ct_offset_mm, generator=generator,
                                    num_inference_steps=num_inference_steps,
                                    sr_num_inference_steps=sr_num_inference_steps, guidance_scale=guidance_scale,
                                    prior_scale=prior_scale, back_projection_iterations=back_projection_iterations)
        if ct_offset_mm is not None:
            raise InputError("ct_offset_mm places a given CT; pass ct=... with it")
        # 1. Check inputs and resolve the defaults that depend on the pipeline
        subjects = self.prepare_subjects(demographics)
        sr_noise_level = self.config.sr_noise_level if sr_noise_level is None else sr_noise_level
        prior_scale = self.default_prior_scale if prior_scale is None else prior_scale
        check_sampling_argument("prior_scale", prior_scale)  # before the default guidance compares it with 0
        guidance_scale = default_guidance_scale(prior_scale) if guidance_scale is None else guidance_scale
        self.check_inputs(num_inference_steps, sr_num_inference_steps, guidance_scale, sr_noise_level, sr_chunk_size,
                          sr_chunk_overlap, output_type, generator, len(subjects), back_projection_iterations,
                          prior_scale)
        diagnosis, lesion_specs = check_lesion_request(diagnosis, lesions)
        with_lesions = diagnosis is not None or lesion_specs is not None
        if with_lesions and output_type != "np":
            raise InputError(f"diagnosis/lesions need output_type='np', got output_type={output_type!r}")
        step_callback = StepCallback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        out_of_distribution = self.out_of_distribution(subjects)
        generators = generator if isinstance(generator, list) else [generator] * len(subjects)
        shared = not isinstance(generator, list) and len(subjects) > 1  # one generator drawn by every subject

        # 2. Stage 1: low-resolution CT+PET of every subject from the demographics; with one generator per
        #    subject, one run per subject, so a batch writes the same bytes as the single calls
        if isinstance(generator, list):
            low_res = torch.cat([self.sample_base([subject], num_inference_steps, guidance_scale, prior_scale,
                                                  subject_generator, step_callback=step_callback)
                                 for subject, subject_generator in zip(subjects, generator)])
        else:
            low_res = self.sample_base(subjects, num_inference_steps, guidance_scale, prior_scale, generator,
                                       step_callback=step_callback)

        # 3. Stage 2, one subject at a time: super-resolve, back-project onto stage 1, HU and SUV
        outputs_ct, outputs_pet, affines, metadata = [], [], [], []
        for index, subject in enumerate(subjects):
            subject_low_res = low_res[index : index + 1]
            volume = self.super_resolve(subject_low_res, subject, sr_num_inference_steps, sr_noise_level,
                                        generators[index], sr_chunk_size, sr_chunk_overlap,
                                        step_callback=step_callback)
            volume = self.back_project(volume, subject_low_res, back_projection_iterations)
            ct, pet, affine = self.decode(volume, output_type)
            outputs_ct.append(ct)
            outputs_pet.append(pet)
            affines.append(affine)
            metadata.append(self.sampling_record(generators[index], num_inference_steps, sr_num_inference_steps,
                                                 guidance_scale, sr_noise_level, back_projection_iterations,
                                                 prior_scale, batch=(index, len(subjects)) if shared else None,
                                                 out_of_distribution=out_of_distribution[index]))

        # 4. Offload
        self.maybe_free_model_hooks()
        output = PETCTPipelineOutput(ct=outputs_ct, pet=outputs_pet, affines=affines,
                                     spacing=(self.output_spacing,) * 3, demographics=subjects, metadata=metadata)

        # 5. Known truth (optional): organ labels and lesions with known uptake on the output grid
        if with_lesions:
            seeds = [lesion_seed(generators[index], index, shared) for index in range(len(subjects))]
            add_lesions(output, diagnosis, lesion_specs, seeds)
        if not return_dict:
            return output.ct, output.pet, output.affines
        return output

    @torch.no_grad()
    def pet_from_ct(
        self,
        ct: Any,
        demographics: Demographics | dict,
        ct_offset_mm: float | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        sr_num_inference_steps: int = DEFAULT_SR_STEPS,
        guidance_scale: float | None = None,
        prior_scale: float | None = None,
        back_projection_iterations: int = DEFAULT_BACK_PROJECTION_ITERATIONS,
        method: str = "replacement",
        jumps: int = 2,
        segmenter: Any = None,
    ) -> Any:
        """The FDG PET that fits a given CT and the subject's demographics, on the CT's own grid.

        ``ct`` is a NIfTI file, a DICOM series folder or a ``conditional.InputCT``; ``ct_offset_mm`` the
        distance from the vertex down to the CT's top slice (None: estimated from the CT's body and lung
        profiles). Stage 1 inpaints with the CT channel known (``method`` "replacement", the known-voxels
        seam, or "repaint", RePaint resampling with ``jumps`` passes per step); stage 2 keeps the 4 mm CT
        known. Returns a ``conditional.CTtoPETOutput`` (``.pet`` in SUVbw on the input grid, ``.save(dir)``);
        ``segmenter`` (``organ_labels.organ_segmenter()``) adds organ labels. Details: docs/ct_to_pet.md.
        """
        from .conditional import pet_from_ct

        subjects = self.prepare_subjects(demographics)
        if len(subjects) != 1:
            raise InputError(f"ct=... generates one subject: give one Demographics or dict, got {len(subjects)}")
        subject = subjects[0]
        prior_scale = self.default_prior_scale if prior_scale is None else prior_scale
        guidance_scale = default_guidance_scale(prior_scale) if guidance_scale is None else guidance_scale
        self.check_inputs(num_inference_steps, sr_num_inference_steps, guidance_scale, self.config.sr_noise_level,
                          DEFAULT_SR_CHUNK_SIZE, DEFAULT_SR_CHUNK_OVERLAP, "np", generator, 1,
                          back_projection_iterations, prior_scale)
        output = pet_from_ct(self, ct, subject, ct_offset_mm=ct_offset_mm, generator=generator,
                             num_inference_steps=num_inference_steps, sr_num_inference_steps=sr_num_inference_steps,
                             guidance_scale=guidance_scale, prior_scale=prior_scale,
                             back_projection_iterations=back_projection_iterations, method=method, jumps=jumps,
                             segmenter=segmenter)
        self.maybe_free_model_hooks()
        return output

    @property
    def stage1_denoiser(self) -> Stage1Denoiser:
        """Stage 1's guided denoiser over this pipeline's components (models/denoiser.py)."""
        return Stage1Denoiser(self.unet, self.demographic_encoder, self.scheduler, self.demographic_prior,
                              self.training_range)

    @torch.no_grad()
    def sample_base(
        self,
        subjects: Sequence[Demographics],
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float | None = None,
        prior_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        start_volume: torch.Tensor | None = None,
        strength: float = 1.0,
        known: KnownVoxels | None = None,
        step_callback: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Stage 1: (B, 2, *base_shape) model-space volumes, air and zero uptake outside each body.

        Samples with the pipeline's scheduler over ``stage1_denoiser`` (guidance, the demographic prior
        above its ``sigma_min``, ``known`` voxels kept at their given values). With ``start_volume``
        ((B, 2, *base_shape), model space) it starts from that volume noised to the scheduler's noise
        level at ``1 - strength`` of the way down the schedule and runs the remaining
        ``round(strength * num_inference_steps)`` steps (SDEdit, Meng et al. 2022; diffusers'
        img2img ``strength``). ``guidance_scale`` and ``prior_scale`` default as in ``__call__``.
        ``step_callback(stage, timestep, latents) -> latents`` runs after every step (a ``StepCallback``).
        """
        # 1. Check the arguments and resolve the defaults
        prior_scale = self.default_prior_scale if prior_scale is None else prior_scale
        check_sampling_argument("prior_scale", prior_scale)  # before the default guidance compares it with 0
        guidance_scale = default_guidance_scale(prior_scale) if guidance_scale is None else guidance_scale
        for name, value in (("num_inference_steps", num_inference_steps), ("guidance_scale", guidance_scale),
                            ("prior_scale", prior_scale)):
            check_sampling_argument(name, value)
        shape = (len(subjects), 2, *self.base_shape)
        first_step = self.start_step(num_inference_steps, strength, start_volume, shape)
        if known is not None:
            known.check_shape(shape)
        device = self._execution_device
        denoiser = self.stage1_denoiser
        condition = denoiser.condition(subjects, guidance_scale, prior_scale, known, device=device)

        # 2. Initial noise: pure noise at sigma_max, or the start volume noised to the first step's level
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        if start_volume is None:
            latents = latents * self.scheduler.init_noise_sigma
        else:
            self.scheduler.set_begin_index(first_step)
            latents = start_volume.to(device, torch.float32) + latents * self.scheduler.sigmas[first_step].to(device)

        # 3. Denoise: the scheduler's steps over the guided denoiser's output
        latents = sample_with_scheduler(denoiser, condition, latents, first_step, _first(generator), self.progress_bar,
                                        step_callback)
        return self.mask_outside_body(latents, subjects)

    def start_step(self, num_inference_steps: int, strength: float, start_volume: torch.Tensor | None,
                   shape: Sequence[int]) -> int:
        """Index of the first of ``num_inference_steps`` steps that an SDEdit start at ``strength`` runs."""
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0.0 < strength <= 1.0:
            raise InputError(f"strength must be a number in (0, 1], got {strength!r}")
        if start_volume is None:
            if strength != 1.0:
                raise InputError(f"strength={strength:g} needs a start_volume to start from")
            return 0
        if not isinstance(start_volume, torch.Tensor) or tuple(start_volume.shape) != tuple(shape):
            found = tuple(start_volume.shape) if isinstance(start_volume, torch.Tensor) else type(start_volume)
            raise InputError(f"start_volume must be a tensor of shape {tuple(shape)} (model space), got {found}")
        steps_run = min(round(strength * num_inference_steps), num_inference_steps)
        if steps_run < 1:
            raise InputError(f"strength={strength:g} runs no step of {num_inference_steps}; raise strength or steps")
        return num_inference_steps - steps_run

    def mask_outside_body(self, volume: torch.Tensor, subjects: Sequence[Demographics]) -> torch.Tensor:
        """Set the stage-1 slices below each subject's scan length (geometry.body_slices) to air / zero uptake."""
        background = torch.tensor([hu_to_model(-1000.0), suv_to_model(0.0)], device=volume.device, dtype=volume.dtype)
        nz = volume.shape[-1]
        volume = volume.clone()
        for index, subject in enumerate(subjects):
            body = body_slices(subject.height, self.config.base_spacing, max_slices=nz)
            volume[index, :, :, :, : nz - body] = background.view(2, 1, 1, 1)
        return volume

    @torch.no_grad()
    def super_resolve(
        self,
        low_res: torch.Tensor,
        subject: Demographics,
        num_inference_steps: int = DEFAULT_SR_STEPS,
        noise_level: float | None = None,
        generator: torch.Generator | None = None,
        chunk_size: int = DEFAULT_SR_CHUNK_SIZE,
        chunk_overlap: int = DEFAULT_SR_CHUNK_OVERLAP,
        known: KnownVoxels | None = None,
        step_callback: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Stage 2 for one subject: (1, 2, *base_shape) stage-1 volume -> (1, 2, X, Y, body z) at the output grid.

        Denoises the residual between the fine volume and the trilinearly upsampled ``low_res``,
        conditioned on that upsampled volume (plus ``noise_level`` Gaussian augmentation, default the
        pipeline's ``sr_noise_level``) and xyz coordinate maps, in z-chunks of ``chunk_size`` slices
        overlapping by ``chunk_overlap`` whose outputs are blended at every step (memory flat in body
        length). The output covers the subject's body slices (the top of the grid). ``known`` voxels
        (model space, on that output) are kept at their given values.
        """
        # 1. Check the arguments; the residual grid is the body rounded up to the UNet's downsampling
        noise_level = self.config.sr_noise_level if noise_level is None else noise_level
        check_sampling_argument("sr_num_inference_steps", num_inference_steps)
        check_sampling_argument("sr_noise_level", noise_level)
        self.check_chunking(chunk_size, chunk_overlap)
        device, dtype = self._execution_device, self.sr_unet.dtype
        full_shape = self.output_shape
        factor = self.sr_unet.spatial_multiple
        body = body_slices(subject.height, self.output_spacing, max_slices=full_shape[2])
        length = min(full_shape[2], math.ceil(body / factor) * factor)
        z_start = full_shape[2] - length
        if known is not None:
            known.check_shape((1, 2, *full_shape[:2], body))

        # 2. Conditioning: the noise-augmented upsampled stage-1 volume and the coordinate maps
        upsampled = F.interpolate(low_res, scale_factor=self.config.sr_scale, mode="trilinear", align_corners=False)
        upsampled = upsampled[..., z_start:]
        residual_noise = randn_tensor((1, 2, *full_shape[:2], length), generator=generator, device=device)
        augment_noise = randn_tensor(upsampled.shape, generator=generator, device=device)
        condition_volume = upsampled + noise_level * augment_noise
        coords = torch.from_numpy(coordinate_grid(full_shape, (0, 0, z_start), (*full_shape[:2], length)))
        conditioning = torch.cat([condition_volume, coords[None].to(device)], dim=1).to(dtype)
        known_residual = None if known is None else self.residual_known_voxels(known, upsampled, length - body)

        # 3. Denoise the residual: every chunk's output blended into one prediction per step
        chunks = plan_z_chunks(length, min(chunk_size, length), chunk_overlap)
        weights = [w.to(device).view(1, 1, 1, 1, -1) for w in blend_weights(chunks, length)]
        self.sr_scheduler.set_timesteps(num_inference_steps, device=device)

        def blended_output(sample: torch.Tensor, sigma: torch.Tensor, model_input: torch.Tensor) -> torch.Tensor:
            output = torch.zeros_like(sample)
            timestep = self.sr_scheduler.precondition_noise(sigma).to(device)  # c_noise, as scheduler.timesteps
            for (start, stop), weight in zip(chunks, weights):
                chunk_out = self.sr_unet(
                    model_input[..., start:stop].to(dtype), timestep, conditioning=conditioning[..., start:stop]
                ).sample
                output[..., start:stop] += weight * chunk_out.float()
            if known_residual is None:
                return output
            return known_residual.replace_output(output, sample, sigma, self.sr_scheduler)

        residual = run_scheduler(self.sr_scheduler, blended_output, residual_noise * self.sr_scheduler.init_noise_sigma,
                                 generator=generator, progress=self.progress_bar, step_callback=step_callback,
                                 stage="sr", known=known_residual)
        volume = upsampled + residual
        # 4. Crop away the padding added to reach a multiple of the UNet's downsampling
        return volume[..., length - body :]

    @staticmethod
    def residual_known_voxels(known: KnownVoxels, upsampled: torch.Tensor, padding: int) -> KnownVoxels:
        """``known`` (on the body slices) as known residual values on the padded SR grid."""
        shape = upsampled.shape
        mask = torch.zeros(shape, dtype=torch.bool, device=upsampled.device)
        values = torch.zeros(shape, dtype=torch.float32, device=upsampled.device)
        mask[..., padding:] = known.mask.to(upsampled.device).expand(*shape[:-1], shape[-1] - padding)
        values[..., padding:] = known.values.to(upsampled).expand(*shape[:-1], shape[-1] - padding)
        return KnownVoxels(mask, values - upsampled.float())

    def back_project(self, volume: torch.Tensor, low_res: torch.Tensor,
                     iterations: int = DEFAULT_BACK_PROJECTION_ITERATIONS) -> torch.Tensor:
        """Correct the SR output (the body slices at the top of the grid) until it downsamples to ``low_res``.

        ``volume`` (1, 2, X, Y, body z) from ``super_resolve``; ``low_res`` its (1, 2, *base_shape) input;
        the correction runs in HU and SUV (back_projection.py); 0 iterations returns ``volume`` unchanged.
        """
        check_sampling_argument("back_projection_iterations", iterations)
        if iterations == 0:
            return volume
        body = volume.shape[-1]
        full = F.interpolate(low_res.float(), scale_factor=self.config.sr_scale, mode="trilinear", align_corners=False)
        full[..., -body:] = volume.float()
        return back_project(full, low_res, iterations)[..., -body:].to(volume.dtype)

    def decode(self, volume: torch.Tensor, output_type: str = "np") -> tuple[Any, Any, np.ndarray]:
        """One (1, 2, X, Y, Z) model-space volume -> (CT in HU, PET in SUVbw, RAS affine of the output grid)."""
        ct, pet = from_model_space(volume[0, 0].float(), volume[0, 1].float())
        affine = ras_affine(tuple(ct.shape), (self.output_spacing,) * 3)
        if output_type == "np":
            ct, pet = ct.cpu().numpy(), pet.cpu().numpy()
        return ct, pet, affine

    def sampling_record(
        self,
        generator: torch.Generator | None,
        steps: int,
        sr_steps: int,
        guidance_scale: float,
        sr_noise_level: float,
        back_projection_iterations: int,
        prior_scale: float,
        batch: tuple[int, int] | None = None,
        out_of_distribution: list[str] | None = None,
    ) -> dict[str, Any]:
        """What reproduces one subject: generator, version, model and revision, and the sampling settings.

        ``batch`` = (index, size) when one generator was shared by a batch: the subject is then reproduced
        only by the same batch, so ``seed`` is None and ``batch_seed``/``batch_index``/``batch_size`` say how.
        ``out_of_distribution``: the reasons from ``self.out_of_distribution`` ([] inside the training range, None
        when the model records none).
        """
        name_or_path = str(self.config.get("_name_or_path", "") or "")
        commit = _COMMIT_IN_PATH.search(name_or_path)
        seed = generator.initial_seed() if isinstance(generator, torch.Generator) else None
        record = {
            "generator": "petct-diffusion",
            "version": __version__,
            "model": getattr(self, "_petct_model_id", None) or (model_name(name_or_path) if name_or_path else None),
            "revision": getattr(self, "_petct_revision", None) or (commit.group(1) if commit else None),
            "seed": seed if batch is None else None,
            "num_inference_steps": steps,
            "sr_num_inference_steps": sr_steps,
            "guidance_scale": guidance_scale,
            "sr_noise_level": sr_noise_level,
            "back_projection_iterations": back_projection_iterations,
            "prior_scale": prior_scale,
            "scheduler": type(self.scheduler).__name__,
            "sr_scheduler": type(self.sr_scheduler).__name__,
            "out_of_distribution": out_of_distribution,
        }
        if batch is not None:
            record.update(batch_seed=seed, batch_index=batch[0], batch_size=batch[1])
        return record

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> PETCTPipeline:
        """Load from a local folder or a hub repo id (offline: the local hub cache); never unpickles.

        A missing folder, an invalid config or a truncated weights file raises ``ModelLoadError``
        naming the file and what to do (model_files.py).
        """
        kwargs.setdefault("use_safetensors", True)
        name = pretrained_model_name_or_path
        local = Path(name).expanduser()
        if local.is_dir() or looks_like_path(name):
            check_pipeline_folder(name)
        try:
            pipe = super().from_pretrained(name, **kwargs)
        except ModelLoadError:
            raise
        except Exception as error:
            # a local folder that passed the checks: find the component that fails on its own (a config
            # value of the wrong type, weights of another shape); if none does, it is a bug: re-raised
            failure = component_failure(local) if local.is_dir() else None
            if failure is not None:
                raise failure from error
            if not isinstance(error, OSError | ValueError):
                raise
            reason = " ".join(str(error).split())[:300] or type(error).__name__
            raise ModelLoadError(f"could not load the pipeline {str(name)!r}: {reason}") from error
        if local.is_dir():
            check_weights_cover(local, {part: getattr(pipe, part, None) for part in components(local)})
        pipe._petct_model_id = model_name(name)
        pipe._petct_revision = kwargs.get("revision") or (
            folder_fingerprint(local) if local.is_dir() else _resolved_commit(name, kwargs))
        return pipe


def default_guidance_scale(prior_scale: float) -> float:
    """Stage 1's default guidance: lower while the demographic prior is in use (``prior_scale`` > 0)."""
    return DEFAULT_GUIDANCE_SCALE_WITH_PRIOR if prior_scale > 0 else DEFAULT_GUIDANCE_SCALE


#: the sampling arguments' allowed ranges: integers (low, high), non-negative numbers up to a bound
_INTEGER_RANGES = {
    "num_inference_steps": (1, _MAX_STEPS),
    "sr_num_inference_steps": (1, _MAX_STEPS),
    "back_projection_iterations": (0, _MAX_BACK_PROJECTION),
}
_NUMBER_MAXIMA = {"guidance_scale": 20.0, "sr_noise_level": 1.0, "prior_scale": _MAX_PRIOR_SCALE}


def check_sampling_argument(name: str, value: Any) -> None:
    """One sampling argument against its range; ``InputError`` naming it, the value and the range."""
    if name in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        return
    high = _NUMBER_MAXIMA[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise InputError(f"{name} must be a finite number in [0, {high:g}], got {value!r}")
    if not 0.0 <= value <= high:
        raise InputError(f"{name}={value:g} is out of range: allowed [0, {high:g}]")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def validate_sampling_arguments(
    num_inference_steps: int,
    sr_num_inference_steps: int,
    guidance_scale: float,
    sr_noise_level: float,
    back_projection_iterations: int = 0,
    prior_scale: float = 0.0,
) -> None:
    """Checks that need no model, so the CLI can reject bad flags before loading weights."""
    for name, value in (
        ("num_inference_steps", num_inference_steps),
        ("sr_num_inference_steps", sr_num_inference_steps),
        ("back_projection_iterations", back_projection_iterations),
        ("guidance_scale", guidance_scale),
        ("sr_noise_level", sr_noise_level),
        ("prior_scale", prior_scale),
    ):
        check_sampling_argument(name, value)


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
        raise InputTypeError(f"each demographics entry must be a Demographics or a dict, got {type(value).__name__}")
    return value
