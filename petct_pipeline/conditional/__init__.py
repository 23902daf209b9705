"""PET from a given CT: the cascade used as a conditional model (CT channel known, PET sampled).

``ct_input`` reads and checks the CT, ``placement`` puts it in the model's body frame,
``repaint`` is the RePaint resampling sampler for stage 1, and ``ct_to_pet`` runs the whole
path; ``PETCTPipeline.pet_from_ct`` (or ``pipe(demographics, ct=...)``) is the public entry.
"""

from .ct_input import InputCT, check_ct_values, read_ct
from .ct_to_pet import METHODS, CTtoPETOutput, check_offset, expected_profiles, pet_from_ct, place_ct
from .placement import Placement
from .repaint import repaint_base

__all__ = ["InputCT", "read_ct", "check_ct_values", "CTtoPETOutput", "pet_from_ct", "place_ct", "expected_profiles",
           "check_offset", "METHODS", "Placement", "repaint_base"]
