"""A broken model folder is one line naming the file and what to do (exit code 2), never a traceback."""

import re
import shutil

import pytest

from petct_pipeline import PETCTPipeline
from petct_pipeline.cli import main
from petct_pipeline.errors import ModelLoadError

SUBJECT = ["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--steps", "1", "--sr-steps", "1"]


def broken_copy(source, tmp_path, breakage):
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    breakage(folder)
    return folder


def truncate_weights(folder):
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def invalid_config(folder):
    (folder / "sr_unet" / "config.json").write_text('{"block_out_channels": [8, 16],')


def missing_component(folder):
    shutil.rmtree(folder / "demographic_encoder")


@pytest.mark.parametrize("breakage,named,fragment", [
    (truncate_weights, "unet/diffusion_pytorch_model.safetensors", "truncated or corrupt"),
    (invalid_config, "sr_unet/config.json", "is not valid JSON (line 1"),
    (missing_component, "demographic_encoder", "is missing"),
])
def test_broken_model_folder_is_one_line_and_exit_code_2(tiny_pipeline_dir, tmp_path, capsys, breakage, named,
                                                          fragment):
    folder = broken_copy(tiny_pipeline_dir, tmp_path, breakage)
    out = tmp_path / "out"
    assert main(["generate", "--model", str(folder), *SUBJECT, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and named in error and fragment in error and "re-export" in error, error
    assert not any(out.glob("*.nii.gz"))
    with pytest.raises(ModelLoadError, match=re.escape(fragment)):
        PETCTPipeline.from_pretrained(folder)


def test_missing_folder_and_offline_hub_id(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nope"), *SUBJECT, "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ModelLoadError, match="could not load the pipeline 'nobody/no-such-model'"):
        PETCTPipeline.from_pretrained("nobody/no-such-model")


def test_a_bug_keeps_its_traceback(tiny_pipeline_dir, tmp_path, monkeypatch):
    def broken_call(*args, **kwargs):
        raise ValueError("an internal bug, not bad input")

    monkeypatch.setattr(PETCTPipeline, "__call__", broken_call)
    with pytest.raises(ValueError, match="internal bug"):
        main(["generate", "--model", str(tiny_pipeline_dir), *SUBJECT, "--out", str(tmp_path / "o")])
