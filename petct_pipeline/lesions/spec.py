"""What a user asks for: one lesion spec, parsed and checked before any voxel is touched.

A ``--lesions SPEC.json`` file is a JSON list of objects::

    [{"organ": "liver", "diameter_mm": 20, "suv_max": 12},
     {"site": "lung", "center_mm": [-60, 10, -300], "diameter_mm": 14, "lesion_to_background": 8,
      "shape": "lobulated", "hu": 40}]

Every problem (invalid JSON, unknown keys, values out of range, missing or conflicting fields)
is an ``InputError`` naming the lesion's index, the field, the value and what is allowed, so
the CLI prints one line and writes nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from ..intensity import HU_RANGE
from ..organs import organ_ids

__all__ = [
    "SITES",
    "SITE_ALIASES",
    "SHAPES",
    "UPTAKE_FIELDS",
    "SPEC_FIELDS",
    "DIAMETER_RANGE_MM",
    "SUV_RANGE",
    "LESION_TO_BACKGROUND_RANGE",
    "NECROTIC_FRACTION_RANGE",
    "LesionSpec",
    "parse_lesion_specs",
    "read_lesion_specs",
]

#: where a lesion can be asked for by ``site`` (an ``organ`` may be any TotalSegmentator name or group)
SITES: tuple[str, ...] = ("lung", "liver", "spleen", "node", "bone", "subcutaneous")
#: other names accepted for a site (``marrow`` is the phantom's name for bone lesions)
SITE_ALIASES: dict[str, str] = {"marrow": "bone"}
SHAPES: tuple[str, ...] = ("sphere", "ellipsoid", "lobulated")
#: the uptake quantities a spec may request; exactly one per lesion
UPTAKE_FIELDS: tuple[str, ...] = ("suv_max", "suv_mean", "lesion_to_background")
SPEC_FIELDS: tuple[str, ...] = (
    "organ", "site", "center_mm", "diameter_mm", *UPTAKE_FIELDS, "hu", "shape", "necrotic_fraction",
)
#: equivalent-sphere diameter (mm): 3 mm is below any PET's resolution, 100 mm a bulky mass
DIAMETER_RANGE_MM = (3.0, 100.0)
#: SUVbw (g/mL) a lesion may ask for: above 0, at most 100 (the hottest FDG lesions reach ~40-60)
SUV_RANGE = (0.0, 100.0)
#: lesion SUVmean / background SUVmean: must exceed 1 (an FDG-avid lesion), at most 100
LESION_TO_BACKGROUND_RANGE = (1.0, 100.0)
#: share of the lesion's volume that is a necrotic (photopenic) core; [0, 0.9)
NECROTIC_FRACTION_RANGE = (0.0, 0.9)


@dataclass(frozen=True)
class LesionSpec:
    """One requested lesion; ``requested`` is the spec object as given (or as sampled), kept for lesions.json."""

    index: int
    diameter_mm: float
    quantity: str  # one of UPTAKE_FIELDS
    value: float
    site: str | None = None
    organ: str | None = None
    center_mm: tuple[float, float, float] | None = None
    hu: float | None = None
    shape: str = "sphere"
    necrotic_fraction: float = 0.0
    requested: Mapping[str, Any] | None = None
    sampled: bool = False  # drawn by a diagnosis rather than given: its uptake may be raised above background

    @property
    def where(self) -> str:
        """The site or organ name, for messages."""
        return f"site {self.site!r}" if self.site is not None else f"organ {self.organ!r}"


def _number(index: int, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputTypeError(f"lesion {index}: {key} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # a JSON integer beyond any float
        value = math.inf
    if not math.isfinite(value):
        raise InputError(f"lesion {index}: {key}={value:g} is not a finite number")
    return value


def _in_range(index: int, key: str, value: Any, low: float, high: float, open_low: bool = False,
              open_high: bool = False) -> float:
    number = _number(index, key, value)
    below = number <= low if open_low else number < low
    above = number >= high if open_high else number > high
    if below or above:
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise InputError(f"lesion {index}: {key}={number:g} is out of range: allowed {interval}")
    return number


def _check_one(index: int, item: Any) -> LesionSpec:
    if not isinstance(item, Mapping):
        raise InputTypeError(f"lesion {index}: must be a JSON object with keys from {', '.join(SPEC_FIELDS)}, "
                             f"got {type(item).__name__}")
    unknown = [key for key in item if key not in SPEC_FIELDS]
    if unknown:
        raise InputError(f"lesion {index}: unknown key {unknown[0]!r}: allowed keys are {', '.join(SPEC_FIELDS)}")
    site, organ = item.get("site"), item.get("organ")
    if (site is None) == (organ is None):
        raise InputError(f"lesion {index}: give exactly one of organ (a TotalSegmentator name) or site "
                         f"({', '.join(SITES)})")
    if site is not None:
        if not isinstance(site, str) or SITE_ALIASES.get(site, site) not in SITES:
            raise InputError(f"lesion {index}: site={site!r} is not a site: allowed {', '.join(SITES)}")
        site = SITE_ALIASES.get(site, site)
    if organ is not None:
        try:
            organ_ids(organ)
        except InputError as error:
            raise InputError(f"lesion {index}: organ={organ!r}: {error}") from None
    if "diameter_mm" not in item:
        raise InputError(f"lesion {index}: diameter_mm is missing: allowed [{DIAMETER_RANGE_MM[0]:g}, "
                         f"{DIAMETER_RANGE_MM[1]:g}] mm")
    diameter = _in_range(index, "diameter_mm", item["diameter_mm"], *DIAMETER_RANGE_MM)
    asked = [key for key in UPTAKE_FIELDS if key in item]
    if len(asked) != 1:
        raise InputError(f"lesion {index}: give exactly one of {', '.join(UPTAKE_FIELDS)}"
                         + (f" (got {', '.join(asked)})" if asked else ""))
    quantity = asked[0]
    if quantity == "lesion_to_background":
        value = _in_range(index, quantity, item[quantity], *LESION_TO_BACKGROUND_RANGE, open_low=True)
    else:
        value = _in_range(index, quantity, item[quantity], *SUV_RANGE, open_low=True)
    center = item.get("center_mm")
    if center is not None:
        if not isinstance(center, Sequence) or isinstance(center, str) or len(center) != 3:
            raise InputTypeError(f"lesion {index}: center_mm must be a list of 3 numbers (RAS mm), got {center!r}")
        center = tuple(_number(index, "center_mm", c) for c in center)
    hu = item.get("hu")
    if hu is not None:
        hu = _in_range(index, "hu", hu, *HU_RANGE)
    shape = item.get("shape", "sphere")
    if shape not in SHAPES:
        raise InputError(f"lesion {index}: shape={shape!r} is not a shape: allowed {', '.join(SHAPES)}")
    necrotic = _in_range(index, "necrotic_fraction", item.get("necrotic_fraction", 0.0),
                         *NECROTIC_FRACTION_RANGE, open_high=True)
    return LesionSpec(index=index, diameter_mm=diameter, quantity=quantity, value=value, site=site, organ=organ,
                      center_mm=center, hu=hu, shape=shape, necrotic_fraction=necrotic, requested=dict(item))


def parse_lesion_specs(items: Any) -> list[LesionSpec]:
    """Check a decoded spec (a list of objects, or ``LesionSpec`` s) and return one ``LesionSpec`` per lesion."""
    if isinstance(items, Mapping) or isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise InputTypeError(f"lesions must be a list of lesion objects, got {type(items).__name__}")
    specs = []
    for index, item in enumerate(items):
        specs.append(item if isinstance(item, LesionSpec) else _check_one(index, item))
    return specs


def read_lesion_specs(path: str | os.PathLike) -> list[LesionSpec]:
    """Read and check a ``--lesions SPEC.json`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a Windows editor is not content
    except UnicodeDecodeError as error:
        raise InputError(f"--lesions {path}: not a text file ({error.reason})") from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"--lesions {path}: not valid JSON: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None
    except ValueError as error:  # an integer longer than Python's int digit limit
        raise InputError(f"--lesions {path}: not valid JSON: {error}") from None
    except RecursionError:
        raise InputError(f"--lesions {path}: not valid JSON: lists or objects nested too deeply") from None
    return parse_lesion_specs(items)
