"""Errors a user can cause and fix: entry points print their message and exit non-zero.

Raise these (never a bare exception) for a bad config value, a missing or corrupt
dataset, or an unusable checkpoint.  The message must name the offending key or path
and say what to do about it.
"""


class UserError(Exception):
    """Base class: something the user can fix; printed as one message, no traceback."""

    exit_code = 2


class ConfigError(UserError):
    """A config value is missing, unknown or out of range (name the key)."""


class DataError(UserError):
    """A dataset is missing, incomplete or corrupt (name the path and how to get it)."""


class CheckpointError(UserError):
    """A checkpoint cannot be read or does not match the run (name the file)."""
