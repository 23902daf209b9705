"""The project's error types: what a user got wrong, as opposed to a bug.

The CLI, the Space and scripts catch these (and only these, plus missing files) to show one
line; any other exception is a bug and keeps its traceback. ``InputError`` is a ``ValueError``
and ``InputTypeError`` also a ``TypeError``, so Python callers that catch the built-in types
keep working.
"""

from __future__ import annotations

import errno

__all__ = ["InputError", "InputTypeError", "ModelLoadError", "USER_ERRORS", "WRITE_ERRNOS", "BAD_PATH_ERRNOS",
           "is_write_failure", "is_bad_path"]


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
