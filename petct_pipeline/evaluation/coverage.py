"""Which subjects of each cohort have an organ in their field of view, and why a side has none.

Cohorts need not cover the same body: a reference scanned vertex to mid-thigh (as AutoPET's
studies are) against generated volumes that stop above the bladder, or a label map that lacks an
organ. The summary compares only the subjects in which the organ was found
(:func:`~.metrics.organ_found`), counts them and the subgroup's subjects on each side, and gives
each subgroup x organ one ``status``:

=========================  ==================================================================
status                     rule (within one subgroup)
=========================  ==================================================================
``ok``                     found in at least one subject of each side (the counts say how many)
``outside_generated_fov``  found in no generated subject, found in a reference subject, and the
                           generated volumes are shorter: their median z extent (mm) is below
                           the median z extent of the reference subjects that have the organ
``outside_reference_fov``  the same with the sides swapped
``not_found_generated``    found in no generated subject although its volumes are not shorter:
                           the label map or the segmenter lacks the organ
``not_found_reference``    the same with the sides swapped
``not_found``              found on neither side
``no_generated_subjects``  the subgroup has no generated subject (``no_reference_subjects``: none
                           on the reference side)
=========================  ==================================================================

The z-extent rule tells a cut-off field of view from a missing label without assuming where a
volume starts; the counts are the facts, the status is their most likely reading.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from .cohort import CohortMeasurement, SubjectMeasurement
from .metrics import organ_found

__all__ = ["OK", "STATUSES", "Coverage", "z_extent_mm", "organ_coverage"]

OK = "ok"
#: every status a summary row can carry, in the order of the module docstring's table
STATUSES = (OK, "outside_generated_fov", "outside_reference_fov", "not_found_generated", "not_found_reference",
            "not_found", "no_generated_subjects", "no_reference_subjects")


@dataclass(frozen=True)
class Coverage:
    """Subjects of a subgroup on each side, how many of them have the organ, and the resulting status."""

    status: str
    generated_subjects: int
    reference_subjects: int
    generated_found: int
    reference_found: int


def z_extent_mm(measurement: SubjectMeasurement) -> float:
    """Length of the subject's volume along z (inferior-superior), mm."""
    return float(measurement.shape[2] * measurement.spacing[2])


def _side_status(side: str, own: list[SubjectMeasurement], other_with_organ: list[SubjectMeasurement]) -> str:
    """Status of a side that has subjects but none with the organ, while the other side has it in some."""
    own_extent = float(np.median([z_extent_mm(m) for m in own]))
    other_extent = float(np.median([z_extent_mm(m) for m in other_with_organ]))
    return f"outside_{side}_fov" if own_extent < other_extent else f"not_found_{side}"


def organ_coverage(generated: CohortMeasurement, reference: CohortMeasurement, organ: str,
                   generated_keys: Collection[str], reference_keys: Collection[str]) -> Coverage:
    """:class:`Coverage` of ``organ`` in the subgroup whose subject keys are given for each side."""
    subjects = {
        "generated": [m for m in generated.subjects if m.subject.key in generated_keys],
        "reference": [m for m in reference.subjects if m.subject.key in reference_keys],
    }
    found = {side: [m for m in members if organ in m.organs and organ_found(m.organs[organ])]
             for side, members in subjects.items()}
    if not subjects["generated"]:
        status = "no_generated_subjects"
    elif not subjects["reference"]:
        status = "no_reference_subjects"
    elif not found["generated"] and not found["reference"]:
        status = "not_found"
    elif not found["generated"]:
        status = _side_status("generated", subjects["generated"], found["reference"])
    elif not found["reference"]:
        status = _side_status("reference", subjects["reference"], found["generated"])
    else:
        status = OK
    return Coverage(status, len(subjects["generated"]), len(subjects["reference"]), len(found["generated"]),
                    len(found["reference"]))
