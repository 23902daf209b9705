"""A complete PETCTPipeline from tiny random models (the diffusers habit), for the pipeline, prior and Space tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from petct_pipeline import PETCTPipeline

__all__ = ["make_tiny_pipeline", "save_prior_ready_pipeline"]


def make_tiny_pipeline(seed: int = 0) -> PETCTPipeline:
    """A complete PETCTPipeline small enough to run both stages in well under a second.

    Imports are local: conftest.py sets HF_HUB_OFFLINE before huggingface_hub is first imported.
    """
    import torch
    from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler

    from petct_pipeline import DemographicEncoder, PETCTPipeline, PETCTUNet3DModel

    torch.manual_seed(seed)
    encoder = DemographicEncoder(embedding_dim=16, hidden_dim=16)
    unet = PETCTUNet3DModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        attention_levels=(False, True),
        attention_head_dim=8,
        embedding_dim=16,
        norm_num_groups=4,
    )
    sr_unet = PETCTUNet3DModel(
        conditioning_channels=5,
        block_out_channels=(8, 16),
        layers_per_block=1,
        attention_levels=(False, False),
        norm_num_groups=4,
    )
    # random init leaves zero-initialised output layers at zero; perturb them so outputs depend on inputs
    with torch.no_grad():
        for model in (unet, sr_unet, encoder):
            for parameter in model.parameters():
                if torch.count_nonzero(parameter) == 0:
                    parameter.normal_(0.0, 0.1)
    return PETCTPipeline(
        demographic_encoder=encoder,
        unet=unet,
        scheduler=EDMDPMSolverMultistepScheduler(sigma_data=0.5),
        sr_unet=sr_unet,
        sr_scheduler=EDMEulerScheduler(sigma_data=0.25, sigma_max=10.0),
        base_shape=(8, 8, 12),
        base_spacing=64.0,
        sr_scale=2,
    )


def save_prior_ready_pipeline(path, card: str = "# card\n"):
    """The tiny pipeline on a 16 mm stage-1 grid that 12 mm phantoms can be cached at, saved with a model card:
    the input of ``training/fit_prior.py`` in tests (returns ``path``)."""
    from pathlib import Path

    from petct_pipeline import PETCTPipeline

    path = Path(path)
    PETCTPipeline(**make_tiny_pipeline().components, base_shape=(8, 8, 16), base_spacing=16.0,
                  sr_scale=2).save_pretrained(path)
    (path / "README.md").write_text(card)
    return path
