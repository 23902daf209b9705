"""The magnitude-preserving 3D UNet (EDM2) and its layers: magnitudes, forced weight norm, save/load, pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from petct_pipeline.errors import InputError
from petct_pipeline.models import PETCTMPUNet3DModel, PETCTUNet3DModel
from petct_pipeline.models.mp_layers import (
    MPConv3d,
    MPFourier,
    force_weight_normalization,
    mp_cat,
    mp_silu,
    mp_sum,
    normalize,
)

TINY = {"block_out_channels": (8, 16), "layers_per_block": 1, "attention_levels": (False, True),
        "attention_head_dim": 8, "embedding_dim": 6}


def _rms(x: torch.Tensor) -> float:
    return float(x.detach().float().square().mean().sqrt())


def _inputs(batch: int = 2, shape=(8, 8, 12), generator_seed: int = 0):
    generator = torch.Generator().manual_seed(generator_seed)
    return (torch.randn(batch, 2, *shape, generator=generator), torch.randn(batch, generator=generator),
            torch.randn(batch, 6, generator=generator))


def test_mp_operations_keep_unit_magnitude():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 32, 6, 6, 6, generator=generator), torch.randn(4, 32, 6, 6, 6, generator=generator)
    assert _rms(mp_silu(a)) == pytest.approx(1.0, abs=0.03)
    assert _rms(mp_sum(a, b, t=0.3)) == pytest.approx(1.0, abs=0.03)
    assert _rms(mp_cat(a, b[:, :8], t=0.5)) == pytest.approx(1.0, abs=0.03)
    assert _rms(normalize(3.0 * a)) == pytest.approx(1.0, abs=1e-3)
    conv, linear = MPConv3d(32, 16, kernel=3), MPConv3d(32, 16, kernel=0)
    assert _rms(conv(a)[..., 1:-1, 1:-1, 1:-1]) == pytest.approx(1.0, abs=0.1)  # away from zero padding
    assert _rms(linear(torch.randn(512, 32, generator=generator))) == pytest.approx(1.0, abs=0.1)
    assert _rms(MPFourier(256)(torch.randn(64, generator=generator))) == pytest.approx(1.0, abs=0.05)
    # the contribution of each concatenated part follows t, whatever the widths: (1 - t)^2 : t^2 of the energy
    cat = mp_cat(a, b[:, :8], t=0.25)
    assert cat[:, :32].square().sum() / cat[:, 32:].square().sum() == pytest.approx(9.0, rel=0.1)


def test_forced_weight_normalization_restores_unit_rows():
    model = PETCTMPUNet3DModel(**TINY)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0).add_(0.5)
    layers = force_weight_normalization(model)
    assert layers > 10
    for module in model.modules():
        if isinstance(module, MPConv3d):
            rows = module.weight.flatten(1)
            expected = math.sqrt(rows.shape[1])  # unit RMS per output channel (EDM2 eq. 66)
            assert torch.allclose(rows.norm(dim=1), torch.full((rows.shape[0],), expected), rtol=1e-3)
    assert force_weight_normalization(PETCTUNet3DModel(**{**TINY, "norm_num_groups": 4})) == 0


def test_no_biases_or_norm_layers_and_starts_at_zero():
    model = PETCTMPUNet3DModel(**TINY)
    assert not any(isinstance(m, torch.nn.GroupNorm | torch.nn.LayerNorm) for m in model.modules())
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    sample, timestep, embedding = _inputs()
    assert torch.count_nonzero(model(sample, timestep, encoder_embedding=embedding).sample) == 0  # out_gain 0


def test_output_depends_on_noise_level_demographics_and_conditioning():
    model = PETCTMPUNet3DModel(**{**TINY, "conditioning_channels": 5})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("gain"):
                parameter.fill_(1.0)
    model.eval()
    sample, timestep, embedding = _inputs()
    conditioning = torch.randn(2, 5, 8, 8, 12)
    out = model(sample, timestep, encoder_embedding=embedding, conditioning=conditioning).sample
    assert out.shape == sample.shape
    assert 0.1 < _rms(out) < 10
    for changed in ({"timestep": timestep + 1}, {"encoder_embedding": embedding.flip(0)},
                    {"conditioning": conditioning * 0}):
        kwargs = {"timestep": timestep, "encoder_embedding": embedding, "conditioning": conditioning, **changed}
        assert not torch.allclose(model(sample, **kwargs).sample, out)


def test_save_and_load_give_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = PETCTMPUNet3DModel(**TINY)
    with torch.no_grad():
        model.out_gain.fill_(1.0)
    model.save_pretrained(tmp_path / "unet")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = PETCTMPUNet3DModel.from_pretrained(tmp_path / "unet")
    sample, timestep, embedding = _inputs()
    with torch.no_grad():
        assert torch.equal(model(sample, timestep, encoder_embedding=embedding).sample,
                           loaded(sample, timestep, encoder_embedding=embedding).sample)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = PETCTMPUNet3DModel(**TINY)
    with torch.no_grad():
        model.out_gain.fill_(1.0)
    sample, timestep, embedding = _inputs()

    def gradients():
        model.zero_grad()
        model(sample, timestep, encoder_embedding=embedding).sample.square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients()
    model.enable_gradient_checkpointing()
    assert model.gradient_checkpointing
    for a, b in zip(plain, gradients()):
        assert torch.allclose(a, b, atol=1e-6)


def test_bf16_autocast_forward_and_backward_on_cpu():
    model = PETCTMPUNet3DModel(**TINY)
    with torch.no_grad():
        model.out_gain.fill_(1.0)
    sample, timestep, embedding = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(sample, timestep, encoder_embedding=embedding).sample
    assert out.dtype == torch.bfloat16
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_config_errors_name_the_field():
    with pytest.raises(InputError, match="attention_levels has 1 entries"):
        PETCTMPUNet3DModel(**{**TINY, "attention_levels": (True,)})
    with pytest.raises(InputError, match="attention_head_dim=12"):
        PETCTMPUNet3DModel(**{**TINY, "attention_head_dim": 12})
    model = PETCTMPUNet3DModel(**TINY)
    sample, timestep, embedding = _inputs()
    with pytest.raises(InputError, match="divisible by 2"):
        model(sample[..., :11], timestep, encoder_embedding=embedding)
    with pytest.raises(InputError, match="encoder_embedding of shape"):
        model(sample, timestep)
    with pytest.raises(InputError, match="16\\^3"):
        PETCTMPUNet3DModel(**{**TINY, "attention_levels": (True, False)})(
            torch.randn(1, 2, 24, 24, 24), 0.0, encoder_embedding=torch.randn(1, 6))


def test_pipeline_samples_and_round_trips_with_an_mp_stage_1(tmp_path):
    from petct_pipeline import Demographics, PETCTPipeline
    from tests.helpers.pipelines import make_tiny_pipeline

    pipe = make_tiny_pipeline()
    torch.manual_seed(1)
    unet = PETCTMPUNet3DModel(block_out_channels=(8, 16), layers_per_block=1, attention_levels=(False, True),
                              attention_head_dim=8, embedding_dim=16)
    with torch.no_grad():
        unet.out_gain.fill_(1.0)
    pipe.unet = unet
    pipe.register_modules(unet=unet)
    subject = Demographics(age=50, sex="F", weight=70, height=165)
    kwargs = {"num_inference_steps": 2, "sr_num_inference_steps": 2, "output_type": "np"}
    first = pipe(subject, generator=torch.Generator().manual_seed(0), **kwargs)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = PETCTPipeline.from_pretrained(tmp_path / "pipe")
    assert type(loaded.unet).__name__ == "PETCTMPUNet3DModel"
    again = loaded(subject, generator=torch.Generator().manual_seed(0), **kwargs)
    # save/load changes the FiLM pipeline's output by ~0.01 HU too (float round trips of the configs)
    assert np.allclose(first.ct[0], again.ct[0], atol=0.1) and np.allclose(first.pet[0], again.pet[0], atol=1e-3)
