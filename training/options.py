"""Frozen option dataclasses from config sections (a mapping read from YAML or JSON).

Every default lives in the dataclass, so a section lists only what differs from it, and
an override is ``dataclasses.replace``. Building a dataclass from a section:

* unknown keys raise InputError naming the key and the allowed ones (a typo never
  silently trains with a default);
* a field whose type is a dataclass is built from the nested section;
* null (an empty YAML value) takes the default, unless the field's type admits None;
* lists become tuples for tuple fields; a numeric string becomes a float for float fields
  (PyYAML reads ``1e-4``, without a dot, as a string).

Values are checked by each dataclass's ``__post_init__``; ``check_int`` and
``check_number`` word those errors alike.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from petct_pipeline.errors import InputError, InputTypeError

__all__ = ["check_mapping", "check_keys", "from_mapping", "override", "check_int", "check_number"]

Options = TypeVar("Options")


def check_mapping(section: Any, where: str) -> None:
    """TypeError unless ``section`` is a mapping (a YAML section, not a value or a list)."""
    if not isinstance(section, Mapping):
        raise InputTypeError(f"{where} must be a mapping, got {type(section).__name__}")


def check_keys(section: Any, allowed: Iterable[str], where: str) -> None:
    """TypeError unless ``section`` is a mapping; ValueError naming unknown keys and the allowed ones."""
    check_mapping(section, where)
    allowed = sorted(allowed)
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in {where}; allowed: {allowed}")


def from_mapping(cls: type[Options], section: Mapping[str, Any] | None, where: str) -> Options:
    """``cls(**section)`` with the keys checked and the values converted; ``where`` names the section."""
    return cls(**_converted(cls, section, where, None))


def override(options: Options, section: Mapping[str, Any] | None, where: str) -> Options:
    """``dataclasses.replace(options, **section)``; a nested section overrides the nested options key by key."""
    return dataclasses.replace(options, **_converted(type(options), section, where, options))


def check_int(value: Any, where: str, minimum: int) -> int:
    """``value`` if it is an integer >= ``minimum`` (booleans are not), else ValueError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(value: Any, where: str, allowed: str, accept: Callable[[float], bool]) -> float:
    """``float(value)`` if it is a number that ``accept`` takes, else ValueError: '<where> must be <allowed>'."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not accept(value):
        raise InputError(f"{where} must be {allowed}, got {value!r}")
    return float(value)


def _converted(cls: type, section: Mapping[str, Any] | None, where: str, current: Any) -> dict[str, Any]:
    section = {} if section is None else section
    check_keys(section, (f.name for f in dataclasses.fields(cls)), where)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in section.items():
        hint, key = hints[name], f"{where}.{name}" if where else name
        if value is None and type(None) not in _members(hint):
            continue
        nested = next((t for t in _members(hint) if dataclasses.is_dataclass(t)), None)
        if nested is not None and value is not None:
            values[name] = (from_mapping(nested, value, key) if current is None
                            else override(getattr(current, name), value, key))
        else:
            values[name] = _coerced(hint, value, key)
    return values


def _members(hint: Any) -> tuple[Any, ...]:
    """The types of a union (``int | None`` -> int, NoneType), else ``(hint,)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _coerced(hint: Any, value: Any, key: str) -> Any:
    members = _members(hint)
    origins = {typing.get_origin(t) or t for t in members}
    if float in members and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise InputError(f"{key} must be a number, got {value!r}") from None
    if tuple in origins and isinstance(value, list):
        return tuple(value)
    if dict in origins:
        check_mapping(value, key)
        return dict(value)
    return value
