"""Writing tables: one definition for every CSV the toolkit writes (pandas, columns in first-seen order)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def write_table(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write dict rows as CSV: columns from the first row, then any new ones in the order they appear; a missing
    cell is empty, NaN is written as ``nan``. The file is replaced atomically (a reader never sees half of it)."""
    import pandas as pd

    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return _publish(path, lambda tmp: pd.DataFrame(list(rows), columns=cols).to_csv(tmp, index=False, na_rep="nan"))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file by write-then-rename: a reader (or a crash) never sees half of it."""
    return _publish(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _publish(path: str | os.PathLike, write) -> Path:
    """``write(tmp)`` a sibling temporary file, then rename it to ``path``. A folder at ``path`` or a folder that
    cannot be written is a named error, and leaves what was there as it was."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder; give a file path")
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        tmp.replace(p)
    except BaseException as e:  # an I/O error, or an interrupt: no temporary file is left behind
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OSError(e.errno, f"cannot write {p}: {e.strerror or e}") from e
        raise
    return p
