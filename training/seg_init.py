"""Start the organ segmenter from a trained one (``train.py --stage seg --init_weights SEGMENTER``).

A segmenter that confuses an organ with a neighbour it was never told about (the 9-organ model
shipped at 20c097a labelled stomach and small bowel as spleen: to it all three were background)
is best taught the neighbour as a class of its own. Retraining from scratch costs an hour of CPU;
this keeps every learned weight and maps the output layer by TotalSegmentator id: a class the
source knew keeps its row, a new class starts from the source's background row (its voxels were
background to the source) with a lower bias, so the first steps predict what the source did.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from petct_pipeline.errors import InputError
from petct_pipeline.models import OrganSegmentationModel

from .pretrained import architecture_differences

__all__ = ["NEW_CLASS_BIAS_OFFSET", "OUTPUT_LAYER", "init_segmenter", "mapped_output_rows"]

#: logit of a new class against background at the start: e**-4, about 2 % of background's probability
NEW_CLASS_BIAS_OFFSET = -4.0
#: the UNet's output convolution, whose output channels are background then the classes
OUTPUT_LAYER = "conv_out"


def _network_differences(target: torch.nn.Module, source: OrganSegmentationModel, spacing_mm: float,
                         input_stride: int) -> list[str]:
    differences = [d for d in architecture_differences(target, dict(source.unet.config))
                   if not d.startswith("out_channels:")]
    if source.spacing_mm != spacing_mm:
        differences.append(f"spacing_mm: config {spacing_mm:g}, saved {source.spacing_mm:g}")
    if source.input_stride != input_stride:
        differences.append(f"input_stride: config {input_stride}, saved {source.input_stride}")
    return differences


def mapped_output_rows(state: dict[str, torch.Tensor], source_ids: Sequence[int], label_ids: Sequence[int]
                       ) -> dict[str, torch.Tensor]:
    """``state``'s output-layer weight and bias re-ordered for ``label_ids`` (background row first)."""
    source_rows = {label: row for row, label in enumerate(source_ids, start=1)}
    rows = [0, *(source_rows.get(label, 0) for label in label_ids)]
    weight, bias = state[f"{OUTPUT_LAYER}.weight"][rows], state[f"{OUTPUT_LAYER}.bias"][rows].clone()
    new = torch.tensor([False, *(label not in source_rows for label in label_ids)])
    bias[new] += NEW_CLASS_BIAS_OFFSET
    return {f"{OUTPUT_LAYER}.weight": weight, f"{OUTPUT_LAYER}.bias": bias}


def init_segmenter(target: torch.nn.Module, label_ids: Sequence[int], spacing_mm: float, input_stride: int,
                   directory: str | os.PathLike) -> dict[str, Any]:
    """Load a saved segmenter's weights into ``target`` (the configured UNet); provenance for stage.json."""
    source = OrganSegmentationModel.from_pretrained(directory)
    differences = _network_differences(target, source, spacing_mm, input_stride)
    if differences:
        raise InputError(f"--init_weights: {directory} has another network than the config: "
                         + "; ".join(differences))
    state = source.unet.state_dict()
    state.update(mapped_output_rows(state, source.label_ids, label_ids))
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise InputError(f"--init_weights: {directory} does not fit the configured model: {error}") from None
    return {
        "path": str(directory),
        "components": ["organ_segmenter"],
        "classes_added": [label for label in label_ids if label not in source.label_ids],
        "classes_dropped": [label for label in source.label_ids if label not in label_ids],
        "source": {"label_ids": list(source.label_ids), "dice": source.info.get("dice")},
    }
