"""The shipped checkpoints: what the README command and the Space load by default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from petct_pipeline import checkpoints
from petct_pipeline.checkpoints import default_model, default_segmenter

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "checkpoints" / "petct-phantom-demo"
SEG = REPO / "checkpoints" / "petct-phantom-seg"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


def test_defaults_resolve_to_the_shipped_folders(monkeypatch):
    monkeypatch.delenv("PETCT_MODEL", raising=False)
    monkeypatch.delenv("PETCT_SEGMENTER", raising=False)
    assert Path(default_model()) == DEMO
    assert default_segmenter() == SEG


def test_environment_overrides_and_missing_segmenter(monkeypatch, tmp_path):
    monkeypatch.setenv("PETCT_MODEL", "org/other")
    monkeypatch.setenv("PETCT_SEGMENTER", str(tmp_path / "seg"))
    assert default_model() == "org/other"
    assert default_segmenter() == tmp_path / "seg"
    monkeypatch.delenv("PETCT_SEGMENTER")
    monkeypatch.setattr(checkpoints, "checkpoints_dir", lambda: tmp_path)
    assert default_segmenter() is None


@pytest.mark.parametrize("folder", [DEMO, SEG], ids=["pipeline", "segmenter"])
def test_shipped_weights_are_small_safetensors(folder):
    weights = [p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 50 * 2**20


def test_shipped_segmenter_records_held_out_dice():
    info = json.loads((SEG / "segmenter.json").read_text())
    dice = info["info"]["dice"]
    assert info["info"]["dice_studies"] >= 8
    assert {"liver", "spleen", "heart", "lungs", "brain"} <= set(dice)
    assert all(0.0 <= value <= 1.0 for value in dice.values() if value is not None)


def test_shipped_pipeline_generates_a_body():
    """Few steps, so this checks wiring and intensity ranges, not quality (benchmarks/bench_quality.py)."""
    from petct_pipeline import Demographics, PETCTPipeline
    from petct_pipeline.pipeline_petct import DEFAULT_PRIOR_SCALE

    pipe = PETCTPipeline.from_pretrained(DEMO)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(Demographics(age=50, sex="M", weight=80, height=178), num_inference_steps=4,
               sr_num_inference_steps=1, generator=torch.Generator().manual_seed(0), output_type="np")
    ct, pet = out.ct[0], out.pet[0]
    # the shipped default samples with its demographic prior (CT only, fitted on the stage-1 grid)
    assert out.metadata[0]["prior_scale"] == DEFAULT_PRIOR_SCALE and out.metadata[0]["guidance_scale"] == 1.0
    assert pipe.demographic_prior.config.channels == ["ct"]
    assert list(pipe.demographic_prior.config.shape) == list(pipe.base_shape)
    assert np.isfinite(ct).all() and np.isfinite(pet).all()
    body = ct > -500
    assert 0.05 < body.mean() < 0.6  # a body surrounded by air, not noise or an empty volume
    assert -1100 <= ct.min() and ct.max() <= 3100 and pet.min() >= 0
