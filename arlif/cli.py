"""Entry-point wrapper: a user error becomes one printed message and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from arlif.errors import UserError

R = TypeVar("R")


def run_cli(task: Callable[[], R]) -> R:
    """Run `task`; on a UserError print `error: <message>` to stderr and exit with its code."""
    try:
        return task()
    except UserError as err:
        print(f"error: {_user_message(err)}", file=sys.stderr)
        sys.exit(err.exit_code)


def _user_message(err: UserError) -> str:
    """The user's message, without the worker traceback DataLoader wraps around it.

    An error raised in a DataLoader worker is re-raised in the main process as the
    same type whose text is "Caught X in DataLoader worker ... Original Traceback ...",
    ending with the original "X: <message>" line(s).
    """
    text = str(err)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    marker = f"{type(err).__name__}: "
    start = text.rfind(marker)
    return text[start + len(marker):].strip() if start >= 0 else text
