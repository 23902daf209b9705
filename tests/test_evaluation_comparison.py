"""Comparing two measured cohorts (evaluation/comparison.py): known differences are found, and nothing else."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from scipy import ndimage

from petct_pipeline.evaluation import BODY, METRICS, evaluate
from petct_pipeline.evaluation.statistics import spread_ratio
from petct_pipeline.io import load_nifti, save_nifti
from petct_pipeline.organs import EVALUATION_ORGANS, LABEL_IDS
from tests.helpers.evaluation_cohorts import DEMOGRAPHICS, write_generated


def test_reference_against_itself_gives_zero_deviation_everywhere(self_report):
    rows = self_report.summary
    assert {r["metric"] for r in rows if r["organ"] != BODY} == set(METRICS)
    assert {r["organ"] for r in rows} == {*EVALUATION_ORGANS, BODY}
    assert "all" in {r["subgroup"] for r in rows}
    assert {"M_adult", "M_elder", "F_adult", "F_elder"} <= {r["subgroup"] for r in rows}
    for row in rows:
        assert row["deviation_pct"] == 0.0 or math.isnan(row["deviation_pct"]), row
        if row["n_generated"] >= 2:
            assert row["p_welch"] in (1.0,) or math.isnan(row["p_welch"]), row
    defined = [r for r in rows if not math.isnan(r["deviation_pct"])]
    assert len(defined) > 0.9 * len(rows)
    liver = self_report.row("all", "liver", "suv_mean")
    assert liver["n_generated"] == liver["n_reference"] == len(DEMOGRAPHICS)
    assert 1.9 < liver["reference_mean"] < 2.5
    assert all(r["same_conclusion"] in (True, "") for r in self_report.anova)

def test_liver_suv_scaled_by_ten_percent_is_reported_as_plus_ten(tmp_path, reference_dir):
    # same subjects and noise as the reference, liver uptake x 1.10, generated layout
    generated = write_generated(tmp_path / "gen", liver_suv_scale=1.10)
    result = evaluate(generated, reference_dir, out=tmp_path / "report", segmenter="labels", plots=False,
                      realism=False)
    for subgroup in ("all", "M_adult", "F_elder"):
        for metric in ("suv_mean", "suv_max", "suv_peak"):
            assert result.row(subgroup, "liver", metric)["deviation_pct"] == pytest.approx(10.0, abs=0.05)
    assert result.row("all", "liver", "volume_ml")["deviation_pct"] == pytest.approx(0.0, abs=1e-9)
    for organ in EVALUATION_ORGANS:
        if organ != "liver":
            for metric in METRICS:
                assert abs(result.row("all", organ, metric)["deviation_pct"]) < 0.05, (organ, metric)
    assert result.row("all", "liver", "suv_mean")["p_welch"] < 0.05
    # scaling every liver SUV by 1.1 widens its spread by the same factor; volumes keep theirs
    assert spread_ratio(result.row("all", "liver", "suv_mean")) == pytest.approx(1.10, abs=1e-6)
    assert spread_ratio(result.row("all", "liver", "volume_ml")) == pytest.approx(1.0, abs=1e-9)

def test_eroded_organ_labels_show_the_volume_drop(tmp_path, reference_dir):
    copy = tmp_path / "eroded"
    shutil.copytree(reference_dir, copy)
    kidney = LABEL_IDS["kidney_left"]
    for path in copy.glob("PETCT_*/*/organs.nii.gz"):
        labels, affine = load_nifti(path, dtype=np.int16)
        mask = labels == kidney
        eroded = ndimage.binary_erosion(mask)
        labels[mask & ~eroded] = 0
        save_nifti(labels, affine, path)
    result = evaluate(copy, reference_dir, out=tmp_path / "report", segmenter="labels", plots=False,
                      realism=False)
    drop = result.row("all", "kidney_left", "volume_ml")["deviation_pct"]
    assert drop < -20.0
    assert result.row("all", "kidney_left", "volume_ml")["p_welch"] < 0.05
    assert result.row("all", "kidney_right", "volume_ml")["deviation_pct"] == 0.0
    assert result.row("all", "liver", "volume_ml")["deviation_pct"] == 0.0
