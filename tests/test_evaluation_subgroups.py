"""Demographic subgroups (evaluation/subgroups.py): the paper's sex x age bands, BMI bands, validation."""

from __future__ import annotations

import pytest

from petct_pipeline.demographics import Demographics
from petct_pipeline.evaluation import SubgroupScheme


def test_subgroup_scheme_assigns_paper_groups_and_validates():
    scheme = SubgroupScheme()
    assert scheme.assign(Demographics(age=65, sex="F", weight=60, height=170)) == {
        "all": "all", "sex_age": "F_adult", "bmi": "bmi<25"}
    assert scheme.assign(Demographics(age=66, sex="M", weight=90, height=170))["sex_age"] == "M_elder"
    assert scheme.bmi_band(25.0) == "bmi25-30" and scheme.bmi_band(30.0) == "bmi>=30"
    custom = SubgroupScheme(families=("sex", "age"), age_split=50, bmi_edges=(30,))
    assert custom.names() == ["all", "M", "F", "adult", "elder"]
    with pytest.raises(ValueError, match="subgroup famil"):
        SubgroupScheme(families=("height",))
    with pytest.raises(ValueError, match="bmi_edges"):
        SubgroupScheme(bmi_edges=(30, 25))
