"""OrganSegmentationModel: the small 3D organ segmentation network behind ``--segmenter model:PATH``.

The network is :class:`~petct_pipeline.models.PETCTUNet3DModel` with ``in_channels=2`` (CT and
PET in the library's model space), ``out_channels = 1 + number of classes`` (background first)
and no demographic conditioning; its noise-level input is held at 0. It labels an isotropic grid
of ``spacing_mm`` (the output grid, 4 mm for the shipped model); with ``input_stride`` s > 1
the UNet itself runs s times coarser (the input is average-pooled by s, the logits upsampled
back trilinearly), which keeps a whole-body 4 mm scan within about a second on two CPU cores
while the loss and the labels stay on the output grid. Classes are
TotalSegmentator "total" label ids, so its output plugs into the evaluation like any other
segmenter. A saved model is one folder::

    PATH/config.json                          PETCTUNet3DModel config (diffusers)
    PATH/diffusion_pytorch_model.safetensors  weights (safetensors only)
    PATH/segmenter.json                       label ids and names, grid spacing, training facts, Dice

The UNet stays the diffusers model (the trainer, EMA and checkpoints see only it, and the
shipped ``checkpoints/petct-phantom-seg`` names it in config.json); this class adds what is
needed to use it: the classes and the grid. Resampling a volume to that grid and back is the
segmenter's job (``petct_pipeline.evaluation.segmenters.ModelSegmenter``). Train it with
``training/train.py --stage seg`` (``training/stages/seg.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..geometry import spacing_from_affine
from ..io import read_json, write_json
from ..organs import EVALUATION_ORGANS, LABELS, organ_ids
from .unet_3d import PETCTUNet3DModel

__all__ = [
    "SEGMENTER_CONFIG",
    "SEGMENTER_FORMAT",
    "DEFAULT_UNET",
    "INPUT_REGIONS",
    "OrganSegmentationModel",
    "class_ids_for",
    "pool_input",
    "upsample_logits",
]

SEGMENTER_CONFIG = "segmenter.json"
SEGMENTER_FORMAT = "petct-organ-segmenter/1"
#: small and fast on CPU: three levels, one ResNet block each, no attention
DEFAULT_UNET: dict[str, Any] = {
    "block_out_channels": (16, 32, 64),
    "layers_per_block": 1,
    "attention_levels": (False, False, False),
    "mid_attention": False,
    "norm_num_groups": 8,
}
#: the UNet arguments the segmenter fixes (2 inputs, one output per class, no conditioning)
_FIXED_UNET_ARGS = ("in_channels", "out_channels", "conditioning_channels", "embedding_dim")


def class_ids_for(organs: Sequence[str] = EVALUATION_ORGANS) -> tuple[int, ...]:
    """Sorted TotalSegmentator ids of ``organs`` (groups such as ``lungs`` expand to their members)."""
    return tuple(sorted({i for organ in organs for i in organ_ids(organ)}))


def pool_input(volume: torch.Tensor, stride: int) -> torch.Tensor:
    """The UNet's input: the (B, 2, X, Y, Z) output-grid volume averaged over ``stride``-cubes."""
    return volume if stride == 1 else F.avg_pool3d(volume, kernel_size=stride)


def upsample_logits(logits: torch.Tensor, stride: int) -> torch.Tensor:
    """UNet logits back on the output grid (trilinear, voxel centres aligned: ``align_corners=False``)."""
    if stride == 1:
        return logits
    return F.interpolate(logits, scale_factor=stride, mode="trilinear", align_corners=False)


#: what a segmentation network is shown at inference, as it was trained: ``body`` the body's
#: bounding box (models trained on random crops), ``grid`` the whole air-padded grid (models
#: trained on whole cached grids; their normalisation statistics include that air)
INPUT_REGIONS = ("body", "grid")


class OrganSegmentationModel:
    """PETCTUNet3DModel + the facts needed to use it: class ids, output spacing (mm), input stride and region."""

    def __init__(self, unet: PETCTUNet3DModel, label_ids: Sequence[int], spacing_mm: float = 8.0,
                 info: dict[str, Any] | None = None, input_stride: int = 1, input_region: str = "body") -> None:
        label_ids = tuple(int(i) for i in label_ids)
        if not label_ids or len(set(label_ids)) != len(label_ids) or not all(i in LABELS for i in label_ids):
            raise InputError(f"label_ids must be distinct TotalSegmentator 'total' ids (1..117), got {label_ids}")
        if unet.config.out_channels != len(label_ids) + 1:
            raise InputError(f"the UNet has {unet.config.out_channels} output channels; {len(label_ids)} classes "
                             "plus background need one more than the number of label ids")
        if unet.config.in_channels != 2 or unet.config.embedding_dim != 0 or unet.config.conditioning_channels != 0:
            raise InputError("the segmentation UNet must take 2 input channels (CT, PET) and no conditioning")
        if not float(spacing_mm) > 0:
            raise InputError(f"spacing_mm must be > 0, got {spacing_mm!r}")
        if isinstance(input_stride, bool) or not isinstance(input_stride, int) or input_stride < 1:
            raise InputError(f"input_stride must be an integer >= 1, got {input_stride!r}")
        if input_region not in INPUT_REGIONS:
            raise InputError(f"input_region must be one of {', '.join(INPUT_REGIONS)}, got {input_region!r}")
        self.unet = unet
        self.input_region = input_region
        self.input_stride = input_stride
        self.label_ids = label_ids
        self.spacing_mm = float(spacing_mm)
        self.info = dict(info or {})

    # ------------------------------------------------------------------ construction and storage

    @classmethod
    def build(cls, label_ids: Sequence[int], spacing_mm: float = 8.0, input_stride: int = 1,
              input_region: str = "body", **unet_kwargs: Any) -> OrganSegmentationModel:
        """A freshly initialised model; ``unet_kwargs`` override :data:`DEFAULT_UNET`."""
        for fixed in _FIXED_UNET_ARGS:
            if fixed in unet_kwargs:
                raise InputError(f"unet.{fixed} is fixed by the segmenter (2 inputs, one output per class)")
        unet = PETCTUNet3DModel(in_channels=2, out_channels=len(tuple(label_ids)) + 1, conditioning_channels=0,
                                embedding_dim=0, **{**DEFAULT_UNET, **unet_kwargs})
        return cls(unet, label_ids, spacing_mm, input_stride=input_stride, input_region=input_region)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> OrganSegmentationModel:
        """Load a folder written by :meth:`save_pretrained` (or a training output holding ``organ_segmenter/``)."""
        folder = Path(path)
        if not (folder / SEGMENTER_CONFIG).is_file() and (folder / "organ_segmenter" / SEGMENTER_CONFIG).is_file():
            folder = folder / "organ_segmenter"
        if not folder.is_dir():
            raise FileNotFoundError(f"segmentation model folder {str(path)!r} does not exist")
        if not (folder / SEGMENTER_CONFIG).is_file():
            raise FileNotFoundError(
                f"{str(path)!r} is not a segmentation model: no {SEGMENTER_CONFIG} (train one with "
                "`python training/train.py --config training/configs/seg_phantom.yaml --stage seg ...`)"
            )
        meta = read_json(folder / SEGMENTER_CONFIG)
        if meta.get("format") != SEGMENTER_FORMAT:
            raise InputError(f"{folder / SEGMENTER_CONFIG}: format {meta.get('format')!r}, "
                             f"expected {SEGMENTER_FORMAT!r}")
        unet = PETCTUNet3DModel.from_pretrained(str(folder), use_safetensors=True)
        unet.eval()
        # folders written before input_region existed were all trained on whole grids
        return cls(unet, meta["label_ids"], meta["spacing_mm"], meta.get("info"), meta.get("input_stride", 1),
                   meta.get("input_region", "grid"))

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        folder = Path(path)
        self.unet.save_pretrained(str(folder), safe_serialization=True)
        write_json({
            "format": SEGMENTER_FORMAT,
            "label_ids": list(self.label_ids),
            "label_names": [LABELS[i] for i in self.label_ids],
            "spacing_mm": self.spacing_mm,
            "input_stride": self.input_stride,
            "input_region": self.input_region,
            "intensity": "petct_pipeline.intensity (CT: hu_to_model, PET: suv_to_model)",
            "info": self.info,
        }, folder / SEGMENTER_CONFIG)
        return folder

    # ------------------------------------------------------------------ classes and grid

    def class_lookup(self) -> np.ndarray:
        """(256,) int64: TotalSegmentator id -> class index (0 = background, also for ids not modelled)."""
        lookup = np.zeros(256, dtype=np.int64)
        for index, label in enumerate(self.label_ids, start=1):
            lookup[label] = index
        return lookup

    def classes_to_ids(self, classes: np.ndarray) -> np.ndarray:
        """Class indices -> TotalSegmentator ids (int16; background 0)."""
        table = np.array((0, *self.label_ids), dtype=np.int16)
        return table[classes]

    @property
    def spatial_multiple(self) -> int:
        """Every output-grid size :meth:`logits` takes must be a multiple of this."""
        return self.unet.spatial_multiple * self.input_stride

    def model_grid(self, shape: Sequence[int], affine: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
        """The isotropic ``spacing_mm`` grid covering the same box as (``shape``, ``affine``)."""
        affine = np.asarray(affine, dtype=np.float64)
        spacing = np.asarray(spacing_from_affine(affine))
        extent = spacing * np.asarray(shape)
        new_shape = tuple(int(max(1, np.ceil(e / self.spacing_mm - 1e-6))) for e in extent)
        directions = affine[:3, :3] / spacing
        corner = affine[:3, :3] @ np.full(3, -0.5) + affine[:3, 3]
        new_affine = np.eye(4)
        new_affine[:3, :3] = directions * self.spacing_mm
        new_affine[:3, 3] = corner + new_affine[:3, :3] @ np.full(3, 0.5)
        return new_shape, new_affine

    # ------------------------------------------------------------------ inference

    def forward_logits(self, unet: torch.nn.Module, volume: torch.Tensor) -> torch.Tensor:
        """Output-grid logits of ``unet`` (this model's, or training's wrapped copy of it): pool, UNet, upsample."""
        return upsample_logits(unet(pool_input(volume, self.input_stride), 0.0).sample.float(), self.input_stride)

    @torch.no_grad()
    def logits(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, classes, X, Y, Z) float32 logits of a model-space (B, 2, X, Y, Z) volume on the output grid.

        Spatial sizes must be multiples of :attr:`spatial_multiple` (the segmenter pads with air). On a
        CPU the UNet runs under bfloat16 autocast (half the time of float32 on CPUs with bf16 units;
        the argmax labels it gives are what the held-out Dice in ``segmenter.json`` measured).
        """
        parameter = next(self.unet.parameters())
        volume = volume.to(parameter.device, parameter.dtype)
        with torch.autocast(parameter.device.type, dtype=torch.bfloat16, enabled=parameter.device.type == "cpu"):
            return self.forward_logits(self.unet, volume)
