"""Small plotting helpers shared by every figure (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def new_axes(ncols: int = 1, width: float = 5.5, height: float = 3.8):
    """A figure with ``ncols`` side-by-side axes: (fig, ax) for one, (fig, [ax...]) for several."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, (axes[0, 0] if ncols == 1 else list(axes[0]))


def band_plot(ax, x: Sequence[float], y: Sequence[float], lo: Sequence[float] | None = None,
              hi: Sequence[float] | None = None, label: str | None = None, color=None, marker: str = "o", **kw):
    """A line with markers and, when bounds are given, a shaded interval band in the same colour."""
    (line,) = ax.plot(x, y, marker=marker, ms=4, label=label, color=color, **kw)
    if lo is not None and hi is not None:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
    return line


def annotate_points(ax, x: Sequence[float], y: Sequence[float], labels: Sequence, fontsize: int = 7, **kw):
    """Write a small label beside each point."""
    for xi, yi, t in zip(x, y, labels):
        ax.annotate(str(t), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=fontsize, **kw)


def layer_axis(ax) -> None:
    """Label the x axis 'layer' with whole-number ticks (layers are integers; matplotlib would put 0.25 steps)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")


def draw_to(draw, path: str | os.PathLike | None) -> Path:
    """Call ``draw(path)`` to save a figure to ``path`` (a new temporary file when None); returns the saved path."""
    import tempfile

    if path is None:
        path = Path(tempfile.mkdtemp(prefix="interp-fig-")) / "figure.png"
    return Path(draw(Path(path)))


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save as PNG (creating the folder) and close the figure; returns the path."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        p = p.with_suffix(".png")
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return p


def figures_dir(folder: str | os.PathLike | None = None) -> Path:
    """The given folder, else ``interp.paths.default_figures_dir()``."""
    from interp.paths import default_figures_dir

    return Path(folder) if folder else default_figures_dir()
