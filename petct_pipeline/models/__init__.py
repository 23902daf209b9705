"""Diffusers models of the cascade (the demographic encoder and prior, the 3D UNet shared by both stages) and
the organ segmentation network built on that UNet, which the evaluation's ``model:PATH`` segmenter runs."""

from .demographic_encoder import DemographicEncoder, DemographicEncoderOutput
from .demographic_prior import DemographicPrior
from .organ_segmentation import OrganSegmentationModel, class_ids_for
from .unet_3d import PETCTUNet3DModel, PETCTUNet3DOutput

__all__ = [
    "DemographicEncoder",
    "DemographicEncoderOutput",
    "DemographicPrior",
    "OrganSegmentationModel",
    "class_ids_for",
    "PETCTUNet3DModel",
    "PETCTUNet3DOutput",
]
