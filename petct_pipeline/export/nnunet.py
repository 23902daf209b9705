"""nnU-Net v2 raw dataset: ``DatasetNNN_Name/{imagesTr,labelsTr,dataset.json}`` as nnU-Net's AutoPET conversion.

Channel 0000 is the CT in HU (int16), 0001 the PET in SUVbw (float32), both on the PET grid with their label;
``channel_names`` are ``{"0": "CT", "1": "CT"}`` because that is what nnU-Net's own AutoPET II conversion
(``nnunetv2/dataset_conversion/Dataset221_AutoPETII_2023.py``) uses: both channels get nnU-Net's global
CT normalisation from dataset-wide percentiles, which suits SUV's fixed physical scale better than a
per-image z-score. Labels: ``lesions`` gives AutoPET's 0/1 (``tumor``, nnU-Net's name for it there);
``organs`` the TotalSegmentator names of the organs present in the cohort with consecutive ids 1..K in
TotalSegmentator order (nnU-Net requires consecutive labels; ``totalsegmentator_ids`` in dataset.json maps
back). A ``demographics.csv`` with a ``case`` column lets the project's own nnU-Net reader
(:mod:`petct_pipeline.data.nnunet`) read the dataset back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.demographics_csv import write_demographics_csv
from ..errors import InputError
from ..io import load_nifti, save_nifti, write_json
from ..organs import LABEL_IDS, LABELS
from .subjects import ExportSubject, ExportVolumes
from .writing import FormatWriter

__all__ = ["NNUNET_FILE_ENDING", "LESION_LABEL", "DEFAULT_DATASET_ID", "DEFAULT_DATASET_NAME", "NnunetWriter",
           "check_dataset_id", "check_dataset_name"]

NNUNET_FILE_ENDING = ".nii.gz"
LESION_LABEL = "tumor"
DEFAULT_DATASET_ID = 500
DEFAULT_DATASET_NAME = "PETCTSynthetic"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def check_dataset_id(value: Any) -> int:
    """An nnU-Net dataset id: an integer 1..999 (nnU-Net names the folder Dataset%03d)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InputError(f"--dataset-id {value!r} is not an integer: nnU-Net dataset ids are 1..999") from None
    if not 1 <= number <= 999:
        raise InputError(f"--dataset-id {number} is out of range: nnU-Net dataset ids are 1..999")
    return number


def check_dataset_name(value: str) -> str:
    if not _NAME.match(value or ""):
        raise InputError(f"--dataset-name {value!r} is not usable in a folder name: use letters, digits, '_' and "
                         "'-' (at most 100, starting with a letter or digit)")
    return value


class NnunetWriter(FormatWriter):
    """Writes one nnU-Net v2 raw dataset (training cases only)."""

    name = "nnunet"

    def __init__(self, labels: str, dataset_id: int = DEFAULT_DATASET_ID,
                 dataset_name: str = DEFAULT_DATASET_NAME) -> None:
        super().__init__(labels)
        self.dataset_id = check_dataset_id(dataset_id)
        self.dataset_name = check_dataset_name(dataset_name)
        self.label_ids: dict[str, int] = {"background": 0, LESION_LABEL: 1}
        self.lookup: np.ndarray | None = None  # TotalSegmentator id -> dataset label id

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"

    def root(self, out: Path) -> Path:
        return out / self.folder_name

    def prepare(self, out: Path, subjects: Sequence[ExportSubject]) -> None:
        taken = [p for p in out.glob(f"Dataset{self.dataset_id:03d}_*") if p.is_dir() and p.name != self.folder_name]
        if taken:
            raise InputError(f"--dataset-id {self.dataset_id} is already used by {taken[0]} (nnU-Net finds datasets "
                             "by id): choose another id, or remove that dataset")
        if self.labels == "organs":
            present: set[int] = set()
            for subject in subjects:
                organs, _ = load_nifti(subject.organs, dtype=np.float32)
                present |= {int(v) for v in np.unique(organs) if v > 0}
            unknown = sorted(present - set(LABELS))
            if unknown:
                raise InputError(f"organ labels hold ids {unknown[:5]} that are not TotalSegmentator 'total' ids")
            ordered = sorted(present)
            self.label_ids = {"background": 0, **{LABELS[i]: n for n, i in enumerate(ordered, start=1)}}
            self.lookup = np.zeros(max(LABELS) + 1, np.uint8)
            self.lookup[ordered] = np.arange(1, len(ordered) + 1, dtype=np.uint8)

    def config(self) -> dict[str, Any]:
        return {"labels": self.labels, "dataset_id": self.dataset_id, "dataset_name": self.dataset_name,
                "label_ids": self.label_ids}

    def outputs(self, subject: ExportSubject) -> list[str]:
        case = subject.case_id
        return [f"imagesTr/{case}_0000{NNUNET_FILE_ENDING}", f"imagesTr/{case}_0001{NNUNET_FILE_ENDING}",
                f"labelsTr/{case}{NNUNET_FILE_ENDING}"]

    def label(self, volumes: ExportVolumes) -> np.ndarray:
        if self.labels == "lesions":
            return volumes.lesion_mask
        return self.lookup[volumes.organs]

    def write(self, subject: ExportSubject, volumes: ExportVolumes, staging: Path) -> dict[str, Any]:
        ct_path, pet_path, label_path = (staging / p for p in self.outputs(subject))
        a = volumes.affine
        save_nifti(np.rint(np.clip(volumes.ct, -32768, 32767)).astype(np.int16), a, ct_path,
                   description="synthetic CT (HU)")
        save_nifti(volumes.suv.astype(np.float32), a, pet_path, description="synthetic FDG PET (SUVbw)")
        save_nifti(self.label(volumes).astype(np.uint8), a, label_path, description=f"labels: {self.labels}")
        return {"case": subject.case_id}

    def finish(self, root: Path, subjects: Sequence[ExportSubject], records: dict[str, dict[str, Any]]) -> None:
        dataset: dict[str, Any] = {
            "channel_names": {"0": "CT", "1": "CT"},
            "labels": self.label_ids,
            "numTraining": len(subjects),
            "file_ending": NNUNET_FILE_ENDING,
            "name": self.dataset_name,
            "description": "SYNTHETIC whole-body FDG PET/CT (petct-diffusion), not from patients: channel 0 CT in HU, "
                           f"channel 1 PET in SUVbw; labels: {self.labels}",
            "channel_units": {"0": "HU", "1": "SUVbw (g/mL)"},
            "synthetic": True,
        }
        if self.labels == "organs":
            dataset["totalsegmentator_ids"] = {name: LABEL_IDS[name] for name in self.label_ids if name != "background"}
        write_json(dataset, root / "dataset.json")
        rows = []
        for subject in subjects:
            d = subject.source.demographics
            from_input = subject.acquisition.source == "input"
            rows.append({"subject": subject.patient_id, "study": subject.source.study_id or "", "age": d.age,
                         "sex": d.sex, "weight": d.weight, "height": d.height,
                         "injected_dose_bq": subject.acquisition.injected_dose_bq if from_input else None,
                         "uptake_time_s": subject.acquisition.uptake_time_s if from_input else None,
                         "case": subject.case_id})
        write_demographics_csv(rows, root / "demographics.csv")
