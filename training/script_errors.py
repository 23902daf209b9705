"""How the training scripts report a user's mistake: one line ``<script>: error: <message>``, exit code 2.

Bad configs, paths and arguments raise these exceptions with a message that names the
field and the allowed values, so the traceback would add nothing (DESIGN.md, Errors).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["USER_ERRORS", "report_user_errors"]

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError, ImportError)


def report_user_errors(script: str, run: Callable[[], int]) -> int:
    """``run()``'s exit code, or 2 after printing a user error as one line on stderr."""
    try:
        return run()
    except USER_ERRORS as error:
        print(f"{script}: error: {error}", file=sys.stderr)
        return 2
