"""Writing tables: one definition for every CSV the toolkit writes (pandas, columns in first-seen order)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def write_table(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write dict rows as CSV: columns from the first row, then any new ones in the order they appear; a missing
    cell is empty, NaN is written as ``nan``. The file is replaced atomically (a reader never sees half of it)."""
    import pandas as pd

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    pd.DataFrame(list(rows), columns=cols).to_csv(tmp, index=False, na_rep="nan")
    tmp.replace(p)
    return p
