"""How the training scripts report a user's mistake: one line ``<script>: error: <message>``, exit code 2.

Bad configs, paths and arguments raise these exceptions with a message that names the
field and the allowed values, so the traceback would add nothing (DESIGN.md, Errors).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from petct_pipeline.errors import USER_ERRORS as LIBRARY_USER_ERRORS
from petct_pipeline.errors import user_error_line

__all__ = ["USER_ERRORS", "report_user_errors"]

#: the library's user errors, an existing output folder, and a missing optional dependency (its message says
#: which extra to install); anything else is a bug and keeps its traceback
USER_ERRORS = (*LIBRARY_USER_ERRORS, FileExistsError, ImportError)


def report_user_errors(script: str, run: Callable[[], int]) -> int:
    """``run()``'s exit code, or 2 after printing a user error as one line on stderr."""
    try:
        return run()
    except (*USER_ERRORS, OSError) as error:  # OSError: a write the machine refuses (disk full, read-only)
        line = user_error_line(error, USER_ERRORS)
        if line is None:
            raise
        print(f"{script}: error: {line}", file=sys.stderr)
        return 2
