"""Where the shipped default weights live, so the CLI, the Space and the README agree."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_HUB_REPO_ID",
    "DEFAULT_SEGMENTER_NAME",
    "default_model",
    "default_segmenter",
    "checkpoints_dir",
]

DEFAULT_MODEL_NAME = "petct-phantom-demo"
DEFAULT_HUB_REPO_ID = f"petct-diffusion/{DEFAULT_MODEL_NAME}"
MODEL_ENV_VAR = "PETCT_MODEL"
DEFAULT_SEGMENTER_NAME = "petct-phantom-seg"
SEGMENTER_ENV_VAR = "PETCT_SEGMENTER"


def checkpoints_dir() -> Path:
    """The repository's checkpoints/ folder (present in a source checkout / editable install)."""
    return Path(__file__).resolve().parent.parent / "checkpoints"


def default_model(name: str = DEFAULT_MODEL_NAME) -> str:
    """``$PETCT_MODEL`` if set, else the shipped folder in checkpoints/, else the hub repo id."""
    if os.environ.get(MODEL_ENV_VAR) and name == DEFAULT_MODEL_NAME:
        return os.environ[MODEL_ENV_VAR]
    local = checkpoints_dir() / name
    if (local / "model_index.json").is_file() or (local / "config.json").is_file():
        return str(local)
    return f"petct-diffusion/{name}"


def default_segmenter() -> Path | None:
    """The organ segmenter folder for ``petct evaluate`` and the Space: ``$PETCT_SEGMENTER`` if set,
    else the shipped ``checkpoints/petct-phantom-seg``; None when neither exists."""
    if os.environ.get(SEGMENTER_ENV_VAR):
        return Path(os.environ[SEGMENTER_ENV_VAR])
    local = checkpoints_dir() / DEFAULT_SEGMENTER_NAME
    return local if (local / "config.json").is_file() else None
