import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from petct_pipeline import __version__
from petct_pipeline.cli import main

FAST = ["--steps", "2", "--sr-steps", "2"]


def generate(args, model):
    return main(["generate", "--model", str(model), *FAST, *args])


def test_generate_one_subject(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--seed", "3", "--out", str(out)]
    code = generate(args, tiny_pipeline_dir)
    assert code == 0
    ct = nib.load(out / "ct.nii.gz")
    assert ct.get_data_dtype() == np.int16 and nib.aff2axcodes(ct.affine) == ("R", "A", "S")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seed"] == 3 and meta["num_inference_steps"] == 2 and meta["model"] == tiny_pipeline_dir.name
    assert str(out) in capsys.readouterr().out
    # organ labels from the shipped segmenter, on the output grid, named as the phantom names them
    organs = nib.load(out / "organs.nii.gz")
    assert organs.shape == ct.shape and np.allclose(organs.affine, ct.affine)
    assert organs.get_data_dtype() == np.uint8
    assert json.loads((out / "organs.json").read_text())["liver"] == 5
    assert meta["files"]["organs"] == "organs.nii.gz" and meta["organ_labels"]["made_by"].startswith("model:")


def test_generate_no_labels_skips_the_organ_files(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "plain"
    args = ["--age", "40", "--sex", "M", "--weight", "80", "--height", "180", "--no-labels", "--out", str(out)]
    assert generate(args, tiny_pipeline_dir) == 0
    assert (out / "ct.nii.gz").is_file() and not (out / "organs.nii.gz").exists()
    assert not (out / "organs.json").exists()
    assert "organs" not in json.loads((out / "metadata.json").read_text())["files"]


def test_generate_cohort_writes_one_folder_per_row(tiny_pipeline_dir, tmp_path):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("id,age,sex,weight,height,seed\nyoung_woman,25,F,60,165,11\nelder_man,80,male,85,178,\n")
    out = tmp_path / "cohort_out"
    assert generate(["--cohort", str(cohort), "--seed", "100", "--out", str(out)], tiny_pipeline_dir) == 0
    seeds = {p.name: json.loads((p / "metadata.json").read_text())["seed"] for p in out.iterdir() if p.is_dir()}
    assert seeds == {"young_woman": 11, "elder_man": 101}
    index = (out / "cohort.csv").read_text().splitlines()
    assert index[0] == "id,age,sex,weight,height,seed" and index[2] == "elder_man,80,M,85,178,101"


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--age", "63", "--sex", "X", "--weight", "70", "--height", "165"], "sex must be one of"),
        (["--age", "-3", "--sex", "F", "--weight", "70", "--height", "165"], "age=-3 is out of range"),
        (["--age", "nan", "--sex", "F", "--weight", "70", "--height", "165"], "age must be finite"),
        (["--sex", "F", "--weight", "70", "--height", "165"], "missing --age"),
        (["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--steps", "0"], "num_inference_steps"),
        (["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--device", "gpu9"], "--device"),
        (["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--prior-scale", "-1"],
         "prior_scale=-1 is out of range"),
        (["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--prior-scale", "0.5"],
         "needs a demographic_prior component"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_pipeline_dir, tmp_path, capsys, args, fragment):
    out = tmp_path / "out"
    code = main(["generate", "--model", str(tiny_pipeline_dir), "--out", str(out), *args])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and err.startswith("petct generate: error:")
    assert not list(out.rglob("*.nii.gz")) if out.exists() else True


def test_bad_cohort_row_names_line_and_field(tiny_pipeline_dir, tmp_path, capsys):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("age,sex,weight,height\n40,F,60,165\n50,F,-5,170\n")
    out = tmp_path / "out"
    assert main(["generate", "--model", str(tiny_pipeline_dir), "--cohort", str(cohort), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "weight" in err and "3" in err  # the offending line
    assert not out.exists()


def test_missing_model_and_unwritable_out(tmp_path, capsys):
    code = main(["generate", "--model", str(tmp_path / "nope"), "--age", "40", "--sex", "M", "--weight", "80",
                 "--height", "180", "--out", str(tmp_path / "o")])
    assert code == 2 and "nope" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["generate", "--age", "40", "--sex", "M", "--weight", "80", "--height", "180", "--out", str(blocker)])
    assert code == 2 and "not a folder" in capsys.readouterr().err


def test_version_and_help_from_the_shell():
    version = subprocess.run([sys.executable, "-m", "petct_pipeline.cli", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and __version__ in version.stdout
    # `python -m petct_pipeline` is `petct` (what `accelerate launch -m petct_pipeline ...` runs)
    package = subprocess.run([sys.executable, "-m", "petct_pipeline", "--version"], capture_output=True, text=True)
    assert package.returncode == 0 and package.stdout == version.stdout
    helped = subprocess.run([sys.executable, "-m", "petct_pipeline.cli", "generate", "--help"],
                            capture_output=True, text=True)
    assert helped.returncode == 0 and "--cohort" in helped.stdout and "--prior-scale" in helped.stdout
