"""Fault injection in the writers (issue 25): a full disk, a refused write or a read-only filesystem at
the Nth file of ``petct phantom``, ``export``, ``evaluate``, ``lesions`` and ``generate --cohort``.

After each fault: exit code 2 with one line naming the file, no partial or corrupt file under a final
name, no temporary left behind; a rerun then writes the same bytes as an undisturbed run (files whose
bytes differ between two undisturbed runs, e.g. timings, are compared by name only). The fast run
injects one fault per writer; the slow twin one at each of SLOW_POINTS files spread over the run.
``kill -9`` of a cohort run is in test_cohort_scale.py; kill -9 of the phantom writer is below (slow).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import petct_pipeline.io
from petct_pipeline.cli import main
from tests.helpers.faults import WriteFaults, hidden_leftovers, snapshot

CODES = (errno.ENOSPC, errno.EACCES, errno.EROFS)
#: files that record when and how long a run took (compared by name only)
TIMED = {"report.md", "evaluation.json", "manifest.jsonl"}
#: the slow run injects a fault at this many files spread over a writer's run (all of them when it writes fewer)
SLOW_POINTS = 8


def complete(path: Path) -> bool:
    """Whether a file under its final name reads back whole (a half-written one does not)."""
    try:
        if path.name.endswith(".nii.gz") or path.suffix == ".nii":
            np.asarray(nib.load(str(path)).dataobj)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".csv":
            list(csv.reader(path.read_text().splitlines(), strict=True))
        elif path.suffix == ".png":
            return path.read_bytes().endswith(b"IEND\xaeB`\x82")
    except Exception:
        return False
    return True


class Writer:
    """One command line writing into ``out``; two undisturbed runs give its bytes and which of them vary."""

    def __init__(self, argv, tmp_path: Path, monkeypatch, capsys):
        self.argv, self.tmp, self.monkeypatch, self.capsys = argv, tmp_path, monkeypatch, capsys
        # a cohort records a failed row, goes on with the others and exits 1 with a summary (docs/usage.md)
        self.per_row = argv[0] == "generate"
        first, self.publications = self.run(tmp_path / "baseline_a")
        second, _ = self.run(tmp_path / "baseline_b")
        self.expected = snapshot(tmp_path / "baseline_a")
        assert first == second == 0 and set(self.expected) == set(snapshot(tmp_path / "baseline_b"))
        self.volatile = {n for n, h in snapshot(tmp_path / "baseline_b").items() if self.expected[n] != h}
        self.volatile |= {n for n in self.expected if Path(n).name in TIMED}

    def run(self, out: Path, faults: WriteFaults | None = None) -> tuple[int, int]:
        faults = faults or WriteFaults()
        self.monkeypatch.setattr(petct_pipeline.io, "os", faults)
        self.capsys.readouterr()
        try:
            code = main([str(out) if a == "OUT" else a for a in self.argv])
        finally:
            self.monkeypatch.setattr(petct_pipeline.io, "os", os)
        return code, faults.published

    def fault_then_rerun(self, at: int, code: int) -> None:
        out = self.tmp / f"fault{at}_{code}"
        faults = WriteFaults(fail_at=at, code=code)
        exit_code, _ = self.run(out, faults)
        error = self.capsys.readouterr().err
        if self.per_row and exit_code == 1:  # a row failed while saving: recorded, the others written
            assert "failed" in error and os.strerror(code) in error, error
        elif self.per_row:  # the cohort's own files (manifest, cohort.csv): the run stops
            assert exit_code == 2 and error.strip().splitlines()[-1].startswith("petct generate: error: ")
            assert faults.failed_path in error and os.strerror(code) in error, error
        else:
            assert exit_code == 2, f"fault at file {at}: exit {exit_code} {error}"
            assert error.count("\n") == 1 and faults.failed_path in error and os.strerror(code) in error, error
        assert hidden_leftovers(out) == [], f"fault at file {at} left {hidden_leftovers(out)}"
        for name in snapshot(out):
            assert complete(out / name), f"fault at file {at}: {name} is visible but incomplete"
            if name not in self.volatile and (name.endswith(".nii.gz") or name in self.expected):
                if name.endswith(".nii.gz"):
                    assert snapshot(out)[name] == self.expected[name], f"{name} differs from an undisturbed run"
        assert self.run(out)[0] == 0, self.capsys.readouterr().err
        after = snapshot(out)
        assert set(after) == set(self.expected)
        assert {n: h for n, h in after.items() if n not in self.volatile} == {
            n: h for n, h in self.expected.items() if n not in self.volatile}


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """A two-subject 12 mm phantom population (AutoPET layout): the input of export and evaluate."""
    out = tmp_path_factory.mktemp("population")
    assert main(["phantom", "--n", "2", "--spacing", "12", "--seed", "3", "--out", str(out)]) == 0
    return out


def _writers(population, tiny_pipeline_dir, tmp_path):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("id,age,sex,weight,height\na,40,F,60,165\nb,70,M,85,180\n")
    study = next(population.glob("PETCT_*/*"))
    return {
        "phantom": ["phantom", "--n", "1", "--spacing", "12", "--seed", "1", "--out", "OUT"],
        "export nnunet": ["export", "--format", "nnunet", "--input", str(population), "--out", "OUT"],
        "export autopet": ["export", "--format", "autopet", "--input", str(population), "--out", "OUT"],
        "evaluate": ["evaluate", "--generated", str(population), "--reference", str(population), "--segmenter",
                     "labels", "--no-realism", "--no-plots", "--out", "OUT"],
        "evaluate with plots": ["evaluate", "--generated", str(population), "--reference", str(population),
                                "--segmenter", "labels", "--no-realism", "--out", "OUT"],
        "lesions": ["lesions", "--ct", str(study / "CTres.nii.gz"), "--pet", str(study / "SUV.nii.gz"),
                    "--diagnosis", "LYMPHOMA", "--seed", "2", "--out", "OUT"],
        "generate --cohort": ["generate", "--model", str(tiny_pipeline_dir), "--cohort", str(cohort), "--steps", "1",
                              "--sr-steps", "1", "--no-labels", "--out", "OUT"],
    }


WRITERS = ("phantom", "export nnunet", "export autopet", "evaluate", "lesions", "generate --cohort")


def _report(name: str, files: int, faults: int) -> None:
    """With PETCT_FUZZ_REPORT=FILE: one JSON line per writer (files it publishes, faults injected and survived)."""
    if os.environ.get("PETCT_FUZZ_REPORT"):
        with open(os.environ["PETCT_FUZZ_REPORT"], "a") as handle:
            handle.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
                                     "writer": name, "files": files, "faults_survived": faults}) + "\n")


@pytest.mark.parametrize("name", WRITERS)
def test_one_fault_midway_then_a_rerun(name, population, tiny_pipeline_dir, tmp_path, monkeypatch, capsys):
    writer = Writer(_writers(population, tiny_pipeline_dir, tmp_path)[name], tmp_path, monkeypatch, capsys)
    assert writer.publications >= 1
    writer.fault_then_rerun(max(1, writer.publications // 2), CODES[WRITERS.index(name) % len(CODES)])
    _report(name, writer.publications, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", WRITERS)  # "evaluate with plots": 19 files, 6 min here; run it by hand
def test_faults_across_the_files_then_a_rerun(name, population, tiny_pipeline_dir, tmp_path, monkeypatch, capsys):
    writer = Writer(_writers(population, tiny_pipeline_dir, tmp_path)[name], tmp_path, monkeypatch, capsys)
    points = sorted({round(1 + i * (writer.publications - 1) / (SLOW_POINTS - 1)) for i in range(SLOW_POINTS)})
    for at in points:
        writer.fault_then_rerun(at, CODES[at % len(CODES)])
    _report(name, writer.publications, len(points))


@pytest.mark.slow
def test_kill_9_of_the_phantom_writer_at_random_moments(tmp_path):
    """``petct phantom`` killed at a random moment leaves only complete files; a rerun gives the same bytes."""
    argv = [sys.executable, "-m", "petct_pipeline", "phantom", "--n", "3", "--spacing", "12", "--seed", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    subprocess.run([*argv, "--out", str(tmp_path / "baseline")], check=True, env=env, capture_output=True)
    duration = time.monotonic() - started
    expected = snapshot(tmp_path / "baseline")
    rng = random.Random(os.environ.get("PETCT_FAULT_SEED", "25"))
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}"
        process = subprocess.Popen([*argv, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        for name in snapshot(out):
            assert complete(out / name), f"killed run {attempt}: {name} is visible but incomplete"
            assert snapshot(out)[name] == expected[name] or not name.endswith(".nii.gz")
        subprocess.run([*argv, "--out", str(out)], check=True, env=env, capture_output=True)
        assert snapshot(out) == expected
        shutil.rmtree(out)
    _report("phantom (kill -9)", len(expected), 3)


# ----------------------------------------------------------------------------------- prior fitting (fit_prior.py)
@pytest.fixture(scope="module")
def prior_inputs(tmp_path_factory):
    """``training/fit_prior.py``'s arguments but ``--out``: the tiny pipeline, 6 phantoms, a config, a cache."""
    from tests.helpers.pipelines import save_prior_ready_pipeline

    root = tmp_path_factory.mktemp("prior")
    population = root / "population"  # the prior needs more subjects than demographic features (5)
    assert main(["phantom", "--n", "6", "--spacing", "12", "--seed", "3", "--out", str(population)]) == 0
    config = root / "config.json"
    config.write_text(json.dumps({"name": "t", "data": {"preprocess": {"include_organs": False},
                                                         "preprocess_workers": 0}}))
    return ["--pipeline", str(save_prior_ready_pipeline(root / "pipeline")), "--data_dir", str(population),
            "--config", str(config), "--cache_dir", str(root / "cache")]


def _refused(code: int, path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def _fail_copy(monkeypatch, code):
    """The model card copied into the new folder: the disk fills half-way through it."""
    real = shutil.copy2

    def copy2(src, dst, **kwargs):
        real(src, dst, **kwargs)
        Path(dst).write_bytes(Path(dst).read_bytes()[: Path(dst).stat().st_size // 2])
        raise _refused(code, dst)
    monkeypatch.setattr(shutil, "copy2", copy2)


def _fail_provenance(monkeypatch, code):
    """The provenance record, the folder's last file."""
    real = Path.write_text

    def write_text(self, data, *args, **kwargs):
        if self.name == "training_provenance.json":
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise _refused(code, self)
        return real(self, data, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", write_text)


def _fail_publish(monkeypatch, code):
    """The whole folder complete under its temporary name, the rename into place refused."""
    real = Path.rename

    def rename(self, target):
        if Path(target).name == "with_prior":
            raise _refused(code, target)
        return real(self, target)
    monkeypatch.setattr(Path, "rename", rename)


@pytest.mark.parametrize(("fault", "code"), list(zip((_fail_copy, _fail_provenance, _fail_publish), CODES)),
                         ids=["copy", "provenance", "publish"])
def test_fit_prior_a_refused_write_leaves_no_folder_then_a_rerun(fault, code, prior_inputs, tmp_path, monkeypatch,
                                                                 capsys):
    """The prior's pipeline folder is staged and renamed: a fault anywhere leaves ``--out`` absent, nothing hidden."""
    from training.fit_prior import main as fit_prior

    assert fit_prior([*prior_inputs, "--out", str(tmp_path / "baseline" / "with_prior")]) == 0
    expected = snapshot(tmp_path / "baseline" / "with_prior")
    out = tmp_path / "faulted" / "with_prior"
    with monkeypatch.context() as patch:
        fault(patch, code)
        capsys.readouterr()
        assert fit_prior([*prior_inputs, "--out", str(out)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after diffusers' loading progress bar
    assert error.startswith("fit_prior.py: error: ") and str(out) in error and os.strerror(code) in error, error
    assert ".with_prior." not in error, "the error names the staging folder, not the one being written"
    assert not out.exists() and hidden_leftovers(out.parent) == [], hidden_leftovers(out.parent)
    assert fit_prior([*prior_inputs, "--out", str(out)]) == 0
    assert snapshot(out) == expected
    _report(f"fit_prior ({fault.__name__})", len(expected), 1)


@pytest.mark.slow
def test_kill_9_of_fit_prior_at_random_moments(prior_inputs, tmp_path):
    """fit_prior.py killed at a random moment leaves ``--out`` absent or whole; a rerun gives the same bytes."""
    argv = [sys.executable, "training/fit_prior.py", *prior_inputs]
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    started = time.monotonic()
    subprocess.run([*argv, "--out", str(tmp_path / "baseline")], check=True, env=env, cwd=repo, capture_output=True)
    duration = time.monotonic() - started
    expected = snapshot(tmp_path / "baseline")
    rng = random.Random(os.environ.get("PETCT_FAULT_SEED", "25"))
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}" / "with_prior"
        process = subprocess.Popen([*argv, "--out", str(out)], env=env, cwd=repo, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not out.exists() or snapshot(out) == expected, f"killed run {attempt} left a partial {out}"
        subprocess.run([*argv, "--out", str(out), "--overwrite"], check=True, env=env, cwd=repo,
                       capture_output=True)
        assert snapshot(out) == expected
    _report("fit_prior (kill -9)", len(expected), 3)
