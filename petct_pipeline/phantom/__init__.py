"""Demographic whole-body FDG PET/CT phantom population in the AutoPET layout (synthetic data).

>>> from petct_pipeline.phantom import generate_phantom, sample_population
>>> subject = generate_phantom(Demographics(age=35, sex="M", weight=73, height=176), seed=0)
"""

from ..cohort import CohortRow, read_cohort
from .anatomy import Tissue
from .organ_sizes import ICRP89_MASS_G, expected_volume_ml, reference_volume_ml
from .population import AUTOPET_COHORT, Acquisition, sample_population
from .subject import PhantomSubject, generate_phantom
from .uptake import LITERATURE_SUV_RANGES
from .writer import write_population, write_study

read_cohort_csv = read_cohort

__all__ = [
    "AUTOPET_COHORT",
    "Acquisition",
    "CohortRow",
    "ICRP89_MASS_G",
    "LITERATURE_SUV_RANGES",
    "PhantomSubject",
    "Tissue",
    "expected_volume_ml",
    "generate_phantom",
    "read_cohort",
    "read_cohort_csv",
    "reference_volume_ml",
    "sample_population",
    "write_population",
    "write_study",
]
