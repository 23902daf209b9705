"""Build the UNTRAINED placeholder default pipeline so `petct generate` works from day one.

Its configs are the demo-model sizes (stage 1 at 16 mm on a 448 x 448 x 768 mm grid, SR x4
to 4 mm); the weights are random until the demo-weights issue replaces this folder with a
phantom-trained model. Run: python checkpoints/make_untrained.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import EDMDPMSolverMultistepScheduler

from petct_pipeline import DemographicEncoder, PETCTPipeline, PETCTUNet3DModel

OUT = Path(__file__).resolve().parent / "petct-phantom-demo"


def build(seed: int = 0) -> PETCTPipeline:
    torch.manual_seed(seed)
    return PETCTPipeline(
        demographic_encoder=DemographicEncoder(embedding_dim=64, hidden_dim=64),
        unet=PETCTUNet3DModel(
            block_out_channels=(32, 64, 96),
            layers_per_block=2,
            attention_levels=(False, False, True),
            embedding_dim=64,
        ),
        scheduler=EDMDPMSolverMultistepScheduler(sigma_data=0.5, sigma_max=80.0),
        sr_unet=PETCTUNet3DModel(
            conditioning_channels=5,
            block_out_channels=(16, 32, 48),
            layers_per_block=1,
            attention_levels=(False, False, False),
        ),
        sr_scheduler=EDMDPMSolverMultistepScheduler(sigma_data=0.25, sigma_max=10.0),
        base_shape=(28, 28, 48),
        base_spacing=16.0,
        sr_scale=4,
    )


if __name__ == "__main__":
    build().save_pretrained(OUT)
    print(OUT)
