"""Where things live: the toolkit's cache home, default output folders."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "INTERP_HOME"


def home() -> Path:
    """Cache root for downloaded data and built organisms: ``$INTERP_HOME`` or ``~/.cache/interp``."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".cache" / "interp")


def project_root() -> Path:
    """The repository root when running from a checkout (holds ``activations/`` and ``figures/``)."""
    return Path(__file__).resolve().parent.parent


def default_activations_dir() -> Path:
    return Path(os.environ.get("INTERP_ACTIVATIONS_DIR") or project_root() / "activations")


def default_figures_dir() -> Path:
    return Path(os.environ.get("INTERP_FIGURES_DIR") or project_root() / "figures")
