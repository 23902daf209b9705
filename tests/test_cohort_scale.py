"""Cohorts at scale (issue 23): shards, two gloo ranks, resume after kill -9, failure isolation, --overwrite.

Every run uses the tiny random pipeline with 2 + 2 steps and no organ labels, so a row costs well
under a second; the subprocesses get the pytest process's torch thread count, because on CPU the
bytes of a volume depend on it (docs/usage.md).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from petct_pipeline.cli import main
from petct_pipeline.cohort_generation import STAGING_DIRNAME, Subject, parse_shard, shard_subjects
from petct_pipeline.demographics import Demographics
from petct_pipeline.errors import InputError
from petct_pipeline.evaluation.inputs import discover_inputs
from petct_pipeline.manifest import MANIFEST_FILENAME, append_record, file_sha256, read_manifest

REPO = Path(__file__).resolve().parent.parent
FAST = ["--steps", "2", "--sr-steps", "2", "--no-labels"]
ROWS = [  # id, age, sex, weight, height, seed ("" = base seed + row index)
    ("a", 25, "F", 60, 165, 11), ("b", 80, "M", 85, 178, ""), ("c", 47, "F", 72, 158, 5),
    ("d", 63, "M", 95, 185, ""), ("e", 35, "M", 70, 172, 7),
]


def write_cohort(path: Path, rows=ROWS) -> Path:
    path.write_text("id,age,sex,weight,height,seed\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def generate(model: Path, cohort: Path, out: Path, *extra: str) -> int:
    return main(["generate", "--model", str(model), "--cohort", str(cohort), "--out", str(out), "--seed", "100",
                 *FAST, *extra])


def subject_files(out: Path) -> dict[str, str]:
    """sha256 of every file in the row folders (what must be the same bytes however the run was split)."""
    return {path.relative_to(out).as_posix(): file_sha256(path) for path in sorted(out.rglob("*"))
            if path.is_file() and path.parent != out}


def manifest_lines(out: Path) -> list[str]:
    return (out / MANIFEST_FILENAME).read_text().splitlines()


def env(threads: int | None = None) -> dict[str, str]:
    """The subprocesses' environment: this checkout importable, offline hub, the same torch threads as pytest."""
    variables = dict(os.environ)
    variables.update({"PYTHONPATH": os.pathsep.join([str(REPO), variables.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                      "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads or torch.get_num_threads())})
    return variables


@pytest.fixture()
def cohort(tmp_path):
    return write_cohort(tmp_path / "cohort.csv")


@pytest.fixture()
def reference(tiny_pipeline_dir, cohort, tmp_path):
    """One process, batch size 1: the bytes every other way of running the cohort must write."""
    out = tmp_path / "reference"
    assert generate(tiny_pipeline_dir, cohort, out) == 0
    return out


# ----------------------------------------------------------------------------- shards
def test_shards_partition_the_rows():
    subjects = [Subject(i, f"r{i}", Demographics(age=40, sex="F", weight=60, height=165), i) for i in range(23)]
    for n in range(1, 8):
        shards = [shard_subjects(subjects, (k, n)) for k in range(1, n + 1)]
        indices = sorted(subject.index for shard in shards for subject in shard)
        assert indices == list(range(23)), n
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 1/1 ") == (1, 1)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "-1/2", "a/b", "1", "1/2/3", "", "1.5/2"])
def test_bad_shard_is_rejected(text):
    with pytest.raises(InputError, match="--shard"):
        parse_shard(text)


@pytest.mark.parametrize("args,fragment", [
    (["--shard", "3/2"], "--shard 3/2: K must be in [1, N]"),
    (["--shard", "two/4"], "--shard must be K/N"),
    (["--batch-size", "0"], "--batch-size must be an integer in [1, 1024]"),
])
def test_bad_scale_flags_are_one_line_exit_2_before_any_generation(tiny_pipeline_dir, cohort, tmp_path, capsys,
                                                                   args, fragment):
    out = tmp_path / "out"
    assert generate(tiny_pipeline_dir, cohort, out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("petct generate: error:") and fragment in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_shard_flags_need_a_cohort(tiny_pipeline_dir, tmp_path, capsys):
    code = main(["generate", "--model", str(tiny_pipeline_dir), "--age", "40", "--sex", "M", "--weight", "80",
                 "--height", "180", "--shard", "1/2", "--out", str(tmp_path / "o")])
    assert code == 2 and "--shard splits a --cohort" in capsys.readouterr().err


def test_shards_and_batches_write_the_same_bytes_as_one_run(tiny_pipeline_dir, cohort, reference, tmp_path, capsys):
    out = tmp_path / "sharded"
    assert generate(tiny_pipeline_dir, cohort, out, "--shard", "1/2", "--batch-size", "2") == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a", "c", "e"]  # rows 1, 3, 5
    assert "(shard 1/2: 3 rows): 3 written" in capsys.readouterr().err
    assert generate(tiny_pipeline_dir, cohort, out, "--shard", "2/2", "--batch-size", "3") == 0
    assert subject_files(out) == subject_files(reference)
    records = [json.loads(line) for line in manifest_lines(out)]
    assert sorted(r["id"] for r in records) == ["a", "b", "c", "d", "e"]  # each row exactly once
    assert {r["id"]: r["shard"] for r in records} == {"a": "1/2", "b": "2/2", "c": "1/2", "d": "2/2", "e": "1/2"}
    # both shards' rows are in the index, whichever shard finished last; the seeds are the reference's
    assert (out / "cohort.csv").read_text() == (reference / "cohort.csv").read_text()
    assert not (out / STAGING_DIRNAME).exists()
    # what reads a generated cohort (petct evaluate, export) finds the five subjects and nothing else
    found = discover_inputs(out, role="--generated")
    assert [s.subject_id for s in found.subjects] == list("abcde") and not found.skipped


# ----------------------------------------------------------------------------- the manifest
def test_manifest_records_what_reproduces_a_row(reference, tiny_pipeline_dir):
    records = [json.loads(line) for line in manifest_lines(reference)]
    assert [r["id"] for r in records] == ["a", "b", "c", "d", "e"]
    b = records[1]
    assert b["status"] == "ok" and b["reason"] is None and b["seed"] == 101 and b["index"] == 1
    assert b["demographics"]["weight"] == 85 and b["demographics"]["sex"] == "M" and b["diagnosis"] is None
    assert b["options"]["num_inference_steps"] == 2 and b["options"]["labels"] is None
    assert b["model"] == tiny_pipeline_dir.name and b["revision"].startswith("sha256:")
    assert b["rank"] == 0 and b["world_size"] == 1 and b["host"] and b["seconds"] > 0
    assert b["threads"] == torch.get_num_threads() and b["device"] == "cpu"
    files = {entry["path"]: entry for entry in b["files"]}
    assert set(files) == {"b/ct.nii.gz", "b/pet_suv.nii.gz", "b/metadata.json"}
    for path, entry in files.items():
        assert entry["sha256"] == file_sha256(reference / path) and entry["bytes"] == (reference / path).stat().st_size
    metadata = json.loads((reference / "b" / "metadata.json").read_text())
    assert metadata["seed"] == 101 and metadata["revision"] == b["revision"]


def _append_many(path: str, writer: int, count: int) -> None:
    for i in range(count):
        append_record(path, {"id": f"w{writer}-{i}", "status": "ok", "padding": "x" * (300 + 37 * writer)})


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / MANIFEST_FILENAME
    processes = [mp.get_context("spawn").Process(target=_append_many, args=(str(path), w, 150)) for w in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 600 and all(json.loads(line)["status"] == "ok" for line in lines)
    assert len(read_manifest(path).latest) == 600


def test_a_torn_last_line_is_ignored_and_closed(tmp_path):
    path = tmp_path / MANIFEST_FILENAME
    append_record(path, {"id": "a", "status": "ok"})
    with path.open("ab") as handle:
        handle.write(b'{"id": "b", "status": "ok", "fi')  # a writer killed mid-record
    assert list(read_manifest(path).latest) == ["a"] and read_manifest(path).ignored_lines == [2]
    append_record(path, {"id": "c", "status": "failed", "reason": "x"})
    contents = read_manifest(path)
    assert list(contents.latest) == ["a", "c"] and contents.ignored_lines == [2]
    assert path.read_text().splitlines()[2] == '{"id":"c","status":"failed","reason":"x"}'


# ----------------------------------------------------------------------------- resume and --overwrite
def test_rerun_skips_verified_rows_redoes_damaged_ones_and_overwrite_regenerates(tiny_pipeline_dir, cohort,
                                                                                 reference, capsys):
    capsys.readouterr()
    before = subject_files(reference)
    inode = (reference / "a" / "ct.nii.gz").stat().st_ino
    assert generate(tiny_pipeline_dir, cohort, reference) == 0
    assert "0 written, 5 already complete, 0 failed" in capsys.readouterr().err
    assert (reference / "a" / "ct.nii.gz").stat().st_ino == inode and len(manifest_lines(reference)) == 5

    # a damaged file and a deleted folder are redone, to the same bytes; the rest is left alone
    pet = reference / "c" / "pet_suv.nii.gz"
    pet.write_bytes(pet.read_bytes()[:-10])
    for path in (reference / "d").iterdir():
        path.unlink()
    (reference / "d").rmdir()
    assert generate(tiny_pipeline_dir, cohort, reference) == 0
    assert "2 written, 3 already complete" in capsys.readouterr().err
    assert subject_files(reference) == before and len(manifest_lines(reference)) == 7
    assert (reference / "a" / "ct.nii.gz").stat().st_ino == inode

    # a changed row is redone; other settings are refused before any generation
    changed = write_cohort(cohort.parent / "changed.csv", [ROWS[0], ("b", 80, "M", 90, 178, ""), *ROWS[2:]])
    assert generate(tiny_pipeline_dir, changed, reference) == 0
    assert "1 written, 4 already complete" in capsys.readouterr().err
    assert generate(tiny_pipeline_dir, cohort, reference) == 0  # and back
    capsys.readouterr()
    lines = len(manifest_lines(reference))
    assert generate(tiny_pipeline_dir, cohort, reference, "--sr-steps", "3") == 2
    err = capsys.readouterr().err.strip()
    assert "generated with other settings" in err and "sr_num_inference_steps 2, now 3" in err
    assert "--overwrite" in err and len(err.splitlines()) == 1 and len(manifest_lines(reference)) == lines

    assert generate(tiny_pipeline_dir, cohort, reference, "--overwrite") == 0
    assert "5 written, 0 already complete" in capsys.readouterr().err
    assert (reference / "a" / "ct.nii.gz").stat().st_ino != inode and subject_files(reference) == before


# ----------------------------------------------------------------------------- a failing row
def test_a_failing_row_is_recorded_and_the_others_are_written(tiny_pipeline_dir, cohort, reference, tmp_path,
                                                              monkeypatch, capsys):
    from petct_pipeline import PETCTPipeline

    original = PETCTPipeline.super_resolve

    def refuse_tall(self, low_res, subject, *args, **kwargs):
        if subject.height == 185:
            raise MemoryError("cannot allocate 96 GiB for the SR chunk")
        return original(self, low_res, subject, *args, **kwargs)

    monkeypatch.setattr(PETCTPipeline, "super_resolve", refuse_tall)
    out = tmp_path / "failing"
    assert generate(tiny_pipeline_dir, cohort, out, "--batch-size", "2") == 1  # d shares a batch with c
    err = capsys.readouterr().err
    assert "row 'd' failed: MemoryError: cannot allocate 96 GiB" in err
    assert "4 written, 0 already complete, 1 failed; 4 of 5 rows" in err and "reasons in" in err
    latest = read_manifest(out / MANIFEST_FILENAME).latest
    assert latest["d"]["status"] == "failed" and latest["d"]["reason"].startswith("MemoryError") and not latest["d"][
        "files"]
    assert not (out / "d").exists()
    assert [line.split(",")[0] for line in (out / "cohort.csv").read_text().splitlines()] == ["id", "a", "b", "c", "e"]
    expected = {k: v for k, v in subject_files(reference).items() if not k.startswith("d/")}
    assert subject_files(out) == expected

    monkeypatch.setattr(PETCTPipeline, "super_resolve", original)  # the cause is gone: a rerun does that row only
    assert generate(tiny_pipeline_dir, cohort, out) == 0
    assert "1 written, 4 already complete, 0 failed" in capsys.readouterr().err
    assert subject_files(out) == subject_files(reference)
    assert (out / "cohort.csv").read_text() == (reference / "cohort.csv").read_text()


# ----------------------------------------------------------------------------- kill -9
KILLER = """
import os, signal, sys
import petct_pipeline.pipeline_output as output
from petct_pipeline.cli import main

calls, save_nifti = [0], output.save_nifti

def dying(*args, **kwargs):  # kill -9 while the third row's PET is being written
    calls[0] += 1
    if calls[0] == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return save_nifti(*args, **kwargs)

output.save_nifti = dying
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_midway_then_rerun_finishes_with_identical_files(tiny_pipeline_dir, cohort, reference, tmp_path,
                                                                capsys):
    out = tmp_path / "killed"
    command = [sys.executable, "-c", KILLER, "generate", "--model", str(tiny_pipeline_dir), "--cohort", str(cohort),
               "--out", str(out), "--seed", "100", *FAST]
    killed = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["a", "b"]
    assert list((out / STAGING_DIRNAME / "new" / "c").iterdir())  # c was half written, and nowhere visible
    with (out / MANIFEST_FILENAME).open("ab") as handle:
        handle.write(b'{"id":"c","status":"ok","files":[{"pa')  # as if killed inside the record's write too
    written_before = {row: (out / row / "ct.nii.gz").stat().st_ino for row in ("a", "b")}
    capsys.readouterr()

    assert generate(tiny_pipeline_dir, cohort, out) == 0
    assert "3 written, 2 already complete, 0 failed" in capsys.readouterr().err
    assert subject_files(out) == subject_files(reference)
    assert {row: (out / row / "ct.nii.gz").stat().st_ino for row in ("a", "b")} == written_before
    contents = read_manifest(out / MANIFEST_FILENAME)
    assert contents.ignored_lines == [3] and len(contents.records) == 5
    assert {row: record["status"] for row, record in contents.latest.items()} == dict.fromkeys("abcde", "ok")
    assert not (out / STAGING_DIRNAME).exists()
    assert (out / "cohort.csv").read_text() == (reference / "cohort.csv").read_text()


# ----------------------------------------------------------------------------- two gloo ranks
FAILING_WORKERS = """
import os
if os.environ.get("RANK") is not None:  # the launched workers, not the launcher: row d (185 cm) runs out of memory
    from petct_pipeline.pipeline_petct import PETCTPipeline

    original = PETCTPipeline.super_resolve

    def refuse_tall(self, low_res, subject, *args, **kwargs):
        if subject.height == 185:
            raise MemoryError("cannot allocate 96 GiB for the SR chunk")
        return original(self, low_res, subject, *args, **kwargs)

    PETCTPipeline.super_resolve = refuse_tall
"""


@pytest.mark.distributed
def test_two_gloo_ranks_write_the_same_bytes_as_one_process(tiny_pipeline_dir, cohort, tmp_path):
    common = ["generate", "--model", str(tiny_pipeline_dir), "--cohort", str(cohort), "--seed", "100", *FAST]
    one = subprocess.run([sys.executable, "-m", "petct_pipeline", *common, "--out", str(tmp_path / "one")],
                         env=env(threads=1), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "petct_pipeline", *common, "--out", str(tmp_path / "two")]
    variables = {**env(threads=1), "ACCELERATE_USE_CPU": "true"}

    def two_ranks(*extra: str, environment=variables) -> subprocess.CompletedProcess:
        return subprocess.run([*launch, *extra], env=environment, capture_output=True, text=True, timeout=600)

    two = two_ranks("--batch-size", "2")
    assert two.returncode == 0, two.stderr[-6000:]
    assert subject_files(tmp_path / "two") == subject_files(tmp_path / "one")
    assert (tmp_path / "two" / "cohort.csv").read_text() == (tmp_path / "one" / "cohort.csv").read_text()
    records = [json.loads(line) for line in manifest_lines(tmp_path / "two")]
    assert sorted(r["id"] for r in records) == list("abcde") and {r["world_size"] for r in records} == {2}
    assert {r["rank"] for r in records} == {0, 1} and {r["threads"] for r in records} == {1}
    assert two.stderr.count("5 written, 0 already complete, 0 failed") == 1  # the main process's summary
    assert "/5 [" in two.stderr and "/3 [" not in two.stderr and "/2 [" not in two.stderr  # one bar, whole cohort

    # a row failing on one rank: the others are written, every rank finishes, the launch exits 1 with one summary
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAILING_WORKERS)
    failing = two_ranks("--overwrite", environment={**variables,
                                                    "PYTHONPATH": f"{site}{os.pathsep}{variables['PYTHONPATH']}"})
    assert failing.returncode == 1, failing.stderr[-6000:]
    assert failing.stderr.count("row 'd' failed: MemoryError") == 1
    assert failing.stderr.count("4 written, 0 already complete, 1 failed") == 1
    latest = read_manifest(tmp_path / "two" / MANIFEST_FILENAME).latest
    assert latest["d"]["status"] == "failed" and not (tmp_path / "two" / "d").exists()

    again = two_ranks()  # resumed: only the failed row is generated
    assert again.returncode == 0, again.stderr[-6000:]
    assert "1 written, 4 already complete, 0 failed" in again.stderr
    assert subject_files(tmp_path / "two") == subject_files(tmp_path / "one")


# ----------------------------------------------------------------------------- a row alone
def test_a_cohort_row_is_the_same_bytes_as_that_row_alone_with_labels_and_lesions(tiny_pipeline_dir, tmp_path):
    cohort = tmp_path / "diagnoses.csv"
    cohort.write_text("id,age,sex,weight,height,seed,diagnosis\nill,58,M,80,178,3,LYMPHOMA\nwell,44,F,62,166,,\n")
    out = tmp_path / "cohort"
    assert main(["generate", "--model", str(tiny_pipeline_dir), "--cohort", str(cohort), "--out", str(out),
                 "--steps", "2", "--sr-steps", "2", "--batch-size", "2"]) == 0
    alone = tmp_path / "alone"
    assert main(["generate", "--model", str(tiny_pipeline_dir), "--age", "58", "--sex", "M", "--weight", "80",
                 "--height", "178", "--seed", "3", "--diagnosis", "LYMPHOMA", "--steps", "2", "--sr-steps", "2",
                 "--out", str(alone)]) == 0
    files = subject_files(out)
    assert {"ill/organs.nii.gz", "ill/lesions.nii.gz", "ill/lesions.json", "well/organs.nii.gz"} <= set(files)
    assert {name[len("ill/"):]: sha for name, sha in files.items() if name.startswith("ill/")} == {
        path.name: file_sha256(path) for path in alone.iterdir()}
    latest = read_manifest(out / MANIFEST_FILENAME).latest
    assert latest["ill"]["diagnosis"] == "LYMPHOMA" and latest["well"]["diagnosis"] is None
    assert latest["ill"]["options"]["labels"].startswith("model:")
    assert (out / "cohort.csv").read_text().splitlines()[1:] == ["ill,58,M,80,178,3,LYMPHOMA",
                                                                 "well,44,F,62,166,1,NEGATIVE"]
    # petct export reads the cohort folder as generate wrote it (manifest.jsonl and cohort.csv beside the rows)
    exported = tmp_path / "autopet"
    assert main(["export", "--format", "autopet", "--input", str(out), "--out", str(exported)]) == 0
    studies = discover_inputs(exported).subjects
    assert len(studies) == 2 and sorted(s.diagnosis for s in studies) == ["LYMPHOMA", "NEGATIVE"]
