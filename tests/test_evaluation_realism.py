"""Image-level realism in ``evaluate``: Fréchet distance of encoder features, MS-SSIM diversity, memorisation audit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy import ndimage

from petct_pipeline.evaluation import FeatureExtractor, evaluate, frechet_distance, pairwise_ms_ssim
from petct_pipeline.evaluation.frechet import frechet_check
from petct_pipeline.evaluation.inputs import SubjectVolumes
from petct_pipeline.evaluation.ms_ssim import diversity_volume, msssim_scales
from petct_pipeline.models import OrganSegmentationModel
from petct_pipeline.models.organ_segmentation import class_ids_for
from tests.helpers.evaluation_cohorts import DEMOGRAPHICS, SPACING, make_volumes, read_csv, write_generated


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny 3D convolutions run several times faster on one thread than on two busy ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_extractor():
    """Encoder features of a tiny random segmenter at 16 mm: any OrganSegmentationModel must do."""
    torch.manual_seed(0)
    model = OrganSegmentationModel.build(class_ids_for(("liver", "heart")), spacing_mm=16.0,
                                         block_out_channels=(4, 8), attention_levels=(False, False), norm_num_groups=2)
    model.unet.eval()
    return FeatureExtractor(model)


def _features(extractor, transform=None):
    rows = []
    for i, d in enumerate(DEMOGRAPHICS):
        ct, suv, _, affine = make_volumes(d, seed=i)
        if transform is not None:
            ct, suv = transform(ct, suv, np.random.default_rng(100 + i))
        rows.append(extractor.features(SubjectVolumes(ct, suv, affine)))
    return np.array(rows)


def test_frechet_distance_is_the_fid_formula_and_stays_finite_for_singular_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) @ rng.normal(size=(5, 5)) + 1.0
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    few = rng.normal(size=(3, 5))  # 3 subjects, 5 features: rank-2 covariance
    value = frechet_distance(few.mean(0), np.cov(few, rowvar=False), mu2, s2)
    assert np.isfinite(value) and value > 0


def test_frechet_of_the_reference_is_at_its_floor_and_far_above_it_for_noised_or_blurred_copies(tiny_extractor):
    reference = _features(tiny_extractor)
    assert reference.shape == (len(DEMOGRAPHICS), tiny_extractor.size()) == (8, 2 * (4 + 4 + 8 + 8))
    itself = frechet_check(reference, reference)
    assert itself["distance"] == pytest.approx(0.0, abs=1e-9)
    assert itself["dims"] == len(DEMOGRAPHICS) // 2 - 1 and itself["floor_splits"] > 0
    assert itself["matched_distance"] <= itself["floor_max"]

    def noised(ct, suv, rng):  # noise at the features' scale (16 mm): per-voxel noise at 8 mm averages away
        noise = ndimage.gaussian_filter(rng.normal(size=ct.shape), 2.0).astype(np.float32)
        noise /= noise.std()
        return ct + 200 * noise, suv * np.exp(0.5 * noise)

    def blurred(ct, suv, rng):
        return ndimage.gaussian_filter(ct, 3.0), ndimage.gaussian_filter(suv, 3.0)

    for transform in (noised, blurred):
        copy = frechet_check(_features(tiny_extractor, transform), reference)
        # beyond every one of the floor's 20 reference half-vs-half distances, at the same sample size and at full size
        assert copy["matched_distance"] > 1.5 * itself["floor_max"], (transform.__name__, copy)
        assert copy["matched_min"] > itself["floor_mean"] and copy["distance"] > 1.5 * itself["floor_max"]


def test_ms_ssim_is_one_for_identical_samples_and_lower_for_noise_different_ones():
    d = DEMOGRAPHICS[0]
    first = diversity_volume(*make_volumes(d, seed=0)[:2], (SPACING,) * 3)
    other = diversity_volume(*make_volumes(d, seed=1)[:2], (SPACING,) * 3)
    noisy = first + np.random.default_rng(0).normal(0, 0.2, first.shape).astype(np.float32)
    scales = msssim_scales([v.shape[1:] for v in (first, other)])
    assert scales == 3  # 44 x 30 x 124 voxels: 3 of the 5 scales fit a 5-voxel window
    assert msssim_scales([(56, 56, 110)]) == 4 and msssim_scales([(4, 4, 4)]) == 0
    scores = pairwise_ms_ssim([first, first.copy(), other, noisy], scales)
    assert scores[0] == pytest.approx([1.0, 1.0], abs=1e-6)  # identical samples
    assert np.all(scores[1:] < 1.0) and scores[2].mean() < scores[1].mean() < 1.0


def test_diversity_in_the_report_groups_same_demographics_samples(tmp_path, tiny_extractor):
    generated = write_generated(tmp_path / "gen", [DEMOGRAPHICS[0]] * 2 + [DEMOGRAPHICS[1]] * 2, seeds=[0, 0, 1, 2])
    reference = write_generated(tmp_path / "ref", DEMOGRAPHICS[2:5])
    result = evaluate(generated, reference, tmp_path / "report", segmenter="labels", plots=False,
                      feature_model=tiny_extractor)
    ms_ssim = result.realism["ms_ssim"]
    assert ms_ssim["run"] and ms_ssim["scales"] == 3
    groups = {g["weight"]: g for g in ms_ssim["generated_within"]["per_group"]}
    assert groups[DEMOGRAPHICS[0].weight]["ms_ssim"] == pytest.approx(1.0, abs=1e-6)  # same seed: identical
    assert groups[DEMOGRAPHICS[1].weight]["ms_ssim"] < 1.0
    assert ms_ssim["generated_within"]["pairs"] == 2 and ms_ssim["reference_within"] is None
    assert ms_ssim["reference_between"]["pairs"] == 3 and ms_ssim["seconds_per_subject"] > 0
    assert not result.realism["frechet"]["run"] and "4 reference" in result.realism["frechet"]["reason"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| generated, same demographics | 2 | 2 |" in report and "reference repeats no demographic" in report


def test_memorisation_audit_flags_an_exact_copy_of_a_training_subject(tmp_path, tiny_extractor):
    train = write_generated(tmp_path / "train", DEMOGRAPHICS[:6], seeds=[20, 21, 22, 23, 24, 25])
    generated = write_generated(tmp_path / "gen", DEMOGRAPHICS[2:8], seeds=[30, 31, 32, 33, 34, 35])
    shutil.copytree(train / "s003", generated / "copy")
    reference = write_generated(tmp_path / "ref", DEMOGRAPHICS, seeds=range(40, 48))
    out = tmp_path / "report"
    result = evaluate(generated, reference, out, segmenter="labels", plots=False, train_reference=train,
                      feature_model=tiny_extractor)
    rows = {r["subject"]: r for r in read_csv(out / "memorisation.csv")}
    assert list(next(iter(rows.values()))) == ["subject", "nearest_training_subject", "distance", "flagged"]
    assert rows["copy"]["flagged"] == "true" and rows["copy"]["nearest_training_subject"] == "s003"
    assert float(rows["copy"]["distance"]) == pytest.approx(0.0, abs=1e-6)
    assert [key for key, row in rows.items() if row["flagged"] == "true"] == ["copy"]
    memo = json.loads((out / "evaluation.json").read_text())["realism"]["memorisation"]
    assert memo["flagged"] == 1 and memo["n_training"] == 6 and memo["n_held_out"] == 8
    assert memo["threshold"] > 0 and memo["seconds_per_training_subject"] > 0
    assert result.realism["frechet"]["run"] and result.realism["frechet"]["seconds_per_subject"] > 0
    report = (out / "report.md").read_text()
    assert "**1 of 7** generated subjects are flagged as near copies" in report
    assert "memorisation.csv" in json.loads((out / "evaluation.json").read_text())["files"]


def test_without_a_training_cohort_the_audit_says_it_did_not_run(self_report):
    report = (self_report.out_dir / "report.md").read_text()
    assert "**Memorisation audit**: not run: pass --train-reference DIR" in report
    assert not (self_report.out_dir / "memorisation.csv").exists()
    realism = json.loads((self_report.out_dir / "evaluation.json").read_text())["realism"]
    if realism["frechet"]["run"]:  # the shipped segmenter is here: the reference against itself is at distance 0
        assert realism["frechet"]["distance"] == pytest.approx(0.0, abs=1e-9)


def test_cli_train_reference_on_a_missing_folder_is_one_line_and_exit_code_2(tmp_path, reference_dir, capsys):
    from petct_pipeline.cli import main

    code = main(["evaluate", "--generated", str(reference_dir), "--reference", str(reference_dir), "--segmenter",
                 "labels", "--out", str(tmp_path / "r"), "--train-reference", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--train-reference" in err and "does not exist" in err
    assert not (tmp_path / "r").exists()


def test_features_of_a_whole_body_scan_match_its_crop_to_the_model_field_of_view():
    # features pool the cascade's field of view from the top of the body: the same patient scanned
    # whole-body or in the generator's slab is described alike, unlike a different patient
    from petct_pipeline.demographics import Demographics
    from petct_pipeline.evaluation.invariance import StudyVersion, crop_to_model_fov
    from petct_pipeline.phantom import generate_phantom

    def version(demographics, seed):
        phantom = generate_phantom(demographics, seed=seed, spacing=8.0)
        return StudyVersion("whole_body", phantom.ct_hu, phantom.suv, phantom.organs, phantom.affine)

    torch.manual_seed(0)
    model = OrganSegmentationModel.build(class_ids_for(("liver", "heart")), spacing_mm=8.0,
                                         block_out_channels=(4, 8), attention_levels=(False, False), norm_num_groups=2)
    model.unet.eval()
    extractor = FeatureExtractor(model)

    def features(study, height=None):
        return extractor.features(SubjectVolumes(study.ct, study.suv, study.affine), height)

    patient = Demographics(age=50, sex="M", weight=80, height=178)
    whole = version(patient, 0)
    cropped = crop_to_model_fov(whole, patient.height)
    other = version(Demographics(age=30, sex="F", weight=55, height=160), 1)
    same = np.abs(features(whole, 178) - features(cropped, 178)).mean()
    different = np.abs(features(whole, 178) - features(other, 160)).mean()
    unaligned = np.abs(features(whole) - features(cropped, 178)).mean()
    # measured: same 0.0007, unaligned 0.0029, different 0.0056 (the crop starts at the array's top,
    # the features at the body's top: a few slices still differ)
    assert same < 0.5 * unaligned and same < 0.25 * different
