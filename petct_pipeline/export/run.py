"""``export_dataset``: plan the subjects of an input folder, then write them in one of the three formats."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .autopet import AutopetWriter
from .dicom import DicomWriter
from .nnunet import DEFAULT_DATASET_ID, DEFAULT_DATASET_NAME, NnunetWriter
from .subjects import AUTOPET_MEAN_DOSE_BQ, AUTOPET_UPTAKE_TIME_S, FORMATS, check_label_set, plan_subjects
from .writing import ExportResult, FormatWriter, run_export

__all__ = ["export_dataset", "format_writer", "check_format"]


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise InputError(f"--format {name!r} is not an export format: choose one of {', '.join(FORMATS)}")
    return name


def format_writer(name: str, labels: str, dataset_id: int | None = None,
                  dataset_name: str | None = None) -> FormatWriter:
    """The writer of format ``name``; ``dataset_id`` / ``dataset_name`` belong to nnunet alone."""
    check_format(name)
    check_label_set(labels)
    if name != "nnunet" and (dataset_id is not None or dataset_name is not None):
        raise InputError("--dataset-id and --dataset-name name an nnU-Net dataset: give them with --format nnunet only")
    if name == "nnunet":
        return NnunetWriter(labels, DEFAULT_DATASET_ID if dataset_id is None else dataset_id,
                            DEFAULT_DATASET_NAME if dataset_name is None else dataset_name)
    return AutopetWriter(labels) if name == "autopet" else DicomWriter(labels)


def export_dataset(input_dir: str | os.PathLike, out: str | os.PathLike, format: str, labels: str = "lesions",
                   dataset_id: int | None = None, dataset_name: str | None = None, overwrite: bool = False,
                   injected_dose_bq: float = AUTOPET_MEAN_DOSE_BQ, uptake_time_s: float = AUTOPET_UPTAKE_TIME_S,
                   progress: bool | None = None) -> ExportResult:
    """Export every subject of ``input_dir`` (generated cohort, phantom population, AutoPET or nnU-Net dataset).

    ``labels``: ``lesions`` or ``organs``, the label set every subject must have. ``injected_dose_bq`` /
    ``uptake_time_s``: used for subjects whose input records neither (PET in Bq/mL and DICOM SUV need them).
    Bad input raises InputError naming the subject before anything is written."""
    from ..data.suv import suv_scale_factor

    writer = format_writer(format, labels, dataset_id, dataset_name)
    suv_scale_factor(injected_dose_bq, uptake_time_s, 70.0)  # range checks of the defaults, naming them
    subjects = plan_subjects(input_dir, labels, needs_lesions=writer.name == "autopet",
                             default_dose_bq=injected_dose_bq, default_uptake_s=uptake_time_s)
    return run_export(writer, subjects, Path(input_dir), Path(out), overwrite=overwrite, progress=progress)
