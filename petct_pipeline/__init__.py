"""petct-diffusion: cascaded 3D diffusion models for whole-body 18F-FDG PET/CT from demographics.

Heavy names (torch, diffusers) are imported on first use, so ``petct --help`` and
``petct --version`` answer instantly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Demographics": ".demographics",
    "DemographicEncoder": ".models",
    "DemographicPrior": ".models",
    "PETCTUNet3DModel": ".models",
    "PETCTMPUNet3DModel": ".models",
    "PETCTPipeline": ".pipeline_petct",
    "PETCTPipelineOutput": ".pipeline_output",
}

__all__ = [
    "__version__",
    "Demographics",
    "DemographicEncoder",
    "DemographicPrior",
    "PETCTUNet3DModel",
    "PETCTMPUNet3DModel",
    "PETCTPipeline",
    "PETCTPipelineOutput",
]

if TYPE_CHECKING:
    from .demographics import Demographics
    from .models import DemographicEncoder, DemographicPrior, PETCTMPUNet3DModel, PETCTUNet3DModel
    from .pipeline_output import PETCTPipelineOutput
    from .pipeline_petct import PETCTPipeline


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
