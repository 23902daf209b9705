"""Tests of the cascade's diffusers models: tiny configs, CPU, assertions on values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from petct_pipeline.demographics import Demographics
from petct_pipeline.models import (
    DemographicEncoder,
    DemographicEncoderOutput,
    PETCTUNet3DModel,
    PETCTUNet3DOutput,
)

SHAPE = (8, 8, 16)  # X, Y, Z
TINY = {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 8}


def _stage1(**overrides) -> PETCTUNet3DModel:
    return PETCTUNet3DModel(**{**TINY, "attention_levels": (False, True), "embedding_dim": 6, **overrides})


def _stage2(**overrides) -> PETCTUNet3DModel:
    return PETCTUNet3DModel(**{**TINY, "attention_levels": (False, False), "conditioning_channels": 5, **overrides})


def _randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every parameter: zero-initialised output convs would make outputs and gradients trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


def _stage1_inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "sample": torch.randn(batch, 2, *SHAPE, generator=generator),
        "timestep": torch.linspace(-1.0, 1.0, batch),
        "encoder_embedding": torch.randn(batch, 6, generator=generator),
    }


def _stage2_inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return {
        "sample": torch.randn(batch, 2, *SHAPE, generator=generator),
        "timestep": 0.25,
        "conditioning": torch.randn(batch, 5, *SHAPE, generator=generator),
    }


# ----------------------------------------------------------------------------- encoder


def test_features_follow_paper_mapping():
    encoder = DemographicEncoder(embedding_dim=8, hidden_dim=8)
    features = encoder.features(Demographics(age=63, sex="F", weight=70, height=165))
    assert features.shape == (1, 4) and features.dtype == torch.float32
    torch.testing.assert_close(features, torch.tensor([[0.65, 0.40, 0.0, 0.63]]))
    batch = encoder.features([Demographics(age=63, sex="F", weight=70, height=165),
                              Demographics(age=20, sex="M", weight=130, height=200)])
    torch.testing.assert_close(batch[1], torch.tensor([1.0, 1.0, 1.0, 0.2]))


def test_encoder_config_validation():
    with pytest.raises(ValueError, match="shoe_size"):
        DemographicEncoder(feature_names=("shoe_size",), feature_offsets=(0.0,), feature_scales=(1.0,))
    with pytest.raises(ValueError, match="same length"):
        DemographicEncoder(feature_names=("age", "sex"), feature_offsets=(0.0,), feature_scales=(1.0, 1.0))
    with pytest.raises(ValueError, match="non-zero"):
        DemographicEncoder(feature_names=("age",), feature_offsets=(0.0,), feature_scales=(0.0,))
    with pytest.raises(ValueError, match="empty"):
        DemographicEncoder().features([])


def test_drop_mask_selects_null_embedding():
    encoder = DemographicEncoder(embedding_dim=8, hidden_dim=16)
    features = torch.rand(3, 4)
    drop = torch.tensor([False, True, False])
    output = encoder(features, drop=drop)
    assert isinstance(output, DemographicEncoderOutput) and output.embedding.shape == (3, 8)
    kept = encoder(features).embedding
    torch.testing.assert_close(output.embedding[1], encoder.null_embedding.detach())
    torch.testing.assert_close(output.embedding[[0, 2]], kept[[0, 2]])
    assert not torch.allclose(kept[1], encoder.null_embedding)

    unconditional = encoder(None, batch_size=2).embedding
    torch.testing.assert_close(unconditional, encoder.null_embedding.detach().expand(2, 8))
    # The null embedding is learned: gradients reach it.
    encoder(features, drop=drop).embedding.sum().backward()
    assert encoder.null_embedding.grad is not None and encoder.null_embedding.grad.abs().sum() > 0


def test_encoder_input_errors():
    encoder = DemographicEncoder(embedding_dim=8, hidden_dim=8)
    with pytest.raises(ValueError, match="batch_size"):
        encoder(None)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        encoder(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"drop must have shape \(2,\)"):
        encoder(torch.zeros(2, 4), drop=torch.tensor([True]))
    with pytest.raises(TypeError, match="bool"):
        encoder(torch.zeros(2, 4), drop=torch.tensor([1, 0]))


# ----------------------------------------------------------------------------- UNet


def test_stage_output_shapes_and_zero_init():
    stage1, stage2 = _stage1(), _stage2()
    with torch.no_grad():
        out1 = stage1(**_stage1_inputs())
        out2 = stage2(**_stage2_inputs(), return_dict=False)
    assert isinstance(out1, PETCTUNet3DOutput) and out1.sample.shape == (2, 2, *SHAPE)
    assert isinstance(out2, tuple) and out2[0].shape == (2, 2, *SHAPE)
    # Zero-initialised final conv: an untrained network predicts F = 0 (stable start of training).
    assert torch.count_nonzero(out1.sample) == 0

    with torch.no_grad():
        random_out = _randomized(_stage1())(**_stage1_inputs()).sample
    assert random_out.abs().sum() > 0 and torch.isfinite(random_out).all()


def test_conditioning_changes_output():
    model = _randomized(_stage1())
    inputs = _stage1_inputs()
    with torch.no_grad():
        base = model(**inputs).sample
        other_embedding = model(**{**inputs, "encoder_embedding": inputs["encoder_embedding"] + 1}).sample
        other_noise = model(**{**inputs, "timestep": inputs["timestep"] + 0.5}).sample
    assert not torch.allclose(base, other_embedding)
    assert not torch.allclose(base, other_noise)


def test_model_is_3d():
    model = _stage1()
    modules = list(model.modules())
    assert any(isinstance(m, nn.Conv3d) for m in modules)
    assert not any(isinstance(m, nn.Conv2d | nn.Conv1d) for m in modules)


def test_save_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unet, encoder = _randomized(_stage1()), _randomized(DemographicEncoder(embedding_dim=6, hidden_dim=8))
    unet.save_pretrained(tmp_path / "unet")
    encoder.save_pretrained(tmp_path / "encoder")
    for folder in ("unet", "encoder"):
        files = {p.name for p in (tmp_path / folder).iterdir()}
        assert "diffusion_pytorch_model.safetensors" in files and "config.json" in files
        assert not any(name.endswith(".bin") for name in files)

    unet2 = PETCTUNet3DModel.from_pretrained(tmp_path / "unet")
    encoder2 = DemographicEncoder.from_pretrained(tmp_path / "encoder")
    assert tuple(unet2.config.block_out_channels) == (8, 16)
    features = encoder.features(Demographics(age=40, sex="M", weight=80, height=180))
    inputs = _stage1_inputs(batch=1)
    for saved, restored in ((unet, unet2), (encoder, encoder2)):
        a, b = saved.state_dict(), restored.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # identical weights; some CPUs' matmul and conv kernels still differ in the last bits with the
    # weights' (memory-mapped) alignment, so the outputs are compared to float32 tolerance
    with torch.no_grad():
        torch.testing.assert_close(encoder2(features).embedding, encoder(features).embedding)
        torch.testing.assert_close(unet2(**inputs).sample, unet(**inputs).sample, rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_same_gradients_and_used(monkeypatch):
    model = _randomized(_stage1())
    inputs = _stage1_inputs()

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model(**inputs).sample.square().mean().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    reference = gradients()
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting_checkpoint)
    model.enable_gradient_checkpointing()
    assert model.is_gradient_checkpointing
    checkpointed = gradients()
    # down: 1 resnet (level 0) + 1 resnet, 1 attention (level 1); mid: 2 resnets, 1 attention;
    # up: 2 resnets, 2 attentions (level 1) + 2 resnets (level 0).
    assert len(calls) == 3 + 3 + 6
    assert reference.keys() == checkpointed.keys()
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], msg=name)

    calls.clear()
    with torch.no_grad():
        model(**inputs)
    assert not calls  # no checkpointing at inference
    model.disable_gradient_checkpointing()
    gradients()
    assert not calls


def test_attention_guard():
    model = PETCTUNet3DModel(**{**TINY, "attention_levels": (True, False)})
    with torch.no_grad():
        model(torch.zeros(1, 2, 8, 8, 16), 0.0)  # 1024 tokens: allowed
        with pytest.raises(ValueError, match=r"8192 voxels.*16\^3"):
            model(torch.zeros(1, 2, 16, 16, 32), 0.0)


def test_input_errors():
    stage1, stage2 = _stage1(), _stage2()
    inputs1, inputs2 = _stage1_inputs(), _stage2_inputs()
    with pytest.raises(ValueError, match=r"\(8, 8, 15\).*divisible by 2"):
        stage1(**{**inputs1, "sample": torch.zeros(2, 2, 8, 8, 15)})
    with pytest.raises(ValueError, match=r"sample must have shape \(B, 2, X, Y, Z\)"):
        stage1(**{**inputs1, "sample": torch.zeros(2, 3, *SHAPE)})
    with pytest.raises(ValueError, match="encoder_embedding .* required"):
        stage1(**{**inputs1, "encoder_embedding": None})
    with pytest.raises(ValueError, match=r"encoder_embedding must have shape \(2, 6\)"):
        stage1(**{**inputs1, "encoder_embedding": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="conditioning of shape .* is required"):
        stage2(**{**inputs2, "conditioning": None})
    with pytest.raises(ValueError, match="conditioning must have shape"):
        stage2(**{**inputs2, "conditioning": torch.zeros(2, 5, 8, 8, 8)})
    with pytest.raises(ValueError, match="embedding_dim=0"):
        stage2(**inputs2, encoder_embedding=torch.zeros(2, 6))
    with pytest.raises(ValueError, match="timestep"):
        stage2(**{**inputs2, "timestep": torch.zeros(3)})


def test_timestep_forms_broadcast():
    model = _randomized(_stage2())
    inputs = _stage2_inputs()
    with torch.no_grad():
        scalar = model(**inputs).sample
        for timestep in (torch.tensor(0.25), torch.full((2,), 0.25), torch.full((2, 1, 1, 1, 1), 0.25)):
            torch.testing.assert_close(model(**{**inputs, "timestep": timestep}).sample, scalar)


def test_unet_config_validation():
    with pytest.raises(ValueError, match="attention_levels has 1 entries"):
        PETCTUNet3DModel(**{**TINY, "attention_levels": (True,)})
    with pytest.raises(ValueError, match="norm_num_groups"):
        PETCTUNet3DModel(**{**TINY, "attention_levels": (False, False), "norm_num_groups": 3})
    with pytest.raises(ValueError, match="attention_head_dim"):
        PETCTUNet3DModel(**{**TINY, "attention_levels": (False, True), "attention_head_dim": 12})
