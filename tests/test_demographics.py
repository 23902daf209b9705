import math

import numpy as np
import pytest

from petct_pipeline.demographics import Demographics, parse_sex


def test_derived_quantities():
    d = Demographics(age=63, sex="F", weight=70, height=165)
    assert d.bmi == pytest.approx(70 / 1.65**2)
    assert d.bsa == pytest.approx(math.sqrt(165 * 70 / 3600))
    assert d.quantity("sex") == 0.0 and d.quantity("height_m") == pytest.approx(1.65)
    assert d.to_dict()["sex"] == "F"


@pytest.mark.parametrize("spelling,expected", [("m", "M"), ("Male", "M"), (" female ", "F"), ("W", "F"), ("F", "F")])
def test_sex_spellings(spelling, expected):
    assert parse_sex(spelling) == expected


@pytest.mark.parametrize(
    "field,value,error,fragment",
    [
        ("age", float("nan"), ValueError, "finite"),
        ("age", -1, ValueError, "age=-1 is out of range"),
        ("age", 130, ValueError, "[0, 120]"),
        ("weight", float("inf"), ValueError, "weight must be finite"),
        ("weight", 0, ValueError, "weight=0"),
        ("height", "175", TypeError, "height must be a number"),
        ("height", 300, ValueError, "[40, 250] cm"),
        ("sex", "X", ValueError, "sex must be one of"),
        ("sex", None, TypeError, "sex must be one of"),
        ("age", True, TypeError, "age must be a number"),
    ],
)
def test_bad_values_name_field_value_and_range(field, value, error, fragment):
    values = {"age": 40, "sex": "M", "weight": 80, "height": 180, field: value}
    with pytest.raises(error) as excinfo:
        Demographics(**values)
    assert fragment in str(excinfo.value)
    assert field in str(excinfo.value)


def test_numpy_scalars_and_mapping():
    d = Demographics(age=np.float32(50), sex="M", weight=np.int64(90), height=180.0)
    assert d.age == 50.0 and isinstance(d.weight, float)
    row = Demographics.from_mapping({"age": "50", "sex": "male", "weight": " 90", "height": "180"})
    assert row == d
    with pytest.raises(ValueError, match="missing demographic field"):
        Demographics.from_mapping({"age": "50", "sex": "M"})
    with pytest.raises(ValueError, match="weight must be a number"):
        Demographics.from_mapping({"age": "50", "sex": "M", "weight": "heavy", "height": "180"})


@pytest.mark.parametrize("age,sex,weight,height,bmi", [(5, "F", 250, 100, "250.0"), (100, "M", 20, 220, "4.1")])
def test_a_body_size_no_human_has_is_refused_naming_the_fields(tmp_path, capsys, age, sex, weight, height, bmi):
    from petct_pipeline.cli import main
    from petct_pipeline.cohort import read_cohort
    from petct_pipeline.errors import InputError

    with pytest.raises(InputError, match=rf"weight={weight} kg and height={height} cm give BMI {bmi}"):
        Demographics(age=age, sex=sex, weight=weight, height=height)
    out = tmp_path / "out"
    code = main(["generate", "--age", str(age), "--sex", sex, "--weight", str(weight), "--height", str(height),
                 "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "allowed BMI range [10, 100]" in error
    assert not out.exists() or not any(out.iterdir())
    cohort = tmp_path / "c.csv"
    cohort.write_text(f"id,age,sex,weight,height\nok,40,F,60,165\nbad,{age},{sex},{weight},{height}\n")
    with pytest.raises(InputError, match=r"line 3: field 'weight'|line 3: field 'value'"):
        read_cohort(cohort)


def test_human_extremes_inside_the_limits_are_accepted():
    assert Demographics(age=100, sex="F", weight=250, height=220).bmi == pytest.approx(51.65, abs=0.01)
    assert Demographics(age=30, sex="F", weight=30, height=165).bmi == pytest.approx(11.02, abs=0.01)
