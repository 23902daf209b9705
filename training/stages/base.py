"""Stage 1: the low-resolution CT+PET generator conditioned on the demographic embedding.

Trains the DemographicEncoder and the UNet together with the EDM loss; a fraction
``cfg_dropout`` of the rows gets the encoder's learned null embedding, so the same model
is also the unconditional one that classifier-free guidance needs at sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from petct_pipeline.data.cache import CacheIndex
from petct_pipeline.data.study import ScanResult
from petct_pipeline.demographics import Demographics
from petct_pipeline.errors import InputError
from petct_pipeline.intensity import from_model_space
from petct_pipeline.models import DemographicEncoder
from petct_pipeline.models.denoiser import Stage1Denoiser, sample_with_scheduler

from ..config import TrainConfig
from ..edm import EDMLossConfig, edm_loss
from ..loss_weighting import LearnedLossWeighting
from ..options import check_number
from ..stage_options import GridOptions, SamplingValidation, build_unet, check_unet_kwargs
from ..validation_images import save_validation_png
from . import Stage, build_scheduler

DEFAULT_VALIDATION_SUBJECTS = (
    {"age": 60, "sex": "M", "weight": 85, "height": 178},
    {"age": 45, "sex": "F", "weight": 62, "height": 163},
)


@dataclass(frozen=True)
class BaseValidation(SamplingValidation):
    """``base.validation``: the subjects sampled for the validation images, and the guidance scale."""

    subjects: tuple[dict[str, Any], ...] = DEFAULT_VALIDATION_SUBJECTS
    guidance_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "guidance_scale", check_number(
            self.guidance_scale, "base.validation.guidance_scale", "a finite number", math.isfinite))


@dataclass(frozen=True)
class BaseOptions:
    """The ``base:`` section."""

    grid: GridOptions = field(default_factory=GridOptions)
    unet: dict[str, Any] = field(default_factory=dict)  # {class: a UNET_CLASSES name, **its kwargs but the stage-set}
    scheduler: dict[str, Any] = field(default_factory=dict)  # {class: an EDM scheduler, **its kwargs}
    loss: EDMLossConfig = field(default_factory=EDMLossConfig)
    cfg_dropout: float = 0.1  # fraction of rows trained with the null embedding (classifier-free guidance)
    validation: BaseValidation = field(default_factory=BaseValidation)
    train: dict[str, Any] = field(default_factory=dict)  # overrides of `training` (config.training_options)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cfg_dropout", check_number(
            self.cfg_dropout, "base.cfg_dropout", "a number in [0, 1)", lambda v: 0.0 <= v < 1.0))
        check_unet_kwargs(self.unet, "base", "2 channels in/out, embedding from encoder")


class BaseDenoiser(nn.Module):
    """Encoder + UNet (+ EDM2's loss weighting) as one module: one DDP wrapper, optimiser and EMA cover all.

    With a ``loss_weighting`` module the forward pass returns ``(F, u(sigma))`` (see training/edm.py).
    """

    def __init__(self, unet: nn.Module, encoder: DemographicEncoder,
                 loss_weighting: LearnedLossWeighting | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.encoder = encoder
        self.loss_weighting = loss_weighting

    def forward(self, sample: torch.Tensor, c_noise: torch.Tensor, features: torch.Tensor, drop: torch.Tensor):
        # drop is always given (even all False) so the null embedding is always in the graph (DDP needs that)
        embedding = self.encoder(features, drop=drop).embedding
        raw = self.unet(sample, c_noise, encoder_embedding=embedding).sample
        if self.loss_weighting is None:
            return raw
        return raw, self.loss_weighting(c_noise)


class CachedVolumes(Dataset):
    """Whole model-space volumes of one cache, with flat demographic fields for default collation."""

    def __init__(self, index: CacheIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: tuple[int, int] | int) -> dict[str, Any]:
        position = item[0] if isinstance(item, tuple) else item
        demographics = self.index.entries[position]["demographics"]
        return {
            "volume": torch.from_numpy(self.index.load_volume(position)),
            "age": float(demographics["age"]),
            "sex": demographics["sex"],
            "weight": float(demographics["weight"]),
            "height": float(demographics["height"]),
        }


def batch_demographics(batch: dict[str, Any]) -> list[Demographics]:
    return [
        Demographics(age=float(a), sex=s, weight=float(w), height=float(h))
        for a, s, w, h in zip(batch["age"], batch["sex"], batch["weight"], batch["height"])
    ]


class BaseStage(Stage):
    name = "base"
    options_type = BaseOptions
    options: BaseOptions
    components = ("demographic_encoder", "unet", "scheduler")
    pretrained_components = {"encoder": "demographic_encoder", "unet": "unet"}

    def __init__(self, config: TrainConfig, accelerator) -> None:
        super().__init__(config, accelerator)
        self.grid = self.options.grid
        self.scheduler = build_scheduler(self.options.scheduler, self.name)
        self.validation_subjects = [Demographics.from_mapping(s) for s in self.options.validation.subjects]
        self.preprocess_config(self.grid)  # validate early

    def build_dataset(self, scan: ScanResult, cache_root: Path, num_workers: int) -> Dataset:
        self.index = self.cache(scan, cache_root, self.grid, num_workers)
        return CachedVolumes(self.index)

    def build_model(self) -> nn.Module:
        encoder = DemographicEncoder(**self.config.encoder)
        unet = build_unet(self.options.unet, self.name, in_channels=2, out_channels=2, conditioning_channels=0,
                          embedding_dim=encoder.config.embedding_dim)
        shape = tuple(self.preprocess_config(self.grid).shape)
        if any(n % unet.spatial_multiple for n in shape):
            raise InputError(f"base.grid.shape {list(shape)} must be divisible by {unet.spatial_multiple} "
                             f"(2 ** (len(block_out_channels) - 1))")
        loss = self.options.loss
        return BaseDenoiser(unet, encoder,
                            LearnedLossWeighting(loss.weighting_channels) if loss.learned_weighting else None)

    def loss(self, model, batch, generator):
        volume = batch["volume"].to(self.device, non_blocking=True)
        encoder = self.accelerator.unwrap_model(model).encoder
        features = encoder.features(batch_demographics(batch)).to(self.device)
        drop = torch.rand(volume.shape[0], generator=generator, device=generator.device).to(self.device)
        drop = drop < self.options.cfg_dropout
        loss, logs = edm_loss(
            lambda x, c: model(x, c, features, drop), self.scheduler, volume, generator, self.options.loss
        )
        logs["dropped"] = float(drop.float().mean())
        return loss, logs

    @torch.no_grad()
    def sample(self, model: BaseDenoiser, subjects: list[Demographics], steps: int, guidance: float,
               generator: torch.Generator) -> torch.Tensor:
        """Low-resolution volumes (B, 2, X, Y, Z) in model space, sampled with PETCTPipeline's stage-1 denoiser."""
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        denoiser = Stage1Denoiser(model.unet, model.encoder, scheduler)
        condition = denoiser.condition(subjects, guidance_scale=guidance, device=self.device)
        shape = (len(subjects), 2, *self.preprocess_config(self.grid).shape)
        latents = torch.randn(shape, generator=generator, device=generator.device).to(self.device)
        return sample_with_scheduler(denoiser, condition, latents * scheduler.init_noise_sigma)

    def validate(self, model, step, out_dir):
        options = self.options.validation
        subjects = self.validation_subjects
        generator = torch.Generator().manual_seed(options.seed)
        volumes = self.sample(model, subjects, options.num_inference_steps, options.guidance_scale, generator)
        rows = []
        for volume in volumes.cpu().numpy():
            ct, pet = from_model_space(volume[0], volume[1])
            rows.append((np.asarray(ct), np.asarray(pet)))
        titles = [f"step {step}: {s.sex} {s.age:g} y {s.weight:g} kg {s.height:g} cm" for s in subjects]
        return save_validation_png(out_dir / f"base_step_{step:07d}.png", rows, titles,
                                   spacing=float(self.grid.spacing))

    def save_final(self, model: BaseDenoiser, out_dir: Path) -> dict[str, Any]:
        model.encoder.save_pretrained(out_dir / "demographic_encoder", safe_serialization=True)
        model.unet.save_pretrained(out_dir / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(out_dir / "scheduler")
        return {
            "grid": self.grid.to_dict(),
            "cfg_dropout": self.options.cfg_dropout,
            "loss": {"P_mean": self.options.loss.P_mean, "P_std": self.options.loss.P_std,
                     "learned_weighting": self.options.loss.learned_weighting},
        }


STAGE = BaseStage
