"""Pick the layout reader for a data folder: nnU-Net if it has ``imagesTr/``, else AutoPET."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .autopet import scan_autopet
from .nnunet import is_nnunet_layout, scan_nnunet
from .study import ScanResult

__all__ = ["scan_dataset", "LAYOUTS"]

LAYOUTS = ("auto", "autopet", "nnunet")


def scan_dataset(
    root: str | os.PathLike,
    demographics_csv: str | os.PathLike | None = None,
    layout: str = "auto",
    verify: str = "header",
) -> ScanResult:
    """Scan ``root`` in the given layout ("auto" detects it)."""
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"data directory not found: {root}")
    if layout == "nnunet" or (layout == "auto" and is_nnunet_layout(root)):
        return scan_nnunet(root, demographics_csv=demographics_csv, verify=verify)
    return scan_autopet(root, demographics_csv=demographics_csv, verify=verify)
