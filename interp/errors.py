"""The toolkit's error types: every exception that interp and rl define derives from ``InterpError``.

An ``InterpError`` is a refusal the user can act on (a bad option, a foreign file, a missing extra), so the CLI
prints it as one line, ``Error: <Type>: message``; anything else is a bug and keeps its traceback. This module
imports nothing from interp, so every module may import it."""

from __future__ import annotations

import importlib.util

DIST = "interp-bbq"  # the distribution name in pyproject.toml, for `pip install` hints
# optional module -> the extra of DIST that installs it (pyproject.toml's [project.optional-dependencies])
EXTRAS = {"transformer_lens": "tl", "nnsight": "nnsight", "trl": "rl"}


class InterpError(Exception):
    """Base of every error that interp and rl raise on purpose: shown by the CLI as one named line."""


class InputError(InterpError, ValueError):
    """A value given to a toolkit function or command is out of its domain (an option, a setting, a shape)."""


class MissingExtraError(InterpError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require_extra(module: str) -> None:
    """Raise MissingExtraError unless the optional ``module`` (a key of EXTRAS) can be imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module with no spec
        found = False
    if not found:
        dist = {"transformer_lens": "transformer-lens"}.get(module, module)
        raise MissingExtraError(f"{dist} is not installed: pip install '{DIST}[{EXTRAS[module]}]'")
