"""FDG-avid lesions with known truth, inserted into an existing PET/CT pair (synthetic ground truth).

    from petct_pipeline.lesions import insert_lesions
    result = insert_lesions(ct_hu, suv, affine, organs, diagnosis="LYMPHOMA", generator=3)
    result.save("out/")   # ct.nii.gz, pet_suv.nii.gz, lesions.nii.gz, lesions.json

One concept per module: ``spec`` (what a user may ask for), ``sampling`` (lesions by diagnosis),
``sites`` (where a lesion may sit), ``shapes``, ``placement``, ``psf``, ``uptake`` (the PET and
its calibration), ``density`` (the CT), ``measure`` (what lesions.json reports) and ``insert``
(the whole insertion). How a lesion is made and where each number comes from: docs/lesions.md.
The command line is ``petct lesions`` (``petct_pipeline/commands/lesions.py``).
"""

from .insert import LESIONS_FILENAME, LESIONS_JSON_FILENAME, LesionInsertion, insert_lesions
from .placement import MIN_GAP_MM
from .psf import PSF_FWHM_MM
from .sampling import DIAGNOSES, check_diagnosis, sample_lesion_specs
from .spec import SHAPES, SITES, SPEC_FIELDS, UPTAKE_FIELDS, LesionSpec, parse_lesion_specs, read_lesion_specs
from .uptake import PV_COMPENSATION_MIN_DIAMETER_MM

__all__ = [
    "insert_lesions",
    "LesionInsertion",
    "LESIONS_FILENAME",
    "LESIONS_JSON_FILENAME",
    "LesionSpec",
    "parse_lesion_specs",
    "read_lesion_specs",
    "sample_lesion_specs",
    "check_diagnosis",
    "DIAGNOSES",
    "SITES",
    "SHAPES",
    "SPEC_FIELDS",
    "UPTAKE_FIELDS",
    "PSF_FWHM_MM",
    "MIN_GAP_MM",
    "PV_COMPENSATION_MIN_DIAMETER_MM",
]
