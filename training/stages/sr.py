"""Stage 2: residual super-resolution on random patches.

Data: the same studies preprocessed on two nested grids, the base stage's (low
resolution, ``base.grid``) and this stage's (``sr.grid``, ``scale`` times finer over the
same extent). For a random patch of the fine grid the model sees, exactly as
PETCTPipeline's stage 2 does at sampling:

    upsampled = trilinear(low_res, scale) cropped to the patch   (align_corners=False)
    condition = [upsampled + noise_augmentation * N(0, 1), xyz coordinate maps]
    target    = fine - upsampled                                  (the residual)

``upsample_box`` computes the crop of the full-volume upsampling without upsampling the
whole volume, and equals ``F.interpolate(...)[box]`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from petct_pipeline.data.cache import CacheIndex
from petct_pipeline.data.study import ScanResult
from petct_pipeline.errors import InputError
from petct_pipeline.geometry import coordinate_grid
from petct_pipeline.intensity import from_model_space

from ..config import TrainConfig
from ..edm import EDMLossConfig, edm_loss
from ..loss_weighting import LearnedLossWeighting
from ..options import check_number, from_mapping
from ..stage_options import GridOptions, SamplingValidation, build_unet, check_unet_kwargs
from ..validation_images import save_validation_png
from . import Stage, build_scheduler

SIGMA_DATA_SAMPLES = 8


@dataclass(frozen=True)
class SROptions:
    """The ``sr:`` section; its grid must be the base grid refined by an integer factor (same extent)."""

    grid: GridOptions = field(default_factory=GridOptions)
    patch_size: tuple[int, int, int] | None = None  # training patch in fine voxels; default: the whole grid
    unet: dict[str, Any] = field(default_factory=dict)  # {class: a UNET_CLASSES name, **its kwargs but the stage-set}
    # {class: an EDM scheduler, **its kwargs}; sigma_data "auto" = the residual's standard deviation in the data
    scheduler: dict[str, Any] = field(default_factory=dict)
    loss: EDMLossConfig = field(default_factory=EDMLossConfig)
    noise_augmentation: float = 0.02  # = the exported pipeline's sr_noise_level
    validation: SamplingValidation = field(default_factory=SamplingValidation)
    train: dict[str, Any] = field(default_factory=dict)  # overrides of `training` (config.training_options)

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_augmentation", check_number(
            self.noise_augmentation, "sr.noise_augmentation", "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0))
        check_unet_kwargs(self.unet, "sr", "2 channels, 5 conditioning, no embedding")


def upsample_box(low: np.ndarray, scale: int, start: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
    """``F.interpolate(low, scale_factor=scale, mode="trilinear", align_corners=False)`` restricted to a box.

    ``low`` is (C, x, y, z); the box is ``start`` + ``size`` in fine-grid voxels.
    """
    out = np.asarray(low, dtype=np.float32)
    for axis in range(3):
        n = low.shape[axis + 1]
        fine = np.arange(start[axis], start[axis] + size[axis], dtype=np.float64)
        source = np.maximum((fine + 0.5) / scale - 0.5, 0.0)
        lower = np.minimum(np.floor(source).astype(np.int64), n - 1)
        upper = np.minimum(lower + 1, n - 1)
        weight = (source - lower).astype(np.float32)
        shape = [1, 1, 1, 1]
        shape[axis + 1] = -1
        weight = weight.reshape(shape)
        out = np.take(out, lower, axis=axis + 1) * (1.0 - weight) + np.take(out, upper, axis=axis + 1) * weight
    return out.astype(np.float32)


class SRDenoiser(nn.Module):
    """The SR UNet (+ EDM2's loss weighting, whose forward then returns ``(F, u(sigma))``)."""

    def __init__(self, unet: nn.Module, loss_weighting: LearnedLossWeighting | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.loss_weighting = loss_weighting

    def forward(self, sample: torch.Tensor, c_noise: torch.Tensor, conditioning: torch.Tensor):
        raw = self.unet(sample, c_noise, conditioning=conditioning).sample
        if self.loss_weighting is None:
            return raw
        return raw, self.loss_weighting(c_noise)


class PatchPairs(Dataset):
    """Random fine-grid patches with the matching crop of the upsampled low-resolution volume."""

    def __init__(self, fine: CacheIndex, low: CacheIndex, scale: int, patch: tuple[int, int, int]) -> None:
        low_keys = {key: i for i, key in enumerate(low.keys)}
        self.pairs = [(i, low_keys[key]) for i, key in enumerate(fine.keys) if key in low_keys]
        self.fine, self.low, self.scale, self.patch = fine, low, scale, patch
        self.full_shape = tuple(fine.config.shape)

    def __len__(self) -> int:
        return len(self.pairs)

    def origin(self, seed: int) -> tuple[int, int, int]:
        rng = np.random.default_rng(seed)
        return tuple(int(rng.integers(0, n - p + 1)) for n, p in zip(self.full_shape, self.patch))

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        position, seed = item
        fine_index, low_index = self.pairs[position]
        start = self.origin(seed)
        box = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
        fine = self.fine.load_volume(fine_index, box)
        upsampled = upsample_box(self.low.load_volume(low_index), self.scale, start, self.patch)
        coords = coordinate_grid(self.full_shape, start, self.patch)
        return {
            "fine": torch.from_numpy(fine),
            "upsampled": torch.from_numpy(upsampled),
            "coords": torch.from_numpy(np.ascontiguousarray(coords)),
        }


class SRStage(Stage):
    name = "sr"
    options_type = SROptions
    options: SROptions
    components = ("sr_unet", "sr_scheduler")
    pretrained_components = {"unet": "sr_unet"}

    def __init__(self, config: TrainConfig, accelerator) -> None:
        super().__init__(config, accelerator)
        if "grid" not in config.stages.get("base", {}):
            raise InputError("the sr stage needs base.grid in the config: its low-resolution input is the base grid")
        self.grid = self.options.grid
        self.low_grid = from_mapping(GridOptions, config.stages["base"]["grid"], "base.grid")
        fine, low = self.preprocess_config(self.grid), self.preprocess_config(self.low_grid)
        ratio = low.spacing / fine.spacing
        if ratio < 1 or not float(ratio).is_integer():
            raise InputError(f"sr.grid.spacing ({fine.spacing:g} mm) must divide base.grid.spacing "
                             f"({low.spacing:g} mm) by an integer factor")
        self.scale = int(ratio)
        expected = tuple(n * self.scale for n in low.shape)
        if tuple(fine.shape) != expected:
            raise InputError(f"sr.grid.shape must be base.grid.shape x {self.scale} = {list(expected)} "
                             f"(same field of view), got {list(fine.shape)}")
        patch = tuple(self.options.patch_size or fine.shape)
        if len(patch) != 3 or any(not isinstance(p, int) or not 1 <= p <= n for p, n in zip(patch, fine.shape)):
            raise InputError(f"sr.patch_size must be three integers within the grid {list(fine.shape)}, got {patch}")
        self.patch = patch
        self.scheduler_spec = dict(self.options.scheduler)
        self.sigma_data_auto = self.scheduler_spec.get("sigma_data") == "auto"
        if self.sigma_data_auto:
            self.scheduler_spec["sigma_data"] = 0.5  # replaced from the data in build_dataset
        self.scheduler = build_scheduler(self.scheduler_spec, self.name)

    def build_dataset(self, scan: ScanResult, cache_root: Path, num_workers: int) -> Dataset:
        self.low_index = self.cache(scan, cache_root, self.low_grid, num_workers)
        self.fine_index = self.cache(scan, cache_root, self.grid, num_workers)
        dataset = PatchPairs(self.fine_index, self.low_index, self.scale, self.patch)
        if len(dataset) == 0:
            raise InputError("no study is in both the low- and the high-resolution cache")
        if self.sigma_data_auto:
            self.scheduler_spec["sigma_data"] = self.residual_std(dataset)
            self.scheduler = build_scheduler(self.scheduler_spec, self.name)
        self.data_info["sigma_data"] = float(self.scheduler.config.sigma_data)
        return dataset

    def residual_std(self, dataset: PatchPairs) -> float:
        """Standard deviation of (fine - upsampled) over the first studies: the residual's sigma_data."""
        squares, count = 0.0, 0
        for fine_index, low_index in dataset.pairs[:SIGMA_DATA_SAMPLES]:
            fine = torch.from_numpy(self.fine_index.load_volume(fine_index))
            low = torch.from_numpy(self.low_index.load_volume(low_index))
            up = F.interpolate(low[None], scale_factor=self.scale, mode="trilinear", align_corners=False)[0]
            residual = (fine - up).double()
            squares += float((residual**2).sum())
            count += residual.numel()
        return round(max(math.sqrt(squares / count), 1e-3), 4)

    def build_model(self) -> nn.Module:
        unet = build_unet(self.options.unet, self.name, in_channels=2, out_channels=2, conditioning_channels=5,
                          embedding_dim=0)
        if any(p % unet.spatial_multiple for p in self.patch):
            raise InputError(f"sr.patch_size {list(self.patch)} must be divisible by {unet.spatial_multiple} "
                             "(2 ** (len(block_out_channels) - 1))")
        loss = self.options.loss
        return SRDenoiser(unet, LearnedLossWeighting(loss.weighting_channels) if loss.learned_weighting else None)

    def loss(self, model, batch, generator):
        fine = batch["fine"].to(self.device, non_blocking=True)
        upsampled = batch["upsampled"].to(self.device, non_blocking=True)
        coords = batch["coords"].to(self.device, non_blocking=True)
        noise = torch.randn(upsampled.shape, generator=generator, device=generator.device).to(self.device)
        conditioning = torch.cat([upsampled + self.options.noise_augmentation * noise, coords], dim=1)
        residual = fine - upsampled
        return edm_loss(lambda x, c: model(x, c, conditioning), self.scheduler, residual, generator, self.options.loss)

    @torch.no_grad()
    def validate(self, model, step, out_dir):
        options = self.options.validation
        fine = torch.from_numpy(self.fine_index.load_volume(0))[None].to(self.device)
        low = torch.from_numpy(self.low_index.load_volume(self.low_index.keys.index(self.fine_index.keys[0])))
        up = F.interpolate(low[None].to(self.device), scale_factor=self.scale, mode="trilinear", align_corners=False)
        length = self.patch[2]  # the top chunk: head and neck
        full = tuple(fine.shape[2:])
        z0 = full[2] - length
        coords = torch.from_numpy(coordinate_grid(full, (0, 0, z0), (full[0], full[1], length)))[None].to(self.device)
        generator = torch.Generator().manual_seed(options.seed)
        condition_noise = torch.randn(up[..., z0:].shape, generator=generator).to(self.device)
        conditioning = torch.cat([up[..., z0:] + self.options.noise_augmentation * condition_noise, coords], dim=1)
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(options.num_inference_steps, device=self.device)
        residual = torch.randn(up[..., z0:].shape, generator=generator).to(self.device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(residual, t)
            out = model.unet(x, t, conditioning=conditioning).sample.float()
            residual = scheduler.step(out, t, residual).prev_sample
        volumes = [up[0, :, ..., z0:], up[0, :, ..., z0:] + residual[0], fine[0, :, ..., z0:]]
        rows = []
        for volume in volumes:
            ct, pet = from_model_space(volume[0].cpu().numpy(), volume[1].cpu().numpy())
            rows.append((np.asarray(ct), np.asarray(pet)))
        titles = [f"step {step}: upsampled input", "super-resolved", "real"]
        return save_validation_png(out_dir / f"sr_step_{step:07d}.png", rows, titles,
                                   spacing=float(self.grid.spacing))

    def save_final(self, model: SRDenoiser, out_dir: Path) -> dict[str, Any]:
        model.unet.save_pretrained(out_dir / "sr_unet", safe_serialization=True)
        self.scheduler.save_pretrained(out_dir / "sr_scheduler")
        return {
            "grid": self.grid.to_dict(),
            "base_grid": self.low_grid.to_dict(),
            "scale": self.scale,
            "patch_size": list(self.patch),
            "noise_augmentation": self.options.noise_augmentation,
            "sigma_data": float(self.scheduler.config.sigma_data),
            "loss": {"P_mean": self.options.loss.P_mean, "P_std": self.options.loss.P_std},
        }


STAGE = SRStage
