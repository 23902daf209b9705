"""Diffusers models of the cascade: the demographic encoder and the 3D UNet shared by both stages."""

from .demographic_encoder import DemographicEncoder, DemographicEncoderOutput
from .unet_3d import PETCTUNet3DModel, PETCTUNet3DOutput

__all__ = ["DemographicEncoder", "DemographicEncoderOutput", "PETCTUNet3DModel", "PETCTUNet3DOutput"]
