"""Property-based fuzzing of the entry points: hypothesis profiles and the one property they all share.

The property (issue 25): an entry point given anything returns a result or raises one of the
project's user errors (``errors.USER_ERRORS``) whose message names the field or file, never
another exception, and leaves no file behind. Two profiles:

* ``fast`` (default): a few dozen to a few hundred examples per property, derandomised so the
  default run is the same every time;
* ``long``: ten times as many, also derandomised so CI is a reproducible gate; run by the
  ``slow``-marked twin of every fuzz test (``.ci/run`` runs ``-m slow``), or for every fuzz test with
  ``PETCT_FUZZ_PROFILE=long``. ``PETCT_FUZZ_RANDOM=1`` makes it random: new examples each run, for a
  bug hunt rather than a gate.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from petct_pipeline.errors import USER_ERRORS

__all__ = ["PROFILES", "LONG_FACTOR", "fuzz", "record", "user_error_or_result", "files_under", "junk_text",
           "junk_value"]

LONG_FACTOR = 10
_COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("fast", derandomize=True, **_COMMON)
settings.register_profile("long", derandomize=os.environ.get("PETCT_FUZZ_RANDOM") != "1", **_COMMON)

#: parametrize a fuzz test with these: the fast run by default, the long one as a slow test
PROFILES = ("fast", pytest.param("long", marks=pytest.mark.slow))


_tally: Counter[str] = Counter()


def record(outcome: str) -> None:
    """Count one example's outcome ("accepted", "refused: InputError", "exit code 2", ...) for the report."""
    if currently_in_test_context():
        event(outcome)
    _tally[outcome] += 1


def fuzz(profile: str, examples: int, strategy: st.SearchStrategy, check: Callable[[Any], None]) -> None:
    """Run ``check`` on ``examples`` values of ``strategy`` (times LONG_FACTOR in the long profile).

    With ``PETCT_FUZZ_REPORT=FILE`` one JSON line per property is appended to FILE: the test, the
    profile, the examples tried and their outcomes (the figures docs/reliability.md quotes).
    """
    profile = os.environ.get("PETCT_FUZZ_PROFILE", profile)
    count = examples * (LONG_FACTOR if profile == "long" else 1)
    _tally.clear()
    tried = Counter()

    def counted(value: Any) -> None:
        tried["examples"] += 1
        check(value)

    settings(settings.get_profile(profile), max_examples=count)(given(strategy)(counted))()
    report = os.environ.get("PETCT_FUZZ_REPORT")
    if report:
        line = {"test": os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0], "profile": profile,
                "max_examples": count, "examples": tried["examples"], "outcomes": dict(_tally)}
        with open(report, "a") as handle:
            handle.write(json.dumps(line) + "\n")


def user_error_or_result(call: Callable[[], Any], names: Callable[[str], bool] | None = None) -> BaseException | None:
    """Call; a user error must name what is wrong (``names(message)``); any other exception propagates.

    Returns the user error (None on success) so a property can check what followed it.
    """
    try:
        call()
    except USER_ERRORS as error:
        record(f"refused: {type(error).__name__}")
        message = str(error)
        assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
        if names is not None:
            assert names(message), f"the message does not name the field or file: {message!r}"
        return error
    record("accepted")
    return None


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative POSIX names), hidden temporaries included."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


#: text a user or a broken tool might put where a value belongs
junk_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e400", "-0", "0x10", "1_000", "١٢", "\x00", "None",
                     "true", "M", "F", "male", "female", "X", "m ", "63Y", "1" * 400, "9" * 5000]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)

#: a Python value of any type a caller might pass
junk_value = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**310),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.binary(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.complex_numbers(),
)
