"""Turn the toolkit's own errors into one-line CLI errors instead of tracebacks, by their type.

An ``InterpError`` (every error interp and rl raise on purpose: bad data, a bad option value, a foreign file, a
missing extra) and an ``OSError`` (a file, folder or disk the user named or filled) are shown as
``Error: <Type>: message`` with exit code 1. Any other exception is a bug to report and keeps its traceback;
``INTERP_DEBUG=1`` keeps every traceback."""

from __future__ import annotations

import os

import click

from interp.errors import InterpError

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
