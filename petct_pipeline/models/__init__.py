"""Diffusers models of the cascade (the demographic encoder and prior, the 3D UNets either stage can use: the
FiLM one and EDM2's magnitude-preserving one) and the organ segmentation network built on the FiLM UNet,
which the evaluation's ``model:PATH`` segmenter runs."""

from .demographic_encoder import DemographicEncoder, DemographicEncoderOutput
from .demographic_prior import DemographicPrior
from .organ_segmentation import OrganSegmentationModel, class_ids_for
from .unet_3d import PETCTUNet3DModel, PETCTUNet3DOutput
from .unet_3d_mp import PETCTMPUNet3DModel

__all__ = [
    "DemographicEncoder",
    "DemographicEncoderOutput",
    "DemographicPrior",
    "OrganSegmentationModel",
    "class_ids_for",
    "PETCTMPUNet3DModel",
    "PETCTUNet3DModel",
    "PETCTUNet3DOutput",
]
