"""What the pipeline returns: CT in HU and PET in SUVbw with their affine, writable as NIfTI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.utils import BaseOutput

from .demographics import Demographics
from .errors import InputError
from .intensity import HU_RANGE
from .io import save_nifti, write_json

__all__ = ["PETCTPipelineOutput", "CT_FILENAME", "PET_FILENAME", "METADATA_FILENAME"]

CT_FILENAME = "ct.nii.gz"
PET_FILENAME = "pet_suv.nii.gz"
METADATA_FILENAME = "metadata.json"


def _to_numpy(volume: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(volume, torch.Tensor):
        return volume.detach().float().cpu().numpy()
    return np.asarray(volume)


@dataclass
class PETCTPipelineOutput(BaseOutput):
    """One entry per subject: ``ct[i]`` in HU and ``pet[i]`` in SUVbw, both (x, y, z) in RAS+.

    Subjects of different height have different z extents, so volumes are lists, not one
    stacked array. ``affines[i]`` maps voxel indices of subject ``i`` to RAS millimetres.
    """

    ct: list[Any]
    pet: list[Any]
    affines: list[np.ndarray]
    spacing: tuple[float, float, float]
    demographics: list[Demographics]
    metadata: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:  # BaseOutput is an OrderedDict; length means subjects here
        return len(self.ct)

    def save(self, out_dir: str | os.PathLike, index: int | None = None) -> list[Path]:
        """Write ct.nii.gz (int16 HU), pet_suv.nii.gz (float32 SUV) and metadata.json.

        A single subject goes straight into ``out_dir``; a batch into ``out_dir/subject_<i>``
        unless ``index`` picks one. Each file is written to a temporary name and renamed.
        """
        out_dir = Path(out_dir)
        if index is not None:
            if not 0 <= index < len(self.ct):
                raise InputError(f"index must be in [0, {len(self.ct) - 1}], got {index}")
            return [self._save_one(index, out_dir)]
        if len(self.ct) == 1:
            return [self._save_one(0, out_dir)]
        return [self._save_one(i, out_dir / f"subject_{i:03d}") for i in range(len(self.ct))]

    def _save_one(self, index: int, out_dir: Path) -> Path:
        ct = np.rint(np.clip(_to_numpy(self.ct[index]), *HU_RANGE)).astype(np.int16)
        pet = np.clip(_to_numpy(self.pet[index]), 0.0, None).astype(np.float32)
        affine = self.affines[index]
        out_dir.mkdir(parents=True, exist_ok=True)
        save_nifti(ct, affine, out_dir / CT_FILENAME, description="synthetic CT (HU), petct-diffusion")
        save_nifti(pet, affine, out_dir / PET_FILENAME, description="synthetic FDG PET (SUVbw), petct-diffusion")
        metadata = dict(self.metadata[index]) if index < len(self.metadata) else {}
        metadata.update(
            {
                "demographics": self.demographics[index].to_dict(),
                "shape": list(ct.shape),
                "spacing_mm": list(self.spacing),
                "units": {"ct": "HU", "pet": "SUVbw (g/mL)"},
                "files": {"ct": CT_FILENAME, "pet": PET_FILENAME},
                "synthetic": True,
            }
        )
        write_json(metadata, out_dir / METADATA_FILENAME)
        return out_dir
