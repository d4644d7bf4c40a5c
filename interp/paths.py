"""Where things live: the toolkit's cache home, default output folders."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from interp.errors import InterpError

ENV_HOME = "INTERP_HOME"


def home() -> Path:
    """Cache root for downloaded data and built organisms: ``$INTERP_HOME`` or ``~/.cache/interp``."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".cache" / "interp")


def default_activations_dir() -> Path:
    """``$INTERP_ACTIVATIONS_DIR``, else ``activations/`` in the current folder (never inside the installed
    package, which may be site-packages or the checkout's reference outputs)."""
    return Path(os.environ.get("INTERP_ACTIVATIONS_DIR") or Path.cwd() / "activations")


def default_figures_dir() -> Path:
    """``$INTERP_FIGURES_DIR``, else ``figures/`` in the current folder."""
    return Path(os.environ.get("INTERP_FIGURES_DIR") or Path.cwd() / "figures")


class OutputDirError(InterpError, ValueError):
    """An output folder a build would have to delete, though the build did not make it."""


def check_out_dir(out: str | os.PathLike, is_ours, what: str = "an organism") -> Path:
    """Refuse an output folder a build would clobber: it may be missing, empty, or hold ``what`` (``is_ours``
    says so; it is rebuilt in place). Anything else is a user's folder, and is never deleted."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_ours(out):
        raise OutputDirError(f"--out {out} is a non-empty folder that holds no {what.split(' ', 1)[-1]}; refusing "
                             f"to replace it (name a new or empty folder)")
    return out


def publish_dir(tmp: Path, out: Path, is_ours, what: str = "an organism") -> None:
    """Move a finished build from ``tmp`` to ``out`` by renames (readers see all of it or none of it). A previous
    build at ``out`` is moved aside and deleted only once the new one is in place; anything else is refused."""
    import shutil
    import uuid

    check_out_dir(out, is_ours, what)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old)


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike, is_ours, what: str = "an organism") -> Iterator[Path]:
    """A hidden sibling folder of ``out`` to write a build into (not created: the caller makes it). On a clean
    exit it is published to ``out`` (``publish_dir``); it is removed whatever happens, so a failed or killed
    build never leaves half a folder at ``out``."""
    import shutil
    import uuid

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        publish_dir(tmp, out, is_ours, what)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
