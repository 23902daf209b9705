"""The report folder of ``evaluate`` / ``petct evaluate`` (report.py, writers.py, markdown.py) and the CLI."""

from __future__ import annotations

import csv
import json

from petct_pipeline.evaluation import SUMMARY_COLUMNS, SubgroupScheme, evaluate
from petct_pipeline.evaluation.subgroups import FAMILIES
from petct_pipeline.organs import EVALUATION_ORGANS
from tests.helpers.evaluation_cohorts import DEMOGRAPHICS, read_csv, write_generated


def test_report_files_are_complete_and_readable(self_report):
    out = self_report.out_dir
    for name in ("subjects.csv", "summary.csv", "summary.md", "anova.csv", "trends.csv", "image_checks.json",
                 "evaluation.json", "report.md", "plots/box_suv_mean.png", "plots/trend_volume_ml_vs_height.png",
                 "plots/histograms.png"):
        assert (out / name).is_file(), name
    summary = read_csv(out / "summary.csv")
    assert list(summary[0])[:13] == list(SUMMARY_COLUMNS[:13])
    subjects = read_csv(out / "subjects.csv")
    assert len(subjects) == 2 * len(DEMOGRAPHICS) * (len(EVALUATION_ORGANS) + 1)
    liver = [r for r in subjects if r["organ"] == "liver" and r["cohort"] == "reference"]
    assert all(float(r["volume_ml"]) > 500 for r in liver)
    # the BMI band has its own column: the numeric BMI is not overwritten (it was, both named "bmi")
    assert list(subjects[0]).count("bmi") == 1 and all(float(r["bmi"]) > 10 for r in subjects)
    assert {r["bmi_band"] for r in subjects} <= {"bmi<25", "bmi25-30", "bmi>=30"} and "sex_age_band" in subjects[0]
    report = (out / "report.md").read_text()
    assert "Evaluation time" in report and "![box_suv_mean](plots/box_suv_mean.png)" in report
    # the reference against itself varies exactly as much as itself, with an unchanged median
    assert "| liver | 1 | +0.0% | 1 | +0.0% |" in report.split("## Spread across subjects")[1]
    assert "No deviation larger than 5% with p < 0.05 (Welch)." in report
    assert "Sample diversity: no two generated samples share demographics" in report
    timing = json.loads((out / "evaluation.json").read_text())["timing"]
    assert timing["subjects"] == 2 * len(DEMOGRAPHICS) and timing["wall_seconds"] > 0
    checks = json.loads((out / "image_checks.json").read_text())
    assert checks["wasserstein"]["hu"] == 0.0 and checks["wasserstein"]["suv"] == 0.0
    assert checks["nonfinite"]["generated"]["subjects_with_nonfinite"] == 0

def test_every_csv_of_the_report_names_each_column_once(tmp_path, reference_dir):
    # every subgroup family, so each band column sits beside the demographic it comes from (bmi, age, sex)
    generated = write_generated(tmp_path / "gen", DEMOGRAPHICS[:4])
    result = evaluate(generated, reference_dir, out=tmp_path / "report", segmenter="labels", plots=False,
                      scheme=SubgroupScheme(families=FAMILIES))
    files = sorted(result.out_dir.rglob("*.csv"))
    assert {f.name for f in files} >= {"subjects.csv", "summary.csv", "anova.csv", "trends.csv"}
    for path in files:
        with open(path, newline="") as handle:
            header = next(csv.reader(handle))  # csv, not pandas: pandas renames a duplicate to "bmi.1"
        duplicates = sorted({name for name in header if header.count(name) > 1})
        assert not duplicates, f"{path.name} has duplicate columns {duplicates}"
    with open(result.out_dir / "subjects.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert {"age", "sex", "bmi", "age_band", "sex_band", "bmi_band", "sex_age_band"} <= set(header)


def test_cli_runs_end_to_end_and_reports_errors_in_one_line(tmp_path, reference_dir, capsys):
    from petct_pipeline.cli import main

    generated = write_generated(tmp_path / "gen", DEMOGRAPHICS[:4], seeds=[0, 0, 5, 6])
    out = tmp_path / "report"
    code = main(["evaluate", "--generated", str(generated), "--reference", str(reference_dir), "--segmenter",
                 "labels", "--out", str(out), "--workers", "2", "--subgroups", "sex,bmi", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    assert "report:" in capsys.readouterr().out
    subgroups = {r["subgroup"] for r in read_csv(out / "summary.csv")}
    assert {"all", "M", "F", "bmi<25", "bmi25-30", "bmi>=30"} >= subgroups >= {"all", "M", "F"}
    code = main(["evaluate", "--generated", str(tmp_path / "missing"), "--reference", str(reference_dir),
                 "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    code = main(["evaluate", "--generated", str(generated), "--reference", str(reference_dir),
                 "--segmenter", "totalsegmentator", "--out", str(tmp_path / "r3")])
    err = capsys.readouterr().err
    assert code == 2 and ("pip install TotalSegmentator" in err or "totalseg_download_weights" in err)
