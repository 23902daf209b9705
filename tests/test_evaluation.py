"""petct evaluate: inputs, metrics, statistics, subgroups, report files and CLI, on tiny synthetic cohorts.

The fixture cohorts are small box-shaped bodies at 8 mm with ellipsoid organs carrying
TotalSegmentator label ids; organ sizes follow weight and SUVs follow age, so subgroups and
trends have something to find. They are written in both layouts the evaluation reads.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from petct_pipeline.demographics import Demographics
from petct_pipeline.evaluation import (
    BODY,
    METRICS,
    SUMMARY_COLUMNS,
    LabelsSegmenter,
    SubgroupScheme,
    discover_inputs,
    evaluate,
    make_segmenter,
    sphere_kernel,
    suv_peak,
)
from petct_pipeline.evaluation.image_checks import mean_pairwise_distance, thumbnail
from petct_pipeline.evaluation.segmenters import SegmenterUnavailableError, TotalSegmentatorSegmenter
from petct_pipeline.evaluation.statistics import (
    cliffs_delta,
    cohens_d,
    compare,
    compare_coefficients,
    fit_ols,
    spread_ratio,
)
from petct_pipeline.geometry import ras_affine
from petct_pipeline.io import load_nifti, save_nifti, write_json
from petct_pipeline.organs import EVALUATION_ORGANS, LABEL_IDS

SPACING = 8.0
# organ: (centre as fraction of (x, y, z), semi-axes in mm at 70 kg, CT HU, SUV)
ORGANS = {
    "brain": ((0.5, 0.5, 0.93), (70, 80, 55), 35, 8.0),
    "lung_upper_lobe_left": ((0.68, 0.5, 0.72), (45, 55, 50), -820, 0.4),
    "lung_lower_lobe_left": ((0.68, 0.5, 0.64), (45, 55, 35), -820, 0.45),
    "lung_upper_lobe_right": ((0.32, 0.5, 0.73), (45, 55, 45), -820, 0.4),
    "lung_middle_lobe_right": ((0.3, 0.42, 0.67), (35, 35, 20), -820, 0.42),
    "lung_lower_lobe_right": ((0.32, 0.55, 0.63), (45, 50, 30), -820, 0.45),
    "heart": ((0.55, 0.4, 0.66), (45, 40, 45), 40, 2.5),
    "aorta": ((0.5, 0.6, 0.55), (10, 10, 90), 40, 1.8),
    "liver": ((0.33, 0.45, 0.53), (75, 65, 60), 60, 2.2),
    "spleen": ((0.72, 0.6, 0.53), (30, 30, 40), 45, 2.0),
    "kidney_left": ((0.68, 0.65, 0.45), (25, 25, 45), 30, 2.6),
    "kidney_right": ((0.32, 0.65, 0.44), (25, 25, 45), 30, 2.6),
    "urinary_bladder": ((0.5, 0.4, 0.2), (35, 30, 30), 5, 20.0),
}
DEMOGRAPHICS = [
    Demographics(age=45, sex="M", weight=80, height=180),
    Demographics(age=72, sex="M", weight=95, height=175),
    Demographics(age=58, sex="M", weight=68, height=172),
    Demographics(age=80, sex="M", weight=60, height=170),
    Demographics(age=35, sex="F", weight=55, height=165),
    Demographics(age=68, sex="F", weight=85, height=160),
    Demographics(age=50, sex="F", weight=70, height=168),
    Demographics(age=77, sex="F", weight=62, height=158),
]


def make_volumes(d: Demographics, seed: int, liver_suv_scale: float = 1.0):
    """(ct, suv, labels, affine) of a tiny synthetic subject."""
    rng = np.random.default_rng(seed)
    nx, ny = 44, 30
    nz = int(round(d.height * 10 * 0.55 / SPACING))
    affine = ras_affine((nx, ny, nz), (SPACING,) * 3)
    x, y, z = np.meshgrid(*(np.arange(n) * SPACING for n in (nx, ny, nz)), indexing="ij")
    width = 150 * math.sqrt(d.weight / 70)
    body = ((x - nx * SPACING / 2) / width) ** 2 + ((y - ny * SPACING / 2) / 95) ** 2 <= 1
    inner = ((x - nx * SPACING / 2) / (width - 16)) ** 2 + ((y - ny * SPACING / 2) / 80) ** 2 <= 1
    ct = np.full((nx, ny, nz), -1000.0, np.float32)
    suv = np.zeros((nx, ny, nz), np.float32)
    ct[body] = -100.0  # subcutaneous fat
    suv[body] = 0.3
    ct[inner] = 40.0
    suv[inner] = 0.8
    labels = np.zeros((nx, ny, nz), np.int16)
    scale = (d.weight / 70) ** (1 / 3) * (1.05 if d.sex == "M" else 0.95)
    for organ, (centre, semi, hu, uptake) in ORGANS.items():
        c = [f * n * SPACING for f, n in zip(centre, (nx, ny, nz))]
        s = [a * scale for a in semi]
        mask = sum(((v - cv) / sv) ** 2 for v, cv, sv in zip((x, y, z), c, s)) <= 1
        labels[mask] = LABEL_IDS[organ]
        ct[mask] = hu
        value = uptake * (1 + 0.004 * (d.age - 60)) if organ in ("liver", "spleen") else uptake
        suv[mask] = value * (liver_suv_scale if organ == "liver" else 1.0)
    noise = rng.normal(1.0, 0.05, suv.shape).astype(np.float32)
    suv = np.clip(suv * noise, 0, None)
    ct = ct + rng.normal(0, 5, ct.shape).astype(np.float32)
    ct[~body] = -1000.0
    suv[~body] = 0.0
    return ct, suv, labels, affine


def write_generated(root: Path, subjects=DEMOGRAPHICS, seeds=None, liver_suv_scale: float = 1.0,
                    with_labels: bool = True) -> Path:
    for i, d in enumerate(subjects):
        seed = i if seeds is None else seeds[i]
        ct, suv, labels, affine = make_volumes(d, seed, liver_suv_scale)
        folder = root / f"s{i:03d}"
        save_nifti(np.round(ct).astype(np.int16), affine, folder / "ct.nii.gz")
        save_nifti(suv.astype(np.float32), affine, folder / "pet_suv.nii.gz")
        if with_labels:
            save_nifti(labels, affine, folder / "organs.nii.gz")
        write_json({"demographics": d.to_dict(), "seed": seed}, folder / "metadata.json")
    return root


def write_autopet(root: Path, subjects=DEMOGRAPHICS) -> Path:
    rows = []
    for i, d in enumerate(subjects):
        ct, suv, labels, affine = make_volumes(d, i)
        subject = f"PETCT_{i:010x}"
        study = f"01-0{1 + i % 9}-2010-NA-PET-CT Ganzkoerper  primaer mit KM-{10000 + i}"
        folder = root / subject / study
        save_nifti(np.round(ct).astype(np.int16), affine, folder / "CTres.nii.gz")
        save_nifti(suv, affine, folder / "SUV.nii.gz")
        save_nifti(np.zeros(ct.shape, np.uint8), affine, folder / "SEG.nii.gz")
        save_nifti(labels, affine, folder / "organs.nii.gz")
        rows.append([subject, study, f"{int(d.age):03d}Y", d.sex, d.weight, d.height])
    with open(root / "demographics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "study", "age", "sex", "weight", "height"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    return write_autopet(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def self_report(tmp_path_factory, reference_dir):
    out = tmp_path_factory.mktemp("self_report")
    return evaluate(reference_dir, reference_dir, out=out, segmenter="labels")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------ metrics


def test_sphere_kernel_holds_one_millilitre_on_fine_and_coarse_grids():
    for spacing in ((2.0, 2.0, 2.0), (2.04, 2.04, 3.0), (4.0, 4.0, 4.0)):
        assert sphere_kernel(spacing).sum() * np.prod(spacing) / 1000 == pytest.approx(1.0, abs=0.01)
    assert sphere_kernel((8.0, 8.0, 8.0)).sum() * 0.512 == pytest.approx(1.0, abs=0.05)


def test_suv_peak_is_the_hottest_sphere_inside_the_organ_only():
    suv = np.ones((30, 30, 30), np.float32)
    mask = np.zeros(suv.shape, bool)
    mask[5:25, 5:25, 5:25] = True
    suv[0:5, :, :] = 100.0  # a hot neighbour outside the organ must not leak in
    assert suv_peak(suv, mask, (2.0, 2.0, 2.0)) == pytest.approx(1.0)
    suv[10:13, 10:13, 10:13] = 5.0  # 0.216 mL hot spot: the 1 mL sphere averages it with its surroundings
    assert suv_peak(suv, mask, (2.0, 2.0, 2.0)) == pytest.approx(1 + 4 * 27 / sphere_kernel((2.0,) * 3).sum(),
                                                                  rel=0.02)
    suv[10:17, 10:17, 10:17] = 5.0  # 2.7 mL: the whole 7-voxel-wide sphere kernel fits inside
    assert suv_peak(suv, mask, (2.0, 2.0, 2.0)) == pytest.approx(5.0)
    assert suv_peak(np.ones_like(suv) * 2.5, mask, (2.0, 2.0, 2.0)) == pytest.approx(2.5)
    assert math.isnan(suv_peak(suv, np.zeros_like(mask), (2.0, 2.0, 2.0)))


# ------------------------------------------------------------------------------------ statistics


def test_statistics_of_identical_and_shifted_samples():
    rng = np.random.default_rng(0)
    a = rng.normal(10, 1, 40)
    same = compare(a, a)
    assert same["deviation_pct"] == 0.0 and same["p_welch"] == 1.0 and same["p_mannwhitney"] == 1.0
    assert same["cohens_d"] == 0.0 and same["cliffs_delta"] == 0.0
    shifted = compare(a * 1.1, a)
    assert shifted["deviation_pct"] == pytest.approx(10.0)
    assert shifted["p_welch"] < 0.05 and shifted["cliffs_delta"] > 0.5
    assert cohens_d([1, 2, 3], [1, 2, 3]) == 0.0
    assert cliffs_delta([3, 4], [1, 2]) == 1.0
    empty = compare([], [1.0, 2.0])
    assert empty["n_generated"] == 0 and math.isnan(empty["deviation_pct"]) and math.isnan(empty["p_welch"])


def test_regression_recovers_coefficients_and_compares_them():
    rng = np.random.default_rng(1)
    height = rng.normal(170, 10, 60)
    weight = rng.normal(75, 12, 60)
    y = 5 + 2.0 * height + 3.0 * weight + rng.normal(0, 1, 60)
    fit = fit_ols(y, {"height": height, "weight": weight})
    assert fit.coefficient("height")[0] == pytest.approx(2.0, abs=0.05)
    assert fit.r2 > 0.99
    other = fit_ols(5 + 2.0 * height + 1.0 * weight + rng.normal(0, 1, 60), {"height": height, "weight": weight})
    rows = {r["term"]: r for r in compare_coefficients(other, fit)}
    assert rows["weight"]["p_difference"] < 1e-6 and rows["height"]["p_difference"] > 0.01
    assert math.isnan(fit_ols([1.0, 2.0], {"a": [1.0, 2.0], "b": [3.0, 4.0]}).r2)  # fewer rows than terms


def test_subgroup_scheme_assigns_paper_groups_and_validates():
    scheme = SubgroupScheme()
    assert scheme.assign(Demographics(age=65, sex="F", weight=60, height=170)) == {
        "all": "all", "sex_age": "F_adult", "bmi": "bmi<25"}
    assert scheme.assign(Demographics(age=66, sex="M", weight=90, height=170))["sex_age"] == "M_elder"
    assert scheme.bmi_band(25.0) == "bmi25-30" and scheme.bmi_band(30.0) == "bmi>=30"
    custom = SubgroupScheme(families=("sex", "age"), age_split=50, bmi_edges=(30,))
    assert custom.names() == ["all", "M", "F", "adult", "elder"]
    with pytest.raises(ValueError, match="subgroup famil"):
        SubgroupScheme(families=("height",))
    with pytest.raises(ValueError, match="bmi_edges"):
        SubgroupScheme(bmi_edges=(30, 25))


# ------------------------------------------------------------------------------------ inputs


def test_both_layouts_are_discovered_with_demographics(tmp_path, reference_dir):
    reference = discover_inputs(reference_dir, "reference")
    assert reference.layout == "autopet" and len(reference) == len(DEMOGRAPHICS) and reference.has_labels
    assert {s.demographics for s in reference.subjects} == set(DEMOGRAPHICS)
    generated = discover_inputs(write_generated(tmp_path / "gen", DEMOGRAPHICS[:2]), "generated")
    assert generated.layout == "generated" and [s.key for s in generated.subjects] == ["s000", "s001"]
    assert generated.subjects[1].demographics == DEMOGRAPHICS[1]


def test_labels_segmenter_is_exact(reference_dir):
    cohort = discover_inputs(reference_dir)
    subject = cohort.subjects[0]
    from petct_pipeline.evaluation import load_subject

    volumes = load_subject(subject)
    labels = LabelsSegmenter().segment(subject, volumes)
    truth, _ = load_nifti(subject.labels, dtype=np.int16)
    assert np.array_equal(labels, truth)


def test_missing_and_mismatched_inputs_give_clear_errors(tmp_path, reference_dir):
    with pytest.raises(FileNotFoundError, match="generated folder .* does not exist"):
        evaluate(tmp_path / "nope", reference_dir, out=tmp_path / "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a generated cohort"):
        discover_inputs(tmp_path / "empty", "reference")
    broken = write_generated(tmp_path / "broken", DEMOGRAPHICS[:1])
    (broken / "s000" / "pet_suv.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing pet_suv\.nii\.gz"):
        discover_inputs(broken, "generated")
    bad_meta = write_generated(tmp_path / "meta", DEMOGRAPHICS[:1])
    write_json({"seed": 1}, bad_meta / "s000" / "metadata.json")
    with pytest.raises(ValueError, match="field 'demographics' is missing"):
        discover_inputs(bad_meta, "generated")
    mismatched = write_generated(tmp_path / "grid", DEMOGRAPHICS[:1])
    ct, affine = load_nifti(mismatched / "s000" / "ct.nii.gz")
    save_nifti(ct[:-2], affine, mismatched / "s000" / "ct.nii.gz")
    with pytest.raises(ValueError, match="not on the same grid"):
        evaluate(mismatched, reference_dir, out=tmp_path / "r2")
    unlabelled = write_generated(tmp_path / "nolabels", DEMOGRAPHICS[:2], with_labels=False)
    with pytest.raises(SegmenterUnavailableError, match="needs a label map beside every generated subject"):
        evaluate(unlabelled, reference_dir, out=tmp_path / "r3", segmenter="labels")
    with pytest.raises(ValueError, match="segmenter must be one of"):
        make_segmenter("nnunet")
    with pytest.raises(FileNotFoundError, match="not a segmentation model|does not exist"):
        make_segmenter(f"model:{tmp_path / 'no_model'}")


def test_totalsegmentator_without_package_or_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights"))
    segmenter = TotalSegmentatorSegmenter()
    problem = segmenter.availability_problem()
    assert problem is not None
    assert "pip install TotalSegmentator" in problem or "totalseg_download_weights -t total" in problem
    with pytest.raises(SegmenterUnavailableError):
        segmenter.check(None, "generated")


# ------------------------------------------------------------------------------------ report


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
    report = (out / "report.md").read_text()
    assert "Evaluation time" in report and "![box_suv_mean](plots/box_suv_mean.png)" in report
    # the reference against itself varies exactly as much as itself, with an unchanged median
    assert "| liver | 1 | +0.0% | 1 | +0.0% |" in report.split("## Spread across subjects")[1]
    timing = json.loads((out / "evaluation.json").read_text())["timing"]
    assert timing["subjects"] == 2 * len(DEMOGRAPHICS) and timing["wall_seconds"] > 0
    checks = json.loads((out / "image_checks.json").read_text())
    assert checks["wasserstein"]["hu"] == 0.0 and checks["wasserstein"]["suv"] == 0.0
    assert checks["nonfinite"]["generated"]["subjects_with_nonfinite"] == 0


def test_liver_suv_scaled_by_ten_percent_is_reported_as_plus_ten(tmp_path, reference_dir):
    # same subjects and noise as the reference, liver uptake x 1.10, generated layout
    generated = write_generated(tmp_path / "gen", liver_suv_scale=1.10)
    result = evaluate(generated, reference_dir, out=tmp_path / "report", segmenter="labels", plots=False)
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
    result = evaluate(copy, reference_dir, out=tmp_path / "report", segmenter="labels", plots=False)
    drop = result.row("all", "kidney_left", "volume_ml")["deviation_pct"]
    assert drop < -20.0
    assert result.row("all", "kidney_left", "volume_ml")["p_welch"] < 0.05
    assert result.row("all", "kidney_right", "volume_ml")["deviation_pct"] == 0.0
    assert result.row("all", "liver", "volume_ml")["deviation_pct"] == 0.0


def test_diversity_exposes_identical_samples(tmp_path):
    d = DEMOGRAPHICS[0]
    same = [thumbnail(*make_volumes(d, 0)[:2], (SPACING,) * 3) for _ in range(3)]
    varied = [thumbnail(*make_volumes(d, seed)[:2], (SPACING,) * 3) for seed in range(3)]
    assert mean_pairwise_distance(same)["suv_mad"] == 0.0
    assert mean_pairwise_distance(varied)["suv_mad"] > 0.0


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
