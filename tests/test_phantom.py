"""Phantom population: organ volumes vs ICRP-89, SUVs vs literature, demographic trends, AutoPET layout."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import get_args

import nibabel as nib
import numpy as np
import pytest

from petct_pipeline.cli import main
from petct_pipeline.cohort import read_cohort
from petct_pipeline.demographics import Demographics
from petct_pipeline.io import read_json
from petct_pipeline.organs import EVALUATION_ORGANS, LABEL_IDS, LABELS, organ_mask
from petct_pipeline.phantom import (
    LITERATURE_SUV_RANGES,
    generate_phantom,
    reference_volume_ml,
    sample_population,
    write_population,
)
from petct_pipeline.phantom.anatomy import Tissue, check_spacing
from petct_pipeline.phantom.anatomy.abdomen import ABDOMINAL_ORGANS
from petct_pipeline.phantom.anatomy.head_neck import THYROID_LOBES
from petct_pipeline.phantom.anatomy.painter import FrameName
from petct_pipeline.phantom.anatomy.pelvis import PELVIC_ORGANS
from petct_pipeline.phantom.anatomy.thorax import HEART
from petct_pipeline.phantom.organ_sizes import sample_organ_volumes
from petct_pipeline.phantom.uptake import sample_uptake

REF_M = Demographics(age=35, sex="M", weight=73, height=176)
REF_F = Demographics(age=35, sex="F", weight=60, height=163)
STUDY_RE = re.compile(r"^\d{2}-\d{2}-\d{4}-NA-PET-CT Ganzkoerper  primaer mit KM-\d{5}$")


def test_organ_table_matches_totalsegmentator_ids():
    assert (LABELS[1], LABELS[5], LABELS[21], LABELS[51], LABELS[52], LABELS[90], LABELS[91]) == (
        "spleen",
        "liver",
        "urinary_bladder",
        "heart",
        "aorta",
        "brain",
        "skull",
    )
    assert len(LABELS) == 117 and LABEL_IDS["costal_cartilages"] == 117
    labels = np.array([10, 11, 12, 13, 14, 5, 0])
    assert organ_mask(labels, "lungs").sum() == 5 and organ_mask(labels, "liver").sum() == 1
    with pytest.raises(ValueError, match="unknown organ"):
        organ_mask(labels, "spleeen")


def test_population_matches_autopet_cohort_and_is_deterministic():
    pop = sample_population(2000, seed=3)
    assert pop[:5] == sample_population(5, seed=3)
    male = [d for d in pop if d.sex == "M"]
    female = [d for d in pop if d.sex == "F"]
    assert 0.53 < len(male) / len(pop) < 0.60  # 570 / 1014 = 0.562
    assert 57 < np.mean([d.age for d in male]) < 63 and 55 < np.mean([d.age for d in female]) < 61
    assert min(d.age for d in pop) >= 11 and max(d.age for d in pop) <= 95
    heights = np.array([d.height for d in pop])
    weights = np.array([d.weight for d in pop])
    assert np.corrcoef(heights, weights)[0, 1] > 0.3  # realistic height-weight correlation
    bmi = np.array([d.bmi for d in pop])
    assert 24 < np.median(bmi) < 28 and 3 < bmi.std() < 7
    with pytest.raises(ValueError, match="n=-1"):
        sample_population(-1, seed=0)


def test_cohort_csv_reader(tmp_path):
    good = tmp_path / "cohort.csv"
    good.write_text("id,age,sex,weight,height,seed\na,35,M,73,176,4\nb,60,female,80,165,\n")
    rows = read_cohort(good)
    assert [r.id for r in rows] == ["a", "b"] and rows[0].seed == 4 and rows[1].seed is None
    assert rows[1].demographics.sex == "F"
    bad = tmp_path / "bad.csv"
    bad.write_text("age,sex,weight,height\n35,M,73,176\n40,M,-5,170\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 3: field 'weight'"):
        read_cohort(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("age,sex,weight\n35,M,73\n")
    with pytest.raises(ValueError, match="missing column"):
        read_cohort(missing)


@pytest.mark.slow
@pytest.mark.parametrize("ref", [REF_M, REF_F], ids=["male", "female"])
def test_icrp_reference_volumes_within_15_percent(ref):
    organs = {
        "liver": "liver",
        "spleen": "spleen",
        "kidneys": "kidneys",
        "brain": "brain",
        "heart": "heart",
        "lungs": "lungs",
    }
    measured = {k: [] for k in organs}
    for seed in range(20):
        subject = generate_phantom(ref, seed, spacing=6.0)
        for key, organ in organs.items():
            measured[key].append(organ_mask(subject.organs, organ).sum() * 6.0**3 / 1000.0)
    for key in organs:
        expected = reference_volume_ml(key, ref.sex)
        mean = float(np.mean(measured[key]))
        assert abs(mean / expected - 1.0) < 0.15, f"{key}: {mean:.0f} mL vs ICRP-89 {expected:.0f} mL"


@pytest.mark.parametrize(
    "d",
    [
        REF_M,
        REF_F,
        Demographics(age=72, sex="M", weight=105, height=178),
        Demographics(age=24, sex="F", weight=52, height=168),
    ],
)
def test_organ_suvmean_within_literature_ranges(d):
    subject = generate_phantom(d, seed=11, spacing=4.0)
    for organ in EVALUATION_ORGANS:
        mask = organ_mask(subject.organs, organ)
        assert mask.sum() > 0, organ
        low, high = LITERATURE_SUV_RANGES[organ]
        value = float(subject.suv[mask].mean())
        assert low <= value <= high, f"{organ}: SUVmean {value:.2f} outside [{low}, {high}]"


def test_population_trends_have_the_right_sign():
    pop = sample_population(400, seed=5)
    rng = np.random.default_rng(0)
    vols = [sample_organ_volumes(d, rng) for d in pop]
    uptakes = [sample_uptake(d, rng) for d in pop]
    weight = np.array([d.weight for d in pop])
    bsa = np.array([d.bsa for d in pop])
    age = np.array([d.age for d in pop])
    bmi = np.array([d.bmi for d in pop])
    assert np.corrcoef(weight, [v["liver"] for v in vols])[0, 1] > 0.2
    assert np.corrcoef(bsa, [v["kidneys"] for v in vols])[0, 1] > 0.2
    assert np.corrcoef(age, [u[Tissue.BRAIN_GREY] for u in uptakes])[0, 1] < -0.1
    assert np.corrcoef(bmi, [u[Tissue.LIVER] for u in uptakes])[0, 1] > 0.2


def test_images_follow_demographics_at_fixed_seed():
    light = generate_phantom(Demographics(age=40, sex="M", weight=62, height=176), seed=2, spacing=6.0)
    heavy = generate_phantom(Demographics(age=40, sex="M", weight=110, height=176), seed=2, spacing=6.0)
    old = generate_phantom(Demographics(age=80, sex="M", weight=62, height=176), seed=2, spacing=6.0)

    def vol(s, organ):
        return organ_mask(s.organs, organ).sum()

    def suv(s, organ):
        return float(s.suv[organ_mask(s.organs, organ)].mean())

    assert vol(heavy, "liver") > vol(light, "liver") and vol(heavy, "kidneys") > vol(light, "kidneys")
    fat = [((s.ct_hu > -190) & (s.ct_hu < -30)).sum() for s in (light, heavy)]
    assert fat[1] > 1.5 * fat[0]  # heavier subjects carry more (subcutaneous + visceral) fat
    assert suv(heavy, "liver") > suv(light, "liver")
    assert suv(old, "brain") < suv(light, "brain") and vol(old, "brain") < vol(light, "brain")


def test_generation_is_deterministic_and_vertex_is_at_the_top():
    a = generate_phantom(REF_F, seed=7, spacing=6.0)
    b = generate_phantom(REF_F, seed=7, spacing=6.0)
    assert np.array_equal(a.ct_hu, b.ct_hu) and np.array_equal(a.suv, b.suv) and np.array_equal(a.organs, b.organs)
    assert a.ct_hu.shape[:2] == (75, 75) and a.ct_hu.dtype == np.float32 and a.organs.dtype == np.uint8
    z_brain = np.nonzero(organ_mask(a.organs, "brain"))[2].mean()
    z_bladder = np.nonzero(organ_mask(a.organs, "urinary_bladder"))[2].mean()
    assert z_brain > z_bladder  # z runs inferior -> superior
    assert a.ct_hu[0, 0, :].max() == -1000.0 and a.pet_bqml[0, 0, :].max() == 0.0  # air outside the body
    liver_x = np.nonzero(organ_mask(a.organs, "liver"))[0].mean()
    spleen_x = np.nonzero(organ_mask(a.organs, "spleen"))[0].mean()
    assert liver_x > spleen_x  # RAS+: the liver is on the patient's right (+x)


def test_organ_rows_are_valid_and_paint_their_sampled_volumes():
    rows = (*THYROID_LOBES, HEART, *ABDOMINAL_ORGANS, *PELVIC_ORGANS)
    assert len({(row.organ, row.centre) for row in rows}) == len(rows)
    short = set()
    for d in (REF_M, REF_F):
        subject = generate_phantom(d, seed=3, spacing=4.0)
        sampled, painted = subject.truth["sampled_volumes_ml"], subject.truth["painted_volumes_ml"]
        for row in rows:
            assert row.organ in LABEL_IDS and row.frame in get_args(FrameName)
            if row.sex not in (None, d.sex):
                assert row.organ not in painted
                continue
            assert organ_mask(subject.organs, row.organ).any(), row.organ
            expected = sampled[row.volume_key or row.organ] * row.volume_share
            if row.records_volume and painted[row.organ] != pytest.approx(expected, rel=0.05):
                short.add(row.organ)
    # known: the gallbladder row has a fixed 14 x 14 x 35 mm shape beside the liver and gets only
    # 10-50 % of its sampled volume; when that is fixed, drop it here
    assert short == {"gallbladder"}


def test_check_spacing_is_the_one_spacing_rule(tmp_path):
    assert check_spacing(np.int64(3)) == 3.0 and isinstance(check_spacing(2), float)
    with pytest.raises(ValueError, match=r"spacing=0.5 is out of range: allowed range \[1, 12\] mm"):
        check_spacing(0.5)
    for bad in ("2", True, None):
        with pytest.raises(TypeError, match="spacing must be a number"):
            check_spacing(bad)
    with pytest.raises(ValueError, match="spacing=20"):
        write_population([REF_M], tmp_path / "out", spacing=20)
    assert not (tmp_path / "out").exists()


def test_write_population_autopet_layout(tmp_path):
    pop = [REF_M, Demographics(age=63, sex="F", weight=81, height=160)]
    studies = write_population(pop, tmp_path, seed=1, workers=2, lesions=True, spacing=6.0)
    assert len(studies) == 2
    for study in studies:
        assert re.fullmatch(r"PETCT_[0-9a-f]{10}", study.parent.name) and STUDY_RE.match(study.name)
        names = {p.name for p in study.iterdir()}
        assert {
            "CT.nii.gz",
            "CTres.nii.gz",
            "PET.nii.gz",
            "SUV.nii.gz",
            "SEG.nii.gz",
            "organs.nii.gz",
            "organs.json",
            "acquisition.json",
        } <= names
        images = {
            n: nib.load(str(study / n))
            for n in ("CT.nii.gz", "CTres.nii.gz", "PET.nii.gz", "SUV.nii.gz", "SEG.nii.gz", "organs.nii.gz")
        }
        for image in images.values():
            assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
            assert image.shape == images["PET.nii.gz"].shape
        acq = read_json(study / "acquisition.json")
        assert acq["synthetic"] is True and acq["decay_half_life_s"] == 6586.2
        pet = np.asarray(images["PET.nii.gz"].dataobj, np.float64)
        suv = np.asarray(images["SUV.nii.gz"].dataobj, np.float64)
        recomputed = pet * acq["weight_kg"] * 1000.0 / (acq["injected_dose_bq"] * 2 ** (-acq["uptake_time_s"] / 6586.2))
        np.testing.assert_allclose(recomputed, suv, rtol=1e-5, atol=1e-6)
        organs = np.asarray(images["organs.nii.gz"].dataobj)
        assert read_json(study / "organs.json")["liver"] == 5 and (organs == 5).any()
        assert 1.0 < suv[organs == 5].mean() < 4.0
        seg = np.asarray(images["SEG.nii.gz"].dataobj)
        assert set(np.unique(seg)) <= {0, 1}
    with (tmp_path / "Metadata.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "Subject ID",
        "Study UID",
        "Study Description",
        "Study Date",
        "Series Description",
        "diagnosis",
        "age",
        "sex",
        "Modality",
        "File Location",
    ]
    assert len(rows) == 6 and {r["Modality"] for r in rows} == {"CT", "PT", "SEG"}
    assert {r["age"] for r in rows} == {"035Y", "063Y"}
    for row in rows:
        assert (tmp_path / row["File Location"]).is_file()
    with (tmp_path / "demographics.csv").open() as handle:
        demo = list(csv.DictReader(handle))
    assert [(r["age"], r["sex"], r["weight"], r["height"]) for r in demo] == [
        ("35", "M", "73", "176"),
        ("63", "F", "81", "160"),
    ]
    assert "synthetic" in (tmp_path / "README.txt").read_text().lower()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_single_subject_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "one"
    assert (
        main(
            [
                "phantom",
                "--age",
                "35",
                "--sex",
                "M",
                "--weight",
                "73",
                "--height",
                "176",
                "--out",
                str(out),
                "--spacing",
                "8",
            ]
        )
        == 0
    )
    assert len(list(out.glob("PETCT_*/*/SUV.nii.gz"))) == 1
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    cases = [
        (["--n", "-2", "--out", str(tmp_path / "a")], "--n=-2"),
        (["--age", "35", "--sex", "X", "--weight", "73", "--height", "176", "--out", str(tmp_path / "b")], "sex"),
        (["--n", "1", "--out", str(blocker / "sub")], "--out"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["phantom", *args, "--spacing", "8"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("petct phantom: error:") and message in err and "\n" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_failed_write_leaves_no_half_study(tmp_path, monkeypatch):
    from petct_pipeline.phantom import writer

    calls = {"n": 0}
    real = writer.save_nifti

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "save_nifti", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_population([REF_F], tmp_path, seed=0, spacing=8.0)
    assert list(tmp_path.iterdir()) == []
    _ = Path
