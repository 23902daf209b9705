"""Shared fixtures: a tiny randomly initialised pipeline (the diffusers habit), offline hub, evaluation cohorts."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing repo must fail fast, not retry for 23 s
os.environ.setdefault("MPLBACKEND", "Agg")


def make_tiny_pipeline(seed: int = 0):
    """A complete PETCTPipeline small enough to run both stages in well under a second."""
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


@pytest.fixture()
def tiny_pipeline():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def tiny_pipeline_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_pipeline")
    make_tiny_pipeline().save_pretrained(path)
    return path


# ------------------------------------------------------------------ evaluation cohorts (tests/evaluation_cohorts.py)


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    """The tiny AutoPET-layout reference cohort, shared by the evaluation test files."""
    from evaluation_cohorts import write_autopet  # imported on use, like the pipeline above: the env is set first

    return write_autopet(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def self_report(tmp_path_factory, reference_dir):
    """``evaluate`` of the reference against itself (labels segmenter, with plots)."""
    from petct_pipeline.evaluation import evaluate  # heavy (torch): only for the tests that use it

    return evaluate(reference_dir, reference_dir, out=tmp_path_factory.mktemp("self_report"), segmenter="labels")
