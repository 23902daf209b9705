"""Stage 1: the low-resolution CT+PET generator conditioned on the demographic embedding.

Trains the DemographicEncoder and the UNet together with the EDM loss; a fraction
``cfg_dropout`` of the rows gets the encoder's learned null embedding, so the same model
is also the unconditional one that classifier-free guidance needs at sampling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from petct_pipeline.data.cache import CacheIndex
from petct_pipeline.data.study import ScanResult
from petct_pipeline.demographics import Demographics
from petct_pipeline.intensity import from_model_space
from petct_pipeline.models import DemographicEncoder, PETCTUNet3DModel
from petct_pipeline.models.denoiser import Stage1Denoiser, sample_with_scheduler

from ..edm import EDMLossConfig, edm_loss
from ..validation_images import save_validation_png
from . import Stage, build_scheduler

DEFAULT_VALIDATION_SUBJECTS = (
    {"age": 60, "sex": "M", "weight": 85, "height": 178},
    {"age": 45, "sex": "F", "weight": 62, "height": 163},
)


class BaseDenoiser(nn.Module):
    """Encoder + UNet as one module, so one DDP wrapper, one optimiser and one EMA cover both."""

    def __init__(self, unet: PETCTUNet3DModel, encoder: DemographicEncoder) -> None:
        super().__init__()
        self.unet = unet
        self.encoder = encoder

    def forward(self, sample: torch.Tensor, c_noise: torch.Tensor, features: torch.Tensor, drop: torch.Tensor):
        # drop is always given (even all False) so the null embedding is always in the graph (DDP needs that)
        embedding = self.encoder(features, drop=drop).embedding
        return self.unet(sample, c_noise, encoder_embedding=embedding).sample


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
    section_keys = ("grid", "unet", "scheduler", "loss", "cfg_dropout", "validation", "train")
    components = ("demographic_encoder", "unet", "scheduler")
    pretrained_components = {"encoder": "demographic_encoder", "unet": "unet"}

    def __init__(self, config: dict[str, Any], accelerator) -> None:
        super().__init__(config, accelerator)
        self.grid = dict(self.section.get("grid") or {})
        self.scheduler = build_scheduler(self.section.get("scheduler"), self.name)
        self.loss_config = EDMLossConfig.from_mapping(self.section.get("loss"))
        dropout = self.section.get("cfg_dropout", 0.1)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"base.cfg_dropout must be a number in [0, 1), got {dropout!r}")
        self.cfg_dropout = float(dropout)
        self.preprocess_config(self.grid)  # validate early

    def build_dataset(self, scan: ScanResult, cache_root: Path, num_workers: int) -> Dataset:
        self.index = self.cache(scan, cache_root, self.grid, num_workers)
        return CachedVolumes(self.index)

    def build_model(self) -> nn.Module:
        encoder = DemographicEncoder(**self.config.get("encoder", {}))
        unet_kwargs = dict(self.section.get("unet") or {})
        for fixed in ("in_channels", "out_channels", "conditioning_channels", "embedding_dim"):
            if fixed in unet_kwargs:
                raise ValueError(f"base.unet.{fixed} is set by the stage (2 channels in/out, embedding from encoder)")
        unet = PETCTUNet3DModel(
            in_channels=2, out_channels=2, conditioning_channels=0,
            embedding_dim=encoder.config.embedding_dim, **unet_kwargs,
        )
        shape = tuple(self.preprocess_config(self.grid).shape)
        if any(n % unet.spatial_multiple for n in shape):
            raise ValueError(f"base.grid.shape {list(shape)} must be divisible by {unet.spatial_multiple} "
                             f"(2 ** (len(block_out_channels) - 1))")
        return BaseDenoiser(unet, encoder)

    def loss(self, model, batch, generator):
        volume = batch["volume"].to(self.device, non_blocking=True)
        encoder = self.accelerator.unwrap_model(model).encoder
        features = encoder.features(batch_demographics(batch)).to(self.device)
        drop = torch.rand(volume.shape[0], generator=generator, device=generator.device).to(self.device)
        drop = drop < self.cfg_dropout
        loss, logs = edm_loss(
            lambda x, c: model(x, c, features, drop), self.scheduler, volume, generator, self.loss_config
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
        options = dict(self.section.get("validation") or {})
        subjects = [Demographics.from_mapping(s) for s in options.get("subjects", DEFAULT_VALIDATION_SUBJECTS)]
        generator = torch.Generator().manual_seed(int(options.get("seed", 0)))
        volumes = self.sample(model, subjects, int(options.get("num_inference_steps", 16)),
                              float(options.get("guidance_scale", 1.0)), generator)
        rows = []
        for volume in volumes.cpu().numpy():
            ct, pet = from_model_space(volume[0], volume[1])
            rows.append((np.asarray(ct), np.asarray(pet)))
        titles = [f"step {step}: {s.sex} {s.age:g} y {s.weight:g} kg {s.height:g} cm" for s in subjects]
        return save_validation_png(out_dir / f"base_step_{step:07d}.png", rows, titles,
                                   spacing=float(self.grid["spacing"]))

    def save_final(self, model: BaseDenoiser, out_dir: Path) -> dict[str, Any]:
        model.encoder.save_pretrained(out_dir / "demographic_encoder", safe_serialization=True)
        model.unet.save_pretrained(out_dir / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(out_dir / "scheduler")
        config = self.preprocess_config(self.grid)
        return {
            "grid": {"spacing": config.spacing, "shape": list(config.shape)},
            "cfg_dropout": self.cfg_dropout,
            "loss": {"P_mean": self.loss_config.P_mean, "P_std": self.loss_config.P_std},
        }


STAGE = BaseStage
