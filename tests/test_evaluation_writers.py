"""Writers of the evaluation's files (evaluation/writers.py): CSV cells and strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np

from petct_pipeline.evaluation.writers import format_cell, json_safe, write_csv
from tests.helpers.evaluation_cohorts import read_csv


def test_csv_cells_are_plain_and_undefined_values_empty(tmp_path):
    assert [format_cell(v) for v in (None, True, False, math.nan, np.float32(0.25), 1 / 3, 7, "M")] == [
        "", "true", "false", "", "0.25", "0.3333333333", "7", "M"]
    path = write_csv(tmp_path / "t.csv", ("a", "b"), [{"a": 1.5, "b": math.inf}, {"a": "x"}])
    assert read_csv(path) == [{"a": "1.5", "b": ""}, {"a": "x", "b": ""}]
    assert not list(tmp_path.glob(".*"))  # written through a temporary name, nothing left beside it


def test_json_safe_turns_non_finite_values_into_null():
    value = {"a": [1.0, math.nan, np.float64(2.5)], "b": (np.inf, "text"), "c": {"d": 3}}
    assert json.loads(json.dumps(json_safe(value), allow_nan=False)) == {
        "a": [1.0, None, 2.5], "b": [None, "text"], "c": {"d": 3}}
