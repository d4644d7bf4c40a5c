"""Turn the toolkit's own input errors into one-line CLI errors instead of tracebacks.

An exception is shown as ``Error: <Type>: message`` (exit code 1) when it is a ValueError, OSError or
RuntimeError raised from inside the ``interp`` or ``rl`` packages: bad data, a bad option value, a missing or
foreign file. Anything raised inside a library (a bug to report) keeps its traceback, and ``INTERP_DEBUG=1``
keeps every traceback."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import click

_OURS = tuple(str(Path(__file__).resolve().parents[2] / pkg) + os.sep for pkg in ("interp", "rl"))
_FRIENDLY = (ValueError, OSError, RuntimeError)


def raised_by_us(exc: BaseException) -> bool:
    """Whether the innermost traceback frame of ``exc`` lies in the interp or rl packages."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(_OURS)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, ``Warning: <Category>: message`` (``warnings.formatwarning``'s signature)."""
    return f"Warning: {category.__name__}: {message}\n"


class FriendlyErrors(click.Group):
    """A click group whose commands report the toolkit's input errors, and its warnings, in one line."""

    def invoke(self, ctx: click.Context):
        import warnings

        if not os.environ.get("INTERP_DEBUG"):
            warnings.formatwarning = one_line_warning
        try:
            return super().invoke(ctx)
        except _FRIENDLY as e:
            if isinstance(e, click.ClickException) or os.environ.get("INTERP_DEBUG") or not raised_by_us(e):
                raise
            raise click.ClickException(f"{type(e).__name__}: {e}  (INTERP_DEBUG=1 shows the traceback)") from e
