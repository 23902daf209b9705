"""Generated cohorts out as datasets other software reads: nnU-Net v2, the AutoPET layout, DICOM PET/CT + SEG.

>>> from petct_pipeline.export import export_dataset
>>> export_dataset("cohort_out/", "nnUNet_raw/", format="nnunet", labels="lesions", dataset_id=501)

One module per format (:mod:`.nnunet`, :mod:`.autopet`, :mod:`.dicom`), the subjects and their checks in
:mod:`.subjects`, the output folder's rules (refusal, ``--overwrite``, resuming, atomic subjects) in
:mod:`.writing`. ``petct export`` is the command line (docs/export.md).
"""

from .run import check_format, export_dataset, format_writer
from .subjects import (
    AUTOPET_MEAN_DOSE_BQ,
    AUTOPET_UPTAKE_TIME_S,
    FORMATS,
    LABEL_SETS,
    Acquisition,
    ExportSubject,
    ExportVolumes,
    load_volumes,
    plan_subjects,
)
from .writing import MANIFEST, ExportResult, FormatWriter, run_export

__all__ = [
    "AUTOPET_MEAN_DOSE_BQ",
    "AUTOPET_UPTAKE_TIME_S",
    "FORMATS",
    "LABEL_SETS",
    "MANIFEST",
    "Acquisition",
    "ExportResult",
    "ExportSubject",
    "ExportVolumes",
    "FormatWriter",
    "check_format",
    "export_dataset",
    "format_writer",
    "load_volumes",
    "plan_subjects",
    "run_export",
]
