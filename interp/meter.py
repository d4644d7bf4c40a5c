"""A work meter: code that does countable work (GRPO completions trained, items evaluated or cached) reports it
here, and whoever listens hears it: the pipeline runner, which times each kind of work to estimate the time left.
Nothing listens by default, so reporting costs nothing outside ``interp run``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

GRPO_COMPLETION = "GRPO completion"  # one sampled completion trained on: steps x batch_size x grad_accum
CACHE_ITEM = "cached item"  # one prompt's activations written to a store

_listeners: list[Callable[[str, float], None]] = []


def eval_item(mode: str) -> str:
    """The unit of evaluating one item in ``mode`` (modes differ in cost: generate decodes, options scores each)."""
    return f"{mode} eval item"


def advance(kind: str, n: float = 1.0) -> None:
    """Report ``n`` units of ``kind`` of work done."""
    for fn in list(_listeners):
        fn(kind, n)


@contextmanager
def listening(fn: Callable[[str, float], None]) -> Iterator[None]:
    """Call ``fn(kind, n)`` for every unit of work reported inside the block."""
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)
