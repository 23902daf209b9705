"""Encoder features of the organ segmenter: the image descriptor behind the Fréchet distance and memorisation audit.

Why these rather than Inception (FID) or radiomics (FRD): they need no download and no extra
heavy dependency (the shipped ``checkpoints/petct-phantom-seg`` is in the repository), they are
features of this domain (a 3D network that reads CT *and* PET in the library's model space and
was trained to find organs), and they cost one encoder pass per subject on the segmenter's
coarse grid.

The volume is put on the model's grid exactly as the segmenter sees it
(:func:`~petct_pipeline.evaluation.segmenters.model_input`: resampled to ``spacing_mm``,
masked to the body, padded with air). Forward hooks record the output of ``conv_in``, of every
down block and of the mid block; the forward pass stops after the mid block (the decoder is not
needed). Each recorded map is pooled over the unpadded grid to the per-channel mean and
standard deviation, so a model with ``block_out_channels = (c1, ..., cL)`` gives
``2 * (c1 + c1 + ... + cL + cL)`` numbers. Global pooling keeps the descriptor independent of the
grid size; the evaluation pools over the cascade's field of view for the subject's height (the
top of the body down, :meth:`FeatureExtractor.features`), so whole-body references and the
generator's shorter volumes are compared over the same part of the body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from ..geometry import body_length_mm
from ..model_files import model_name
from ..models.organ_segmentation import OrganSegmentationModel
from .inputs import EvaluationInput, SubjectVolumes, load_subject
from .segmenters import ModelSegmenter, model_input

__all__ = ["FeatureExtractor", "pooled_statistics", "cohort_features"]


class _EncoderDone(Exception):
    """Raised by the mid block's hook: the features are complete, the decoder need not run."""


def pooled_statistics(feature_map: torch.Tensor, valid: Sequence[int]) -> np.ndarray:
    """Per-channel mean and standard deviation of a (1, C, X, Y, Z) map over its first ``valid`` voxels."""
    x, y, z = (int(v) for v in valid)
    region = feature_map[0, :, :x, :y, :z].reshape(feature_map.shape[1], -1).double()
    return torch.cat([region.mean(dim=1), region.std(dim=1, unbiased=False)]).cpu().numpy()


class FeatureExtractor:
    """Pooled encoder activations of an :class:`OrganSegmentationModel` (a folder, or a model in memory).

    Pickles to worker processes like :class:`~petct_pipeline.evaluation.segmenters.ModelSegmenter`
    (a model from a folder is loaded again there).
    """

    def __init__(self, source: str | os.PathLike | OrganSegmentationModel) -> None:
        self.segmenter = ModelSegmenter(source)  # fails now on a missing or malformed folder

    def load(self) -> OrganSegmentationModel:
        return self.segmenter.load()

    def describe(self) -> str:
        model = self.load()
        where = self.segmenter.spec if self.segmenter.path is None else f"model:{model_name(self.segmenter.path)}"
        return (f"{where} encoder: mean and SD of conv_in, {len(model.unet.down_blocks)} down block(s) and the "
                f"mid block at {model.spacing_mm:g} mm ({self.size()} numbers per subject)")

    def size(self) -> int:
        """Length of one feature vector."""
        channels = self.load().unet.config.block_out_channels
        return 2 * (channels[0] + sum(channels) + channels[-1])

    @torch.no_grad()
    def features(self, volumes: SubjectVolumes, height_cm: float | None = None) -> np.ndarray:
        """The feature vector (float64) of one subject's CT (HU) and PET (SUVbw).

        With ``height_cm`` only the cascade's field of view for that height is pooled (the top
        ``geometry.body_length_mm(height)`` of the body), so a whole-body scan and the generator's
        shorter slab of the same patient are described alike.
        """
        model = self.load()
        top_mm = body_length_mm(height_cm) if height_cm is not None else None
        prepared = model_input(model, volumes.ct, volumes.suv, volumes.affine, top_mm)
        padded = prepared.volume.shape[2:]
        unet = model.unet
        maps: list[torch.Tensor] = []

        def keep(module: torch.nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
            maps.append(output[0] if isinstance(output, tuple) else output)

        def stop(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            maps.append(output)
            raise _EncoderDone

        handles = [unet.conv_in.register_forward_hook(keep)]
        handles += [block.register_forward_hook(keep) for block in unet.down_blocks]
        handles.append(unet.mid_block.register_forward_hook(stop))
        try:
            model.logits(prepared.volume)
        except _EncoderDone:
            pass
        finally:
            for handle in handles:
                handle.remove()
        pooled = []
        for feature_map in maps:
            size = feature_map.shape[2:]
            valid = [int(np.ceil(n * s / p)) for n, s, p in zip(prepared.shape, size, padded)]
            pooled.append(pooled_statistics(feature_map, valid))
        return np.concatenate(pooled)


def cohort_features(cohort: EvaluationInput, extractor: FeatureExtractor, role: str
                    ) -> tuple[list[str], np.ndarray, float]:
    """(subject keys, (n, D) features, seconds) of every subject of ``cohort`` (loaded one at a time)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    keys, rows = [], []
    for subject in tqdm(cohort.subjects, desc=f"features {role}", unit="subject", disable=None):
        keys.append(subject.key)
        rows.append(extractor.features(load_subject(subject), subject.demographics.height))
    return keys, np.array(rows, dtype=np.float64).reshape(len(rows), -1), time.perf_counter() - started
