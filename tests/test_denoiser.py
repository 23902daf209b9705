"""Stage 1's guided denoiser and the pipeline's public stage seams (sample_base, super_resolve, back_project)."""

import pytest
import torch
from diffusers import EDMEulerScheduler

from petct_pipeline import Demographics
from petct_pipeline.errors import InputError
from petct_pipeline.models.denoiser import KnownVoxels, Stage1Condition, Stage1Denoiser, output_scalings

WOMAN = Demographics(age=63, sex="F", weight=70, height=165)
MAN = Demographics(age=35, sex="M", weight=90, height=185)


def noisy_volume(pipe, batch=2, seed=0):
    return torch.randn((batch, 2, *pipe.base_shape), generator=torch.Generator().manual_seed(seed))


def test_guidance_is_the_extrapolation_of_the_conditional_and_unconditional_estimates(tiny_pipeline):
    denoiser = tiny_pipeline.stage1_denoiser
    x, sigma = noisy_volume(tiny_pipeline) * 3.0, torch.tensor(3.0)
    conditional = denoiser.denoise(x, sigma, denoiser.condition([WOMAN, MAN], guidance_scale=1.0))
    null = tiny_pipeline.demographic_encoder(None, batch_size=2).embedding
    unconditional = denoiser.denoise(x, sigma, Stage1Condition(embedding=null, guidance_scale=1.0))
    guided = denoiser.denoise(x, sigma, denoiser.condition([WOMAN, MAN], guidance_scale=2.5))
    assert not torch.allclose(conditional, unconditional)
    torch.testing.assert_close(guided, unconditional + 2.5 * (conditional - unconditional), atol=1e-5, rtol=1e-5)


def test_known_voxels_fix_the_denoised_estimate_and_the_sample(tiny_pipeline):
    denoiser = tiny_pipeline.stage1_denoiser
    shape = (2, 2, *tiny_pipeline.base_shape)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, 0] = True  # the CT channel is given: PET from a given CT
    values = torch.full(shape, -0.3)
    known = KnownVoxels(mask, values)
    x, sigma = noisy_volume(tiny_pipeline) * 5.0, torch.tensor(5.0)
    free = denoiser.denoise(x, sigma, denoiser.condition([WOMAN, MAN]))
    inpainted = denoiser.denoise(x, sigma, denoiser.condition([WOMAN, MAN], known=known))
    torch.testing.assert_close(inpainted[:, 0], values[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(inpainted[:, 1], free[:, 1])
    volume = tiny_pipeline.sample_base([WOMAN, MAN], 3, known=known, generator=torch.Generator().manual_seed(0))
    body = volume[..., -2:]  # slices inside both bodies (the rest is set to air)
    assert torch.equal(body[:, 0], values[:, 0, ..., -2:])
    assert body[:, 1].std() > 0


def test_prior_shift_moves_the_denoised_estimate_only_above_sigma_min(tiny_pipeline):
    from petct_pipeline.models import DemographicPrior

    prior = DemographicPrior(num_features=tiny_pipeline.demographic_encoder.num_features,
                             shape=tiny_pipeline.base_shape, sigma_min=1.0)
    with torch.no_grad():
        prior.slopes.normal_()
    denoiser = Stage1Denoiser(tiny_pipeline.unet, tiny_pipeline.demographic_encoder, tiny_pipeline.scheduler, prior)
    x = noisy_volume(tiny_pipeline)
    shift = 0.7 * prior(tiny_pipeline.demographic_encoder.features([WOMAN, MAN]))
    for sigma, moved in ((torch.tensor(2.0), True), (torch.tensor(0.5), False)):
        plain = denoiser.denoise(x, sigma, denoiser.condition([WOMAN, MAN]))
        shifted = denoiser.denoise(x, sigma, denoiser.condition([WOMAN, MAN], prior_scale=0.7))
        torch.testing.assert_close(shifted - plain, shift if moved else torch.zeros_like(shift), atol=1e-4, rtol=1e-4)


def test_model_output_and_denoise_agree_through_the_scheduler_scalings(tiny_pipeline):
    denoiser = tiny_pipeline.stage1_denoiser
    condition = denoiser.condition([WOMAN])
    x, sigma = noisy_volume(tiny_pipeline, batch=1) * 2.0, torch.tensor(2.0)
    c_skip, c_out = output_scalings(tiny_pipeline.scheduler, sigma)
    raw = denoiser.model_output(x, sigma, condition)
    torch.testing.assert_close(denoiser.denoise(x, sigma, condition), c_skip * x + c_out * raw)


def test_prior_scale_without_a_prior_is_an_input_error(tiny_pipeline):
    with pytest.raises(InputError, match="prior_scale=0.5 needs a demographic_prior"):
        tiny_pipeline.stage1_denoiser.condition([WOMAN], prior_scale=0.5)


def test_sample_base_from_a_start_volume_follows_it_at_low_strength(tiny_pipeline):
    start = tiny_pipeline.sample_base([WOMAN], 4, generator=torch.Generator().manual_seed(1))
    edited = tiny_pipeline.sample_base([WOMAN], 8, start_volume=start, strength=0.25,
                                       generator=torch.Generator().manual_seed(2))
    fresh = tiny_pipeline.sample_base([WOMAN], 8, generator=torch.Generator().manual_seed(2))
    assert (edited - start).abs().mean() < 0.5 * (fresh - start).abs().mean()
    steps = []
    tiny_pipeline.sample_base([WOMAN], 8, start_volume=start, strength=0.25,
                              step_callback=lambda stage, t, x: steps.append(stage) or x)
    assert steps == ["base", "base"]  # round(0.25 * 8) of the 8 steps


@pytest.mark.parametrize("kwargs,fragment", [
    ({"strength": 0.5}, "strength=0.5 needs a start_volume"),
    ({"strength": 0.0, "start_volume": torch.zeros(1, 2, 8, 8, 12)}, "strength must be a number in (0, 1]"),
    ({"strength": 0.01, "start_volume": torch.zeros(1, 2, 8, 8, 12)}, "runs no step"),
    ({"start_volume": torch.zeros(1, 2, 4, 4, 4)}, "start_volume must be a tensor of shape (1, 2, 8, 8, 12)"),
    ({"known": KnownVoxels(torch.ones(3, 1, 1, 1, 1, dtype=torch.bool), torch.zeros(()))}, "known.mask"),
])
def test_sample_base_rejects_bad_arguments(tiny_pipeline, kwargs, fragment):
    with pytest.raises(InputError) as excinfo:
        tiny_pipeline.sample_base([WOMAN], 4, **kwargs)
    assert fragment in str(excinfo.value)


def test_super_resolve_keeps_known_voxels_and_back_project_is_identity_at_zero(tiny_pipeline):
    low = tiny_pipeline.sample_base([WOMAN], 2, generator=torch.Generator().manual_seed(0))
    free = tiny_pipeline.super_resolve(low, WOMAN, 2, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(free.shape, dtype=torch.bool)
    mask[:, 0] = True
    known = KnownVoxels(mask, free.clone().fill_(0.25))
    given = tiny_pipeline.super_resolve(low, WOMAN, 2, generator=torch.Generator().manual_seed(3), known=known)
    assert given.shape == free.shape
    torch.testing.assert_close(given[:, 0], torch.full_like(given[:, 0], 0.25), atol=1e-5, rtol=0)
    assert torch.equal(tiny_pipeline.back_project(free, low, 0), free)
    ct, pet, affine = tiny_pipeline.decode(free)
    assert ct.shape == pet.shape == tuple(free.shape[2:]) and affine.shape == (4, 4)


def test_the_call_is_the_chain_of_the_public_seams(tiny_pipeline):
    generator = torch.Generator().manual_seed(5)
    out = tiny_pipeline(WOMAN, num_inference_steps=3, sr_num_inference_steps=2, generator=generator, output_type="pt")
    generator = torch.Generator().manual_seed(5)
    low = tiny_pipeline.sample_base([WOMAN], 3, generator=generator)
    volume = tiny_pipeline.super_resolve(low, WOMAN, 2, generator=generator)
    ct, pet, _ = tiny_pipeline.decode(tiny_pipeline.back_project(volume, low), output_type="pt")
    assert torch.equal(ct, out.ct[0]) and torch.equal(pet, out.pet[0])


def test_euler_scheduler_gives_no_scale_input_warning(tiny_pipeline, caplog):
    tiny_pipeline.scheduler = EDMEulerScheduler(sigma_data=0.5)
    with caplog.at_level("WARNING"):
        tiny_pipeline.sample_base([WOMAN], 2, generator=torch.Generator().manual_seed(0))
    assert "scale_model_input" not in caplog.text
