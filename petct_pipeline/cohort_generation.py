"""Generating a cohort at scale: sharded over processes and jobs, resumable, one failing row isolated.

``petct generate --cohort C.csv --out DIR`` runs here. The rows are planned first (each row's seed
is its ``seed`` or the base seed + its row index, so it never depends on how the work is split),
then split twice: ``--shard K/N`` keeps every N-th row from the K-th (a job array's task), and the
processes of an ``accelerate launch`` (torch.distributed, one per GPU, several nodes with
accelerate's multi-node flags) split what is left to do. Every process loads the pipeline once and
generates its rows ``--batch-size`` at a time, one pipeline call per batch with one generator per
row, so a row's files are the same bytes however the cohort is split or batched, and the same as
``petct generate`` for that row alone (on the same device type and, on CPU, the same number of
torch threads per process: see docs/usage.md).

A row is written into ``DIR/.petct-staging/new/<id>`` and renamed to ``DIR/<id>`` when all its files
are there, so ``DIR/<id>`` is never partial; then its record (files with sha256, seconds, rank, host,
model, revision, ...) is appended to ``DIR/manifest.jsonl`` (:mod:`petct_pipeline.manifest`). A rerun
skips rows that are complete and verified, redoes the rest (``--overwrite``: all). A row whose
generation raises is recorded with its reason, the others go on, and the run exits 1 with a summary.

Why stage 1 is not one batched network call across rows: the CPU kernels of a batch of 2R volumes
(conv3d, linear) sum in another order than those of a batch of 2, so a row's stage-1 volume would
change in the last bits with the batch it landed in (by up to 1.7e-6 in model space on the shipped
model; benchmarks/bench_cohort.py measures it and what such batching would buy: x1.8 for stage 1 at a batch of 8).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .demographics import Demographics
from .errors import InputError
from .manifest import MANIFEST_FILENAME, RecordReader, append_record, file_sha256, locked, read_manifest, verify_record

__all__ = ["Subject", "Generation", "parse_shard", "check_batch_size", "plan_subjects", "shard_subjects",
           "generate_outputs", "run_cohort", "STAGING_DIRNAME", "COHORT_INDEX_FILENAME"]

logger = logging.getLogger(__name__)

STAGING_DIRNAME = ".petct-staging"
COHORT_INDEX_FILENAME = "cohort.csv"
COHORT_COLUMNS = ("id", "age", "sex", "weight", "height", "seed")
#: how long a process waits at the end for the slowest one (torch.distributed's default, 30 min, is shorter
#: than one process's share of a large cohort can outlast another's)
PROCESS_GROUP_TIMEOUT_S = 7 * 24 * 3600
_REASON_CHARS = 500


@dataclass(frozen=True)
class Subject:
    """One planned cohort row: its index in the file (0-based), id, demographics, seed and diagnosis."""

    index: int
    id: str
    demographics: Demographics
    seed: int
    diagnosis: str | None = None

    def request(self) -> dict[str, Any]:
        """What the row asks for, as its manifest record stores it (a changed row is redone)."""
        return {"demographics": self.demographics.to_dict(), "seed": self.seed, "diagnosis": self.diagnosis}


@dataclass(frozen=True)
class Generation:
    """How every subject is made: the pipeline call's arguments, the organ segmenter (None: no labels), lesions."""

    call_kwargs: dict[str, Any] = field(default_factory=dict)
    segmenter: Any = None
    lesion_specs: list[Any] | None = None

    def options(self, pipe: Any) -> dict[str, Any]:
        """The settings a row's files depend on besides its own request, with the pipeline's defaults resolved."""
        from .pipeline_petct import (
            DEFAULT_BACK_PROJECTION_ITERATIONS,
            DEFAULT_SR_CHUNK_OVERLAP,
            DEFAULT_SR_CHUNK_SIZE,
            DEFAULT_SR_STEPS,
            DEFAULT_STEPS,
            default_guidance_scale,
        )

        kwargs = self.call_kwargs
        prior_scale = kwargs.get("prior_scale", pipe.default_prior_scale)
        lesions = None
        if self.lesion_specs is not None:
            requested = json.dumps([dict(spec.requested or {}) for spec in self.lesion_specs], sort_keys=True)
            lesions = "sha256:" + hashlib.sha256(requested.encode()).hexdigest()
        return _plain({
            "num_inference_steps": kwargs.get("num_inference_steps", DEFAULT_STEPS),
            "sr_num_inference_steps": kwargs.get("sr_num_inference_steps", DEFAULT_SR_STEPS),
            "guidance_scale": kwargs.get("guidance_scale", default_guidance_scale(prior_scale)),
            "prior_scale": prior_scale,
            "sr_noise_level": pipe.config.sr_noise_level,
            "sr_chunk_size": kwargs.get("sr_chunk_size", DEFAULT_SR_CHUNK_SIZE),
            "sr_chunk_overlap": DEFAULT_SR_CHUNK_OVERLAP,
            "back_projection_iterations": kwargs.get("back_projection_iterations", DEFAULT_BACK_PROJECTION_ITERATIONS),
            "labels": self.segmenter.describe() if self.segmenter is not None else None,
            "lesions": lesions,
        })


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back, so settings compare equal to those read from a manifest."""
    return json.loads(json.dumps(value))


# ----------------------------------------------------------------------------- planning
def parse_shard(text: str) -> tuple[int, int]:
    """``--shard K/N`` (1-based) as (K, N), or ``InputError`` naming the flag and the value."""
    parts = str(text).strip().split("/")
    try:
        k, n = (int(part) for part in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        k = n = None
    if k is None or n is None:
        raise InputError(f"--shard must be K/N with integers 1 <= K <= N (shard K of N, 1-based), got {text!r}")
    if n < 1 or not 1 <= k <= n:
        raise InputError(f"--shard {text}: K must be in [1, N] and N >= 1 (shard K of N, 1-based)")
    return k, n


def check_batch_size(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise InputError(f"--batch-size must be an integer in [1, 1024], got {value!r}")
    return value


def plan_subjects(rows: Sequence[Any], base_seed: int, diagnosis: str | None = None) -> list[Subject]:
    """One ``Subject`` per cohort row (``cohort.CohortRow``): its seed, else ``base_seed`` + its row index."""
    from .seeds import check_seed

    return [Subject(index, row.id, row.demographics,
                    row.seed if row.seed is not None else check_seed(base_seed + index, "--seed + row index"),
                    row.diagnosis or diagnosis)
            for index, row in enumerate(rows)]


def shard_subjects(subjects: Sequence[Subject], shard: tuple[int, int] | None) -> list[Subject]:
    """Shard K of N: the rows whose index is K-1 modulo N (every row in exactly one shard)."""
    if shard is None:
        return list(subjects)
    k, n = shard
    return [subject for subject in subjects if subject.index % n == k - 1]


# ----------------------------------------------------------------------------- generation
def generate_outputs(pipe: Any, subjects: Sequence[Subject], generation: Generation) -> list[Any]:
    """One ``PETCTPipelineOutput`` per subject: one pipeline call with a generator per subject, then labels
    and lesions per subject (lesions seeded by the subject's seed), as ``petct generate`` makes a subject."""
    import torch

    from .ground_truth import add_lesions
    from .organ_labels import label_organs

    generators = [torch.Generator(device="cpu").manual_seed(subject.seed) for subject in subjects]
    output = pipe([subject.demographics for subject in subjects], generator=generators, **generation.call_kwargs)
    outputs = []
    for index, subject in enumerate(subjects):
        one = output.subject(index)
        if generation.segmenter is not None:
            label_organs(one, generation.segmenter)
        if generation.lesion_specs is not None or subject.diagnosis is not None:
            add_lesions(one, subject.diagnosis, generation.lesion_specs, [subject.seed], generation.segmenter)
        outputs.append(one)
    return outputs


# ----------------------------------------------------------------------------- the run
@dataclass
class _Outcome:
    id: str
    status: str  # "ok" | "failed"
    reason: str | None = None


class _Progress:
    """One bar for the whole cohort on the main process, fed by the manifest records of this run (all ranks)."""

    def __init__(self, reader: RecordReader | None, total: int) -> None:
        self.reader, self.run_id, self.bar, self.thread = reader, None, None, None
        self.stop = threading.Event()
        if reader is not None and total > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="petct generate", unit="subject", file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5 if sys.stderr.isatty() else 10.0)

    def start(self, run_id: str) -> None:
        self.run_id = run_id
        if self.bar is not None:
            self.thread = threading.Thread(target=self._poll, name="petct-progress", daemon=True)
            self.thread.start()

    def _update(self) -> None:
        done = sum(record.get("run") == self.run_id for record in self.reader.new_records())
        if done:
            self.bar.update(done)

    def _poll(self) -> None:
        while not self.stop.wait(0.5):
            self._update()

    def close(self) -> None:
        if self.bar is None:
            return
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        self._update()
        self.bar.close()


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return reason[:_REASON_CHARS]


def _free_memory(device: Any) -> None:
    gc.collect()
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.empty_cache()


class _CohortRun:
    """The state of one process of a cohort run: where it writes, what it records, which rank it is."""

    def __init__(self, pipe: Any, generation: Generation, out: Path, state: Any, device: Any,
                 shard: tuple[int, int] | None) -> None:
        import torch

        self.pipe, self.generation, self.out, self.state, self.device = pipe, generation, out, state, device
        self.manifest = out / MANIFEST_FILENAME
        self.options = generation.options(pipe)
        o = self.options
        identity = pipe.sampling_record(None, o["num_inference_steps"], o["sr_num_inference_steps"],
                                        o["guidance_scale"], o["sr_noise_level"], o["back_projection_iterations"],
                                        o["prior_scale"])
        self.model, self.revision = identity["model"], identity["revision"]
        self.context = {"rank": state.process_index, "world_size": state.num_processes,
                        "shard": None if shard is None else f"{shard[0]}/{shard[1]}", "host": socket.gethostname(),
                        "device": str(device), "threads": torch.get_num_threads(), "version": __version__}
        self.run_id: str | None = None

    # ------------------------------------------------------------ what is done
    def settings_mismatch(self, record: dict[str, Any]) -> str | None:
        for key, current in (("model", self.model), ("revision", self.revision)):
            if record.get(key) != current:
                return f"{key} {record.get(key)!r}, now {current!r}"
        recorded = record.get("options") or {}
        for key, current in self.options.items():
            if recorded.get(key) != current:
                return f"{key} {recorded.get(key)!r}, now {current!r}"
        return None

    def check_settings(self, latest: dict[str, dict[str, Any]], subjects: Sequence[Subject]) -> None:
        """Refuse to mix settings in one folder: rows written with other ones need --overwrite or another --out."""
        stale = [(subject.id, why) for subject in subjects if (record := latest.get(subject.id)) is not None
                 and record.get("status") == "ok" and (why := self.settings_mismatch(record))]
        if stale:
            first, why = stale[0]
            raise InputError(f"{self.out}: {len(stale)} row(s) were generated with other settings (row {first!r}: "
                             f"{why}); pass --overwrite to regenerate them, or choose another --out")

    def pending(self, subject: Subject, latest: dict[str, dict[str, Any]], overwrite: bool) -> str | None:
        """Why ``subject`` must be (re)generated, None when it is complete and verified."""
        if overwrite:
            return "--overwrite"
        record = latest.get(subject.id)
        if record is not None and record.get("status") == "ok" and (
                {key: record.get(key) for key in ("demographics", "seed", "diagnosis")} != _plain(subject.request())):
            return "its cohort row changed"
        return verify_record(record, self.out)

    # ------------------------------------------------------------ writing
    def record(self, subject: Subject, status: str, seconds: float, files: list[dict[str, Any]] | None = None,
               reason: str | None = None) -> None:
        record = {"id": subject.id, "index": subject.index, "status": status, "reason": reason,
                  **_plain(subject.request()), "options": self.options, "model": self.model,
                  "revision": self.revision, "files": files or [], "seconds": round(seconds, 3), **self.context,
                  "run": self.run_id, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        append_record(self.manifest, record)

    def write(self, subject: Subject, output: Any) -> list[dict[str, Any]]:
        """Save into the staging folder, hash, then rename onto ``DIR/<id>``; returns the file entries."""
        staging = self.out / STAGING_DIRNAME / "new" / subject.id
        old = self.out / STAGING_DIRNAME / "old" / subject.id
        for leftover in (staging, old):  # a process killed while writing this row
            if leftover.exists():
                shutil.rmtree(leftover)
        try:
            output.save(staging)
            files = sorted(path for path in staging.rglob("*") if path.is_file())
            entries = [{"path": f"{subject.id}/{path.relative_to(staging).as_posix()}", "sha256": file_sha256(path),
                        "bytes": path.stat().st_size} for path in files]
        except BaseException:  # a full disk or a refused write: the half-saved row goes with the failure
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.discard(subject)
        os.rename(staging, self.out / subject.id)
        return entries

    def discard(self, subject: Subject) -> None:
        """Remove ``DIR/<id>`` (an older, unverified or superseded version): renamed away first, never half-deleted."""
        final, old = self.out / subject.id, self.out / STAGING_DIRNAME / "old" / subject.id
        if final.is_dir() and not final.is_symlink():
            if old.exists():
                shutil.rmtree(old)
            old.parent.mkdir(parents=True, exist_ok=True)
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        elif final.exists() or final.is_symlink():
            final.unlink()

    def fail(self, subject: Subject, error: BaseException, seconds: float) -> _Outcome:
        """Record the failure; ``DIR/<id>`` goes too, so a row folder exists exactly when its latest record is ok."""
        reason = _reason(error)
        logger.info("row %r failed", subject.id, exc_info=error)
        try:
            self.discard(subject)
        except OSError as error:
            logger.warning("row %r: could not remove %s: %s", subject.id, self.out / subject.id, error)
        self.record(subject, "failed", seconds, reason=reason)
        return _Outcome(subject.id, "failed", reason)

    def batch(self, subjects: list[Subject]) -> list[_Outcome]:
        """Generate and write ``subjects``; a failing batch is retried row by row, so only the bad row fails."""
        started = time.perf_counter()
        try:
            outputs = generate_outputs(self.pipe, subjects, self.generation)
        except Exception as error:  # one row's failure (impossible anatomy, out of memory) must not stop the rest
            _free_memory(self.device)
            if len(subjects) > 1:
                logger.info("a batch of %d failed (%s); generating its rows one at a time", len(subjects),
                            _reason(error))
                return [outcome for subject in subjects for outcome in self.batch([subject])]
            return [self.fail(subjects[0], error, time.perf_counter() - started)]
        share = (time.perf_counter() - started) / len(subjects)
        outcomes = []
        for subject, output in zip(subjects, outputs):
            written = time.perf_counter()
            try:
                files = self.write(subject, output)
            except Exception as error:
                outcomes.append(self.fail(subject, error, share + time.perf_counter() - written))
                continue
            self.record(subject, "ok", share + time.perf_counter() - written, files)
            outcomes.append(_Outcome(subject.id, "ok"))
            logger.info("wrote %s", self.out / subject.id)
            print(self.out / subject.id, flush=True)
        return outcomes

    # ------------------------------------------------------------ the index
    def write_index(self, subjects: Sequence[Subject]) -> int:
        """``cohort.csv``: the cohort's rows whose latest record is ok with these settings, in file order."""
        import csv

        from .io import atomic_path

        with locked(self.manifest):  # the latest index wins: no record lands between reading and renaming
            latest = read_manifest(self.manifest).latest
            present = [subject for subject in subjects if (record := latest.get(subject.id)) is not None
                       and record.get("status") == "ok" and not self.settings_mismatch(record)
                       and {key: record.get(key) for key in ("demographics", "seed", "diagnosis")}
                       == _plain(subject.request())]
            with_diagnosis = any(subject.diagnosis for subject in present)
            with atomic_path(self.out / COHORT_INDEX_FILENAME) as tmp, open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow((*COHORT_COLUMNS, "diagnosis") if with_diagnosis else COHORT_COLUMNS)
                for subject in present:
                    d = subject.demographics
                    row = [subject.id, f"{d.age:g}", d.sex, f"{d.weight:g}", f"{d.height:g}", subject.seed]
                    writer.writerow([*row, subject.diagnosis or "NEGATIVE"] if with_diagnosis else row)
        return len(present)


def _remove_empty_staging(out: Path) -> None:
    """Drop the staging folders once empty (a concurrent ``--shard`` job that still uses them keeps them)."""
    root = out / STAGING_DIRNAME
    for folder in (root / "new", root / "old", root):
        try:
            folder.rmdir()
        except OSError:
            pass


def run_cohort(pipe: Any, subjects: Sequence[Subject], generation: Generation, out: Path, *, state: Any,
               device: Any, shard: tuple[int, int] | None = None, batch_size: int = 1, overwrite: bool = False,
               cohort_name: str = "cohort") -> int:
    """Generate this process's share of ``subjects`` (the whole cohort) into ``out``; 0, or 1 if any row failed.

    ``state`` is accelerate's ``PartialState`` (one process when not launched); every process calls this.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    run = _CohortRun(pipe, generation, out, state, device, shard)
    selected = shard_subjects(subjects, shard)
    by_index = {subject.index: subject for subject in selected}
    latest = read_manifest(run.manifest).latest
    if not overwrite:
        run.check_settings(latest, subjects)  # every process reads the same file: all refuse alike

    # 1. What is left to do: each process verifies a share of the shard, then all of them know the whole list
    rank, world = state.process_index, state.num_processes
    todo_here, done_here = [], 0
    for subject in selected[rank::world]:
        why = run.pending(subject, latest, overwrite)
        if why is None:
            done_here += 1
        else:
            logger.info("row %r: to generate (%s)", subject.id, why)
            todo_here.append(subject.index)
    todo = [by_index[index] for index in sorted(gather_object(todo_here))]
    done = sum(gather_object([done_here]))
    reader = RecordReader(run.manifest) if state.is_main_process else None
    progress = _Progress(reader, len(todo))
    run.run_id = broadcast_object_list([uuid.uuid4().hex[:16] if state.is_main_process else None])[0]
    progress.start(run.run_id)
    if state.is_main_process and done:
        logger.info("%d row(s) already complete and verified: skipped", done)

    # 2. This process's rows, a batch at a time
    mine = todo[rank::world]
    outcomes: list[_Outcome] = []
    try:
        for start in range(0, len(mine), batch_size):
            outcomes += run.batch(mine[start : start + batch_size])
        state.wait_for_everyone()
    finally:
        progress.close()

    # 3. Every process learns every outcome; the main one writes the index and the summary
    everything = gather_object([(outcome.id, outcome.status, outcome.reason) for outcome in outcomes])
    failed = [(row_id, reason) for row_id, status, reason in everything if status == "failed"]
    if state.is_main_process:
        _remove_empty_staging(out)
        indexed = run.write_index(subjects)
        for row_id, reason in failed:
            print(f"petct generate: row {row_id!r} failed: {reason}", file=sys.stderr)
        where = "" if shard is None else f" (shard {shard[0]}/{shard[1]}: {len(selected)} rows)"
        print(f"petct generate: {cohort_name}{where}: {len(everything) - len(failed)} written, {done} already "
              f"complete, {len(failed)} failed; {indexed} of {len(subjects)} rows in {out / COHORT_INDEX_FILENAME}"
              + (f"; reasons in {run.manifest}" if failed else ""), file=sys.stderr, flush=True)
    state.wait_for_everyone()
    return 1 if failed else 0
