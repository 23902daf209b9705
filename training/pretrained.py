"""Start a stage from saved weights (``train.py --init_weights``): fine-tuning without the old run's state.

A finished stage output and an exported pipeline folder both hold one save_pretrained
folder per component (``unet/``, ``demographic_encoder/``, ``sr_unet/`` ...), so either can
seed a new run. Only the weights are taken; the optimiser, learning-rate schedule and EMA
start fresh, which is what a fine-tune (e.g. with another loss weighting) wants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from petct_pipeline.errors import InputError

__all__ = ["architecture_differences", "load_component", "load_component_weights", "init_from_pretrained"]


def architecture_differences(module: torch.nn.Module, saved: dict[str, Any]) -> list[str]:
    """``key: config X, saved Y`` for each config entry of ``module`` that a saved config.json sets otherwise."""
    current = dict(getattr(module, "config", {}) or {})
    differences = []
    for key, value in sorted(current.items()):
        if key.startswith("_") or key not in saved:
            continue
        left, right = json.loads(json.dumps(value)), saved[key]  # tuples vs lists
        if left != right:
            differences.append(f"{key}: config {left!r}, saved {right!r}")
    return differences


def load_component(folder: Path) -> torch.nn.Module:
    """The model saved in a save_pretrained ``folder``, of the petct_pipeline.models class its config names."""
    from petct_pipeline import models

    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (expected a save_pretrained folder)")
    name = json.loads(config_path.read_text()).get("_class_name")
    if name not in models.__all__:
        raise InputError(f"{folder}: model class {name!r} is not one of petct_pipeline.models' ({models.__all__})")
    return getattr(models, name).from_pretrained(str(folder), use_safetensors=True)


def load_component_weights(module: torch.nn.Module, folder: Path) -> None:
    """Load ``folder``'s safetensors weights into ``module``; ValueError if the architecture differs."""
    from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import load_file

    weights = folder / SAFETENSORS_WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"--init_weights: {weights} not found (expected a save_pretrained folder)")
    config_path = folder / "config.json"
    if config_path.is_file():
        differences = architecture_differences(module, json.loads(config_path.read_text()))
        if differences:
            raise InputError(f"--init_weights: {folder} has another architecture than the config: "
                             + "; ".join(differences))
    state = load_file(str(weights))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise InputError(f"--init_weights: {folder} does not fit the configured model: {error}") from None


def init_from_pretrained(model: torch.nn.Module, directory: Path, components: dict[str, str]) -> dict[str, Any]:
    """Load every ``{attribute: folder name}`` of ``components`` from ``directory``; provenance for stage.json."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"--init_weights {directory}: no such folder")
    for attribute, name in components.items():
        load_component_weights(getattr(model, attribute), directory / name)
    info: dict[str, Any] = {"path": str(directory), "components": sorted(components.values())}
    stage_json, provenance = directory / "stage.json", directory / "training_provenance.json"
    if stage_json.is_file():  # a training output: its headline facts
        saved = json.loads(stage_json.read_text())
        keys = ("stage", "config_name", "global_step", "seed", "init_weights")
        info["source"] = {k: saved[k] for k in keys if k in saved}
    elif provenance.is_file():  # an exported pipeline: both stages' provenance as written by export.py
        info["source"] = json.loads(provenance.read_text())
    return info
