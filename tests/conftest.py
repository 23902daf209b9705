"""Shared fixtures: a tiny randomly initialised pipeline (the diffusers habit) and offline hub."""

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
