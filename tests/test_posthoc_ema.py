"""Power-function EMA and post-hoc reconstruction (EDM2 section 3.1): the math and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.lr_schedule import edm2_lr_factor
from training.posthoc_ema import find_snapshots, main, reconstruct
from training.power_ema import PowerFunctionEMA, exp_to_std, power_function_beta, std_to_exp


def test_std_and_exponent_are_inverse():
    for std in (0.02, 0.05, 0.10, 0.2):
        assert float(exp_to_std(std_to_exp(std))) == pytest.approx(std, rel=1e-9)
    assert power_function_beta(0.1, 1) == 0.0  # the first update copies the parameters


def _tracked(stds, steps, snapshot_every, folder=None):
    """A parameter walking in a slow sine plus noise; its power-function EMAs and snapshots."""
    generator = torch.Generator().manual_seed(0)
    parameter = torch.nn.Parameter(torch.zeros(64))
    ema = PowerFunctionEMA([("w", parameter)], stds)
    for step in range(1, steps + 1):
        with torch.no_grad():
            walk = torch.sin(torch.arange(64) * 0.1 + step / 60.0)
            parameter.copy_(walk + 0.3 * torch.randn(64, generator=generator))
        ema.update(step)
        if folder is not None and step % snapshot_every == 0:
            ema.snapshot(folder, step)
    return ema


def test_reconstruction_matches_a_directly_tracked_ema(tmp_path):
    steps = 600
    _tracked((0.05, 0.10), steps, 40, tmp_path / "posthoc_ema")
    snapshots = find_snapshots(tmp_path)
    assert len(snapshots) == 2 * steps // 40
    shortest = _tracked((0.05,), steps, 40).averages[0][0]
    for target in (0.07, 0.12):
        direct = _tracked((target,), steps, 40).averages[0][0]
        error = (reconstruct(snapshots, target)["w"] - direct).abs().max().item()
        # far closer to the wanted average than the nearest tracked one is
        assert error < 0.25 * (shortest - direct).abs().max().item()


def test_state_dict_round_trip():
    ema = _tracked((0.05, 0.10), 20, 5)
    other = PowerFunctionEMA([("w", torch.nn.Parameter(torch.zeros(64)))], (0.05, 0.10))
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.averages[1][0], ema.averages[1][0])
    with pytest.raises(ValueError, match="does not match"):
        PowerFunctionEMA([("v", torch.nn.Parameter(torch.zeros(64)))], (0.05, 0.10)).load_state_dict(ema.state_dict())


def test_edm2_lr_schedule_warms_up_then_decays_as_inverse_sqrt():
    assert edm2_lr_factor(0, 10, 100) == 0.0
    assert edm2_lr_factor(5, 10, 100) == pytest.approx(0.5)
    assert edm2_lr_factor(100, 10, 100) == 1.0
    assert edm2_lr_factor(400, 10, 100) == pytest.approx(0.5)


def test_command_rebuilds_a_stage_folder(tmp_path):
    from petct_pipeline.models import DemographicEncoder, PETCTMPUNet3DModel

    run = tmp_path / "run"
    unet = PETCTMPUNet3DModel(block_out_channels=(8, 16), layers_per_block=1, attention_levels=(False, False),
                              mid_attention=False, embedding_dim=8)
    encoder = DemographicEncoder(embedding_dim=8, hidden_dim=8)
    unet.save_pretrained(run / "unet")
    encoder.save_pretrained(run / "demographic_encoder")
    (run / "stage.json").write_text(json.dumps({"stage": "base", "components": ["demographic_encoder", "unet",
                                                                                  "scheduler"]}))
    module = torch.nn.ModuleDict({"unet": unet, "encoder": encoder})
    ema = PowerFunctionEMA(module.named_parameters(), (0.05, 0.10))
    for step in range(1, 11):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.01)
        ema.update(step)
        if step % 5 == 0:
            ema.snapshot(run / "posthoc_ema", step)
    assert main(["--run", str(run), "--sigma_rel", "0.08", "--out", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "sigma_rel-0.080"
    rebuilt = PETCTMPUNet3DModel.from_pretrained(folder / "unet")
    expected = reconstruct(find_snapshots(run), 0.08)["unet.conv_in.weight"]
    assert torch.allclose(rebuilt.conv_in.weight, expected)
    assert not torch.allclose(rebuilt.conv_in.weight, unet.conv_in.weight)
    assert json.loads((folder / "stage.json").read_text())["posthoc_ema"] == {"sigma_rel": 0.08, "step": 10,
                                                                             "snapshots": 4}
    assert np.isclose(float(rebuilt.out_gain.detach()), float(reconstruct(find_snapshots(run), 0.08)["unet.out_gain"]))
