"""Validated patient demographics: the only input the generator is conditioned on.

Validation lives here, once, so the pipeline, the CLI, the phantom and the Space all
reject the same bad values with the same message (field, value, allowed range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .errors import InputError, InputTypeError

__all__ = ["Demographics", "AGE_RANGE", "WEIGHT_RANGE", "HEIGHT_RANGE", "BMI_RANGE", "SEX_VALUES", "parse_sex"]

AGE_RANGE = (0.0, 120.0)  # years
WEIGHT_RANGE = (2.0, 350.0)  # kg
HEIGHT_RANGE = (40.0, 250.0)  # cm
#: body-mass index (kg/m^2) that humans have: below ~10 is not survivable (Henry, "Body mass index and the
#: limits of human survival", Eur J Clin Nutr 1990; the lowest adult BMIs reported in anorexia nervosa are
#: about 10), and above 100 only a handful of case reports exist; each field's own range admits both
#: BMI 4 (20 kg at 220 cm) and BMI 250 (250 kg at 100 cm), so the combination is checked too
BMI_RANGE = (10.0, 100.0)
SEX_VALUES = ("M", "F")

_SEX_SPELLINGS = {
    "m": "M", "male": "M", "man": "M", "1": "M",
    "f": "F", "female": "F", "woman": "F", "w": "F", "0": "F",
}


def parse_sex(value: Any) -> str:
    """Normalise the obvious spellings of sex ("male", "f", "Woman", ...) to "M" or "F"."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputTypeError(f"sex must be one of {SEX_VALUES} (or male/female), got {value!r}")
    key = str(value).strip().lower()
    if key not in _SEX_SPELLINGS:
        raise InputError(f"sex must be one of {SEX_VALUES} (or male/female), got {value!r}")
    return _SEX_SPELLINGS[key]


def _validated_number(name: str, value: Any, bounds: tuple[float, float], unit: str) -> float:
    low, high = bounds
    allowed = f"allowed range [{low:g}, {high:g}] {unit}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        # numpy scalars are numbers too; strings are not, even "63".
        try:
            import numpy as np

            if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
                value = float(value)
            else:
                raise InputTypeError
        except TypeError:
            raise InputTypeError(f"{name} must be a number ({allowed}), got {value!r}") from None
    try:
        value = float(value)
    except OverflowError:  # an int beyond any float is as unusable as inf
        value = math.inf
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite ({allowed}), got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{name}={value:g} is out of range: {allowed}")
    return value


@dataclass(frozen=True)
class Demographics:
    """Age (years), sex ("M"/"F"), weight (kg) and height (cm) of one patient."""

    age: float
    sex: str
    weight: float
    height: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "age", _validated_number("age", self.age, AGE_RANGE, "years"))
        object.__setattr__(self, "sex", parse_sex(self.sex))
        object.__setattr__(self, "weight", _validated_number("weight", self.weight, WEIGHT_RANGE, "kg"))
        object.__setattr__(self, "height", _validated_number("height", self.height, HEIGHT_RANGE, "cm"))
        if not BMI_RANGE[0] <= self.bmi <= BMI_RANGE[1]:
            raise InputError(
                f"weight={self.weight:g} kg and height={self.height:g} cm give BMI {self.bmi:.1f}, which no human "
                f"has: allowed BMI range [{BMI_RANGE[0]:g}, {BMI_RANGE[1]:g}] kg/m^2"
            )

    @property
    def height_m(self) -> float:
        return self.height / 100.0

    @property
    def is_male(self) -> bool:
        return self.sex == "M"

    @property
    def bmi(self) -> float:
        """Body-mass index in kg/m^2."""
        return self.weight / self.height_m**2

    @property
    def bsa(self) -> float:
        """Body surface area in m^2 (Mosteller 1987: sqrt(height_cm * weight_kg / 3600))."""
        return math.sqrt(self.height * self.weight / 3600.0)

    def quantity(self, name: str) -> float:
        """A named scalar used by model feature maps: age, sex (M=1, F=0), weight, height, height_m, bmi, bsa."""
        if name == "sex":
            return 1.0 if self.is_male else 0.0
        if name in ("age", "weight", "height", "height_m", "bmi", "bsa"):
            return float(getattr(self, name))
        raise InputError(
            f"unknown demographic quantity {name!r}; allowed: age, sex, weight, height, height_m, bmi, bsa"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bmi": round(self.bmi, 3), "bsa": round(self.bsa, 4)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Demographics:
        """Build from a dict of exactly the fields, validated as the constructor validates them (no parsing)."""
        fields = ("age", "sex", "weight", "height")
        unknown = sorted(str(key) for key in values if key not in fields)
        missing = [key for key in fields if key not in values]
        if unknown or missing:
            problem = f"unknown field(s) {unknown}" if unknown else f"missing field(s) {missing}"
            raise InputError(f"demographics: {problem}; allowed: age, sex, weight, height")
        return cls(**{key: values[key] for key in fields})

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Demographics:
        """Build from a dict/CSV row with keys age, sex, weight, height (strings are parsed as numbers)."""
        missing = [key for key in ("age", "sex", "weight", "height") if key not in row or row[key] in ("", None)]
        if missing:
            raise InputError(f"missing demographic field(s) {missing}; required: age, sex, weight, height")
        values: dict[str, Any] = {"sex": row["sex"]}
        for key in ("age", "weight", "height"):
            raw = row[key]
            if isinstance(raw, str):
                try:
                    raw = float(raw.strip())
                except ValueError:
                    raise InputError(f"{key} must be a number, got {row[key]!r}") from None
            values[key] = raw
        return cls(**values)
