"""Measure every subject of one cohort: load, segment, organ and body metrics, image checks, encoder features.

One subject at a time per process (memory stays at one volume per worker); ``workers > 1``
spreads subjects over spawned processes, each limited to one torch thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..organs import EVALUATION_ORGANS
from .encoder_features import FeatureExtractor
from .image_checks import intensity_histograms, thumbnail
from .inputs import EvaluationInput, SubjectInput, load_subject
from .metrics import BODY, body_mask, body_metrics, measure_organs, organ_found
from .ms_ssim import diversity_volume
from .segmenters import Segmenter

__all__ = ["SubjectMeasurement", "CohortMeasurement", "measure_subject", "measure_cohort"]

logger = logging.getLogger(__name__)


@dataclass
class SubjectMeasurement:
    """Everything the report needs from one subject (the volumes themselves are not kept)."""

    subject: SubjectInput
    organs: dict[str, dict[str, float]]  # organ -> metric -> value; includes "body"
    nonfinite_ct: int
    nonfinite_pet: int
    hu_counts: np.ndarray
    suv_counts: np.ndarray
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    seconds: float
    thumbnail: np.ndarray | None = None
    #: (2, X, Y, Z) model-space volume at about 8 mm for MS-SSIM, kept with the thumbnail
    diversity_volume: np.ndarray | None = None
    #: encoder feature vector (Fréchet distance, memorisation audit) and the seconds it took
    features: np.ndarray | None = None
    feature_seconds: float = 0.0


@dataclass
class CohortMeasurement:
    role: str
    cohort: EvaluationInput
    subjects: list[SubjectMeasurement] = field(default_factory=list)
    seconds: float = 0.0

    def values(self, organ: str, metric: str, keys: Collection[str] | None = None) -> np.ndarray:
        """The metric of every subject in which the organ was found (optionally only those whose key is in
        ``keys``); a subject without the organ has no value, not a 0 mL organ (see ``coverage``)."""
        return np.array([m.organs[organ][metric] for m in self.subjects
                         if metric in m.organs.get(organ, {}) and organ_found(m.organs[organ])
                         and (keys is None or m.subject.key in keys)], dtype=np.float64)


def measure_subject(subject: SubjectInput, segmenter: Segmenter, organs: Sequence[str] = EVALUATION_ORGANS,
                    keep_thumbnail: bool = False, features: FeatureExtractor | None = None) -> SubjectMeasurement:
    """Everything the report needs from one subject; ``keep_thumbnail`` keeps its thumbnail and MS-SSIM volume."""
    started = time.perf_counter()
    volumes = load_subject(subject)
    labels = segmenter.segment(subject, volumes)
    if labels.shape != volumes.shape:
        raise InputError(f"segmenter {segmenter.spec} returned a label map of shape {labels.shape} for subject "
                         f"{subject.key}, whose PET has shape {volumes.shape}")
    spacing = volumes.spacing
    results = measure_organs(volumes.ct, volumes.suv, labels, spacing, organs)
    body = body_mask(volumes.ct, volumes.affine)
    results[BODY] = body_metrics(volumes.ct, volumes.suv, volumes.affine, mask=body)
    hu_counts, suv_counts = intensity_histograms(volumes.ct, volumes.suv, body)
    feature_started = time.perf_counter()
    vector = features.features(volumes, subject.demographics.height) if features is not None else None
    feature_seconds = time.perf_counter() - feature_started if features is not None else 0.0
    return SubjectMeasurement(
        subject=subject,
        organs=results,
        nonfinite_ct=volumes.nonfinite_ct,
        nonfinite_pet=volumes.nonfinite_pet,
        hu_counts=hu_counts,
        suv_counts=suv_counts,
        shape=volumes.shape,
        spacing=spacing,
        seconds=time.perf_counter() - started,
        thumbnail=thumbnail(volumes.ct, volumes.suv, spacing) if keep_thumbnail else None,
        diversity_volume=diversity_volume(volumes.ct, volumes.suv, spacing) if keep_thumbnail else None,
        features=vector,
        feature_seconds=feature_seconds,
    )


def _limit_threads() -> None:
    import torch

    torch.set_num_threads(1)


def measure_cohort(cohort: EvaluationInput, segmenter: Segmenter, role: str,
                   organs: Sequence[str] = EVALUATION_ORGANS, workers: int = 1,
                   thumbnails: Collection[str] = (), features: FeatureExtractor | None = None) -> CohortMeasurement:
    """Measure every subject of ``cohort``; ``thumbnails``: subject keys whose thumbnails to keep;
    ``features``: the encoder features to compute for every subject (None: none)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    from tqdm.auto import tqdm

    started = time.perf_counter()
    keep = set(thumbnails)
    jobs = [(subject, segmenter, tuple(organs), subject.key in keep, features) for subject in cohort.subjects]
    result = CohortMeasurement(role=role, cohort=cohort)
    bar = tqdm(total=len(jobs), desc=f"evaluate {role}", unit="subject", disable=None)
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            result.subjects.append(measure_subject(*job))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context,
                                 initializer=_limit_threads) as pool:
            for measurement in pool.map(measure_subject, *zip(*jobs)):
                result.subjects.append(measurement)
                bar.update()
    bar.close()
    result.seconds = time.perf_counter() - started
    logger.info("%s: %d subjects measured in %.1f s", role, len(result.subjects), result.seconds)
    return result
