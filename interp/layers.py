"""Layer specs, one definition for every command and function that takes ``--layers`` / ``layers=``.

A spec is ``'all'`` (or None), an int, a list of ints, or a string of comma-separated ints and inclusive
ranges (``'0,3,5'``, ``'2-6'``); a negative index counts from the end (``-1`` is the last layer).
"""

from __future__ import annotations

import re
from typing import Sequence

from interp.errors import InterpError

_RANGE = re.compile(r"^(-?\d+)\s*-\s*(-?\d+)$")


class LayerSpecError(InterpError, ValueError):
    """A layer spec that does not parse, selects nothing, or names a layer out of range."""


def _parse(spec: str) -> list[int]:
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        m = _RANGE.match(part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise LayerSpecError(f"layer range {part!r} is empty (it runs backwards); write '{b}-{a}'")
            out += list(range(a, b + 1))
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise LayerSpecError(f"layers must be 'all' or comma-separated integers / ranges ('0,3,5', '2-6', "
                                 f"'-1'), not {spec!r}") from None
    return out


def resolve_layers(spec: str | int | Sequence[int] | None, n_layers: int,
                   available: Sequence[int] | None = None) -> list[int]:
    """Layer indices (in order given, duplicates dropped) for a spec on a model of ``n_layers`` layers. With
    ``available`` (e.g. the layers an activation store holds), 'all' means those and each index must be one."""
    if n_layers < 1:
        raise LayerSpecError(f"a model with {n_layers} layers has no layers to select")
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "all")):
        idx = list(available) if available is not None else list(range(n_layers))
    elif isinstance(spec, bool):
        raise LayerSpecError(f"layers must be 'all', an int or a list of ints, not {spec!r}")
    elif isinstance(spec, int):
        idx = [spec]
    elif isinstance(spec, str):
        idx = _parse(spec)
    else:
        try:
            idx = [int(x) for x in spec]
        except (TypeError, ValueError):
            raise LayerSpecError(f"layers must be 'all', an int or a list of ints, not {spec!r}") from None
    out = []
    for l in idx:
        k = l + n_layers if l < 0 else l
        if not 0 <= k < n_layers:
            raise LayerSpecError(f"layer {l} out of range: the model has {n_layers} layers (0..{n_layers - 1})")
        if available is not None and k not in available:
            raise LayerSpecError(f"layer {l} is not among the stored layers {sorted(available)}")
        out.append(k)
    out = list(dict.fromkeys(out))
    if not out:
        raise LayerSpecError(f"layers {spec!r} selects no layer")
    return out

