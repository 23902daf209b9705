"""Sub-commands of the ``petct`` CLI; each module exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
from typing import Any, Protocol

__all__ = ["SubParsers"]


class SubParsers(Protocol):
    """What ``register`` uses of ``ArgumentParser.add_subparsers()``'s result (its class is private to argparse)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...
