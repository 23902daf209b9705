"""petct-diffusion: cascaded 3D diffusion models for whole-body 18F-FDG PET/CT from demographics."""

__version__ = "0.1.0"

from .demographics import Demographics
from .models import DemographicEncoder, PETCTUNet3DModel
from .pipeline_output import PETCTPipelineOutput
from .pipeline_petct import PETCTPipeline

__all__ = [
    "__version__",
    "Demographics",
    "DemographicEncoder",
    "PETCTUNet3DModel",
    "PETCTPipeline",
    "PETCTPipelineOutput",
]
