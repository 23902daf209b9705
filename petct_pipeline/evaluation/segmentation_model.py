"""A small 3D organ segmentation network of this package, fast on CPU, for the ``model:PATH`` segmenter.

The network is :class:`petct_pipeline.models.PETCTUNet3DModel` with ``in_channels=2`` (CT and
PET in the library's model space), ``out_channels = 1 + number of classes`` (background first)
and no demographic conditioning; its noise-level input is held at 0. It works on an isotropic
grid (``spacing_mm``, 8 mm by default, like the cascade's first stage): a volume is resampled to
that grid (anti-aliased), masked to the body as the training cache is, segmented, and the label
map is resampled back (nearest neighbour) to the volume's own grid.

Classes are TotalSegmentator "total" label ids, so its output plugs into the evaluation like any
other segmenter. A saved model is one folder::

    PATH/config.json                          PETCTUNet3DModel config (diffusers)
    PATH/diffusion_pytorch_model.safetensors  weights (safetensors only)
    PATH/segmenter.json                       label ids and names, grid spacing, training facts, Dice

Train it with ``training/train.py --stage seg`` (see ``training/stages/seg.py``); it needs data
with organ label maps (``organs.nii.gz``, e.g. ``petct phantom`` output).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.preprocess import resample
from ..geometry import spacing_from_affine
from ..intensity import hu_to_model, suv_to_model
from ..io import read_json, write_json
from ..organs import EVALUATION_ORGANS, LABELS, organ_ids

__all__ = [
    "SEGMENTER_CONFIG",
    "DEFAULT_UNET",
    "OrganSegmentationModel",
    "class_ids_for",
    "dice_scores",
    "held_out_dice",
    "segmentation_loss",
]

SEGMENTER_CONFIG = "segmenter.json"
FORMAT = "petct-organ-segmenter/1"
#: small and fast on CPU: three levels, one ResNet block each, no attention
DEFAULT_UNET: dict[str, Any] = {
    "block_out_channels": (16, 32, 64),
    "layers_per_block": 1,
    "attention_levels": (False, False, False),
    "mid_attention": False,
    "norm_num_groups": 8,
}
_AIR_HU = -1000.0


def class_ids_for(organs: Sequence[str] = EVALUATION_ORGANS) -> tuple[int, ...]:
    """Sorted TotalSegmentator ids of ``organs`` (groups such as ``lungs`` expand to their members)."""
    return tuple(sorted({i for organ in organs for i in organ_ids(organ)}))


class OrganSegmentationModel:
    """PETCTUNet3DModel + the facts needed to use it: class ids and the grid spacing (mm)."""

    def __init__(self, unet, label_ids: Sequence[int], spacing_mm: float = 8.0,
                 info: dict[str, Any] | None = None) -> None:
        label_ids = tuple(int(i) for i in label_ids)
        if not label_ids or len(set(label_ids)) != len(label_ids) or not all(i in LABELS for i in label_ids):
            raise ValueError(f"label_ids must be distinct TotalSegmentator 'total' ids (1..117), got {label_ids}")
        if unet.config.out_channels != len(label_ids) + 1:
            raise ValueError(f"the UNet has {unet.config.out_channels} output channels; {len(label_ids)} classes "
                             "plus background need one more than the number of label ids")
        if unet.config.in_channels != 2 or unet.config.embedding_dim != 0 or unet.config.conditioning_channels != 0:
            raise ValueError("the segmentation UNet must take 2 input channels (CT, PET) and no conditioning")
        if not float(spacing_mm) > 0:
            raise ValueError(f"spacing_mm must be > 0, got {spacing_mm!r}")
        self.unet = unet
        self.label_ids = label_ids
        self.spacing_mm = float(spacing_mm)
        self.info = dict(info or {})

    # ------------------------------------------------------------------ construction and storage

    @classmethod
    def build(cls, label_ids: Sequence[int], spacing_mm: float = 8.0, **unet_kwargs: Any) -> OrganSegmentationModel:
        from ..models import PETCTUNet3DModel

        kwargs = {**DEFAULT_UNET, **unet_kwargs}
        for fixed in ("in_channels", "out_channels", "conditioning_channels", "embedding_dim"):
            if fixed in unet_kwargs:
                raise ValueError(f"unet.{fixed} is fixed by the segmenter (2 inputs, one output per class)")
        unet = PETCTUNet3DModel(in_channels=2, out_channels=len(tuple(label_ids)) + 1, conditioning_channels=0,
                                embedding_dim=0, **kwargs)
        return cls(unet, label_ids, spacing_mm)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> OrganSegmentationModel:
        """Load a folder written by :meth:`save_pretrained` (or a training output holding ``organ_segmenter/``)."""
        from ..models import PETCTUNet3DModel

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
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder / SEGMENTER_CONFIG}: format {meta.get('format')!r}, expected {FORMAT!r}")
        unet = PETCTUNet3DModel.from_pretrained(str(folder), use_safetensors=True)
        unet.eval()
        return cls(unet, meta["label_ids"], meta["spacing_mm"], meta.get("info"))

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        folder = Path(path)
        self.unet.save_pretrained(str(folder), safe_serialization=True)
        write_json({
            "format": FORMAT,
            "label_ids": list(self.label_ids),
            "label_names": [LABELS[i] for i in self.label_ids],
            "spacing_mm": self.spacing_mm,
            "intensity": "petct_pipeline.intensity (CT: hu_to_model, PET: suv_to_model)",
            "info": self.info,
        }, folder / SEGMENTER_CONFIG)
        return folder

    # ------------------------------------------------------------------ classes

    def class_lookup(self) -> np.ndarray:
        """(256,) int64: TotalSegmentator id -> class index (0 = background, also for ids not modelled)."""
        lookup = np.zeros(256, dtype=np.int64)
        for index, label in enumerate(self.label_ids, start=1):
            lookup[label] = index
        return lookup

    def classes_to_ids(self, classes: np.ndarray) -> np.ndarray:
        table = np.array((0, *self.label_ids), dtype=np.int16)
        return table[classes]

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def logits(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, classes, X, Y, Z) logits for a model-space (B, 2, X, Y, Z) volume of any size (padded inside)."""
        multiple = self.unet.spatial_multiple
        spatial = volume.shape[2:]
        pad = [(-n) % multiple for n in spatial]
        if any(pad):
            air = float(hu_to_model(np.float32(_AIR_HU)))
            ct = F.pad(volume[:, :1], (0, pad[2], 0, pad[1], 0, pad[0]), value=air)
            pet = F.pad(volume[:, 1:], (0, pad[2], 0, pad[1], 0, pad[0]), value=-1.0)
            volume = torch.cat([ct, pet], dim=1)
        parameter = next(self.unet.parameters())
        out = self.unet(volume.to(parameter.device, parameter.dtype), 0.0).sample
        return out[:, :, : spatial[0], : spatial[1], : spatial[2]].float()

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

    def predict(self, ct: np.ndarray, suv: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """Label map (TotalSegmentator ids, int16) on the grid of ``ct``/``suv`` (HU, SUVbw)."""
        from .metrics import body_mask

        shape, model_affine = self.model_grid(ct.shape, affine)
        ct_m = resample(ct, affine, shape, model_affine, order=1, cval=_AIR_HU, anti_alias=True)
        suv_m = np.clip(resample(suv, affine, shape, model_affine, order=1, cval=0.0, anti_alias=True), 0.0, None)
        body = body_mask(ct_m, model_affine)
        ct_m[~body] = _AIR_HU
        suv_m[~body] = 0.0
        volume = np.stack([hu_to_model(ct_m), suv_to_model(suv_m)]).astype(np.float32)
        classes = self.logits(torch.from_numpy(volume)[None]).argmax(dim=1)[0].cpu().numpy()
        classes[~body] = 0
        labels = self.classes_to_ids(classes)
        return resample(labels, model_affine, ct.shape, affine, order=0, cval=0).astype(np.int16)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy + soft Dice (foreground classes, batch-pooled), as nnU-Net trains; target holds class indices."""
    ce = F.cross_entropy(logits, target)
    probabilities = logits.softmax(dim=1)[:, 1:]
    one_hot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probabilities.dtype)
    dims = (0, 2, 3, 4)
    intersection = (probabilities * one_hot).sum(dims)
    denominator = probabilities.sum(dims) + one_hot.sum(dims)
    present = one_hot.sum(dims) > 0
    dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
    soft_dice = dice[present].mean() if present.any() else dice.new_tensor(1.0)
    loss = ce + dice_weight * (1 - soft_dice)
    return loss, {"ce": float(ce.detach()), "soft_dice": float(soft_dice.detach())}


def dice_scores(predicted: np.ndarray, truth: np.ndarray, organs: Sequence[str] = EVALUATION_ORGANS
                ) -> dict[str, float]:
    """Dice per organ (groups as unions) between two TotalSegmentator-id label maps; NaN if absent in both."""
    from ..organs import organ_mask

    out = {}
    for organ in organs:
        p, t = organ_mask(predicted, organ), organ_mask(truth, organ)
        total = int(p.sum()) + int(t.sum())
        out[organ] = float(2 * np.count_nonzero(p & t) / total) if total else float("nan")
    return out


def held_out_dice(model: OrganSegmentationModel, data_dir: str | os.PathLike,
                  organs: Sequence[str] = EVALUATION_ORGANS, max_studies: int | None = None) -> dict[str, Any]:
    """Mean Dice per organ of ``model`` against the stored label maps of the studies in ``data_dir``.

    Measured where the evaluation uses it: on each study's own (PET) grid, after the model's
    resampling round trip. Returns ``{"dice": {organ: mean}, "dice_std": {...}, "studies": n, ...}``.
    """
    from .inputs import discover_inputs, load_subject
    from .segmenters import LabelsSegmenter

    cohort = discover_inputs(data_dir, "validation")
    subjects = [s for s in cohort.subjects if s.labels is not None][: max_studies or None]
    if not subjects:
        raise ValueError(f"no study in {str(data_dir)!r} has an organs.nii.gz label map to measure Dice against")
    truth_segmenter = LabelsSegmenter()
    scores: dict[str, list[float]] = {organ: [] for organ in organs}
    for subject in subjects:
        volumes = load_subject(subject)
        truth = truth_segmenter.segment(subject, volumes)
        predicted = model.predict(volumes.ct, volumes.suv, volumes.affine)
        for organ, value in dice_scores(predicted, truth, organs).items():
            scores[organ].append(value)

    def summary(values: list[float], reducer) -> float | None:
        finite = [v for v in values if np.isfinite(v)]
        return round(float(reducer(finite)), 4) if finite else None

    return {
        "dice": {organ: summary(v, np.mean) for organ, v in scores.items()},
        "dice_std": {organ: summary(v, np.std) for organ, v in scores.items()},
        "studies": len(subjects),
        "data_dir": str(data_dir),
    }
