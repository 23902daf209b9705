"""The demographic prior: least-squares fit, serialisation, and how stage 1 uses it."""

import json

import numpy as np
import pytest
import torch
from diffusers import EDMEulerScheduler

from petct_pipeline import DemographicPrior, Demographics, PETCTPipeline
from petct_pipeline.geometry import body_slices
from tests.helpers.pipelines import make_tiny_pipeline, save_prior_ready_pipeline

WOMAN = Demographics(age=63, sex="F", weight=70, height=165)
MAN = Demographics(age=35, sex="M", weight=90, height=185)
FAST = {"num_inference_steps": 3, "sr_num_inference_steps": 2}
SHAPE = (8, 8, 12)


def linear_population(count: int = 12, seed: int = 0):
    """Features and volumes that are exactly intercept + features @ slopes (CT) and pure noise-free PET."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(count, 4, generator=generator)
    slopes = torch.randn(4, 2, *SHAPE, generator=generator)
    intercept = torch.randn(2, *SHAPE, generator=generator)
    volumes = intercept + torch.einsum("nf,fc...->nc...", features, slopes)
    return features, volumes, slopes


def test_fit_recovers_exact_slopes_and_zeroes_unfitted_channels():
    features, volumes, slopes = linear_population()
    prior = DemographicPrior.fit(features, volumes, channels=("ct",))
    torch.testing.assert_close(prior.slopes[:, 0], slopes[:, 0], atol=1e-4, rtol=1e-4)
    shift = prior(features[:3])
    expected = torch.einsum("bf,f...->b...", features[:3] - features.mean(0), slopes[:, 0])
    torch.testing.assert_close(shift[:, 0], expected, atol=1e-4, rtol=1e-4)
    assert torch.count_nonzero(shift[:, 1]) == 0  # PET not fitted: no shift
    both = DemographicPrior.fit(features, volumes, channels=("ct", "pet"))
    torch.testing.assert_close(both.slopes, slopes, atol=1e-4, rtol=1e-4)
    assert torch.count_nonzero(both(features.mean(0, keepdim=True)).abs() > 1e-5) == 0  # mean subject: no shift


def test_fit_and_init_reject_bad_input():
    features, volumes, _ = linear_population()
    with pytest.raises(ValueError, match="collinear"):
        DemographicPrior.fit(features.clone().index_fill_(1, torch.tensor([2]), 1.0), volumes)
    with pytest.raises(ValueError, match="more than 5 subjects"):
        DemographicPrior.fit(features[:5], volumes[:5])
    with pytest.raises(ValueError, match=r"channels must be distinct names from \['ct', 'pet'\]"):
        DemographicPrior(channels=("mri",))
    with pytest.raises(ValueError, match="feature_mean needs 4 values"):
        DemographicPrior(feature_mean=[0.0])
    with pytest.raises(ValueError, match=r"features must have shape \(batch, 4\)"):
        DemographicPrior(shape=SHAPE)(torch.zeros(2, 3))


def test_save_pretrained_round_trip(tmp_path):
    features, volumes, _ = linear_population()
    prior = DemographicPrior.fit(features, volumes, channels=("ct", "pet"), sigma_min=0.3)
    prior.save_pretrained(tmp_path / "prior")
    assert (tmp_path / "prior" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = DemographicPrior.from_pretrained(tmp_path / "prior", use_safetensors=True)
    assert loaded.config.channels == ["ct", "pet"] and loaded.config.sigma_min == 0.3
    torch.testing.assert_close(loaded(features), prior(features))


def pipeline_with_prior(scale: float = 1.0) -> PETCTPipeline:
    """The tiny pipeline plus a prior whose CT shift is ``scale`` per unit of the sex feature."""
    pipe = make_tiny_pipeline()
    prior = DemographicPrior(shape=SHAPE, channels=("ct",), feature_mean=[0.7, 0.4, 0.5, 0.5])
    with torch.no_grad():
        prior.slopes[2, 0] = scale
    pipe.register_modules(demographic_prior=prior)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_prior_shift_lands_in_the_denoised_volume(monkeypatch):
    pipe = pipeline_with_prior()
    pipe.scheduler = EDMEulerScheduler(sigma_data=0.5)

    def zero_network(sample, *args, **kwargs):
        return type("Out", (), {"sample": torch.zeros_like(sample)})()

    monkeypatch.setattr(pipe.unet, "forward", zero_network)
    low = pipe.sample_base([WOMAN, MAN], 1, 1.0, 2.0, torch.Generator().manual_seed(0))
    # one Euler step from sigma_max = 80 to 0 lands on the denoised estimate: c_skip * noise (~0) + shift
    inside = body_slices(MAN.height, pipe.config.base_spacing, max_slices=SHAPE[2])
    woman, man = low[0, 0, ..., -inside:], low[1, 0, ..., -inside:]
    torch.testing.assert_close(woman, torch.full_like(woman, 2.0 * (0.0 - 0.5)), atol=0.05, rtol=0)
    torch.testing.assert_close(man, torch.full_like(man, 2.0 * (1.0 - 0.5)), atol=0.05, rtol=0)
    assert low[:, 1, ..., -inside:].abs().max() < 0.05  # PET untouched


def test_prior_scale_zero_equals_no_prior_and_defaults_follow_the_prior():
    plain = make_tiny_pipeline()
    plain.set_progress_bar_config(disable=True)
    with_prior = pipeline_with_prior()

    def run(pipe, **kwargs):
        return pipe([WOMAN, MAN], generator=[torch.Generator().manual_seed(s) for s in (0, 1)], **FAST, **kwargs)

    off, reference = run(with_prior, prior_scale=0.0), run(plain)
    for a, b in zip(off.ct + off.pet, reference.ct + reference.pet):
        np.testing.assert_array_equal(a, b)
    assert reference.metadata[0]["prior_scale"] == 0.0 and reference.metadata[0]["guidance_scale"] == 2.0
    on = run(with_prior)
    assert on.metadata[0]["prior_scale"] == 0.6 and on.metadata[0]["guidance_scale"] == 1.0
    assert not np.array_equal(on.ct[1], run(with_prior, prior_scale=0.0, guidance_scale=1.0).ct[1])


def test_prior_argument_errors_name_the_field():
    with pytest.raises(ValueError, match="prior_scale=0.5 needs a demographic_prior component"):
        make_tiny_pipeline()(WOMAN, prior_scale=0.5, **FAST)
    with pytest.raises(ValueError, match=r"prior_scale=9 is out of range: allowed \[0, 5\]"):
        pipeline_with_prior()(WOMAN, prior_scale=9.0, **FAST)
    pipe = make_tiny_pipeline()
    with pytest.raises(ValueError, match=r"fitted on grid \[4, 4, 4\], but base_shape is \[8, 8, 12\]"):
        PETCTPipeline(**pipe.components | {"demographic_prior": DemographicPrior(shape=(4, 4, 4))},
                      base_shape=SHAPE, base_spacing=64.0, sr_scale=2)


def test_pipeline_round_trip_keeps_the_prior_and_loads_without_one(tmp_path):
    pipe = pipeline_with_prior()
    pipe.save_pretrained(tmp_path / "with")
    index = json.loads((tmp_path / "with" / "model_index.json").read_text())
    assert index["demographic_prior"] == ["petct_pipeline.models.demographic_prior", "DemographicPrior"]
    loaded = PETCTPipeline.from_pretrained(tmp_path / "with")
    torch.testing.assert_close(loaded.demographic_prior.slopes, pipe.demographic_prior.slopes)
    make_tiny_pipeline().save_pretrained(tmp_path / "without")
    assert PETCTPipeline.from_pretrained(tmp_path / "without").demographic_prior is None


@pytest.fixture(scope="module")
def phantom_population(tmp_path_factory):
    from petct_pipeline.phantom import sample_population, write_population

    folder = tmp_path_factory.mktemp("phantoms")
    write_population(sample_population(8, seed=3), folder, seed=3, spacing=12.0)
    return folder


def test_fit_prior_script_adds_the_prior_and_keeps_everything_else(phantom_population, tmp_path, capsys):
    from training.fit_prior import main

    pipeline_dir = save_prior_ready_pipeline(tmp_path / "pipeline")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"name": "t", "data": {"preprocess": {"include_organs": False},
                                                         "preprocess_workers": 0}}))
    out = tmp_path / "with_prior"
    common = ["--pipeline", str(pipeline_dir), "--data_dir", str(phantom_population), "--config", str(config),
              "--cache_dir", str(tmp_path / "cache")]
    assert main([*common, "--out", str(out), "--channels", "ct", "pet"]) == 0
    assert (out / "README.md").read_text() == "# card\n"
    provenance = json.loads((out / "training_provenance.json").read_text())["prior"]
    assert provenance["studies"] == 8 and provenance["channels"] == ["ct", "pet"]
    pipe = PETCTPipeline.from_pretrained(out)
    prior = pipe.demographic_prior
    assert list(prior.config.shape) == [8, 8, 16] and prior.slopes.shape == (4, 2, 8, 8, 16)
    assert torch.isfinite(prior.slopes).all() and prior.slopes.abs().max() > 0
    # the second run refuses to overwrite, and an error leaves the written folder alone
    assert main([*common, "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main([*common, "--out", str(out), "--overwrite", "--sigma_min", "-1"]) == 2
    assert "sigma_min must be >= 0" in capsys.readouterr().err
    assert PETCTPipeline.from_pretrained(out).demographic_prior.config.channels == ["ct", "pet"]
