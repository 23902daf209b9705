"""Corrupt model folders (issue 25): flipped safetensors headers, configs with wrong types, unknown
classes, a folder from another version, code or pickles in the folder.

The property: ``PETCTPipeline.from_pretrained`` loads the folder or raises ``ModelLoadError`` naming
the file or component; ``petct generate --model`` exits 2 with one line; no code from the folder
runs and nothing is unpickled.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct

import pytest
from hypothesis import strategies as st

from petct_pipeline import PETCTPipeline
from petct_pipeline.cli import main
from petct_pipeline.errors import ModelLoadError
from tests.helpers.fuzz import PROFILES, fuzz, record

COMPONENTS = ("demographic_encoder", "unet", "sr_unet")
WEIGHTS = "diffusion_pytorch_model.safetensors"
SUBJECT = ["--age", "63", "--sex", "F", "--weight", "70", "--height", "165", "--steps", "1", "--sr-steps", "1"]


def _load(folder, component: str):
    """from_pretrained: a pipeline, or a ModelLoadError that names the broken component's folder or file."""
    try:
        PETCTPipeline.from_pretrained(folder)
    except ModelLoadError as error:
        message = str(error)
        assert "\n" not in message.strip() and str(folder / component) in message, message
        record("refused: ModelLoadError")
        return error
    record("accepted")
    return None


@pytest.mark.parametrize("profile", PROFILES)
def test_a_bit_flipped_in_a_safetensors_header(profile, tiny_pipeline_dir, tmp_path):
    runs = iter(range(10**9))

    def check(case):
        component, where, bit = case
        folder = tmp_path / f"m{next(runs)}"
        shutil.copytree(tiny_pipeline_dir, folder)
        weights = folder / component / WEIGHTS
        raw = bytearray(weights.read_bytes())
        header_end = 8 + struct.unpack("<Q", raw[:8])[0]
        position = int(where * (header_end - 1))
        raw[position] ^= 1 << bit
        weights.write_bytes(bytes(raw))
        _load(folder, component)
        shutil.rmtree(folder)

    fuzz(profile, 30, st.tuples(st.sampled_from(COMPONENTS), st.floats(0, 1), st.integers(0, 7)), check)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_config_value_of_the_wrong_type(profile, tiny_pipeline_dir, tmp_path):
    runs = iter(range(10**9))
    keys = {c: sorted(json.loads((tiny_pipeline_dir / c / "config.json").read_text())) for c in COMPONENTS}

    def check(case):
        component, index, value = case
        folder = tmp_path / f"m{next(runs)}"
        shutil.copytree(tiny_pipeline_dir, folder)
        config_file = folder / component / "config.json"
        config = json.loads(config_file.read_text())
        config[keys[component][index % len(keys[component])]] = value
        config_file.write_text(json.dumps(config, default=repr))
        _load(folder, component)
        shutil.rmtree(folder)

    # small numbers only: a valid but huge layer width would build a huge model, not test the loader
    values = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.floats(-4, 20), st.integers(-3, 12),
                       st.lists(st.integers(-2, 24), max_size=4), st.dictionaries(st.text(max_size=2), st.integers()))
    fuzz(profile, 30, st.tuples(st.sampled_from(COMPONENTS), st.integers(0, 50), values), check)


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


BREAKAGES = {
    "unknown class in model_index.json": ("unet", lambda f: _edit_json(
        f / "model_index.json", lambda d: d.__setitem__("unet", ["petct_pipeline.models.unet_3d", "NoSuchModel"]))),
    "unknown library in model_index.json": ("unet", lambda f: _edit_json(
        f / "model_index.json", lambda d: d.__setitem__("unet", ["os", "system"]))),
    "a component config of another class": ("sr_unet", lambda f: _edit_json(
        f / "sr_unet" / "config.json", lambda d: d.__setitem__("_class_name", "DemographicEncoder"))),
    "a folder from another version (wider layers)": ("unet", lambda f: _edit_json(
        f / "unet" / "config.json", lambda d: d.__setitem__("block_out_channels", [16, 32]))),
    "a folder from another version (a renamed argument)": ("demographic_encoder", lambda f: _edit_json(
        f / "demographic_encoder" / "config.json", lambda d: d.__setitem__("hidden_dim", None))),
    "weights of another model": ("unet", lambda f: shutil.copyfile(
        f / "demographic_encoder" / WEIGHTS, f / "unet" / WEIGHTS)),
    "a config that is a list": ("sr_unet", lambda f: (f / "sr_unet" / "config.json").write_text("[1, 2]")),
    "an empty weights file": ("unet", lambda f: (f / "unet" / WEIGHTS).write_bytes(b"")),
}


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_a_broken_folder_is_one_line_naming_it(kind, tiny_pipeline_dir, tmp_path, capsys):
    component, breakage = BREAKAGES[kind]
    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    breakage(folder)
    assert _load(folder, component) is not None, f"{kind} loaded"
    out = tmp_path / "out"
    assert main(["generate", "--model", str(folder), *SUBJECT, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(folder / component) in error, error
    assert not list(out.rglob("*.nii.gz"))


class _Payload:
    """Unpickling this creates a marker file: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_weights_are_never_unpickled(tiny_pipeline_dir, tmp_path):
    marker = tmp_path / "unpickled"
    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    PETCTPipeline.from_pretrained(folder)  # safetensors beside the .bin: the .bin is ignored
    (folder / "unet" / WEIGHTS).unlink()
    with pytest.raises(ModelLoadError, match="only pickled .bin weights, which are never loaded"):
        PETCTPipeline.from_pretrained(folder)
    assert not marker.exists()


def test_code_in_the_folder_never_runs(tiny_pipeline_dir, tmp_path):
    """A model_index.json naming a module shipped in the folder (diffusers' custom pipelines, trust_remote_code)."""
    marker = tmp_path / "imported"
    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    (folder / "unet" / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nclass Evil: pass\n")
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nclass Evil: pass\n")
    _edit_json(folder / "model_index.json", lambda d: d.__setitem__("unet", ["evil", "Evil"]))
    with pytest.raises(ModelLoadError, match="unet"):
        PETCTPipeline.from_pretrained(folder)
    _edit_json(folder / "model_index.json", lambda d: d.update(unet=["petct_pipeline.models.unet_3d",
                                                                  "PETCTUNet3DModel"], _class_name="Evil"))
    with pytest.raises(ModelLoadError):
        PETCTPipeline.from_pretrained(folder, custom_pipeline=str(folder / "evil.py"))
    assert not marker.exists()
