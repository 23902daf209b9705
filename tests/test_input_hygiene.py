"""Input hygiene found in a newcomer run: cohort ids as paths, devices, seeds, dict demographics."""

import numpy as np
import pytest
import torch

from petct_pipeline import Demographics
from petct_pipeline.cli import main
from petct_pipeline.cohort import check_subject_id, read_cohort
from petct_pipeline.errors import InputError, InputTypeError

WOMAN = Demographics(age=63, sex="F", weight=70, height=165)
MAN = Demographics(age=35, sex="M", weight=90, height=185)
SUBJECT = ["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--steps", "1", "--sr-steps", "1"]


@pytest.mark.parametrize("subject_id", ["../escape", "/etc/x", "a/b", "..", ".hidden", "a\\b", "C:x", "a\x01b"])
def test_an_id_that_is_not_a_plain_folder_name_is_refused(tiny_pipeline_dir, tmp_path, capsys, subject_id):
    cohort = tmp_path / "c.csv"
    cohort.write_text(f'id,age,sex,weight,height\nfine,40,F,60,165\n"{subject_id}",50,M,80,180\n')
    out = tmp_path / "cbad" / "x"
    code = main(["generate", "--model", str(tiny_pipeline_dir), "--cohort", str(cohort), "--steps", "1",
                 "--sr-steps", "1", "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "line 3: field 'id'" in error and "plain folder name" in error
    assert not (tmp_path / "cbad").exists() or not any((tmp_path / "cbad").rglob("*.nii.gz"))


def test_plain_ids_pass_and_the_rule_names_the_row(tmp_path):
    assert check_subject_id("subject-01_a.b") == "subject-01_a.b"
    cohort = tmp_path / "c.csv"
    cohort.write_text("id,age,sex,weight,height\nx/y,40,F,60,165\n")
    with pytest.raises(InputError, match=r"line 2: field 'id': id 'x/y'"):
        read_cohort(cohort)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "meta", "foo"])
def test_a_device_this_torch_lacks_is_one_line_and_exit_code_2(tiny_pipeline_dir, tmp_path, capsys, device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code = main(["generate", "--model", str(tiny_pipeline_dir), *SUBJECT, "--device", device,
                 "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and f"--device {device!r}" in error, error


@pytest.mark.parametrize("seed,fragment", [("-1", "--seed=-1 is out of range"), (str(2**63), "out of range")])
def test_one_seed_rule_for_flags_and_cohort_rows(tiny_pipeline_dir, tmp_path, capsys, seed, fragment):
    code = main(["generate", "--model", str(tiny_pipeline_dir), *SUBJECT, "--seed", seed, "--out", str(tmp_path / "o")])
    assert code == 2 and fragment in capsys.readouterr().err
    cohort = tmp_path / "c.csv"
    cohort.write_text(f"age,sex,weight,height,seed\n40,F,60,165,{seed}\n")
    with pytest.raises(InputError, match="field 'seed'"):
        read_cohort(cohort)


def test_generator_of_the_wrong_type_is_a_type_error(tiny_pipeline):
    with pytest.raises(InputTypeError, match="generator must be a torch.Generator"):
        tiny_pipeline(WOMAN, num_inference_steps=1, sr_num_inference_steps=1, generator=0)


def test_a_batch_with_one_generator_per_subject_equals_the_single_calls_bitwise(tiny_pipeline):
    settings = {"num_inference_steps": 2, "sr_num_inference_steps": 1}
    batch = tiny_pipeline([WOMAN, MAN], generator=[torch.Generator().manual_seed(s) for s in (4, 5)], **settings)
    for index, (subject, seed) in enumerate(((WOMAN, 4), (MAN, 5))):
        single = tiny_pipeline(subject, generator=torch.Generator().manual_seed(seed), **settings)
        np.testing.assert_array_equal(batch.ct[index], single.ct[0])
        np.testing.assert_array_equal(batch.pet[index], single.pet[0])
        assert batch.metadata[index]["seed"] == seed


def test_a_shared_generator_records_how_to_reproduce_the_batch(tiny_pipeline):
    out = tiny_pipeline([WOMAN, MAN], num_inference_steps=1, sr_num_inference_steps=1,
                        generator=torch.Generator().manual_seed(9))
    assert [m["seed"] for m in out.metadata] == [None, None]
    assert [(m["batch_seed"], m["batch_index"], m["batch_size"]) for m in out.metadata] == [(9, 0, 2), (9, 1, 2)]


def test_dict_demographics_are_validated_like_the_dataclass(tiny_pipeline):
    with pytest.raises(InputTypeError, match="age must be a number"):
        tiny_pipeline({"age": "63", "sex": "F", "weight": 70, "height": 165})
    with pytest.raises(InputError, match=r"unknown field\(s\) \['bmi'\]"):
        tiny_pipeline({"age": 63, "sex": "F", "weight": 70, "height": 165, "bmi": 25.7})
    with pytest.raises(InputError, match=r"missing field\(s\) \['height'\]"):
        tiny_pipeline({"age": 63, "sex": "F", "weight": 70})


def test_phantom_cohort_keeps_the_ids_so_twins_pair_with_generated_subjects(tmp_path):
    import csv

    cohort = tmp_path / "c.csv"
    cohort.write_text("id,age,sex,weight,height,seed\ntwin_a,40,F,60,165,1\ntwin_b,70,M,85,178,2\n")
    assert main(["phantom", "--cohort", str(cohort), "--spacing", "12", "--out", str(tmp_path / "ph")]) == 0
    with (tmp_path / "ph" / "demographics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["cohort_id"] for row in rows) == ["twin_a", "twin_b"]
    cohort.write_text("id,age,sex,weight,height\n../up,40,F,60,165\n")
    assert main(["phantom", "--cohort", str(cohort), "--spacing", "12", "--out", str(tmp_path / "bad")]) == 2


def test_outputs_name_the_model_not_a_local_path(tiny_pipeline_dir, tmp_path):
    import json

    assert main(["generate", "--model", str(tiny_pipeline_dir), *SUBJECT, "--out", str(tmp_path / "o")]) == 0
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["model"] == tiny_pipeline_dir.name and str(tmp_path) not in json.dumps(meta)
    assert meta["revision"].startswith("sha256:") and len(meta["revision"]) == 7 + 64


def test_evaluation_reports_name_inputs_relative_to_the_report(self_report, reference_dir):
    out_dir = self_report.out_dir
    for name in ("evaluation.json", "report.md"):
        text = (out_dir / name).read_text()
        assert str(reference_dir) not in text and str(out_dir) not in text, name
    import json

    info = json.loads((out_dir / "evaluation.json").read_text())
    assert (out_dir / info["reference"]["path"]).resolve() == reference_dir.resolve()


def test_the_documented_field_of_view_cap_is_the_shipped_grid():
    import json
    from pathlib import Path

    from petct_pipeline.geometry import body_slices

    repo = Path(__file__).resolve().parent.parent
    config = json.loads((repo / "checkpoints" / "petct-phantom-demo" / "model_index.json").read_text())
    cap_mm = config["base_shape"][2] * config["base_spacing"]
    assert cap_mm == 768 and f"end at {cap_mm:g} mm from the vertex" in (repo / "docs" / "usage.md").read_text()
    assert body_slices(220, 4.0, max_slices=192) == 192 and body_slices(185, 4.0, max_slices=192) < 192


def test_the_training_docs_export_targets_are_ignored_by_git():
    import shutil
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for target in ("checkpoints/my-petct/model_index.json", "checkpoints/my-petct-prior/unet/config.json"):
        result = subprocess.run(["git", "check-ignore", "-q", target], cwd=repo)
        assert result.returncode == 0, target
