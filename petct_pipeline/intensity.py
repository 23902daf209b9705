"""Invertible maps between physical units (HU, SUVbw) and the model's intensity space.

Unlike the paper's [-500, 500] HU clip, the CT map keeps lungs (-1000 HU) and bone
(~2000 HU) distinguishable: an asinh curve is linear around soft tissue, where contrast
matters, and compresses the tails. PET uses the paper's log compression
log2(SUV + 1) / log2(26), rescaled to [-1, 1] over SUV [0, 25] but not clipped there,
so hot lesions and the bladder survive the round trip.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "HU_RANGE",
    "hu_to_model",
    "model_to_hu",
    "suv_to_model",
    "model_to_suv",
    "to_model_space",
    "from_model_space",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

HU_RANGE = (-1024.0, 3071.0)  # what int16 CT stores; air and dense bone both fit
SUV_MAX = 200.0  # far above any physiological or lesion uptake
_HU_SCALE = 200.0  # width of the linear (soft-tissue) part of the asinh curve
_HU_NORM = 3.0  # asinh(-1024/200) = -2.33, asinh(3071/200) = 3.43 -> about [-0.78, 1.14]
_SUV_LOG_NORM = math.log2(26.0)


def _lib(x: Array):
    return torch if isinstance(x, torch.Tensor) else np


def hu_to_model(hu: Array) -> Array:
    lib = _lib(hu)
    return lib.arcsinh(lib.clip(hu, *HU_RANGE) / _HU_SCALE) / _HU_NORM


def model_to_hu(x: Array) -> Array:
    lib = _lib(x)
    return lib.clip(_HU_SCALE * lib.sinh(x * _HU_NORM), *HU_RANGE)


def suv_to_model(suv: Array) -> Array:
    lib = _lib(suv)
    return 2.0 * lib.log2(lib.clip(suv, 0.0, SUV_MAX) + 1.0) / _SUV_LOG_NORM - 1.0


def model_to_suv(x: Array) -> Array:
    lib = _lib(x)
    return lib.clip(lib.exp2((x + 1.0) * (_SUV_LOG_NORM / 2.0)) - 1.0, 0.0, SUV_MAX)


def to_model_space(ct_hu: Array, pet_suv: Array) -> tuple[Array, Array]:
    """(CT in HU, PET in SUV) -> (channel 0, channel 1) in model space."""
    return hu_to_model(ct_hu), suv_to_model(pet_suv)


def from_model_space(ct_model: Array, pet_model: Array) -> tuple[Array, Array]:
    """(channel 0, channel 1) in model space -> (CT in HU, PET in SUV)."""
    return model_to_hu(ct_model), model_to_suv(pet_model)
