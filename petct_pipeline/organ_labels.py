"""Organ labels for generated subjects: the shipped organ segmenter run on the written CT and PET.

``petct generate`` writes ``organs.nii.gz`` (TotalSegmentator "total" ids, uint8, on the output
grid) and ``organs.json`` (name -> id), the same two files the phantom writes, so a generated
subject plugs into anything that reads the phantoms' labels (``petct evaluate --segmenter labels``,
nnU-Net exports, lesion placement by organ). The labels are the segmenter's
(``checkpoints/petct-phantom-seg`` or ``$PETCT_SEGMENTER``): their quality is its held-out Dice,
recorded in its ``segmenter.json`` and the model card.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .checkpoints import SEGMENTER_ENV_VAR, default_segmenter
from .errors import InputError
from .evaluation.segmenters import ModelSegmenter
from .pipeline_output import PETCTPipelineOutput

__all__ = ["organ_segmenter", "label_organs"]


def organ_segmenter(path: str | os.PathLike | None = None) -> ModelSegmenter:
    """The segmenter that labels generated subjects: ``path``, else ``$PETCT_SEGMENTER``, else the shipped one."""
    folder = Path(path) if path is not None else default_segmenter()
    if folder is None:
        raise InputError(f"no organ segmenter to label the generated subjects: set ${SEGMENTER_ENV_VAR} to a "
                         "folder trained with `training/train.py --stage seg`, or pass --no-labels")
    return ModelSegmenter(folder)


def label_organs(output: PETCTPipelineOutput, segmenter: ModelSegmenter | None = None) -> PETCTPipelineOutput:
    """Fill ``output.organs`` with a label map per subject (on its own grid) and return ``output``."""
    segmenter = segmenter or organ_segmenter()
    organs = []
    for ct, pet, affine in zip(output.ct, output.pet, output.affines):
        labels = segmenter.predict(np.asarray(ct, dtype=np.float32), np.asarray(pet, dtype=np.float32), affine)
        organs.append(labels.astype(np.uint8))
    output.organs = organs
    output.organ_segmenter = segmenter.describe()
    return output
