"""Lesion insertion with known truth: spec checks, placement, uptake recovery, determinism, orientation, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from petct_pipeline.cli import main
from petct_pipeline.demographics import Demographics
from petct_pipeline.errors import InputError
from petct_pipeline.evaluation.metrics import body_mask
from petct_pipeline.io import save_nifti
from petct_pipeline.lesions import (
    PV_COMPENSATION_MIN_DIAMETER_MM,
    insert_lesions,
    parse_lesion_specs,
    read_lesion_specs,
    sample_lesion_specs,
)
from petct_pipeline.lesions.sites import AIR_HU, SKELETON
from petct_pipeline.organs import LABEL_IDS, organ_ids, organ_mask
from petct_pipeline.phantom import generate_phantom

SUBJECT = Demographics(age=58, sex="M", weight=80, height=178)


@pytest.fixture(scope="module")
def coarse():
    """An 8 mm whole-body phantom: fast, for checks and the CLI."""
    return generate_phantom(SUBJECT, 3, spacing=8)


@pytest.fixture(scope="module")
def fine():
    """A 4 mm whole-body phantom (the generated subjects' grid), for uptake recovery and placement."""
    return generate_phantom(SUBJECT, 3, spacing=4)


def voxel_center_mm(subject, organ: str) -> list[float]:
    """World mm of the organ voxel deepest inside it (a centre a lesion surely fits around)."""
    depth = ndimage.distance_transform_edt(organ_mask(subject.organs, organ))
    index = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return (subject.affine @ np.array([*index, 1.0]))[:3].tolist()


def write_study(subject, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"ct": folder / "CT.nii.gz", "pet": folder / "SUV.nii.gz", "organs": folder / "organs.nii.gz"}
    save_nifti(np.rint(subject.ct_hu).astype(np.int16), subject.affine, paths["ct"])
    save_nifti(subject.suv.astype(np.float32), subject.affine, paths["pet"])
    save_nifti(subject.organs.astype(np.uint8), subject.affine, paths["organs"])
    return paths


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the spec


GOOD = {"organ": "liver", "diameter_mm": 20, "suv_max": 10}


@pytest.mark.parametrize(
    ("item", "field", "allowed"),
    [
        ({**GOOD, "colour": "red"}, "colour", "allowed keys"),
        ({**GOOD, "diameter_mm": 2}, "diameter_mm", "[3, 100]"),
        ({**GOOD, "diameter_mm": 150}, "diameter_mm", "[3, 100]"),
        ({"organ": "liver", "suv_max": 10}, "diameter_mm", "[3, 100]"),
        ({**GOOD, "suv_mean": 5}, "suv_max, suv_mean, lesion_to_background", "exactly one"),
        ({"organ": "liver", "diameter_mm": 20}, "suv_max, suv_mean, lesion_to_background", "exactly one"),
        ({"organ": "liver", "diameter_mm": 20, "lesion_to_background": 0.8}, "lesion_to_background", "(1, 100]"),
        ({"organ": "liver", "diameter_mm": 20, "suv_max": -1}, "suv_max", "(0, 100]"),
        ({**GOOD, "shape": "cube"}, "shape", "sphere, ellipsoid, lobulated"),
        ({**GOOD, "necrotic_fraction": 0.95}, "necrotic_fraction", "[0, 0.9)"),
        ({**GOOD, "hu": 5000}, "hu", "[-1024, 3071]"),
        ({**GOOD, "center_mm": [1, 2]}, "center_mm", "3 numbers"),
        ({**GOOD, "diameter_mm": "big"}, "diameter_mm", "a number"),
        ({"site": "brain_stem", "diameter_mm": 20, "suv_max": 10}, "site", "lung, liver, spleen, node, bone"),
        ({"organ": "not_an_organ", "diameter_mm": 20, "suv_max": 10}, "organ", "TotalSegmentator"),
        ({**GOOD, "site": "lung"}, "organ", "exactly one of organ"),
    ],
)
def test_a_bad_spec_names_the_lesion_field_and_allowed_values(item, field, allowed):
    with pytest.raises(InputError) as error:
        parse_lesion_specs([GOOD, item])
    message = str(error.value)
    assert message.startswith("lesion 1: ") and field in message and allowed in message
    assert "\n" not in message


def test_a_spec_file_must_be_json_and_a_list(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"organ": "liver", "diameter_mm": 20,}]')
    with pytest.raises(InputError, match="not valid JSON"):
        read_lesion_specs(broken)
    single = tmp_path / "single.json"
    single.write_text(json.dumps(GOOD))
    with pytest.raises(InputError, match="a list of lesion objects"):
        read_lesion_specs(single)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([GOOD, {"site": "marrow", "diameter_mm": 12, "lesion_to_background": 4}]))
    specs = read_lesion_specs(good)
    assert [s.quantity for s in specs] == ["suv_max", "lesion_to_background"] and specs[1].site == "bone"


def test_sampling_follows_the_diagnosis_and_the_seed():
    assert sample_lesion_specs("NEGATIVE", np.random.default_rng(0)) == []
    draws = [sample_lesion_specs("LYMPHOMA", np.random.default_rng(seed)) for seed in range(40)]
    sites = {s.site for specs in draws for s in specs}
    assert sites <= {"node", "spleen", "bone"} and "node" in sites
    assert all(1 <= len(specs) <= 8 for specs in draws)
    assert all(3 <= s.diameter_mm <= 100 and 2.5 <= s.value <= 40 for specs in draws for s in specs)
    again = sample_lesion_specs("LYMPHOMA", np.random.default_rng(7))
    assert [s.requested for s in again] == [s.requested for s in draws[7]]
    ct_only = sample_lesion_specs("MELANOMA", np.random.default_rng(1), sites=("lung", "node", "bone", "subcutaneous"))
    assert all(s.site != "liver" for s in ct_only)
    with pytest.raises(InputError, match="NEGATIVE, MELANOMA, LUNG_CANCER, LYMPHOMA"):
        sample_lesion_specs("GLIOMA", np.random.default_rng(0))


# ------------------------------------------------------------------ placement errors


def test_a_lesion_in_the_wrong_place_is_an_error_naming_it(coarse, fine):
    ct, suv, affine, organs = coarse.ct_hu, coarse.suv, coarse.affine, coarse.organs
    liver = voxel_center_mm(coarse, "liver")
    lung = voxel_center_mm(coarse, "lung_upper_lobe_right")
    trachea = voxel_center_mm(fine, "trachea")  # at 8 mm the trachea is one voxel wide, no longer air
    outside = (affine @ np.array([1.0, 1.0, ct.shape[2] // 2, 1.0]))[:3].tolist()  # a corner: air around the body
    cases = [
        ({**GOOD, "center_mm": [1e4, 0, 0]}, "outside the volume"),
        ({**GOOD, "center_mm": outside}, "outside the body"),
        ({**GOOD, "center_mm": lung}, "is not in organ 'liver'"),
        ({"organ": "kidney_cyst_left", "diameter_mm": 10, "suv_max": 5}, "no voxel of it"),
        ({"organ": "liver", "diameter_mm": 20, "suv_mean": 1.0}, "not above its background"),
    ]
    for item, expected in cases:
        with pytest.raises(InputError) as error:
            insert_lesions(ct, suv, affine, organs, lesions=[{"site": "lung", "diameter_mm": 10, "suv_max": 5}, item])
        assert str(error.value).startswith("lesion 1: ") and expected in str(error.value), str(error.value)
    with pytest.raises(InputError, match=r"lesion 0: center_mm=\[.*\] is in air"):
        insert_lesions(fine.ct_hu, fine.suv, fine.affine, None,
                       lesions=[{"site": "lung", "diameter_mm": 10, "suv_max": 5, "center_mm": trachea}])
    with pytest.raises(InputError, match="lesion 1: .* overlaps lesion 0"):
        insert_lesions(ct, suv, affine, organs, lesions=[{**GOOD, "center_mm": liver}, {**GOOD, "center_mm": liver}])
    with pytest.raises(InputError, match="lesion 0: organ 'liver' needs an organ map"):
        insert_lesions(ct, suv, affine, None, lesions=[GOOD])
    with pytest.raises(InputError, match="not both"):
        insert_lesions(ct, suv, affine, organs, diagnosis="LYMPHOMA", lesions=[GOOD])


# ------------------------------------------------------------------ uptake recovery on the written volume


@pytest.mark.parametrize(
    ("item", "quantity"),
    [
        ({"organ": "liver", "diameter_mm": 20, "suv_max": 12}, "suv_max"),
        ({"organ": "liver", "diameter_mm": 14, "suv_mean": 7, "shape": "ellipsoid"}, "suv_mean"),
        ({"site": "lung", "diameter_mm": 16, "lesion_to_background": 6, "shape": "lobulated"}, "lesion_to_background"),
        ({"site": "node", "diameter_mm": 10, "suv_max": 8, "necrotic_fraction": 0.3}, "suv_max"),
    ],
)
def test_a_lesion_of_10_mm_or_more_has_the_requested_uptake_within_10_percent(fine, tmp_path, item, quantity):
    paths = write_study(fine, tmp_path / "in")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([item]))
    out = tmp_path / "out"
    assert main(["lesions", "--ct", str(paths["ct"]), "--pet", str(paths["pet"]), "--organs", str(paths["organs"]),
                 "--lesions", str(spec), "--seed", "4", "--out", str(out)]) == 0
    suv = np.asarray(nib.load(out / "pet_suv.nii.gz").dataobj, dtype=np.float64)
    instances = np.asarray(nib.load(out / "lesions.nii.gz").dataobj)
    record = json.loads((out / "lesions.json").read_text())["lesions"][0]
    mask = instances == 1
    if quantity == "suv_max":
        measured = suv[mask].max()
    elif quantity == "suv_mean":
        measured = suv[mask].mean()
    else:  # lesion SUVmean / the lung's SUVmean 6-16 mm from the lesion's edge (away from other tissue)
        distance = ndimage.distance_transform_edt(~mask, sampling=fine.affine.diagonal()[:3])
        ring = (distance >= 6) & (distance <= 16) & np.isin(fine.organs, organ_ids("lungs"))
        ring &= fine.ct_hu > AIR_HU
        measured = suv[mask].mean() / suv[ring].mean()
    target = item[quantity]
    assert abs(measured - target) / target < 0.10, (measured, target)
    assert record["requested"] == item and record["requested_quantity"] == quantity
    assert record["pv_compensated"] and abs(record["measured_value"] - target) / target < 0.10
    assert record["suv_max"] == pytest.approx(suv[mask].max(), rel=1e-4)
    assert record["suv_mean"] == pytest.approx(suv[mask].mean(), rel=1e-4)
    assert record["volume_ml"] == pytest.approx(mask.sum() * 0.064)
    assert record["tlg"] == pytest.approx(record["suv_mean"] * record["volume_ml"], rel=1e-3)
    assert record["suv_peak"] <= record["suv_max"] + 1e-6


def test_a_lesion_below_10_mm_reports_its_partial_volume_loss(fine):
    item = {"organ": "liver", "diameter_mm": 6, "suv_max": 10}
    result = insert_lesions(fine.ct_hu, fine.suv, fine.affine, fine.organs, lesions=[item], generator=2)
    record = result.records[0]
    assert record["diameter_mm"] < PV_COMPENSATION_MIN_DIAMETER_MM and not record["pv_compensated"]
    # a 6 mm lesion through a 6 mm PSF on 4 mm voxels keeps well under its true SUVmax
    assert record["partial_volume_loss_pct"] > 20 and record["suv_max"] < 0.8 * 10
    assert record["activity_value"] == pytest.approx(10, rel=1e-3)
    assert any("partial volume" in note for note in record["notes"])


# ------------------------------------------------------------------ where lesions go


def test_sampled_lesions_stay_in_their_site_inside_the_body_and_apart(fine):
    body = body_mask(fine.ct_hu, fine.affine)
    skeleton = [LABEL_IDS[n] for n in SKELETON]
    seen = set()
    for diagnosis, seed in (("LYMPHOMA", 3), ("MELANOMA", 5), ("LUNG_CANCER", 8), ("LUNG_CANCER", 9)):
        result = insert_lesions(fine.ct_hu, fine.suv, fine.affine, fine.organs, diagnosis=diagnosis, generator=seed)
        assert result.instances.dtype == np.int16
        assert set(np.unique(result.instances)) == set(range(len(result.records) + 1))
        for record in result.records:
            mask = result.instances == record["id"]
            labels = fine.organs[mask]
            seen.add(record["site"])
            assert body[mask].all() and (fine.ct_hu[mask] > AIR_HU).all()
            if record["site"] in ("liver", "spleen"):
                assert (labels == LABEL_IDS[record["site"]]).all()
            elif record["site"] == "lung":
                assert np.isin(labels, organ_ids("lungs")).all()
            elif record["site"] == "bone":
                assert np.isin(labels, skeleton).all()
            else:  # node, subcutaneous: in unlabelled fat / soft tissue
                assert (labels == 0).all()
            center = np.linalg.solve(fine.affine, [*record["center_mm"], 1.0])[:3]
            assert mask[tuple(np.round(center).astype(int))]
        for record in result.records:  # edges at least 12 mm (2 PSF FWHM) apart, voxel centre to voxel centre
            where = np.argwhere(result.instances == record["id"])
            box = tuple(slice(max(0, a - 4), b + 5) for a, b in zip(where.min(axis=0), where.max(axis=0)))
            crop = result.instances[box]
            others = (crop > 0) & (crop != record["id"])
            if others.any():
                distance = ndimage.distance_transform_edt(~others, sampling=(4, 4, 4))
                assert distance[crop == record["id"]].min() >= 12 - 1e-6
    assert {"node", "lung"} <= seen


def test_without_an_organ_map_only_sites_found_from_the_ct_are_used(coarse):
    result = insert_lesions(coarse.ct_hu, coarse.suv, coarse.affine, None, diagnosis="MELANOMA", generator=1)
    assert result.records and {r["site"] for r in result.records} <= {"lung", "node", "bone", "subcutaneous"}
    assert all(r["organ"] is None for r in result.records)


def test_negative_changes_nothing(coarse):
    result = insert_lesions(coarse.ct_hu, coarse.suv, coarse.affine, coarse.organs, diagnosis="NEGATIVE")
    assert result.records == [] and not result.instances.any()
    assert np.array_equal(result.ct, coarse.ct_hu) and np.array_equal(result.suv, coarse.suv)


# ------------------------------------------------------------------ determinism and orientation


def test_the_same_seed_gives_the_same_lesions_and_the_inputs_are_untouched(coarse):
    ct, suv = coarse.ct_hu.copy(), coarse.suv.copy()
    first = insert_lesions(coarse.ct_hu, coarse.suv, coarse.affine, coarse.organs, diagnosis="LUNG_CANCER",
                           generator=11)
    second = insert_lesions(coarse.ct_hu, coarse.suv, coarse.affine, coarse.organs, diagnosis="LUNG_CANCER",
                            generator=11)
    other = insert_lesions(coarse.ct_hu, coarse.suv, coarse.affine, coarse.organs, diagnosis="LUNG_CANCER",
                           generator=12)
    assert np.array_equal(coarse.ct_hu, ct) and np.array_equal(coarse.suv, suv)
    assert first.records and first.document() == second.document()
    assert all(np.array_equal(a, b) for a, b in ((first.ct, second.ct), (first.suv, second.suv),
                                                 (first.instances, second.instances)))
    assert not np.array_equal(first.suv, other.suv)


def test_a_flipped_and_permuted_study_gets_the_same_lesions_on_its_own_grid(coarse, tmp_path):
    """LPS with the axes in (z, y, x) order: outputs keep that grid; the lesions are the same in mm."""
    n = coarse.ct_hu.shape
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [n[0] - 1, n[1] - 1]
    swap = np.eye(4)[[2, 1, 0, 3]]
    lps_affine = coarse.affine @ flip @ swap

    def reorient(volume):
        return np.ascontiguousarray(np.transpose(volume[::-1, ::-1, :], (2, 1, 0)))

    ras, lps = tmp_path / "ras", tmp_path / "lps"
    for folder, convert, affine in ((ras, lambda v: v, coarse.affine), (lps, reorient, lps_affine)):
        folder.mkdir()
        save_nifti(np.rint(convert(coarse.ct_hu)).astype(np.int16), affine, folder / "ct.nii.gz")
        save_nifti(convert(coarse.suv).astype(np.float32), affine, folder / "suv.nii.gz")
        save_nifti(convert(coarse.organs).astype(np.uint8), affine, folder / "organs.nii.gz")
    hashes = {p: digest(p) for p in lps.iterdir()}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([{"organ": "liver", "diameter_mm": 24, "suv_max": 9},
                                {"site": "lung", "diameter_mm": 16, "suv_mean": 4, "shape": "lobulated"}]))
    for folder in (ras, lps):
        assert main(["lesions", "--ct", str(folder / "ct.nii.gz"), "--pet", str(folder / "suv.nii.gz"), "--organs",
                     str(folder / "organs.nii.gz"), "--lesions", str(spec), "--seed", "5",
                     "--out", str(folder / "out")]) == 0
    assert {p: digest(p) for p in lps.iterdir() if p.is_file()} == hashes  # inputs untouched
    for name in ("ct.nii.gz", "pet_suv.nii.gz", "lesions.nii.gz", "organs.nii.gz"):
        image = nib.load(lps / "out" / name)
        assert image.shape == reorient(coarse.ct_hu).shape and np.allclose(image.affine, lps_affine)
        assert nib.aff2axcodes(image.affine) == nib.aff2axcodes(lps_affine)
        ras_data = np.asarray(nib.load(ras / "out" / name).dataobj)
        assert np.array_equal(np.asarray(image.dataobj), reorient(ras_data))
    ras_json = json.loads((ras / "out" / "lesions.json").read_text())
    lps_json = json.loads((lps / "out" / "lesions.json").read_text())
    assert ras_json["lesions"] == lps_json["lesions"]


# ------------------------------------------------------------------ the command


def test_the_command_writes_the_outputs_and_leaves_the_inputs_alone(coarse, tmp_path):
    paths = write_study(coarse, tmp_path / "in")
    (tmp_path / "in" / "organs.json").write_text(json.dumps(LABEL_IDS))
    before = {p: digest(p) for p in (tmp_path / "in").iterdir()}
    out = tmp_path / "out"
    assert main(["lesions", "--ct", str(paths["ct"]), "--pet", str(paths["pet"]), "--organs", str(paths["organs"]),
                 "--diagnosis", "LYMPHOMA", "--seed", "3", "--out", str(out)]) == 0
    assert {p: digest(p) for p in (tmp_path / "in").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["ct.nii.gz", "lesions.json", "lesions.nii.gz", "organs.json",
                                                     "organs.nii.gz", "pet_suv.nii.gz"]
    document = json.loads((out / "lesions.json").read_text())
    assert document["diagnosis"] == "LYMPHOMA" and document["seed"] == 3 and document["n_lesions"] >= 1
    keys = {"id", "site", "organ", "center_mm", "volume_ml", "suv_mean", "suv_max", "suv_peak", "tlg", "hu_mean",
            "requested"}
    assert all(keys <= set(record) for record in document["lesions"])
    ct = np.asarray(nib.load(out / "ct.nii.gz").dataobj)
    instances = np.asarray(nib.load(out / "lesions.nii.gz").dataobj)
    assert ct.dtype == np.int16 and instances.dtype == np.int16
    for record in document["lesions"]:
        assert record["hu_mean"] == pytest.approx(ct[instances == record["id"]].mean(), abs=1e-3)


@pytest.mark.parametrize(
    "problem",
    ["bad_json", "unknown_key", "diameter", "overlap", "outside", "grids", "both", "neither", "diagnosis",
     "not_nifti"],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(coarse, tmp_path, capsys, problem):
    paths = write_study(coarse, tmp_path / "in")
    liver = voxel_center_mm(coarse, "liver")
    specs = {
        "unknown_key": [{**GOOD, "size": 3}],
        "diameter": [{**GOOD, "diameter_mm": 101}],
        "overlap": [{**GOOD, "center_mm": liver}, {**GOOD, "center_mm": [liver[0] + 4, liver[1], liver[2]]}],
        "outside": [GOOD, {**GOOD, "center_mm": [0, 0, 1e4]}],
    }
    spec = tmp_path / "spec.json"
    spec.write_text("[{'organ': 'liver'}]" if problem == "bad_json" else json.dumps(specs.get(problem, [GOOD])))
    pet = paths["pet"]
    if problem == "not_nifti":
        pet = tmp_path / "in" / "notes.nii.gz"
        pet.write_text("not an image")
    if problem == "grids":
        pet = tmp_path / "in" / "pet_small.nii.gz"
        save_nifti(coarse.suv[:-2], coarse.affine, pet)
    choice = {"both": ["--lesions", str(spec), "--diagnosis", "LYMPHOMA"], "neither": [],
              "diagnosis": ["--diagnosis", "GLIOMA"]}.get(problem, ["--lesions", str(spec)])
    out = tmp_path / "out"
    code = main(["lesions", "--ct", str(paths["ct"]), "--pet", str(pet), "--organs", str(paths["organs"]), *choice,
                 "--seed", "0", "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert error.startswith("petct lesions: error: ") and error.count("\n") == 1
    expected = {"bad_json": "not valid JSON", "unknown_key": "lesion 0: unknown key 'size'",
                "diameter": "lesion 0: diameter_mm=101", "overlap": "lesion 1: ", "outside": "lesion 1: center_mm",
                "grids": "different grids", "both": "exactly one of", "neither": "exactly one of",
                "diagnosis": "NEGATIVE", "not_nifti": "--pet"}[problem]
    assert expected in error


def test_a_coarse_grid_never_writes_nan():
    # 24 mm voxels: a lesion's site shell may be empty; the body around it is the background instead
    from petct_pipeline.demographics import Demographics
    from petct_pipeline.lesions import insert_lesions
    from petct_pipeline.phantom import generate_phantom

    phantom = generate_phantom(Demographics(age=50, sex="M", weight=80, height=178), seed=0, spacing=12.0)
    try:
        result = insert_lesions(phantom.ct_hu, phantom.suv, phantom.affine, phantom.organs, diagnosis="LYMPHOMA",
                                generator=0)
    except ValueError as error:
        assert "lesion" in str(error)
    else:
        assert np.isfinite(result.suv).all()
        assert all(record["suv_max"] is not None for record in result.records)
