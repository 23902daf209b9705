"""The demographic range a model was trained on, recorded with its weights, and the test of a new subject.

A subject inside human limits (``Demographics`` checks those) may still lie far from every
training subject: a 220 cm, 250 kg woman for a model trained on ordinary adults. The range
records, per feature, the training minimum and maximum, and per sex a Gaussian density of
(age, weight, height): a combination farther (in Mahalanobis distance) from the training mean
than every training subject is outside even when each feature is inside its own range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .demographics import Demographics
from .errors import InputError

__all__ = ["DemographicRange", "RANGE_FEATURES", "DENSITY_FEATURES"]

#: features with a recorded [min, max] and their units
RANGE_FEATURES = {"age": "years", "weight": "kg", "height": "cm", "bmi": "kg/m^2"}
#: features of the per-sex density test
DENSITY_FEATURES = ("age", "weight", "height")
#: a per-sex density needs more subjects than this (a 3 x 3 covariance from fewer is degenerate)
_MIN_SUBJECTS_FOR_DENSITY = 10


@dataclass(frozen=True)
class SexDensity:
    """Mean, inverse covariance and the largest training distance of (age, weight, height) for one sex."""

    mean: tuple[float, ...]
    inverse_covariance: tuple[tuple[float, ...], ...]
    max_distance: float

    def distance(self, subject: Demographics) -> float:
        offset = np.array([subject.quantity(name) for name in DENSITY_FEATURES]) - np.array(self.mean)
        return float(np.sqrt(offset @ np.array(self.inverse_covariance) @ offset))


@dataclass(frozen=True)
class DemographicRange:
    """What a model's training data covered: feature ranges, sexes, and a per-sex density test."""

    count: int
    ranges: dict[str, tuple[float, float]]
    sexes: tuple[str, ...]
    densities: dict[str, SexDensity] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_subjects(cls, subjects: Sequence[Demographics], source: str = "") -> DemographicRange:
        """The range of ``subjects`` (the training set actually used); ``source`` says where they came from."""
        if not subjects:
            raise InputError("a demographic range needs at least one subject")
        # exact bounds: rounding them would put the training subjects at the edges outside their own range
        ranges = {}
        for name in RANGE_FEATURES:
            values = [subject.quantity(name) for subject in subjects]
            ranges[name] = (min(values), max(values))
        sexes = tuple(sorted({subject.sex for subject in subjects}))
        densities = {}
        for sex in sexes:
            rows = np.array([[s.quantity(n) for n in DENSITY_FEATURES] for s in subjects if s.sex == sex])
            if len(rows) <= _MIN_SUBJECTS_FOR_DENSITY:
                continue
            inverse = np.linalg.pinv(np.cov(rows, rowvar=False))
            density = SexDensity(tuple(float(v) for v in rows.mean(0)),
                                 tuple(tuple(float(v) for v in row) for row in inverse), math.inf)
            # the largest distance measured exactly as ``reasons`` measures it, so no training subject lies outside
            farthest = max(density.distance(s) for s in subjects if s.sex == sex)
            densities[sex] = SexDensity(density.mean, density.inverse_covariance, farthest)
        return cls(len(subjects), ranges, sexes, densities, source)

    def reasons(self, subject: Demographics) -> list[str]:
        """Why ``subject`` lies outside the training data (empty when inside), one phrase per reason."""
        found = []
        for name, unit in RANGE_FEATURES.items():
            low, high = self.ranges[name]
            value = subject.quantity(name)
            if not low <= value <= high:
                found.append(f"{name} {value:.4g} {unit} outside the training range [{low:g}, {high:g}]")
        if subject.sex not in self.sexes:
            found.append(f"sex {subject.sex} not in the training data (only {', '.join(self.sexes)})")
        density = self.densities.get(subject.sex)
        if not found and density is not None:
            distance = density.distance(subject)
            if distance > density.max_distance:
                found.append(f"the combination of age, weight and height is farther from the training subjects "
                             f"of sex {subject.sex} (Mahalanobis distance {distance:.2f}) than any of them "
                             f"({density.max_distance:.2f})")
        return found

    def clamp(self, subject: Demographics) -> Demographics:
        """``subject`` with age, weight and height clipped to the training range (sex kept).

        Feature-dependent terms (the demographic prior, a linear model) extrapolate without bound;
        fed the clamped subject they stay at the value of the nearest training edge.
        """
        clipped = {name: float(np.clip(getattr(subject, name), *self.ranges[name]))
                   for name in ("age", "weight", "height")}
        if all(clipped[name] == getattr(subject, name) for name in clipped):
            return subject
        return Demographics(sex=subject.sex, **clipped)

    def describe(self) -> str:
        """One line: the training range per feature."""
        parts = [f"{name} {low:g}-{high:g} {unit}" for name, unit in RANGE_FEATURES.items()
                 for low, high in [self.ranges[name]]]
        return f"trained on {self.count} subjects ({', '.join(self.sexes)}): " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "source": self.source,
            "ranges": {name: list(bounds) for name, bounds in self.ranges.items()},
            "sexes": list(self.sexes),
            "densities": {sex: {"features": list(DENSITY_FEATURES), "mean": list(d.mean),
                                "inverse_covariance": [list(row) for row in d.inverse_covariance],
                                "max_distance": d.max_distance} for sex, d in self.densities.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DemographicRange:
        """Read what ``to_dict`` wrote (the pipeline's ``training_range`` config); InputError naming what is off."""
        try:
            ranges = {name: (float(data["ranges"][name][0]), float(data["ranges"][name][1])) for name in RANGE_FEATURES}
            densities = {sex: SexDensity(tuple(float(v) for v in d["mean"]),
                                         tuple(tuple(float(v) for v in row) for row in d["inverse_covariance"]),
                                         float(d["max_distance"]))
                         for sex, d in dict(data.get("densities") or {}).items()}
            return cls(int(data["count"]), ranges, tuple(data["sexes"]), densities, str(data.get("source", "")))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise InputError(f"training_range: not a demographic range record ({type(error).__name__}: {error}); "
                             f"expected count, ranges of {', '.join(RANGE_FEATURES)}, sexes, densities") from None
