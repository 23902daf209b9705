"""Demographic subgroups in which generated and reference subjects are compared.

Default (the paper's): sex x age band, adult (age <= 65) and elder (age > 65), plus BMI bands
(< 25, 25-30, >= 30 kg/m^2). ``all`` (every subject) is always included. Families:

==========  ==========================================  ===============================
family      subgroups                                   rule
==========  ==========================================  ===============================
all         ``all``                                     every subject
sex         ``M``, ``F``                                sex
age         ``adult``, ``elder``                        age <= age_split, age > age_split
sex_age     ``M_adult``, ``M_elder``, ``F_adult``, ...   both of the above
bmi         ``bmi<25``, ``bmi25-30``, ``bmi>=30``         BMI bands from ``bmi_edges``
==========  ==========================================  ===============================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..demographics import Demographics
from ..errors import InputError

__all__ = ["FAMILIES", "DEFAULT_FAMILIES", "SubgroupScheme", "parse_families", "parse_edges"]

FAMILIES = ("all", "sex", "age", "sex_age", "bmi")
DEFAULT_FAMILIES = ("sex_age", "bmi")


@dataclass(frozen=True)
class SubgroupScheme:
    """Which subgroup families to report, the age split (years) and the BMI band edges (kg/m^2)."""

    families: tuple[str, ...] = DEFAULT_FAMILIES
    age_split: float = 65.0
    bmi_edges: tuple[float, ...] = (25.0, 30.0)

    def __post_init__(self) -> None:
        families = tuple(self.families)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise InputError(f"unknown subgroup famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                             f"allowed: {', '.join(FAMILIES)}")
        if "all" not in families:
            families = ("all", *families)
        object.__setattr__(self, "families", tuple(dict.fromkeys(families)))
        age = self.age_split
        if isinstance(age, bool) or not isinstance(age, int | float) or not 0 < float(age) < 120:
            raise InputError(f"age_split must be a number of years in (0, 120), got {age!r}")
        object.__setattr__(self, "age_split", float(age))
        edges = tuple(float(e) for e in self.bmi_edges)
        if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or not all(5 < e < 100 for e in edges):
            raise InputError(f"bmi_edges must be increasing numbers in (5, 100) kg/m^2, got {self.bmi_edges!r}")
        object.__setattr__(self, "bmi_edges", edges)

    @property
    def age_bands(self) -> tuple[str, str]:
        return ("adult", "elder")

    def bmi_bands(self) -> list[str]:
        edges = self.bmi_edges
        names = [f"bmi<{edges[0]:g}"]
        names += [f"bmi{a:g}-{b:g}" for a, b in zip(edges, edges[1:])]
        names.append(f"bmi>={edges[-1]:g}")
        return names

    def subgroups(self, family: str) -> list[str]:
        """Subgroup names of ``family`` in report order."""
        if family == "all":
            return ["all"]
        if family == "sex":
            return ["M", "F"]
        if family == "age":
            return list(self.age_bands)
        if family == "sex_age":
            return [f"{s}_{a}" for s in ("M", "F") for a in self.age_bands]
        if family == "bmi":
            return self.bmi_bands()
        raise InputError(f"unknown subgroup family {family!r}; allowed: {', '.join(FAMILIES)}")

    def names(self) -> list[str]:
        """Every subgroup name of every family, in report order (``all`` first)."""
        return [name for family in self.families for name in self.subgroups(family)]

    def family_of(self, subgroup: str) -> str:
        for family in self.families:
            if subgroup in self.subgroups(family):
                return family
        raise InputError(f"unknown subgroup {subgroup!r}; this scheme has {self.names()}")

    def age_band(self, age: float) -> str:
        return "adult" if age <= self.age_split else "elder"

    def bmi_band(self, bmi: float) -> str:
        names = self.bmi_bands()
        for name, edge in zip(names, self.bmi_edges):
            if bmi < edge:
                return name
        return names[-1]

    def assign(self, demographics: Demographics) -> dict[str, str]:
        """Family -> the subgroup ``demographics`` belongs to (one per family)."""
        out = {}
        for family in self.families:
            if family == "all":
                out[family] = "all"
            elif family == "sex":
                out[family] = demographics.sex
            elif family == "age":
                out[family] = self.age_band(demographics.age)
            elif family == "sex_age":
                out[family] = f"{demographics.sex}_{self.age_band(demographics.age)}"
            elif family == "bmi":
                out[family] = self.bmi_band(demographics.bmi)
        return out

    def describe(self) -> list[tuple[str, str]]:
        """(subgroup, rule in words) for the report's legend."""
        split = f"{self.age_split:g}"
        rules = {"all": "every subject", "M": "male", "F": "female",
                 "adult": f"age <= {split} y", "elder": f"age > {split} y"}
        for sex, word in (("M", "male"), ("F", "female")):
            rules[f"{sex}_adult"] = f"{word}, age <= {split} y"
            rules[f"{sex}_elder"] = f"{word}, age > {split} y"
        edges = self.bmi_edges
        bands = self.bmi_bands()
        rules[bands[0]] = f"BMI < {edges[0]:g} kg/m^2"
        for name, a, b in zip(bands[1:-1], edges, edges[1:]):
            rules[name] = f"{a:g} <= BMI < {b:g} kg/m^2"
        rules[bands[-1]] = f"BMI >= {edges[-1]:g} kg/m^2"
        return [(name, rules[name]) for name in self.names()]


def parse_families(text: str | Sequence[str]) -> tuple[str, ...]:
    """"sex_age,bmi" -> ("sex_age", "bmi"), validated."""
    items = text.split(",") if isinstance(text, str) else list(text)
    families = tuple(item.strip() for item in items if item.strip())
    SubgroupScheme(families=families)  # validates
    return families


def parse_edges(text: str | Sequence[float]) -> tuple[float, ...]:
    """"25,30" -> (25.0, 30.0); ValueError naming the field otherwise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        return tuple(float(item) for item in items if str(item).strip())
    except ValueError:
        raise InputError(f"bmi_edges must be comma-separated numbers (kg/m^2), e.g. 25,30; got {text!r}") from None
