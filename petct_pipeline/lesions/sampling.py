"""Lesions drawn for a diagnosis, the way AutoPET's positive studies present.

The cohort is AutoPET (TCIA FDG-PET-CT-Lesions; Gatidis et al. 2022, Sci Data 9:601): 1014
studies, 513 negative, 188 melanoma, 168 lung cancer, 145 lymphoma. Sites, counts and sizes are
the phantom's lesion model (``petct_pipeline.phantom.lesions``, one owner of those numbers):
lymphoma in nodes, spleen and marrow; melanoma in subcutis, nodes, lung and liver; lung cancer
in lung, nodes, bone and liver. Uptake is drawn as SUVmax, the quantity the literature reports:

* lung cancer: median SUVmax 10 (NSCLC primaries: median SUVmax cut-offs of 7-15 across the
  studies of a 2020 meta-analysis, Diagnostics 10:1030, Table 2; Cerfolio et al. 2005: 10);
* lymphoma: median 12 (aggressive lymphomas mostly SUVmax > 10, indolent ones lower:
  Schoder et al. 2005, J Clin Oncol 23:4643);
* melanoma: median 8 (assumption: between the phantom's SUVmean median 7 and the others);

each log-normal with the phantom's log-SD and clipped to its range (2.5-40). Shapes, necrosis
and the share of sclerotic bone lesions are assumptions, stated where they are set.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from ..errors import InputError, InputTypeError
from ..phantom.lesions import (
    DIAGNOSES,
    DIAGNOSIS_SITES,
    LESION_COUNT_RANGE,
    LESION_RADIUS_MM,
    LESION_SUV_RANGE,
    LESION_SUV_SIGMA,
    NODE_RADIUS_MM,
)
from .density import BONE_LYTIC_HU, BONE_SCLEROTIC_HU
from .spec import SHAPES, SITE_ALIASES, LesionSpec

__all__ = [
    "DIAGNOSES",
    "SUV_MAX_MEDIAN",
    "SHAPE_PROBABILITIES",
    "NECROSIS_MIN_DIAMETER_MM",
    "NECROSIS_PROBABILITY",
    "SCLEROTIC_PROBABILITY",
    "check_diagnosis",
    "sample_lesion_specs",
]

#: median lesion SUVmax per diagnosis (sources in the module docstring)
SUV_MAX_MEDIAN: dict[str, float] = {"LYMPHOMA": 12.0, "LUNG_CANCER": 10.0, "MELANOMA": 8.0}
#: share of sphere / ellipsoid / lobulated lesions (assumption: most lesions are round to oval)
SHAPE_PROBABILITIES: tuple[float, ...] = (0.4, 0.35, 0.25)
#: lesions this large may have a necrotic core (assumption: large tumours outgrow their blood supply)
NECROSIS_MIN_DIAMETER_MM = 30.0
NECROSIS_PROBABILITY = 0.4
NECROTIC_FRACTION_RANGE_SAMPLED = (0.1, 0.35)
#: share of bone lesions that are sclerotic rather than lytic (assumption: FDG-avid metastases of lung
#: cancer and melanoma are mostly osteolytic)
SCLEROTIC_PROBABILITY = 0.25


def check_diagnosis(diagnosis: object) -> str:
    """``diagnosis`` as one of :data:`DIAGNOSES` (case-insensitive), or ``InputError`` naming the allowed values."""
    if not isinstance(diagnosis, str):
        raise InputTypeError(f"diagnosis must be one of {', '.join(DIAGNOSES)}, got {diagnosis!r}")
    name = diagnosis.strip().upper()
    if name not in DIAGNOSES:
        raise InputError(f"diagnosis={diagnosis!r} is not a diagnosis: allowed {', '.join(DIAGNOSES)}")
    return name


def sample_lesion_specs(diagnosis: str, rng: np.random.Generator,
                        sites: Collection[str] | None = None) -> list[LesionSpec]:
    """Lesion specs for one subject with ``diagnosis`` (none for NEGATIVE), deterministic for ``rng``'s state.

    ``sites``: the sites that can be placed in this volume (without an organ map, liver and spleen
    cannot); the diagnosis' site shares are renormalised over them.
    """
    diagnosis = check_diagnosis(diagnosis)
    if diagnosis == "NEGATIVE":
        return []
    shares = {}
    for site, share in DIAGNOSIS_SITES[diagnosis].items():
        site = SITE_ALIASES.get(site, site)
        if sites is None or site in sites:
            shares[site] = shares.get(site, 0.0) + share
    if not shares:
        raise InputError(f"diagnosis {diagnosis}: none of its sites ({', '.join(DIAGNOSIS_SITES[diagnosis])}) "
                         f"can be placed in this volume; give an organ map (--organs)")
    names = list(shares)
    p = np.array([shares[n] for n in names]) / sum(shares.values())
    count = int(rng.integers(LESION_COUNT_RANGE[0], LESION_COUNT_RANGE[1] + 1))
    specs = []
    for index in range(count):
        site = str(rng.choice(names, p=p))
        radius = float(rng.uniform(*(NODE_RADIUS_MM if site == "node" else LESION_RADIUS_MM)))
        suv_max = float(np.clip(SUV_MAX_MEDIAN[diagnosis] * math.exp(rng.normal(0.0, LESION_SUV_SIGMA)),
                                *LESION_SUV_RANGE))
        shape = str(rng.choice(SHAPES, p=SHAPE_PROBABILITIES))
        necrotic = 0.0
        if 2 * radius >= NECROSIS_MIN_DIAMETER_MM and rng.random() < NECROSIS_PROBABILITY:
            necrotic = float(rng.uniform(*NECROTIC_FRACTION_RANGE_SAMPLED))
        hu = None
        if site == "bone":
            hu = BONE_SCLEROTIC_HU if rng.random() < SCLEROTIC_PROBABILITY else BONE_LYTIC_HU
        requested = {"site": site, "diameter_mm": round(2 * radius, 1), "suv_max": round(suv_max, 2),
                     "shape": shape}
        if necrotic:
            requested["necrotic_fraction"] = round(necrotic, 3)
        if hu is not None:
            requested["hu"] = hu
        specs.append(LesionSpec(index=index, diameter_mm=requested["diameter_mm"], quantity="suv_max",
                                value=requested["suv_max"], site=site, hu=hu, shape=shape,
                                necrotic_fraction=requested.get("necrotic_fraction", 0.0), requested=requested,
                                sampled=True))
    return specs
