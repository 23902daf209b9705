"""Pieces of the training scripts: config checks, EDM loss, step sampler, SR patch upsampling, stages."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler

from training.config import TrainConfig, load_config, training_options
from training.edm import EDMLossConfig, edm_loss
from training.stages import available_stages, build_scheduler, get_stage
from training.stages.sr import upsample_box
from training.step_sampler import StepBatchSampler
from training.train import apply_learning_rate

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["phantom_demo", "autopet_paper"])
def test_shipped_configs_load_and_build(name):
    from accelerate import Accelerator

    config = load_config(REPO / "training" / "configs" / f"{name}.yaml")
    stages = {}
    for stage in ("base", "sr"):
        options = training_options(config, stage)
        assert options.max_train_steps > 0 and options.learning_rate > 0
        stages[stage] = get_stage(stage)(config, Accelerator(cpu=True))  # checks grids, scale, patch, scheduler
    grid = stages["base"].options.grid
    expected = {"phantom_demo": (16, (28, 28, 48)), "autopet_paper": (8, (56, 56, 96))}[name]
    assert (grid.spacing, grid.shape) == expected
    assert stages["sr"].low_grid == grid


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base": {}, "trainig": {}}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['trainig'\]"):
        load_config(path)
    path.write_text(json.dumps({"training": {"batch_size": 0}}))
    with pytest.raises(ValueError, match="training.batch_size must be an integer >= 1, got 0"):
        training_options(load_config(path), "base")
    path.write_text(json.dumps({"training": {"ema": {"decay": 1.5}}}))
    with pytest.raises(ValueError, match="ema.decay must be in"):
        training_options(load_config(path), "base")
    path.write_text(json.dumps({"base": {"train": {"lr_scheduler": "cosin"}}}))
    with pytest.raises(ValueError, match=r"training.lr_scheduler must be one of linear, cosine, .*; got 'cosin'"):
        training_options(load_config(path), "base")
    path.write_text(json.dumps({"training": {"learning_rate": "1e-4"}}))
    assert training_options(load_config(path), "base").learning_rate == 1e-4
    with pytest.raises(ValueError, match=r"stage must be one of \[.*'base'.*'sr'.*\], got 'vae'"):
        get_stage("vae")
    assert {"base", "sr"} <= set(available_stages())
    with pytest.raises(ValueError, match="scheduler.class must be one of"):
        build_scheduler({"class": "DDPMScheduler"}, "base")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sigma_dat'\]"):
        build_scheduler({"sigma_dat": 0.5}, "base")


def test_stage_options_are_frozen_dataclasses_with_their_defaults(tmp_path):
    from accelerate import Accelerator

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base": {"grid": {"spacing": 16, "shape": [8, 8, 16]}, "validation": None}}))
    options = get_stage("base")(load_config(path), Accelerator(cpu=True)).options
    assert options.grid.shape == (8, 8, 16) and options.cfg_dropout == 0.1 and options.loss == EDMLossConfig()
    assert options.validation.num_inference_steps == 16 and options.validation.guidance_scale == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.cfg_dropout = 0.5
    bad_sections = [
        ("base", {"validation": {"num_steps": 4}}, r"unknown key\(s\) \['num_steps'\] in base.validation; "
                                                   r"allowed: \['guidance_scale', 'num_inference_steps', 'seed'"),
        ("base", {"los": {}}, r"unknown key\(s\) \['los'\] in base; allowed: \['cfg_dropout', 'grid', 'loss'"),
        ("base", {"loss": {"P_mea": 1}}, r"in base.loss; allowed: \['P_mean', 'P_std', 'learned_weighting'"),
        ("base", {"grid": {"spacing": 16, "shap": [8, 8, 16]}}, r"in base.grid; allowed: \['shape', 'spacing'\]"),
        ("base", {"cfg_dropout": 1.0}, r"base.cfg_dropout must be a number in \[0, 1\), got 1.0"),
        ("base", {"unet": {"in_channels": 3}}, r"base.unet.in_channels is set by the stage"),
        ("sr", {"noise_augmentation": 2}, r"sr.noise_augmentation must be a number in \[0, 1\], got 2"),
        ("seg", {"augment": {"max_shift": 2}}, r"in seg.augment; allowed: \['max_shift_voxels'\]"),
    ]
    for stage, section, message in bad_sections:
        path.write_text(json.dumps({"base": {"grid": {"spacing": 16, "shape": [8, 8, 16]}}, stage: section}))
        with pytest.raises(ValueError, match=message):
            get_stage(stage)(load_config(path), Accelerator(cpu=True))
    path.write_text(json.dumps({"data": {"preprocess": {"spacing": 8}}}))  # the grid is each stage's
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['spacing'\] in data.preprocess"):
        load_config(path)


def test_command_line_overrides_replace_the_options_and_are_checked(tmp_path):
    from training.train import apply_overrides, parse_args

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"seed": 4, "data": {"preprocess_workers": 2},
                                "training": {"learning_rate": "1e-4", "ema": {"decay": 0.9}, "log_steps": None,
                                             "checkpoints_total_limit": None},
                                "base": {"train": {"batch_size": 3, "ema": {"power": 0.5}}}}))
    config = load_config(path)
    options = training_options(config, "base")
    assert (options.batch_size, options.learning_rate, options.ema.decay, options.ema.power) == (3, 1e-4, 0.9, 0.5)
    assert training_options(config, "sr").batch_size == 1  # the default: sr has no overrides
    assert options.log_steps == 10 and options.checkpoints_total_limit is None  # null: the default, or None
    required = ["--config", str(path), "--stage", "base", "--data_dir", "d", "--output_dir", "o"]
    assert apply_overrides(config, options, parse_args(required)) == (config, options)
    flags = ["--learning_rate", "5e-4", "--max_train_steps", "7", "--seed", "9", "--preprocess_workers", "0",
             "--demographics_csv", "table.csv"]
    new_config, new = apply_overrides(config, options, parse_args(required + flags))
    assert (new.learning_rate, new.max_train_steps, new.batch_size, new.ema) == (5e-4, 7, 3, options.ema)
    data = new_config.data
    assert (new_config.seed, data.preprocess_workers, data.demographics_csv) == (9, 0, "table.csv")
    with pytest.raises(ValueError, match="training.max_train_steps must be an integer >= 1, got 0"):
        apply_overrides(config, options, parse_args(required + ["--max_train_steps", "0"]))


def test_sr_stage_checks_grid_consistency(tmp_path):
    from accelerate import Accelerator

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base": {"grid": {"spacing": 16, "shape": [8, 8, 16]}},
                                "sr": {"grid": {"spacing": 8, "shape": [16, 16, 30]}}}))
    with pytest.raises(ValueError, match=r"sr.grid.shape must be base.grid.shape x 2 = \[16, 16, 32\]"):
        get_stage("sr")(load_config(path), Accelerator(cpu=True))


@pytest.mark.parametrize("scheduler", [EDMEulerScheduler(sigma_data=0.3), EDMDPMSolverMultistepScheduler()])
def test_edm_loss_is_the_schedulers_preconditioning(scheduler):
    clean = torch.randn(3, 2, 4, 4, 4)
    seen = {}

    def denoiser(model_input, c_noise):
        seen["input"], seen["c_noise"] = model_input, c_noise
        return torch.zeros_like(model_input)

    generator = torch.Generator().manual_seed(1)
    loss, logs = edm_loss(denoiser, scheduler, clean, generator, EDMLossConfig(P_mean=-1.2, P_std=1.2))
    # recompute by hand with the same random numbers
    generator = torch.Generator().manual_seed(1)
    sigma = torch.exp(torch.randn(3, generator=generator) * 1.2 - 1.2)
    noise = torch.randn(clean.shape, generator=generator)
    sd = scheduler.config.sigma_data
    s = sigma.view(3, 1, 1, 1, 1)
    noisy = clean + noise * s
    torch.testing.assert_close(seen["input"], noisy / torch.sqrt(s**2 + sd**2))
    torch.testing.assert_close(seen["c_noise"], 0.25 * torch.log(sigma))
    denoised = sd**2 / (s**2 + sd**2) * noisy  # F = 0: only the skip path
    expected = ((s**2 + sd**2) / (s * sd) ** 2 * (denoised - clean) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    assert logs["sigma_min"] == pytest.approx(float(sigma.min()))


@pytest.mark.parametrize("saved_at_step, factor", [(2, 0.5), (6, 1.0)])  # inside / after the 4 warm-up steps
def test_resumed_schedule_takes_the_requested_learning_rate(saved_at_step, factor):
    from diffusers.optimization import get_scheduler

    def build(lr):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=lr)
        return optimizer, get_scheduler("constant_with_warmup", optimizer=optimizer, num_warmup_steps=4)

    optimizer, schedule = build(4e-4)
    for _ in range(saved_at_step):
        optimizer.step()
        schedule.step()
    resumed_optimizer, resumed_schedule = build(1e-4)
    resumed_optimizer.load_state_dict(optimizer.state_dict())  # what accelerator.load_state does
    resumed_schedule.load_state_dict(schedule.state_dict())
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(4e-4 * factor)  # the old rate came back

    assert apply_learning_rate(resumed_schedule, 1e-4) == [pytest.approx(1e-4 * factor)]
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * factor)
    for _ in range(4):
        resumed_optimizer.step()
        resumed_schedule.step()
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert resumed_schedule.get_last_lr() == [pytest.approx(1e-4)]


def test_step_sampler_is_deterministic_sharded_and_resumable():
    full = StepBatchSampler(5, batch_size=2, world_size=2, rank=0, seed=3, start=0, stop=6)
    other = StepBatchSampler(5, batch_size=2, world_size=2, rank=1, seed=3, start=0, stop=6)
    resumed = StepBatchSampler(5, batch_size=2, world_size=2, rank=0, seed=3, start=4, stop=6)
    batches = list(full)
    assert list(resumed) == batches[4:]
    # within one epoch the two ranks see disjoint samples, and an epoch covers the dataset
    first_epoch = [i for i, _ in batches[0]] + [i for i, _ in list(other)[0]]
    assert len(set(first_epoch)) == 4
    assert sorted(i for i, _ in batches[0] + list(other)[0] + batches[1][:1]) == [0, 1, 2, 3, 4]
    assert len({seed for batch in batches for _, seed in batch}) == 12  # every item gets its own seed


def test_upsample_box_equals_full_trilinear_crop():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(2, 5, 6, 7)).astype(np.float32)
    scale = 4
    full = F.interpolate(torch.from_numpy(low)[None], scale_factor=scale, mode="trilinear", align_corners=False)[0]
    for start, size in [((0, 0, 0), (20, 24, 28)), ((3, 5, 9), (8, 8, 12)), ((12, 16, 16), (8, 8, 12))]:
        box = upsample_box(low, scale, start, size)
        expected = full[:, start[0]:start[0] + size[0], start[1]:start[1] + size[1], start[2]:start[2] + size[2]]
        np.testing.assert_allclose(box, expected.numpy(), atol=1e-5)


def test_train_script_reports_bad_config_in_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    if "PYTHONPATH" in os.environ:  # a checkout tested without installing it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"base": {"grid": {"spacing": 5, "shape": [8, 8, 16]}}}))
    result = subprocess.run(
        [sys.executable, str(REPO / "training" / "train.py"), "--config", str(config), "--stage", "base",
         "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "train.py: error: spacing must be one of [2, 4, 8, 16] mm, got 5"
    )


def _tiny_config(tmp_path: Path, block_out_channels: list[int]) -> TrainConfig:
    path = tmp_path / f"tiny_{'_'.join(map(str, block_out_channels))}.json"
    unet = {"block_out_channels": block_out_channels, "layers_per_block": 1,
            "attention_levels": [False] * len(block_out_channels), "norm_num_groups": 4}
    path.write_text(json.dumps({"encoder": {"embedding_dim": 16, "hidden_dim": 16},
                                "base": {"grid": {"spacing": 16, "shape": [8, 8, 16]}, "unet": unet}}))
    return load_config(path)


def test_init_weights_loads_a_stage_output_and_rejects_another_architecture(tmp_path):
    from accelerate import Accelerator

    stage = get_stage("base")(_tiny_config(tmp_path, [8, 16]), Accelerator(cpu=True))
    trained = stage.build_model()
    torch.nn.init.normal_(trained.unet.conv_in.weight)  # differs from any fresh initialisation
    stage.save_final(trained, tmp_path / "run")
    (tmp_path / "run" / "stage.json").write_text(json.dumps({"stage": "base", "global_step": 7}))

    fresh = stage.build_model()
    info = stage.init_from_pretrained(fresh, tmp_path / "run")
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert info["components"] == ["demographic_encoder", "unet"] and info["source"]["global_step"] == 7

    other = get_stage("base")(_tiny_config(tmp_path, [8, 32]), Accelerator(cpu=True))
    with pytest.raises(ValueError, match=r"another architecture than the config: block_out_channels"):
        other.init_from_pretrained(other.build_model(), tmp_path / "run")
    with pytest.raises(NotADirectoryError, match="--init_weights .*missing: no such folder"):
        stage.init_from_pretrained(fresh, tmp_path / "missing")


def test_shipped_pipeline_seeds_both_stages_of_its_config():
    from accelerate import Accelerator

    config = load_config(REPO / "training" / "configs" / "phantom_demo.yaml")
    shipped = REPO / "checkpoints" / "petct-phantom-demo"
    for name, component in (("base", "unet"), ("sr", "sr_unet")):
        stage = get_stage(name)(config, Accelerator(cpu=True))
        model = stage.build_model()
        info = stage.init_from_pretrained(model, shipped)
        assert component in info["components"] and "base" in info["source"]
        from safetensors.torch import load_file

        saved = load_file(str(shipped / component / "diffusion_pytorch_model.safetensors"))
        for key, value in model.unet.state_dict().items():
            assert torch.equal(value, saved[key]), key


def _seg_stage(organs: list[str], block_out_channels: list[int]):
    from accelerate import Accelerator

    config = load_config(REPO / "training" / "configs" / "seg_phantom.yaml")
    section = {**config.stages["seg"], "validation": {}, "organs": organs, "crop": [8, 8, 8], "input_stride": 1,
               "unet": {"block_out_channels": block_out_channels, "attention_levels": [False, False],
                        "norm_num_groups": 4}}
    config = dataclasses.replace(config, stages={**config.stages, "seg": section})
    return get_stage("seg")(config, Accelerator(cpu=True))


def test_seg_init_weights_keeps_known_classes_and_adds_new_ones_below_background(tmp_path):
    from petct_pipeline.models import OrganSegmentationModel
    from training.seg_init import NEW_CLASS_BIAS_OFFSET

    torch.manual_seed(0)
    small = _seg_stage(["liver", "spleen"], [8, 16])
    trained = small.build_model()
    for parameter in trained.parameters():
        torch.nn.init.normal_(parameter, std=0.3)  # differs from any fresh initialisation
    OrganSegmentationModel(trained, small.label_ids, 4.0, input_region="body").save_pretrained(tmp_path / "seg")

    larger = _seg_stage(["liver", "gallbladder", "spleen"], [8, 16])  # gallbladder (id 4): between spleen 1, liver 5
    fresh = larger.build_model()
    info = larger.init_from_pretrained(fresh, tmp_path / "seg")
    assert info["classes_added"] == [4] and info["classes_dropped"] == []
    volume = torch.randn(1, 2, 8, 8, 8)
    # channels: background, spleen, liver | background, spleen, gallbladder, liver
    old, new = trained(volume, 0.0).sample, fresh(volume, 0.0).sample
    assert torch.allclose(new[:, [0, 1, 3]], old, atol=1e-5)
    assert torch.allclose(new[:, 2], old[:, 0] + NEW_CLASS_BIAS_OFFSET, atol=1e-5)
    with pytest.raises(ValueError, match="another network than the config: block_out_channels"):
        other = _seg_stage(["liver"], [8, 8])
        other.init_from_pretrained(other.build_model(), tmp_path / "seg")
