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
from .organs import LABEL_IDS
from .subject_files import CT_FILENAME, METADATA_FILENAME, ORGAN_NAMES_FILENAME, ORGANS_FILENAME, PET_FILENAME

__all__ = ["PETCTPipelineOutput", "CT_FILENAME", "PET_FILENAME", "METADATA_FILENAME", "ORGANS_FILENAME",
           "ORGAN_NAMES_FILENAME"]



def _to_numpy(volume: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(volume, torch.Tensor):
        return volume.detach().float().cpu().numpy()
    return np.asarray(volume)


@dataclass
class PETCTPipelineOutput(BaseOutput):
    """One entry per subject: ``ct[i]`` in HU and ``pet[i]`` in SUVbw, both (x, y, z) in RAS+.

    Subjects of different height have different z extents, so volumes are lists, not one
    stacked array. ``affines[i]`` maps voxel indices of subject ``i`` to RAS millimetres.
    ``organs[i]`` (optional, :func:`petct_pipeline.organ_labels.label_organs`) is the subject's
    TotalSegmentator-id label map on the same grid; ``organ_segmenter`` says what made it.
    ``lesions[i]`` (optional, :func:`petct_pipeline.ground_truth.add_lesions`) is the insertion
    whose lesions ``ct[i]``/``pet[i]`` hold: instance map and per-lesion truth (lesions.json).
    """

    ct: list[Any]
    pet: list[Any]
    affines: list[np.ndarray]
    spacing: tuple[float, float, float]
    demographics: list[Demographics]
    metadata: list[dict[str, Any]] = field(default_factory=list)
    organs: list[np.ndarray] = field(default_factory=list)
    organ_segmenter: str | None = None
    lesions: list[Any] = field(default_factory=list)  # petct_pipeline.lesions.LesionInsertion (imports this module)

    def __len__(self) -> int:  # BaseOutput is an OrderedDict; length means subjects here
        return len(self.ct)

    def subject(self, index: int) -> PETCTPipelineOutput:
        """Subject ``index`` alone, as a one-subject output (the same arrays, not copies)."""
        if not 0 <= index < len(self.ct):
            raise InputError(f"index must be in [0, {len(self.ct) - 1}], got {index}")

        def pick(values: list) -> list:
            return values[index : index + 1]

        return PETCTPipelineOutput(ct=pick(self.ct), pet=pick(self.pet), affines=pick(self.affines),
                                   spacing=self.spacing, demographics=pick(self.demographics),
                                   metadata=pick(self.metadata), organs=pick(self.organs),
                                   organ_segmenter=self.organ_segmenter, lesions=pick(self.lesions))

    def save(self, out_dir: str | os.PathLike, index: int | None = None) -> list[Path]:
        """Write ct.nii.gz (int16 HU), pet_suv.nii.gz (float32 SUV), metadata.json and, when labelled,
        organs.nii.gz (uint8 TotalSegmentator ids) with organs.json (name -> id), and with lesions
        lesions.nii.gz (instance ids) with lesions.json (per-lesion truth).

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
        files = {"ct": CT_FILENAME, "pet": PET_FILENAME}
        if index < len(self.organs):
            save_nifti(np.asarray(self.organs[index], dtype=np.uint8), affine, out_dir / ORGANS_FILENAME,
                       description="TotalSegmentator total ids (segmenter)")
            write_json(dict(LABEL_IDS), out_dir / ORGAN_NAMES_FILENAME)
            files.update({"organs": ORGANS_FILENAME, "organ_names": ORGAN_NAMES_FILENAME})
        if index < len(self.lesions):
            written = self.lesions[index].save(out_dir, volumes=False)
            files.update({"lesions": written[0].name, "lesion_truth": written[1].name})
        metadata = dict(self.metadata[index]) if index < len(self.metadata) else {}
        metadata.update(
            {
                "demographics": self.demographics[index].to_dict(),
                "shape": list(ct.shape),
                "spacing_mm": list(self.spacing),
                "units": {"ct": "HU", "pet": "SUVbw (g/mL)"},
                "files": files,
                "synthetic": True,
            }
        )
        if index < len(self.organs) and self.organ_segmenter:
            metadata["organ_labels"] = {"made_by": self.organ_segmenter}
        write_json(metadata, out_dir / METADATA_FILENAME)
        return out_dir
