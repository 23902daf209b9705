"""Training configuration files (YAML or JSON): one file describes both stages of a cascade.

Top-level keys::

    name, seed, description
    data:      layout, demographics_csv, verify, preprocess {PreprocessConfig options except
               spacing/shape}, preprocess_workers, dataloader_num_workers        -> DataOptions
    encoder:   DemographicEncoder kwargs (base stage)
    training:  defaults of the optimisation options, for every stage             -> TrainingOptions
    base:      grid {spacing, shape}, unet, scheduler, loss {P_mean, P_std}, cfg_dropout,
               validation {...}, train {overrides of `training`}
    sr:        grid, patch_size, unet, scheduler, loss, noise_augmentation, validation, train
    seg:       grid, organs, unet, loss, augment, validation, train

The shared sections are checked when the file is read; a stage section is checked by its
stage (``training/stages/<stage>.py`` builds its own options dataclass from it), so a
config may hold the sections of stages it is not used for. Unknown keys raise InputError
naming the key and the allowed ones, so a typo never silently trains with a default.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from petct_pipeline.data.preprocess import PreprocessConfig
from petct_pipeline.errors import InputError

from .optimization import EMAOptions, TrainingOptions
from .options import check_int, check_keys, check_mapping, from_mapping, override
from .stage_options import GridOptions

__all__ = ["load_config", "training_options", "TrainConfig", "DataOptions", "TrainingOptions", "EMAOptions"]

STAGE_SECTIONS = ("base", "sr", "seg")
TOP_LEVEL_KEYS = ("name", "seed", "description", "data", "encoder", "training", *STAGE_SECTIONS)
#: data.preprocess takes every PreprocessConfig option but the grid, which each stage sets
PREPROCESS_KEYS = tuple(f.name for f in fields(PreprocessConfig) if f.name not in ("spacing", "shape"))


@dataclass(frozen=True)
class DataOptions:
    """The ``data`` section: how the data folder is read and preprocessed, shared by every stage."""

    layout: str = "auto"  # AutoPET or nnU-Net layout (petct_pipeline.data.scan_dataset)
    demographics_csv: str | None = None  # weight/height table; default DATA/demographics.csv
    verify: str = "header"
    preprocess: dict[str, Any] = field(default_factory=dict)
    preprocess_workers: int = 1
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        check_keys(self.preprocess, PREPROCESS_KEYS, "data.preprocess")
        check_int(self.preprocess_workers, "data.preprocess_workers", 0)
        check_int(self.dataloader_num_workers, "data.dataloader_num_workers", 0)

    def preprocess_config(self, grid: GridOptions) -> PreprocessConfig:
        """The cache configuration of ``grid`` with these preprocessing options (checked there)."""
        return PreprocessConfig.from_mapping({**self.preprocess, "spacing": grid.spacing, "shape": grid.shape})


@dataclass(frozen=True)
class TrainConfig:
    """One config file: the shared sections typed, the stage sections as read (their stage checks them)."""

    path: Path
    name: str
    seed: int = 0
    description: str | None = None
    data: DataOptions = field(default_factory=DataOptions)
    encoder: dict[str, Any] = field(default_factory=dict)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int(self.seed, "seed", 0)

    def stage_section(self, stage: str) -> dict[str, Any]:
        """The ``<stage>:`` section; ValueError if the config has none."""
        if stage not in self.stages:
            raise InputError(f"config {self.path} has no '{stage}:' section for --stage {stage}")
        return self.stages[stage]


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError("YAML configs need pyyaml: pip install 'petct-diffusion[train]'") from None
        data = yaml.safe_load(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        raise InputError(f"config must be .yaml, .yml or .json, got {path.name}")
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a mapping at the top level")
    return data


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read and check a config file (the shared sections; each stage checks its own section)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = _read(path)
    check_keys(raw, TOP_LEVEL_KEYS, f"{path.name} (top level)")
    raw = {key: value for key, value in raw.items() if value is not None}  # an empty YAML section: the defaults
    stages = {name: copy.deepcopy(raw.pop(name)) for name in STAGE_SECTIONS if name in raw}
    for name, section in stages.items():
        check_mapping(section, name)
    return from_mapping(TrainConfig, {"name": path.stem, **raw, "path": path, "stages": stages}, "")


def training_options(config: TrainConfig, stage: str) -> TrainingOptions:
    """The ``training`` defaults overridden by ``<stage>.train`` (checked)."""
    return override(config.training, config.stages.get(stage, {}).get("train"), f"{stage}.train")
