"""The training range travels with the model: subjects outside it generate with a warning and a record."""

import json
import logging

import pytest
import torch

from petct_pipeline import Demographics, PETCTPipeline
from petct_pipeline.demographic_range import DemographicRange
from petct_pipeline.errors import InputError
from petct_pipeline.phantom.population import sample_population
from training.record_training_range import main as record_main

FAST = {"num_inference_steps": 1, "sr_num_inference_steps": 1}


@pytest.fixture(scope="module")
def training_range():
    return DemographicRange.from_subjects(sample_population(200, 3), source="petct phantom --n 200 --seed 3")


def test_range_records_each_feature_and_refuses_a_far_combination(training_range):
    low_age, high_age = training_range.ranges["age"]
    assert training_range.count == 200 and training_range.sexes == ("F", "M")
    edge = Demographics(age=high_age, sex="M", weight=80, height=178)
    assert training_range.reasons(edge) == []
    outside = Demographics(age=high_age + 1, sex="M", weight=80, height=178)
    assert training_range.reasons(outside) == [f"age {high_age + 1:g} years outside the training range "
                                               f"[{low_age:g}, {high_age:g}]"]
    # every feature (BMI too) inside its own range, but a 185 cm, 110 kg woman of 20 is far from every woman
    tall_heavy_young = Demographics(age=20, sex="F", weight=110, height=185)
    reasons = training_range.reasons(tall_heavy_young)
    assert len(reasons) == 1 and "Mahalanobis distance" in reasons[0] and "sex F" in reasons[0], reasons
    assert DemographicRange.from_dict(training_range.to_dict()).reasons(tall_heavy_young) == reasons


def test_an_invalid_record_is_an_input_error():
    with pytest.raises(InputError, match="training_range: not a demographic range record"):
        DemographicRange.from_dict({"count": 3})


def test_pipeline_warns_records_and_keeps_the_range_through_save_and_load(tiny_pipeline, training_range, tmp_path,
                                                                          caplog):
    tiny_pipeline.register_to_config(training_range=training_range.to_dict())
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    pipe = PETCTPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.training_range.to_dict() == training_range.to_dict()
    inside = Demographics(age=50, sex="F", weight=65, height=165)
    outside = Demographics(age=100, sex="F", weight=250, height=220)
    with caplog.at_level(logging.WARNING, logger="petct_pipeline"):
        out = pipe([inside, outside], generator=[torch.Generator().manual_seed(s) for s in (0, 1)], **FAST)
    assert out.metadata[0]["out_of_distribution"] == []
    reasons = out.metadata[1]["out_of_distribution"]
    assert any(r.startswith("weight 250 kg outside the training range") for r in reasons)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "F 100 y 250 kg 220 cm" in warnings[0].getMessage()


def test_without_a_recorded_range_nothing_is_claimed(tiny_pipeline):
    out = tiny_pipeline(Demographics(age=100, sex="F", weight=250, height=220), **FAST)
    assert out.metadata[0]["out_of_distribution"] is None


def test_record_script_writes_the_phantom_population_range(tiny_pipeline_dir, capsys):
    assert record_main(["--pipeline", str(tiny_pipeline_dir), "--phantom_population", "200", "3"]) == 0
    index = json.loads((tiny_pipeline_dir / "model_index.json").read_text())
    assert index["training_range"]["source"] == "petct phantom --n 200 --seed 3"
    assert "trained on 200 subjects" in capsys.readouterr().out
    assert PETCTPipeline.from_pretrained(tiny_pipeline_dir).training_range.count == 200
    assert record_main(["--pipeline", str(tiny_pipeline_dir)]) == 2


def test_the_shipped_model_records_its_phantom_training_population():
    from petct_pipeline.checkpoints import checkpoints_dir

    index = json.loads((checkpoints_dir() / "petct-phantom-demo" / "model_index.json").read_text())
    recorded = DemographicRange.from_dict(index["training_range"])
    expected = DemographicRange.from_subjects(sample_population(400, 0), source="petct phantom --n 400 --seed 0")
    # the densities' inverse covariances can differ in the last bit between processes (LAPACK's kernels follow
    # memory alignment), so numbers are compared to 1e-12, everything else exactly
    recorded_leaves, expected_leaves = _leaves(recorded.to_dict()), _leaves(json.loads(json.dumps(expected.to_dict())))
    assert [path for path, _ in recorded_leaves] == [path for path, _ in expected_leaves]
    for (path, got), (_, want) in zip(recorded_leaves, expected_leaves):
        assert got == (pytest.approx(want, rel=1e-12, abs=1e-15) if isinstance(want, float) else want), path


def _leaves(value, path: str = "") -> list[tuple[str, object]]:
    """(path, value) of every leaf of nested dicts and lists, in order."""
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _leaves(value[key], f"{path}/{key}")]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, f"{path}[{index}]")]
    return [(path, value)]


def test_beyond_the_range_stage_one_is_conditioned_on_its_nearest_edge(tiny_pipeline, training_range):
    from petct_pipeline.models import DemographicPrior

    prior = DemographicPrior(num_features=tiny_pipeline.demographic_encoder.num_features,
                             shape=tiny_pipeline.base_shape)
    with torch.no_grad():
        prior.slopes.normal_()
    tiny_pipeline.register_modules(demographic_prior=prior)
    tiny_pipeline.register_to_config(training_range=training_range.to_dict())
    high_weight = training_range.ranges["weight"][1]
    edge = Demographics(age=50, sex="M", weight=high_weight, height=175)
    far = [Demographics(age=50, sex="M", weight=weight, height=175) for weight in (180.0, 250.0)]
    bounded = [tiny_pipeline.stage1_denoiser.condition([s], guidance_scale=2.0, prior_scale=1.0) for s in far]
    at_edge = tiny_pipeline.stage1_denoiser.condition([edge], guidance_scale=2.0, prior_scale=1.0)
    for condition in bounded:
        assert torch.equal(condition.prior_shift, at_edge.prior_shift)
        assert torch.equal(condition.embedding, at_edge.embedding)
    tiny_pipeline.register_to_config(training_range=None)  # unbounded: the linear prior keeps growing
    unbounded = [tiny_pipeline.stage1_denoiser.condition([s], prior_scale=1.0).prior_shift.abs().mean() for s in far]
    assert unbounded[1] > unbounded[0] > at_edge.prior_shift.abs().mean()


def test_every_training_subject_lies_inside_its_own_range():
    subjects = sample_population(400, 0)
    recorded = DemographicRange.from_dict(DemographicRange.from_subjects(subjects).to_dict())
    assert [s for s in subjects if recorded.reasons(s)] == []
