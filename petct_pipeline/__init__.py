"""petct-diffusion: cascaded 3D diffusion models for whole-body 18F-FDG PET/CT from demographics."""

__version__ = "0.1.0"

from .demographics import Demographics

__all__ = ["__version__", "Demographics"]
