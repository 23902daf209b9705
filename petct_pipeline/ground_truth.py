"""Known truth for generated subjects: organ labels, and FDG-avid lesions inserted with known uptake.

The cascade generates healthy-looking anatomy; oncology uses need labels and lesions whose truth
is known. After sampling, each subject is labelled by the organ segmenter
(:mod:`petct_pipeline.organ_labels`) and, when a diagnosis or a lesion spec is given, lesions are
inserted into its CT and PET by :func:`petct_pipeline.lesions.insert_lesions` on the output grid,
using the organ labels to find their sites. ``lesions.json`` then describes what was written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .evaluation.segmenters import ModelSegmenter
from .lesions import LesionSpec, check_diagnosis, insert_lesions, parse_lesion_specs
from .organ_labels import label_organs
from .pipeline_output import PETCTPipelineOutput

__all__ = ["check_lesion_request", "lesion_seed", "add_lesions"]


def check_lesion_request(diagnosis: str | None, lesions: Sequence[Mapping[str, Any] | LesionSpec] | None
                         ) -> tuple[str | None, list[LesionSpec] | None]:
    """Validate before any sampling: one of ``diagnosis`` / ``lesions`` (or neither), each well formed."""
    if diagnosis is not None and lesions is not None:
        raise InputError("give diagnosis or lesions, not both")
    checked_diagnosis = check_diagnosis(diagnosis) if diagnosis is not None else None
    specs = parse_lesion_specs(lesions) if lesions is not None else None
    return checked_diagnosis, specs


def lesion_seed(generator: torch.Generator | None, index: int, shared: bool) -> int:
    """The seed of subject ``index``'s lesions: its generator's seed (+ index when one generator is shared)."""
    base = int(generator.initial_seed()) if generator is not None else 0
    return (base + index) % (2**63) if shared else base


def add_lesions(output: PETCTPipelineOutput, diagnosis: str | None, lesions: Sequence[LesionSpec] | None,
                seeds: Sequence[int], segmenter: ModelSegmenter | None = None) -> PETCTPipelineOutput:
    """Insert lesions into every subject of ``output`` (labelling its organs first if needed); returns ``output``."""
    if not output.organs:
        label_organs(output, segmenter)
    results = []
    for index, seed in enumerate(seeds):
        result = insert_lesions(np.asarray(output.ct[index], dtype=np.float32),
                                np.asarray(output.pet[index], dtype=np.float32), output.affines[index],
                                output.organs[index], diagnosis=diagnosis, lesions=lesions, generator=int(seed))
        output.ct[index], output.pet[index] = result.ct, result.suv
        results.append(result)
        if index < len(output.metadata):
            output.metadata[index]["diagnosis"] = result.diagnosis
            requested = None if lesions is None else [dict(spec.requested or {}) for spec in lesions]
            output.metadata[index]["lesion_spec"] = requested
            output.metadata[index]["lesion_seed"] = int(seed)
    output.lesions = results
    return output
