"""Fuzzing every ``petct`` command's flags: each run exits 0, or 2 with one line (argparse: its usage and one
error line), and leaves no file behind when it exits 2.

Sampling and simulation are replaced by a stub that stops the run once the flags are checked
(``Reached``): what is fuzzed is the validation in front of the work, not the work. Export,
evaluate, lesions and prepare run for real on tiny inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import strategies as st

import petct_pipeline.phantom.writer
from petct_pipeline import PETCTPipeline
from petct_pipeline.cli import main
from tests.helpers.faults import snapshot
from tests.helpers.fuzz import PROFILES, fuzz, junk_text, record


class Reached(Exception):
    """The flags passed every check and the command reached its expensive work."""


def _stop(*args, **kwargs):
    raise Reached


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Paths a flag may be given: good inputs of each kind, a missing file, a folder, an empty file."""
    root = tmp_path_factory.mktemp("inputs")
    population = root / "population"
    assert main(["phantom", "--n", "1", "--spacing", "12", "--seed", "2", "--out", str(population)]) == 0
    study = next(population.glob("PETCT_*/*"))
    (root / "cohort.csv").write_text("id,age,sex,weight,height,seed\na,40,F,60,165,1\n")
    (root / "spec.json").write_text(json.dumps([{"site": "lung", "diameter_mm": 12, "suv_max": 6}]))
    (root / "empty").write_bytes(b"")
    return {"population": population, "ct": study / "CTres.nii.gz", "pet": study / "SUV.nii.gz",
            "seg": study / "SEG.nii.gz", "cohort": root / "cohort.csv", "spec": root / "spec.json",
            "empty": root / "empty", "missing": root / "missing.nii.gz", "folder": root,
            "dicom": Path(__file__).parent / "fixtures" / "example_ct_dicom"}


def _value(kind: str, inputs) -> st.SearchStrategy:
    numbers = st.one_of(st.integers(-3, 300).map(str), st.floats(-10, 400).map(repr), junk_text)
    paths = st.sampled_from([str(p) for p in inputs.values()])
    return {"number": numbers, "path": st.one_of(paths, junk_text), "text": junk_text}.get(kind, numbers)


#: per command: {flag: kind of value} ("flag" = a switch without a value)
COMMANDS = {
    "generate": {"--age": "number", "--sex": "text", "--weight": "number", "--height": "number", "--cohort": "path",
                 "--seed": "number", "--steps": "number", "--sr-steps": "number", "--guidance-scale": "number",
                 "--prior-scale": "number", "--sr-chunk-size": "number", "--back-projection-iterations": "number",
                 "--device": "text", "--diagnosis": "text", "--lesions": "path", "--no-labels": "flag",
                 "--shard": "text", "--batch-size": "number", "--overwrite": "flag", "--model": "path"},
    "phantom": {"--n": "number", "--cohort": "path", "--age": "number", "--sex": "text", "--weight": "number",
                "--height": "number", "--seed": "number", "--spacing": "number", "--workers": "number",
                "--lesions": "flag", "--fov": "text"},
    "lesions": {"--ct": "path", "--pet": "path", "--organs": "path", "--diagnosis": "text", "--lesions": "path",
                "--seed": "number"},
    "export": {"--format": "text", "--input": "path", "--labels": "text", "--dataset-id": "number",
               "--dataset-name": "text", "--injected-dose-mbq": "number", "--uptake-time-min": "number",
               "--overwrite": "flag"},
    "evaluate": {"--generated": "path", "--reference": "path", "--segmenter": "text", "--workers": "number",
                 "--subgroups": "text", "--age-split": "number", "--bmi-edges": "text", "--organs": "text",
                 "--no-plots": "flag", "--no-realism": "flag"},
    "prepare": {"--dicom-root": "path", "--data-dir": "path", "--layout": "text", "--verify": "text",
                "--spacing": "number", "--workers": "number"},
}
#: values a text flag should often get right, so the fuzzer gets past the first check
PLAUSIBLE = {"--sex": ["F", "M"], "--diagnosis": ["LYMPHOMA", "NEGATIVE"], "--format": ["nnunet", "autopet"],
             "--labels": ["lesions", "organs"], "--fov": ["model", "whole_body"], "--segmenter": ["labels"],
             "--subgroups": ["sex_age,bmi", "all"], "--bmi-edges": ["25,30"], "--organs": ["liver,spleen"],
             "--layout": ["auto", "autopet"], "--verify": ["header"], "--shard": ["1/2", "0/2"],
             "--device": ["cpu"], "--age": ["40"], "--weight": ["70"], "--height": ["170"]}
REQUIRED = {"generate": {"--age": "40", "--sex": "F", "--weight": "70", "--height": "170", "--steps": "1",
                         "--sr-steps": "1", "--no-labels": None},
            "lesions": {"--ct": "ct", "--pet": "pet", "--diagnosis": "LYMPHOMA"},
            "export": {"--format": "nnunet", "--input": "population"},
            "evaluate": {"--generated": "population", "--reference": "population", "--segmenter": "labels",
                         "--no-plots": None, "--no-realism": None},
            "phantom": {"--n": "1"}, "prepare": {"--data-dir": "population"}}


@st.composite
def command_lines(draw, command: str, inputs) -> list[str]:
    """A start from a valid command line, with flags dropped, replaced or added with odd values."""
    flags = dict(REQUIRED[command])
    for flag in draw(st.lists(st.sampled_from(sorted(COMMANDS[command])), max_size=4, unique=True)):
        kind = COMMANDS[command][flag]
        if draw(st.integers(0, 4)) == 0:
            flags.pop(flag, None)
        elif kind == "flag":
            flags[flag] = None
        elif flag in PLAUSIBLE and draw(st.booleans()):
            flags[flag] = draw(st.sampled_from(PLAUSIBLE[flag]))
        else:
            flags[flag] = draw(_value(kind, inputs))
    argv = [command]
    for flag, value in flags.items():
        value = str(inputs[value]) if value in inputs else value
        argv += [flag] if value is None else [f"{flag}={value}"]
    return argv


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("command,examples", [("generate", 80), ("phantom", 80), ("lesions", 25), ("export", 25),
                                              ("evaluate", 8), ("prepare", 25)])
def test_every_command_with_odd_flags(profile, command, examples, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(PETCTPipeline, "from_pretrained", _stop)  # generate: stop before loading a model
    monkeypatch.setattr(petct_pipeline.phantom.writer, "write_population", _stop)  # phantom: before simulating
    runs = iter(range(10**9))

    def check(argv):
        out = tmp_path / f"out{next(runs)}"
        outputs = {"generate": "--out", "phantom": "--out", "lesions": "--out", "export": "--out",
                   "evaluate": "--out", "prepare": "--cache"}
        argv = [*argv, f"{outputs[command]}={out}"]
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse: usage and one error line
            code = exit.code
            assert code == 2 and capsys.readouterr().err.strip().splitlines()[-1].startswith("usage:") is False
            record("argparse refused")
            return
        except Reached:
            record("reached the work")
            return
        error = capsys.readouterr().err
        assert code in (0, 2), error
        record(f"exit code {code}")
        if code == 2:
            assert error.strip().count("\n") == 0 or command == "prepare", error
            assert error.strip().splitlines()[-1].startswith(f"petct {command}: error: "), error
            assert snapshot(out) == {} if command != "prepare" else True, f"left {snapshot(out)}"

    fuzz(profile, examples, command_lines(command, inputs), check)


def test_an_error_about_a_path_with_a_line_break_stays_one_line(tmp_path, capsys):
    """Found by the property above: a path holding a line break (or U+0085) split the one-line error."""
    assert main(["lesions", "--ct", "a\nb\x85c", "--pet", "x", "--diagnosis", "LYMPHOMA", "--out",
                 str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "a\\nb\\x85c" in error, error


@pytest.mark.parametrize("ct,fragment", [("a\0b", "--ct 'a\\\\x00b' holds a NUL character"),
                                         ("1" * 300, "cannot use the path 1111")])
def test_a_path_no_system_can_use_is_one_line(tmp_path, capsys, ct, fragment):
    """Found by the long profile: a NUL byte (ValueError) or a 300-character name (ENAMETOOLONG) in a path flag."""
    assert main(["lesions", "--ct", ct, "--pet", "x", "--diagnosis", "LYMPHOMA", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and fragment in error, error
