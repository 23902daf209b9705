"""The ``petct`` command: one sub-command per module in ``petct_pipeline.commands``.

Bad input (the library's ``errors.USER_ERRORS``: ``InputError``, ``ModelLoadError``, missing or
unreadable files) and a write the machine refuses (disk full, read-only: ``errors.is_write_failure``)
become one line on stderr and exit code 2; any other exception is a bug and
keeps its traceback. Nothing is half-written because every writer in the library renames
finished files into place.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import USER_ERRORS, InputError, one_line, user_error_line

__all__ = ["main", "build_parser", "UsageError", "one_line"]

# Each name is a module in petct_pipeline/commands exposing register(subparsers).
COMMANDS: tuple[str, ...] = ("generate", "prepare", "evaluate", "phantom", "lesions", "export")


class UsageError(InputError):
    """Raised by a command for a problem with its arguments; reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petct",
        description="Synthesise and evaluate whole-body 18F-FDG PET/CT from demographics "
        "(age, sex, weight, height) with cascaded 3D diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"petct-diffusion {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"petct_pipeline.commands.{name}").register(subparsers)
    return parser


def _check_no_nul(args: argparse.Namespace) -> None:
    """No file name holds a NUL character; os calls would fail with a ValueError naming no flag."""
    for name, value in vars(args).items():
        if isinstance(value, str | os.PathLike) and "\0" in str(value):
            raise UsageError(f"--{name.replace('_', '-')} {one_line(str(value))!r} holds a NUL character, "
                             "which no file name or value can")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        _check_no_nul(args)
        return int(args.func(args) or 0)
    except (*USER_ERRORS, OSError) as error:
        line = user_error_line(error)
        if line is None:
            raise
        print(f"petct {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"petct {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
