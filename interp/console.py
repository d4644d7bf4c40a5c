"""The command-line plumbing both CLIs (``interp`` and ``rl``) share: one-line errors, and comma-list options.

Errors: the toolkit's own are shown as one line instead of a traceback, by their type.

An ``InterpError`` (every error interp and rl raise on purpose: bad data, a bad option value, a foreign file, a
missing extra) and an ``OSError`` (a file, folder or disk the user named or filled) are shown as
``Error: <Type>: message`` with exit code 1. Any other exception is a bug to report and keeps its traceback;
``INTERP_DEBUG=1`` keeps every traceback."""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import click

from interp.errors import InterpError

T = TypeVar("T")
FRIENDLY = (InterpError, OSError)  # the types shown in one line


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, ``Warning: <Category>: message`` (``warnings.formatwarning``'s signature)."""
    return f"Warning: {category.__name__}: {message}\n"


class FriendlyErrors(click.Group):
    """A click group whose commands report the toolkit's errors, and its warnings, in one line."""

    def invoke(self, ctx: click.Context):
        import warnings

        if not os.environ.get("INTERP_DEBUG"):
            warnings.formatwarning = one_line_warning
        try:
            return super().invoke(ctx)
        except FRIENDLY as e:
            if os.environ.get("INTERP_DEBUG"):
                raise
            raise click.ClickException(f"{type(e).__name__}: {e}  (INTERP_DEBUG=1 shows the traceback)") from e


def comma_list(spec: str | None, kind: Callable[[str], T] = str, param: str | None = None) -> list[T]:
    """A comma-separated option as a list of ``kind`` (None or '' is []). A part ``kind`` refuses, or an empty
    part ('1,,2': a typo, not a value), is a ``click.BadParameter`` naming the option (``param``)."""
    out = []
    parts = (spec or "").split(",")
    if any(p.strip() for p in parts) and not all(p.strip() for p in parts):
        raise click.BadParameter(f"{spec!r} has an empty item", param_hint=param)
    for part in parts:
        if part.strip():
            try:
                out.append(kind(part.strip()))
            except ValueError as e:
                raise click.BadParameter(f"{part.strip()!r} is not a valid {getattr(kind, '__name__', 'value')} "
                                         f"in {spec!r}", param_hint=param) from e
    return out
