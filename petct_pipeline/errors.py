"""The project's error types: what a user got wrong, as opposed to a bug.

The CLI, the Space and scripts catch these (and only these, plus missing files) to show one
line; any other exception is a bug and keeps its traceback. ``InputError`` is a ``ValueError``
and ``InputTypeError`` also a ``TypeError``, so Python callers that catch the built-in types
keep working.
"""

from __future__ import annotations

import errno

__all__ = ["InputError", "InputTypeError", "ModelLoadError", "USER_ERRORS", "WRITE_ERRNOS", "BAD_PATH_ERRNOS",
           "is_write_failure", "is_bad_path", "one_line", "user_error_line"]


class InputError(ValueError):
    """A value given by the user is out of its allowed range or set; the message names the field."""


class InputTypeError(InputError, TypeError):
    """A value given by the user has the wrong type; the message names the field and the allowed types."""


class ModelLoadError(OSError):
    """A pipeline or model folder is missing, incomplete or corrupt; the message names the file and what to do."""


#: what front ends report as one line (exit code 2 from the CLI): the user's input or files, never a bug
USER_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    ModelLoadError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)

#: a write refused by the machine (disk full, quota, read-only filesystem, file too large, no permission):
#: the user's to fix, reported by front ends as one line naming the path, never a traceback
WRITE_ERRNOS: frozenset[int] = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
)


def is_write_failure(error: BaseException) -> bool:
    """Whether ``error`` is the machine refusing a write (see ``WRITE_ERRNOS``) rather than a bug."""
    return isinstance(error, OSError) and error.errno in WRITE_ERRNOS


#: a path the system cannot use at all (a name longer than the filesystem allows, a symlink loop)
BAD_PATH_ERRNOS: frozenset[int] = frozenset({errno.ENAMETOOLONG, errno.ELOOP})


def is_bad_path(error: BaseException) -> bool:
    """Whether ``error`` is the system refusing a path the user gave (see ``BAD_PATH_ERRNOS``)."""
    return isinstance(error, OSError) and error.errno in BAD_PATH_ERRNOS


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (a path may hold any of them),
    so an error stays one line for whoever reads or parses stderr."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def user_error_line(error: BaseException, user_errors: tuple[type[BaseException], ...] = USER_ERRORS
                    ) -> str | None:
    """The one line a front end prints for ``error`` (then exit code 2), or None when it is a bug (traceback).

    A user error is its message; a write the machine refuses or a path it cannot use names the path
    and the system's reason (``cannot write PATH: No space left on device``).
    """
    if isinstance(error, user_errors):
        return one_line(str(error))
    if is_write_failure(error) or is_bad_path(error):
        verb = "cannot write" if is_write_failure(error) else "cannot use the path"
        where = f"{verb} {error.filename}" if error.filename else verb  # both checks imply an OSError
        return one_line(f"{where}: {error.strerror or error}")
    return None
