"""Errors a user can cause and fix: entry points print their message and exit non-zero.

Raise these (never a bare exception) for a bad config value, a missing or corrupt
dataset, or an unusable checkpoint.  The message must name the offending key or path
and say what to do about it.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Optional


class UserError(Exception):
    """Base class: something the user can fix; printed as one message, no traceback."""

    exit_code = 2


class ConfigError(UserError):
    """A config value is missing, unknown or out of range (name the key)."""


class DataError(UserError):
    """A dataset is missing, incomplete or corrupt (name the path and how to get it)."""


class CheckpointError(UserError):
    """A checkpoint cannot be read or does not match the run (name the file)."""


class StorageError(UserError):
    """A file cannot be written: the disk is full, over quota, read-only or not writable (name the file)."""


# errno of a write the user must make room or permission for -> what it means
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted"}


REWRITE = ("free space or make the folder writable, then run the same command again (a training run continues "
           "from its last checkpoint with trainer.resume=auto)")


def storage_error(exc: BaseException, path: Optional[Path] = None, advice: str = REWRITE) -> Optional[StorageError]:
    """A StorageError naming the file (`path`, else the one the error names), the cause and `advice` when `exc` is
    an OSError of STORAGE_ERRNOS; None for any other exception."""
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return None
    where = f"write {path or exc.filename}" if (path or exc.filename) else "write a file"
    return StorageError(f"cannot {where}: {STORAGE_ERRNOS[exc.errno]}; {advice}")


def user_error_in(exc: BaseException) -> Optional[UserError]:
    """`exc` itself or the UserError in its chain of causes, else None.  torch.compile wraps an
    error raised while it traces (say a fused kernel's failed self-check) in its own type."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
