"""The file names of one subject's folder, as `petct generate`, `petct lesions` and the phantom write them.

One place for them, free of heavy imports, so writers (the pipeline output, lesion insertion) and
readers (evaluation's input discovery, export) agree without importing one another.
"""

from __future__ import annotations

__all__ = [
    "CT_FILENAME",
    "PET_FILENAME",
    "METADATA_FILENAME",
    "ORGANS_FILENAME",
    "ORGAN_NAMES_FILENAME",
    "LESIONS_FILENAME",
    "LESIONS_JSON_FILENAME",
]

CT_FILENAME = "ct.nii.gz"
PET_FILENAME = "pet_suv.nii.gz"
METADATA_FILENAME = "metadata.json"
#: organ labels (TotalSegmentator "total" ids) and their names: the files the phantom writes
ORGANS_FILENAME = "organs.nii.gz"
ORGAN_NAMES_FILENAME = "organs.json"
#: lesion instance map (0 background, lesion ids 1..N) and one record per lesion
LESIONS_FILENAME = "lesions.nii.gz"
LESIONS_JSON_FILENAME = "lesions.json"
