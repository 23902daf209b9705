"""Preprocessed-study cache: built once (multi-process), read every epoch (memory-mapped).

Layout::

    <cache_root>/<config hash>/<data set>/
        config.json              the PreprocessConfig (and the code version) that made it
        index.json               studies (key, demographics, files, grid, info), skipped studies, summary
        arrays/<key>.npy         (2, X, Y, Z) model-space CT+PET, float16 by default
        arrays/<key>_organs.npy  (X, Y, Z) uint8 organ labels, when the study has organs.nii.gz

A different configuration hashes to a different folder, so changing spacing, grid or
any option rebuilds. ``<data set>`` is the data folder's name plus a hash of its resolved
path: two data sets (training and held-out phantoms, say) never share a folder, so building
one never prunes the other's arrays from under a running training. Building the same data
set again with the same configuration only processes studies that are new or whose files
(size, mtime) or demographics changed. A study that fails preprocessing is listed in
``index.json["skipped"]`` with its reason; the build never stops for one bad study. Every
file is written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..demographics import Demographics
from ..errors import InputError
from ..io import atomic_path, read_json, write_json
from .preprocess import PREPROCESS_VERSION, PreprocessConfig, preprocess_study
from .study import ScanResult, StudyRecord

__all__ = ["build_cache", "open_cache", "CacheIndex", "CachedVolumeDataset", "cache_dir_for", "dataset_key"]

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
CONFIG_NAME = "config.json"
ARRAYS_DIR = "arrays"
INDEX_FORMAT = 1


def dataset_key(studies: ScanResult | Sequence[StudyRecord]) -> str:
    """``<folder name>-<hash of the resolved path>`` of a scan's root (or the studies' common folder)."""
    if isinstance(studies, ScanResult) and studies.root:
        root = Path(studies.root).resolve()
    else:
        records = studies.studies if isinstance(studies, ScanResult) else list(studies)
        if not records:
            return "empty"
        root = Path(os.path.commonpath([str(Path(r.directory).resolve()) for r in records]))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.name) or "root"
    return f"{name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


def cache_dir_for(cache_root: str | os.PathLike, config: PreprocessConfig,
                  studies: ScanResult | Sequence[StudyRecord]) -> Path:
    """Where ``build_cache`` puts these studies under this configuration."""
    return Path(cache_root) / config.hash / dataset_key(studies)


@dataclass
class CacheIndex:
    """A built cache: its folder, configuration, study entries and skipped studies."""

    directory: Path
    config: PreprocessConfig
    entries: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    summary: dict[str, Any]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def keys(self) -> list[str]:
        return [entry["key"] for entry in self.entries]

    def entry(self, key: str) -> dict[str, Any]:
        for entry in self.entries:
            if entry["key"] == key:
                return entry
        raise KeyError(f"study {key!r} is not in the cache {self.directory}")

    def demographics(self, index: int) -> Demographics:
        return Demographics.from_mapping(self.entries[index]["demographics"])

    def volume_path(self, index: int) -> Path:
        return self.directory / self.entries[index]["volume"]

    def load_volume(self, index: int, box: tuple[slice, slice, slice] | None = None) -> np.ndarray:
        """(2, X, Y, Z) float32 model-space volume, or the sub-box ``box`` of it (read through a memory map)."""
        array = np.load(self.volume_path(index), mmap_mode="r")
        if box is not None:
            array = array[(slice(None), *box)]
        return np.array(array, dtype=np.float32)

    def load_organs(self, index: int, box: tuple[slice, slice, slice] | None = None) -> np.ndarray | None:
        name = self.entries[index].get("organs")
        if not name:
            return None
        array = np.load(self.directory / name, mmap_mode="r")
        return np.array(array if box is None else array[box])


def open_cache(cache_dir: str | os.PathLike) -> CacheIndex:
    """Read ``<cache_dir>/index.json`` (a folder written by :func:`build_cache`)."""
    directory = Path(cache_dir)
    path = directory / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no cache index at {path}; build it with `petct prepare --data-dir ... --cache ...`")
    data = read_json(path)
    if data.get("format") != INDEX_FORMAT:
        raise InputError(f"{path}: cache index format {data.get('format')!r}, expected {INDEX_FORMAT}; rebuild it")
    config = PreprocessConfig.from_mapping(data["config"])
    return CacheIndex(directory, config, data["studies"], data["skipped"], data["summary"])


def _fingerprint(study: StudyRecord) -> str:
    parts: dict[str, Any] = {"record": {k: v for k, v in study.to_dict().items() if k != "directory"}}
    for kind, path in sorted(study.image_paths().items()):
        stat = path.stat()
        parts[kind] = [stat.st_size, stat.st_mtime_ns]
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def _process_one(record: dict[str, Any], config: dict[str, Any], directory: str) -> tuple[str, dict | None, str]:
    """Worker: preprocess one study and write its arrays; returns (key, entry or None, failure reason)."""
    study = StudyRecord.from_dict(record)
    cfg = PreprocessConfig.from_mapping(config)
    try:
        result = preprocess_study(study, cfg)
    except MemoryError:
        return study.key, None, "preprocessing: out of memory"
    except Exception as error:  # one bad study (corrupt gzip, odd header, ...) must not stop the build
        return study.key, None, f"preprocessing: {type(error).__name__}: {error}"
    arrays = Path(directory) / ARRAYS_DIR
    volume_name = f"{ARRAYS_DIR}/{study.key}.npy"
    _save_npy(result.volume.astype(cfg.dtype), arrays / f"{study.key}.npy")
    organs_name = None
    if result.organs is not None:
        organs_name = f"{ARRAYS_DIR}/{study.key}_organs.npy"
        _save_npy(result.organs, arrays / f"{study.key}_organs.npy")
    entry = {
        **study.to_dict(),
        "volume": volume_name,
        "organs": organs_name,
        "shape": list(cfg.shape),
        "spacing": cfg.spacing,
        "affine": cfg.affine.tolist(),
        "scanner_affine": result.scanner_affine.tolist(),
        "info": result.info,
    }
    return study.key, entry, ""


def build_cache(
    scan: ScanResult | Sequence[StudyRecord],
    cache_root: str | os.PathLike,
    config: PreprocessConfig,
    num_workers: int = 0,
    progress: bool = True,
) -> CacheIndex:
    """Preprocess the studies of ``scan`` into ``cache_dir_for(cache_root, config, scan)``; return its index.

    ``num_workers`` > 0 uses that many processes (spawned, so safe next to torch threads);
    0 processes in this process. Up-to-date entries of an existing index are reused.
    """
    if isinstance(scan, ScanResult):
        studies, scan_skipped, scan_summary = scan.studies, [s.to_dict() for s in scan.skipped], scan.summary()
    else:
        studies, scan_skipped, scan_summary = list(scan), [], {}
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise InputError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    directory = cache_dir_for(cache_root, config, scan)
    started = time.perf_counter()
    with _locked(directory):
        previous: dict[str, dict[str, Any]] = {}
        if (directory / INDEX_NAME).is_file():
            try:
                previous = {e["key"]: e for e in open_cache(directory).entries}
            except (ValueError, KeyError, json.JSONDecodeError) as error:
                logger.warning("ignoring unreadable cache index in %s: %s", directory, error)
        write_json({"version": PREPROCESS_VERSION, **config.to_dict()}, directory / CONFIG_NAME)

        entries: dict[str, dict[str, Any]] = {}
        todo: list[tuple[StudyRecord, str]] = []
        for study in studies:
            fingerprint = _fingerprint(study)
            old = previous.get(study.key)
            if old and old.get("fingerprint") == fingerprint and (directory / old["volume"]).is_file():
                entries[study.key] = old
            else:
                todo.append((study, fingerprint))
        logger.info("cache %s: %d studies up to date, %d to preprocess", directory, len(entries), len(todo))

        failures: list[dict[str, str]] = []
        for key, entry, reason, fingerprint, study in _run(todo, config, directory, num_workers, progress):
            if entry is None:
                logger.warning("skipping study %s: %s", study.directory, reason)
                failures.append({"path": f"{study.subject_id}/{study.study_id}", "reason": reason})
            else:
                entry["fingerprint"] = fingerprint
                entries[key] = entry

        order = [s.key for s in studies if s.key in entries]
        kept = [entries[k] for k in order]
        _remove_stale_arrays(directory, kept)
        skipped = scan_skipped + failures
        summary = {
            "studies": len(kept),
            "skipped": len(skipped),
            "skipped_in_scan": len(scan_skipped),
            "failed_preprocessing": len(failures),
            "reused": len(kept) - (len(todo) - len(failures)),
            "processed": len(todo) - len(failures),
            "seconds": round(time.perf_counter() - started, 2),
            "scan": {k: v for k, v in scan_summary.items() if k != "skipped_studies"},
        }
        index = {
            "format": INDEX_FORMAT,
            "config": config.to_dict(),
            "config_hash": config.hash,
            "preprocess_version": PREPROCESS_VERSION,
            "summary": summary,
            "studies": kept,
            "skipped": skipped,
        }
        write_json(index, directory / INDEX_NAME)
    logger.info("cache %s: %d studies, %d skipped", directory, len(kept), len(skipped))
    return CacheIndex(directory, config, kept, skipped, summary)


def _run(
    todo: list[tuple[StudyRecord, str]], config: PreprocessConfig, directory: Path, num_workers: int, progress: bool
) -> Iterator[tuple[str, dict | None, str, str, StudyRecord]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="preprocessing", unit="study", disable=not progress or not todo)
    if num_workers == 0 or len(todo) <= 1:
        for study, fingerprint in todo:
            key, entry, reason = _process_one(study.to_dict(), config.to_dict(), str(directory))
            bar.update()
            yield key, entry, reason, fingerprint, study
        bar.close()
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(num_workers, len(todo)), mp_context=context) as pool:
        futures = {
            pool.submit(_process_one, study.to_dict(), config.to_dict(), str(directory)): (study, fingerprint)
            for study, fingerprint in todo
        }
        for future in as_completed(futures):
            study, fingerprint = futures[future]
            try:
                key, entry, reason = future.result()
            except BrokenProcessPool:
                key, entry, reason = study.key, None, "preprocessing: worker process died (out of memory?)"
            bar.update()
            yield key, entry, reason, fingerprint, study
    bar.close()


def _remove_stale_arrays(directory: Path, entries: list[dict[str, Any]]) -> None:
    arrays = directory / ARRAYS_DIR
    if not arrays.is_dir():
        return
    keep = {Path(e["volume"]).name for e in entries} | {Path(e["organs"]).name for e in entries if e.get("organs")}
    for path in arrays.iterdir():
        if path.name not in keep and not path.name.startswith("."):
            path.unlink()


class CachedVolumeDataset(Dataset):
    """A torch ``Dataset`` over a built cache: item = {"volume": (2, X, Y, Z) float32, "demographics": dict, ...}.

    ``with_organs`` adds "organs" (X, Y, Z) int64 (zeros where the study has none).
    """

    def __init__(self, cache: CacheIndex | str | os.PathLike, with_organs: bool = False) -> None:
        self.cache = cache if isinstance(cache, CacheIndex) else open_cache(cache)
        self.with_organs = with_organs
        if len(self.cache) == 0:
            raise InputError(
                f"the cache {self.cache.directory} holds no usable study "
                f"({len(self.cache.skipped)} skipped; see index.json 'skipped')"
            )

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.cache.entries[index]
        item: dict[str, Any] = {
            "volume": torch.from_numpy(self.cache.load_volume(index)),
            "demographics": dict(entry["demographics"]),
            "key": entry["key"],
            "index": index,
        }
        if self.with_organs:
            organs = self.cache.load_organs(index)
            shape = tuple(entry["shape"])
            item["organs"] = torch.from_numpy(
                organs.astype(np.int64) if organs is not None else np.zeros(shape, np.int64)
            )
        return item
