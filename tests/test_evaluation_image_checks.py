"""Image checks (evaluation/image_checks.py, cohort_checks.py): diversity, and whose thumbnails are kept."""

from __future__ import annotations

from petct_pipeline.demographics import Demographics
from petct_pipeline.evaluation import discover_inputs
from petct_pipeline.evaluation.cohort_checks import DIVERSITY_BASELINE, thumbnail_keys
from petct_pipeline.evaluation.image_checks import mean_pairwise_distance, thumbnail
from tests.helpers.evaluation_cohorts import DEMOGRAPHICS, SPACING, make_volumes, write_generated


def test_diversity_exposes_identical_samples(tmp_path):
    d = DEMOGRAPHICS[0]
    same = [thumbnail(*make_volumes(d, 0)[:2], (SPACING,) * 3) for _ in range(3)]
    varied = [thumbnail(*make_volumes(d, seed)[:2], (SPACING,) * 3) for seed in range(3)]
    assert mean_pairwise_distance(same)["suv_mad"] == 0.0
    assert mean_pairwise_distance(varied)["suv_mad"] > 0.0


def test_thumbnails_are_kept_for_the_baseline_and_for_repeated_demographics(tmp_path):
    distinct = [Demographics(age=30 + i, sex="MF"[i % 2], weight=60 + i, height=170)
                for i in range(DIVERSITY_BASELINE + 1)]
    subjects = distinct + distinct[:1]  # the last one repeats the first one's demographics
    cohort = discover_inputs(write_generated(tmp_path / "gen", subjects, with_labels=False), "generated")
    baseline = {f"s{i:03d}" for i in range(DIVERSITY_BASELINE)}
    assert thumbnail_keys(cohort, duplicates=False) == baseline
    assert thumbnail_keys(cohort, duplicates=True) == baseline | {f"s{DIVERSITY_BASELINE + 1:03d}"}
