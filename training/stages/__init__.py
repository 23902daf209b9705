"""One module per training stage; ``training/train.py --stage NAME`` imports ``training.stages.NAME``.

A stage module defines a :class:`Stage` subclass and exposes it as ``STAGE``. The
generic loop in train.py owns everything else (accelerate, optimiser, EMA, checkpoints,
resume, logging); a stage only says what its options, data, model, loss, validation images
and saved components are. Adding a stage (e.g. ``seg`` for an organ segmenter) means adding
``training/stages/seg.py`` with ``STAGE = SegStage`` (and its options dataclass), and naming
its config section in ``training.config.STAGE_SECTIONS``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from petct_pipeline.data.cache import CacheIndex, build_cache
from petct_pipeline.data.preprocess import PreprocessConfig
from petct_pipeline.data.study import ScanResult
from petct_pipeline.errors import InputError, InputTypeError

from ..config import TrainConfig
from ..options import from_mapping
from ..stage_options import GridOptions

__all__ = ["Stage", "get_stage", "available_stages", "build_scheduler", "EDM_SCHEDULERS"]

logger = logging.getLogger(__name__)

EDM_SCHEDULERS = ("EDMDPMSolverMultistepScheduler", "EDMEulerScheduler")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def available_stages() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_stage(name: str) -> type[Stage]:
    """The Stage class of ``training/stages/<name>.py``; ValueError naming the available stages."""
    stages = available_stages()
    if not isinstance(name, str) or not _NAME.match(name) or name not in stages:
        raise InputError(f"stage must be one of {stages}, got {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    stage = getattr(module, "STAGE", None)
    if stage is None or not (isinstance(stage, type) and issubclass(stage, Stage)):
        raise InputTypeError(f"training/stages/{name}.py must define STAGE = <a Stage subclass>")
    return stage


def build_scheduler(spec: dict[str, Any] | None, where: str):
    """A diffusers EDM scheduler from ``{"class": name, **kwargs}`` (default EDMDPMSolverMultistepScheduler)."""
    import diffusers

    spec = dict(spec or {})
    name = spec.pop("class", "EDMDPMSolverMultistepScheduler")
    if name not in EDM_SCHEDULERS:
        raise InputError(f"{where}.scheduler.class must be one of {EDM_SCHEDULERS}, got {name!r}")
    cls = getattr(diffusers, name)
    import inspect

    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in {where}.scheduler for {name}; allowed: {sorted(allowed)}")
    return cls(**spec)


class Stage(ABC):
    """What differs between stages. ``self.options`` is the stage's section as its ``options_type``."""

    name: ClassVar[str]
    #: frozen dataclass of the ``<name>:`` section, every default in one place (built by training.options)
    options_type: ClassVar[type]
    #: names of the saved component folders, for stage.json and export
    components: ClassVar[tuple[str, ...]]
    #: ``{attribute of the trainable module: component folder}`` that ``--init_weights`` loads
    pretrained_components: ClassVar[dict[str, str]] = {}

    def __init__(self, config: TrainConfig, accelerator) -> None:
        self.config = config
        self.options = from_mapping(self.options_type, config.stage_section(self.name), self.name)
        self.accelerator = accelerator
        self.data_info: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def preprocess_config(self, grid: GridOptions) -> PreprocessConfig:
        """The cache configuration for ``grid`` plus the shared ``data.preprocess`` options."""
        return self.config.data.preprocess_config(grid)

    def cache(self, scan: ScanResult, cache_root: Path, grid: GridOptions, num_workers: int) -> CacheIndex:
        index = build_cache(
            scan, cache_root, self.preprocess_config(grid), num_workers=num_workers,
            progress=self.accelerator.is_local_main_process,
        )
        self.data_info.setdefault("caches", []).append(str(index.directory))
        self.data_info["studies"] = len(index)
        self.data_info["skipped"] = index.skipped
        return index

    @abstractmethod
    def build_dataset(self, scan: ScanResult, cache_root: Path, num_workers: int) -> Dataset:
        """A map-style dataset indexed by ``(index, item_seed)`` tuples (see step_sampler.py)."""

    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """The trainable module (all parameters the optimiser and EMA see), freshly initialised."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one micro-batch; ``model`` is the prepared (possibly DDP-wrapped) module."""

    def init_from_pretrained(self, model: torch.nn.Module, directory: Path) -> dict[str, Any]:
        """Load the trainable components' weights from a stage output or pipeline folder (fine-tuning)."""
        from ..pretrained import init_from_pretrained

        if not self.pretrained_components:
            raise InputError(f"--init_weights is not supported by stage {self.name!r}")
        return init_from_pretrained(model, directory, self.pretrained_components)

    def enable_gradient_checkpointing(self, model: torch.nn.Module) -> None:
        for module in model.modules():
            if getattr(module, "_supports_gradient_checkpointing", False):
                module.enable_gradient_checkpointing()

    def compile_model(self, model: torch.nn.Module, backend: str = "inductor") -> None:
        """``torch.compile`` the network in place (``nn.Module.compile``: parameter names, checkpoints unchanged)."""
        getattr(model, "unet", model).compile(backend=backend)

    def validate(self, model: torch.nn.Module, step: int, out_dir: Path) -> Path | None:
        """Save validation images for ``model`` (unwrapped, EMA weights); return the file or None."""
        return None

    @abstractmethod
    def save_final(self, model: torch.nn.Module, out_dir: Path) -> dict[str, Any]:
        """save_pretrained the components into ``out_dir``; return stage facts for stage.json."""
