"""Shared fixtures: a tiny randomly initialised pipeline (the diffusers habit), offline hub, evaluation cohorts."""

from __future__ import annotations

import os

import pytest

from tests.helpers.pipelines import make_tiny_pipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing repo must fail fast, not retry for 23 s
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture()
def tiny_pipeline():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def tiny_pipeline_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_pipeline")
    make_tiny_pipeline().save_pretrained(path)
    return path


# ------------------------------------------------ evaluation cohorts (tests/helpers/evaluation_cohorts.py)


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    """The tiny AutoPET-layout reference cohort, shared by the evaluation test files."""
    from tests.helpers.evaluation_cohorts import write_autopet

    return write_autopet(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def self_report(tmp_path_factory, reference_dir):
    """``evaluate`` of the reference against itself (labels segmenter, with plots)."""
    from petct_pipeline.evaluation import evaluate  # heavy (torch): only for the tests that use it

    return evaluate(reference_dir, reference_dir, out=tmp_path_factory.mktemp("self_report"), segmenter="labels")
