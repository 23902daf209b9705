"""Organs outside one cohort's field of view (evaluation/coverage.py): counted and named, never NaN."""

from __future__ import annotations

import re

from petct_pipeline.evaluation import evaluate
from petct_pipeline.evaluation.coverage import OK, STATUSES
from petct_pipeline.evaluation.markdown import STATUS_WORDS
from tests.helpers.evaluation_cohorts import DEMOGRAPHICS, read_csv, write_generated

NAN_TEXT = re.compile(r"\b(nan|inf)\b", re.IGNORECASE)


def nan_text(text: str) -> re.Match | None:
    """A NaN or infinity written as a value (the image checks' "NaN/inf voxels" is a name, not a value)."""
    return NAN_TEXT.search(text.replace("NaN/inf", ""))


def _bladder_rows(result):
    return [r for r in result.summary if r["organ"] == "urinary_bladder"]


def test_organ_below_the_generated_field_of_view_is_reported_outside_it_with_counts(tmp_path, reference_dir):
    # the generated volumes stop above the bladder (their lowest 30 % of slices cut off); the reference is whole
    generated = write_generated(tmp_path / "gen", crop_below=0.3)
    result = evaluate(generated, reference_dir, out=tmp_path / "report", segmenter="labels", plots=False,
                      realism=False)
    assert {r["status"] for r in result.summary} <= set(STATUSES)
    assert set(STATUS_WORDS) == set(STATUSES) - {OK}  # the report can say what every status means
    for row in _bladder_rows(result):
        assert row["status"] == "outside_generated_fov", row
        assert row["n_generated"] == 0 and row["generated_subjects"] >= 1
        assert row["n_reference"] == row["reference_subjects"] >= 1
        assert row["resolvable"] is False
    liver = result.row("all", "liver", "suv_mean")
    assert liver["status"] == "ok" and liver["n_generated"] == liver["n_reference"] == len(DEMOGRAPHICS)
    assert liver["deviation_pct"] == 0.0  # the organs inside both fields of view are the same voxels
    out = result.out_dir
    csv_rows = [r for r in read_csv(out / "summary.csv") if r["organ"] == "urinary_bladder"]
    assert {r["status"] for r in csv_rows} == {"outside_generated_fov"}
    assert {r["deviation_pct"] for r in csv_rows} == {""}  # undefined, and said why in `status`
    for name in ("summary.csv", "summary.md", "report.md"):
        assert not nan_text((out / name).read_text()), name
    report = (out / "report.md").read_text()
    assert f"outside FOV (0/{len(DEMOGRAPHICS)} generated)" in report
    assert "lies outside the generated field of view" in report
    assert f"outside FOV (0/{len(DEMOGRAPHICS)} generated)" in (out / "summary.md").read_text()


def test_organ_missing_from_label_maps_is_not_segmented_and_sides_are_symmetric(tmp_path, reference_dir):
    # same field of view, label maps without the bladder: not a field-of-view problem
    unlabelled = write_generated(tmp_path / "unlabelled", drop_organs=("urinary_bladder",))
    result = evaluate(unlabelled, reference_dir, out=tmp_path / "r1", segmenter="labels", plots=False,
                      realism=False)
    assert {r["status"] for r in _bladder_rows(result)} == {"not_found_generated"}
    assert "not segmented (0/8 generated)" in (tmp_path / "r1" / "report.md").read_text()
    # the short cohort on the reference side
    cropped = write_generated(tmp_path / "cropped", DEMOGRAPHICS[:4], crop_below=0.3)
    result = evaluate(reference_dir, cropped, out=tmp_path / "r2", segmenter="labels", plots=False,
                      realism=False)
    assert {r["status"] for r in _bladder_rows(result) if r["reference_subjects"]} == {"outside_reference_fov"}
    row = result.row("all", "urinary_bladder", "volume_ml")
    assert (row["n_generated"], row["n_reference"], row["reference_subjects"]) == (8, 0, 4)
    # a subgroup with no subject on one side says so (the four short reference subjects are all men)
    assert {d.sex for d in DEMOGRAPHICS[:4]} == {"M"}
    assert {r["status"] for r in result.summary if r["subgroup"] == "F_adult"} == {"no_reference_subjects"}
    for name in ("summary.csv", "summary.md", "report.md"):
        assert not nan_text((tmp_path / "r2" / name).read_text()), name
