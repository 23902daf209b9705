"""Organ segmenter for ``petct evaluate --segmenter model:PATH``: a small 3D UNet on CT + PET.

Trained on any data with organ label maps (``organs.nii.gz`` beside the images, e.g. the
``petct phantom`` population) through the shared cache, which resamples labels by nearest
neighbour onto the stage grid. The network is ``PETCTUNet3DModel`` (2 inputs, one output
per class, no demographic input), wrapped by :class:`petct_pipeline.models.OrganSegmentationModel`;
the loss is cross-entropy + soft Dice (``training/seg_loss.py``), validated by the Dice per organ on
held-out studies (``training/seg_validation.py``). Config section::

    seg:
      grid: {spacing: 8, shape: [56, 56, 144]}    # z covers vertex to thighs (1152 mm)
      organs: [liver, spleen, ...]                # default: the evaluation organs
      unet: {block_out_channels: [16, 32, 64], layers_per_block: 1}
      loss: {dice_weight: 1.0}
      augment: {max_shift_voxels: 3}              # random translation (no flips: left/right matter)
      crop: [96, 80, 128]                         # train on random crops of the cached grid (null: all of it)
      input_stride: 2                             # UNet runs 2x coarser than the grid; loss on the grid
      validation: {data_dir: HELD_OUT, max_studies: 8}   # Dice per organ on held-out studies
      train: {...}                                # overrides of `training`

Output: ``OUTPUT/organ_segmenter/`` (config.json, safetensors weights, segmenter.json with the
class ids, grid spacing and the held-out Dice), usable as ``--segmenter model:OUTPUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from petct_pipeline.data.cache import CacheIndex
from petct_pipeline.data.preprocess import OUTSIDE_BODY_MODEL, PreprocessConfig
from petct_pipeline.data.study import ScanResult
from petct_pipeline.errors import InputError
from petct_pipeline.io import write_json
from petct_pipeline.models import OrganSegmentationModel, class_ids_for
from petct_pipeline.organs import EVALUATION_ORGANS

from ..config import TrainConfig
from ..options import check_int, check_number
from ..seg_init import init_segmenter
from ..seg_loss import segmentation_loss
from ..seg_validation import held_out_dice
from ..stage_options import GridOptions
from . import Stage

__all__ = ["COMPONENT", "CachedLabelledVolumes", "SegStage", "STAGE"]

COMPONENT = "organ_segmenter"


@dataclass(frozen=True)
class SegLoss:
    """``seg.loss``: cross-entropy + ``dice_weight`` x soft Dice."""

    dice_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dice_weight", check_number(
            self.dice_weight, "seg.loss.dice_weight", "a number >= 0", lambda v: v >= 0.0))


@dataclass(frozen=True)
class SegAugment:
    """``seg.augment``: random translation by up to this many voxels (no flips: left and right matter)."""

    max_shift_voxels: int = 3

    def __post_init__(self) -> None:
        check_int(self.max_shift_voxels, "seg.augment.max_shift_voxels", 0)


@dataclass(frozen=True)
class SegValidation:
    """``seg.validation``: Dice per organ on held-out studies (none without ``data_dir``)."""

    data_dir: str | None = None
    max_studies: int = 8

    def __post_init__(self) -> None:
        check_int(self.max_studies, "seg.validation.max_studies", 1)


@dataclass(frozen=True)
class SegOptions:
    """The ``seg:`` section.

    ``crop``: train on random boxes of this many voxels of the cached grid (``None``: the whole
    grid). Random crops of whole-body scans (z anywhere within the scanned slices) teach the
    network anatomy without a fixed position in the field of view, so its labels do not depend on
    where a scan starts or stops. ``input_stride``: see :class:`OrganSegmentationModel`.
    """

    grid: GridOptions = field(default_factory=lambda: GridOptions(spacing=8.0, shape=(56, 56, 144)))
    organs: tuple[str, ...] = tuple(EVALUATION_ORGANS)
    unet: dict[str, Any] = field(default_factory=dict)  # OrganSegmentationModel.build kwargs
    loss: SegLoss = field(default_factory=SegLoss)
    augment: SegAugment = field(default_factory=SegAugment)
    validation: SegValidation = field(default_factory=SegValidation)
    crop: tuple[int, int, int] | None = None
    input_stride: int = 1
    train: dict[str, Any] = field(default_factory=dict)  # overrides of `training` (config.training_options)

    def __post_init__(self) -> None:
        if self.crop is not None:
            crop = tuple(self.crop) if isinstance(self.crop, list | tuple) else ()
            if len(crop) != 3 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in crop):
                raise InputError(f"seg.crop must be three positive integers (X, Y, Z) or null, got {self.crop!r}")
            object.__setattr__(self, "crop", crop)
        check_int(self.input_stride, "seg.input_stride", 1)
        if not isinstance(self.organs, tuple) or not self.organs or not all(isinstance(o, str) for o in self.organs):
            raise InputError(f"seg.organs must be a list of organ names, got {self.organs!r}")


def _shift(array: np.ndarray, offsets: tuple[int, ...], fill: float) -> np.ndarray:
    """Translate the last three axes by ``offsets`` voxels, filling what comes in with ``fill`` (no wrap)."""
    out = np.full_like(array, fill)
    source, target = [slice(None)] * (array.ndim - 3), [slice(None)] * (array.ndim - 3)
    for offset, n in zip(offsets, array.shape[-3:]):
        source.append(slice(max(0, -offset), n - max(0, offset)))
        target.append(slice(max(0, offset), n - max(0, -offset)))
    out[tuple(target)] = array[tuple(source)]
    return out


def random_box(grid: tuple[int, ...], crop: tuple[int, ...], valid_slices: int, rng: np.random.Generator
               ) -> tuple[slice, slice, slice]:
    """A uniformly placed ``crop`` inside ``grid``, in z within the scanned slices.

    The cache's z axis runs inferior to superior with the body's top in the last slice, so its
    ``valid_slices`` (slices above the bottom of the scan) are the top ones; below them is padding.
    """
    lowest = max(0, grid[2] - max(valid_slices, crop[2]))
    ranges = [(0, max(0, grid[0] - crop[0])), (0, max(0, grid[1] - crop[1])), (lowest, max(lowest, grid[2] - crop[2]))]
    starts = [int(rng.integers(low, high + 1)) for low, high in ranges]
    return tuple(slice(start, start + size) for start, size in zip(starts, crop))


class CachedLabelledVolumes(Dataset):
    """Model-space volumes (or random crops of them) with organ class targets; items are (index, seed) tuples."""

    def __init__(self, index: CacheIndex, positions: list[int], lookup: np.ndarray, max_shift: int,
                 crop: tuple[int, int, int] | None = None) -> None:
        self.index = index
        self.positions = positions
        self.lookup = lookup
        self.max_shift = int(max_shift)
        self.crop = crop
        self.air, self.no_uptake = OUTSIDE_BODY_MODEL

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, item: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        position, seed = item if isinstance(item, tuple) else (item, 0)
        entry = self.positions[position]
        rng = np.random.default_rng(seed)
        box = None
        if self.crop is not None:
            record = self.index.entries[entry]
            grid = tuple(record["shape"])
            box = random_box(grid, self.crop, int(record.get("info", {}).get("valid_slices", grid[2])), rng)
        volume = self.index.load_volume(entry, box)
        organs = self.index.load_organs(entry, box)
        target = self.lookup[np.clip(organs.astype(np.int64), 0, 255)]
        if self.max_shift > 0:
            offsets = tuple(int(v) for v in rng.integers(-self.max_shift, self.max_shift + 1, size=3))
            if any(offsets):
                volume = np.concatenate([_shift(volume[:1], offsets, self.air),
                                         _shift(volume[1:], offsets, self.no_uptake)])
                target = _shift(target, offsets, 0)
        return {"volume": torch.from_numpy(np.ascontiguousarray(volume)),
                "target": torch.from_numpy(np.ascontiguousarray(target))}


class SegStage(Stage):
    name = "seg"
    options_type = SegOptions
    options: SegOptions
    components = (COMPONENT,)

    def __init__(self, config: TrainConfig, accelerator) -> None:
        super().__init__(config, accelerator)
        self.grid = self.options.grid
        self.organs = self.options.organs
        self.label_ids = class_ids_for(self.organs)  # ValueError naming an unknown organ
        data_dir = self.options.validation.data_dir
        self.validation_dir = Path(data_dir) if data_dir else None
        if self.validation_dir is not None and not self.validation_dir.is_dir():
            raise FileNotFoundError(f"seg.validation.data_dir {str(self.validation_dir)!r} does not exist")
        self.dice: dict[str, Any] | None = None
        self.preprocess_config(self.grid)  # validate early

    def preprocess_config(self, grid: GridOptions) -> PreprocessConfig:
        config = super().preprocess_config(grid)
        if not config.include_organs:  # the shared data.preprocess may switch organs off for the generator
            config = replace(config, include_organs=True)
        return config

    def build_dataset(self, scan: ScanResult, cache_root: Path, num_workers: int) -> Dataset:
        index = self.cache(scan, cache_root, self.grid, num_workers)
        positions = [i for i, entry in enumerate(index.entries) if entry.get("organs")]
        if not positions:
            raise InputError(
                "--stage seg needs organ label maps (organs.nii.gz beside the images, TotalSegmentator ids), but "
                f"none of the {len(index)} cached studies has one; `petct phantom` writes them"
            )
        self.data_info["labelled_studies"] = len(positions)
        lookup = self._wrapper(self.build_model()).class_lookup()
        return CachedLabelledVolumes(index, positions, lookup, self.options.augment.max_shift_voxels,
                                     self.options.crop)

    def _unet_kwargs(self) -> dict[str, Any]:
        """``seg.unet`` for OrganSegmentationModel.build (its tuple arguments as tuples)."""
        kwargs = dict(self.options.unet)
        for key in ("block_out_channels", "attention_levels"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return kwargs

    def build_model(self) -> torch.nn.Module:
        wrapper = OrganSegmentationModel.build(self.label_ids, float(self.grid.spacing),
                                               input_stride=self.options.input_stride,
                                               input_region=self.input_region(), **self._unet_kwargs())
        name, shape = ("seg.crop", self.options.crop) if self.options.crop else (
            "seg.grid.shape", tuple(self.preprocess_config(self.grid).shape))
        multiple = wrapper.spatial_multiple
        if any(n % multiple for n in shape):
            raise InputError(f"{name} {list(shape)} must be divisible by {multiple} "
                             "(seg.input_stride x 2 ** (len(block_out_channels) - 1))")
        return wrapper.unet

    def init_from_pretrained(self, model: torch.nn.Module, directory: Path) -> dict[str, Any]:
        """Start from a saved segmenter (a run's output or ``checkpoints/petct-phantom-seg``), classes mapped by id."""
        return init_segmenter(model, self.label_ids, float(self.grid.spacing), self.options.input_stride, directory)

    def loss(self, model, batch, generator):
        volume = batch["volume"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        logits = self._wrapper(model).forward_logits(model, volume)
        return segmentation_loss(logits, target, self.options.loss.dice_weight)

    def input_region(self) -> str:
        """What the trained network must be shown (``OrganSegmentationModel.input_region``): what it trained on."""
        return "body" if self.options.crop else "grid"

    def _wrapper(self, model) -> OrganSegmentationModel:
        unet = self.accelerator.unwrap_model(model) if self.accelerator is not None else model
        return OrganSegmentationModel(unet, self.label_ids, float(self.grid.spacing),
                                      input_stride=self.options.input_stride, input_region=self.input_region())

    def validate(self, model, step: int, out_dir: Path) -> Path | None:
        """Dice per organ on the held-out studies (``seg.validation.data_dir``) at their native grid."""
        if self.validation_dir is None:
            return None
        self.dice = held_out_dice(self._wrapper(model), self.validation_dir, self.organs,
                                  self.options.validation.max_studies)
        path = out_dir / f"seg_dice_step_{step:07d}.json"
        write_json({"step": step, **self.dice}, path)
        return path

    def save_final(self, model, out_dir: Path) -> dict[str, Any]:
        wrapper = self._wrapper(model)
        wrapper.info = {
            "organs": list(self.organs),
            "trained_on": self.data_info.get("caches", []),
            "labelled_studies": self.data_info.get("labelled_studies"),
            "dice": (self.dice or {}).get("dice", {}),
            "dice_studies": (self.dice or {}).get("studies", 0),
            "dice_data_dir": str(self.validation_dir) if self.validation_dir else None,
        }
        wrapper.save_pretrained(out_dir / COMPONENT)
        dice = wrapper.info["dice"]
        return {
            "grid": self.grid.to_dict(),
            "label_ids": list(self.label_ids),
            "dice": dice,
            "mean_dice": round(float(np.mean(finite)), 4) if (finite := [v for v in dice.values() if v is not None])
            else None,
        }


STAGE = SegStage
