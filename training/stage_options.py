"""Option pieces that several stage sections share: the voxel grid, validation sampling, UNet keywords."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from petct_pipeline.data.preprocess import PreprocessConfig
from petct_pipeline.errors import InputError

from .options import check_int

__all__ = ["GridOptions", "SamplingValidation", "STAGE_SET_UNET_KEYS", "UNET_CLASSES", "build_unet",
           "check_unet_kwargs"]

_PREPROCESS_DEFAULTS = PreprocessConfig()

#: PETCTUNet3DModel arguments a generator stage derives itself (channels, embedding size)
STAGE_SET_UNET_KEYS = ("in_channels", "out_channels", "conditioning_channels", "embedding_dim")
#: ``<stage>.unet.class`` values: the FiLM UNet (default) or EDM2's magnitude-preserving one
UNET_CLASSES = ("PETCTUNet3DModel", "PETCTMPUNet3DModel")


@dataclass(frozen=True)
class GridOptions:
    """A stage's voxel grid ``{spacing, shape}``; PreprocessConfig checks it and owns its defaults."""

    spacing: float = _PREPROCESS_DEFAULTS.spacing
    shape: tuple[int, int, int] = _PREPROCESS_DEFAULTS.shape

    def to_dict(self) -> dict[str, Any]:
        """As written to stage.json: ``{"spacing": float, "shape": list}``."""
        return {"spacing": float(self.spacing), "shape": list(self.shape)}


@dataclass(frozen=True)
class SamplingValidation:
    """How a generator stage samples its validation images: scheduler steps and the noise seed."""

    num_inference_steps: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.num_inference_steps, "validation.num_inference_steps", 1)
        check_int(self.seed, "validation.seed", 0)


def build_unet(spec: Mapping[str, Any], stage: str, **stage_kwargs: Any):
    """The UNet of ``<stage>.unet``: ``{class: one of UNET_CLASSES (default PETCTUNet3DModel), **its kwargs}``."""
    from petct_pipeline import models

    spec = dict(spec)
    name = spec.pop("class", UNET_CLASSES[0])
    if name not in UNET_CLASSES:
        raise InputError(f"{stage}.unet.class must be one of {UNET_CLASSES}, got {name!r}")
    return getattr(models, name)(**stage_kwargs, **spec)


def check_unet_kwargs(unet: Mapping[str, Any], stage: str, reason: str) -> None:
    """ValueError if ``<stage>.unet`` sets an argument the stage derives (``reason`` says how)."""
    for key in STAGE_SET_UNET_KEYS:
        if key in unet:
            raise InputError(f"{stage}.unet.{key} is set by the stage ({reason})")
