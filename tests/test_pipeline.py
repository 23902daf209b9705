import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from petct_pipeline import Demographics, PETCTPipeline
from petct_pipeline.geometry import body_slices
from petct_pipeline.intensity import from_model_space

WOMAN = Demographics(age=63, sex="F", weight=70, height=165)
MAN = Demographics(age=35, sex="M", weight=90, height=185)
FAST = {"num_inference_steps": 3, "sr_num_inference_steps": 2}


def run(pipe, demographics=WOMAN, seed=0, **kwargs):
    generator = [torch.Generator().manual_seed(s) for s in seed] if isinstance(seed, list) else (
        torch.Generator().manual_seed(seed)
    )
    return pipe(demographics, generator=generator, **{**FAST, **kwargs})


def test_output_units_shape_and_height_aware_field_of_view(tiny_pipeline):
    out = run(tiny_pipeline, [WOMAN, MAN], seed=[0, 1])
    assert len(out) == 2 and out.spacing == (32.0, 32.0, 32.0)
    for ct, pet, affine, subject in zip(out.ct, out.pet, out.affines, out.demographics):
        assert ct.shape[:2] == (16, 16) and ct.shape == pet.shape
        assert ct.shape[2] == body_slices(subject.height, 32.0, max_slices=24)
        assert ct.min() >= -1024 and ct.max() <= 3071 and pet.min() >= 0
        assert np.isfinite(ct).all() and np.isfinite(pet).all()
        assert nib.aff2axcodes(affine) == ("R", "A", "S")
    assert out.ct[1].shape[2] > out.ct[0].shape[2]  # the taller man gets a longer scan


def test_same_seed_identical_different_seed_differs(tiny_pipeline):
    a, b, c = run(tiny_pipeline, seed=0), run(tiny_pipeline, seed=0), run(tiny_pipeline, seed=1)
    np.testing.assert_array_equal(a.ct[0], b.ct[0])
    np.testing.assert_array_equal(a.pet[0], b.pet[0])
    assert not np.allclose(a.pet[0], c.pet[0])


def test_batch_equals_single_calls(tiny_pipeline):
    batch = run(tiny_pipeline, [WOMAN, MAN], seed=[3, 4], guidance_scale=2.0)
    for index, (subject, seed) in enumerate([(WOMAN, 3), (MAN, 4)]):
        single = run(tiny_pipeline, subject, seed=seed, guidance_scale=2.0)
        np.testing.assert_allclose(batch.ct[index], single.ct[0], atol=0.5)  # HU, float32 batching noise
        np.testing.assert_allclose(batch.pet[index], single.pet[0], atol=1e-3, rtol=1e-4)


def test_guidance_scale_one_is_the_conditional_path(tiny_pipeline, monkeypatch):
    batch_sizes = []
    forward = tiny_pipeline.unet.forward

    def counting_forward(x, *args, **kwargs):
        batch_sizes.append(len(x))
        return forward(x, *args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.unet, "forward", counting_forward)
    plain = run(tiny_pipeline, guidance_scale=1.0)
    assert set(batch_sizes) == {1}  # no unconditional rows evaluated
    guided = run(tiny_pipeline, guidance_scale=3.0)
    assert set(batch_sizes) == {1, 2}  # cond + uncond batched in one forward
    assert not np.allclose(plain.pet[0], guided.pet[0])
    # when the null embedding equals the conditional one, u + g (c - u) = c for any g
    encoder = tiny_pipeline.demographic_encoder
    conditional = encoder(encoder.features([WOMAN])).embedding
    monkeypatch.setattr(encoder, "forward", lambda features, batch_size=None, **k: type(
        "Out", (), {"embedding": conditional.expand(batch_size or len(features), -1)})())
    same = run(tiny_pipeline, guidance_scale=3.0)
    np.testing.assert_allclose(same.pet[0], plain.pet[0], rtol=1e-4, atol=1e-4)


def test_single_chunk_equals_unchunked_and_chunking_is_close(tiny_pipeline):
    full = run(tiny_pipeline, sr_chunk_size=64, sr_chunk_overlap=0)
    covering = run(tiny_pipeline, sr_chunk_size=24, sr_chunk_overlap=4)  # one chunk covers all 24 slices
    np.testing.assert_array_equal(full.ct[0], covering.ct[0])
    chunked = run(tiny_pipeline, sr_chunk_size=8, sr_chunk_overlap=4)
    assert chunked.ct[0].shape == full.ct[0].shape
    assert np.isfinite(chunked.pet[0]).all()


def test_output_type_pt_and_tuple(tiny_pipeline):
    out = run(tiny_pipeline, output_type="pt")
    assert isinstance(out.ct[0], torch.Tensor) and out.ct[0].dtype == torch.float32
    ct, pet, affines = run(tiny_pipeline, return_dict=False)
    assert ct[0].shape == pet[0].shape and affines[0].shape == (4, 4)


def test_callback_counts_both_stages_and_can_edit_latents(tiny_pipeline):
    seen = []

    def callback(pipe, step, timestep, kwargs):
        seen.append((step, kwargs["stage"]))
        return {"latents": kwargs["latents"]}

    run(tiny_pipeline, callback_on_step_end=callback)
    assert seen == [(0, "base"), (1, "base"), (2, "base"), (3, "sr"), (4, "sr")]


def test_save_writes_nifti_and_sidecar(tiny_pipeline, tmp_path):
    out = run(tiny_pipeline, seed=7, guidance_scale=1.5)
    out.save(tmp_path / "out")
    ct = nib.load(tmp_path / "out" / "ct.nii.gz")
    pet = nib.load(tmp_path / "out" / "pet_suv.nii.gz")
    assert ct.get_data_dtype() == np.int16 and pet.get_data_dtype() == np.float32
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S") and ct.header.get_zooms() == (32.0, 32.0, 32.0)
    np.testing.assert_array_equal(ct.affine, pet.affine)
    np.testing.assert_array_equal(np.asarray(ct.dataobj), np.rint(np.clip(out.ct[0], -1024, 3071)))
    np.testing.assert_allclose(np.asarray(pet.dataobj), out.pet[0])
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["seed"] == 7 and meta["guidance_scale"] == 1.5 and meta["num_inference_steps"] == 3
    assert meta["demographics"]["sex"] == "F" and meta["units"]["pet"].startswith("SUV")
    assert meta["spacing_mm"] == [32.0, 32.0, 32.0] and meta["synthetic"] is True
    batch = run(tiny_pipeline, [WOMAN, MAN], seed=[0, 1])
    folders = batch.save(tmp_path / "batch")
    assert [f.name for f in folders] == ["subject_000", "subject_001"]


def test_save_pretrained_round_trip_is_identical(tiny_pipeline, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    files = {p.name for p in (tmp_path / "pipe").rglob("*") if p.is_file()}
    assert "diffusion_pytorch_model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    loaded = PETCTPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.base_shape == [8, 8, 12] and loaded.config.sr_scale == 2
    for name in ("demographic_encoder", "unet", "sr_unet"):
        saved, restored = getattr(tiny_pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    # identical weights; the outputs may differ in the last float bits where a CPU's conv kernels
    # depend on the alignment of the (memory-mapped) weights
    a, b = run(tiny_pipeline, seed=5), run(loaded, seed=5)
    np.testing.assert_allclose(a.ct[0], b.ct[0], atol=0.1)
    np.testing.assert_allclose(a.pet[0], b.pet[0], atol=1e-3, rtol=1e-4)
    assert b.metadata[0]["model"] == "pipe" and b.metadata[0]["revision"].startswith("sha256:")


def test_loads_hub_repo_id_from_offline_cache(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--petct-diffusion--tiny"
    tiny_pipeline.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = PETCTPipeline.from_pretrained("petct-diffusion/tiny", cache_dir=tmp_path / "hub")
    loaded.set_progress_bar_config(disable=True)
    out = run(loaded)
    assert out.metadata[0]["model"] == "petct-diffusion/tiny" and out.metadata[0]["revision"] == commit
    with pytest.raises(OSError):
        PETCTPipeline.from_pretrained("petct-diffusion/missing", cache_dir=tmp_path / "hub")
    shutil.rmtree(repo)


def test_loading_never_unpickles(tiny_pipeline, tmp_path, monkeypatch):
    tiny_pipeline.save_pretrained(tmp_path / "pipe")

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load (pickle) must not be used to load weights")

    monkeypatch.setattr(torch, "load", forbidden)
    PETCTPipeline.from_pretrained(tmp_path / "pipe")


def test_back_projection_makes_the_output_downsample_to_the_stage1_volume(tiny_pipeline, monkeypatch):
    from petct_pipeline.back_projection import downsample_like_preprocessing

    stage1 = []
    sample_base = tiny_pipeline.sample_base
    monkeypatch.setattr(tiny_pipeline, "sample_base",
                        lambda *a, **k: stage1.append(sample_base(*a, **k)) or stage1[-1])
    errors = {}
    for iterations in (0, 8):
        out = run(tiny_pipeline, output_type="pt", back_projection_iterations=iterations)
        assert out.metadata[0]["back_projection_iterations"] == iterations
        coarse_ct, coarse_pet = from_model_space(stage1[-1][0, 0], stage1[-1][0, 1])
        fine = torch.stack([out.ct[0], out.pet[0]])[None]
        slices = fine.shape[-1] // 2 - 1  # whole coarse slices inside the scan, away from its top edge
        down = downsample_like_preprocessing(fine[..., -2 * slices :], 2)[0, :, 1:-1, 1:-1, 1:]
        target = torch.stack([coarse_ct, coarse_pet])[:, 1:-1, 1:-1, -slices + 1 :]
        errors[iterations] = [float((d - t).abs().mean()) for d, t in zip(down, target)]
    assert errors[8][0] < 0.5 * errors[0][0] and errors[8][1] < 0.5 * errors[0][1], errors  # tiny nets clip HU


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be an integer in [1, 1000]"),
        ({"sr_num_inference_steps": 2.5}, "sr_num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
        ({"guidance_scale": -1.0}, "guidance_scale=-1 is out of range"),
        ({"sr_noise_level": 5.0}, "sr_noise_level=5 is out of range"),
        ({"sr_chunk_size": 7}, "sr_chunk_size must be a multiple of 2"),
        ({"sr_chunk_overlap": 8, "sr_chunk_size": 8}, "sr_chunk_overlap must be in [0, sr_chunk_size=8)"),
        ({"output_type": "pil"}, "output_type must be 'np' or 'pt'"),
        ({"back_projection_iterations": -1}, "back_projection_iterations must be an integer in [0, 100]"),
        ({"back_projection_iterations": 1.5}, "back_projection_iterations"),
    ],
)
def test_bad_call_arguments_give_clear_errors(tiny_pipeline, kwargs, fragment):
    with pytest.raises(ValueError) as excinfo:
        tiny_pipeline(WOMAN, **{**FAST, **kwargs})
    assert fragment in str(excinfo.value)


def test_bad_demographics_input(tiny_pipeline):
    with pytest.raises(TypeError, match="demographics must be"):
        tiny_pipeline("63 F 70 165")
    with pytest.raises(TypeError, match="demographics must be"):
        tiny_pipeline([])
    with pytest.raises(ValueError, match="age=200"):
        tiny_pipeline({"age": 200, "sex": "F", "weight": 70, "height": 165})
    with pytest.raises(ValueError, match="2 generators for a batch of 1"):
        tiny_pipeline(WOMAN, generator=[torch.Generator(), torch.Generator()])
