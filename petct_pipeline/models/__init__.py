"""Diffusers models of the cascade: the demographic encoder and prior, and the 3D UNet shared by both stages."""

from .demographic_encoder import DemographicEncoder, DemographicEncoderOutput
from .demographic_prior import DemographicPrior
from .unet_3d import PETCTUNet3DModel, PETCTUNet3DOutput

__all__ = [
    "DemographicEncoder",
    "DemographicEncoderOutput",
    "DemographicPrior",
    "PETCTUNet3DModel",
    "PETCTUNet3DOutput",
]
