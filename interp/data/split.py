"""Template-disjoint train/dev split: a template is (category, question_index), and no template is in both."""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from interp.errors import InputError, InterpError

if TYPE_CHECKING:  # annotations only: bbq builds on the split, not the reverse
    from interp.data.bbq import BBQItem


class SplitLeakageError(InterpError, RuntimeError):
    """Train and dev share a template."""


@dataclass
class Split:
    """Which templates (and so which items) are train and which are dev."""

    seed: int
    dev_frac: float
    train_templates: list[tuple[str, str]]
    dev_templates: list[tuple[str, str]]

    def check(self) -> None:
        """Raise SplitLeakageError if any template is on both sides."""
        shared = set(self.train_templates) & set(self.dev_templates)
        if shared:
            raise SplitLeakageError(f"{len(shared)} template(s) in both train and dev, e.g. {sorted(shared)[:3]}")

    def select(self, items: Iterable[BBQItem], part: str) -> list[BBQItem]:
        """Items of one part: 'train', 'dev' or 'all'."""
        if part == "all":
            return list(items)
        if part not in ("train", "dev"):
            raise InputError(f"split part must be train, dev or all, not {part!r}")
        keep = set(self.train_templates if part == "train" else self.dev_templates)
        return [it for it in items if it.template in keep]

    def to_json(self) -> str:
        return json.dumps(
            {
                "seed": self.seed,
                "dev_frac": self.dev_frac,
                "train_templates": [list(t) for t in self.train_templates],
                "dev_templates": [list(t) for t in self.dev_templates],
            },
            indent=1,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the split file (write-then-rename); a folder at ``path`` is an error."""
        from interp.tables import write_text_atomic

        return write_text_atomic(path, self.to_json())

    @property
    def hash(self) -> str:
        """Content hash, cited in provenance of everything computed on this split."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        if Path(path).is_dir():
            raise IsADirectoryError(f"split file {path} is a folder, not a split JSON file")
        try:
            d = json.loads(Path(path).read_text())
            s = cls(
                seed=int(d["seed"]),
                dev_frac=float(d["dev_frac"]),
                train_templates=[tuple(t) for t in d["train_templates"]],
                dev_templates=[tuple(t) for t in d["dev_templates"]],
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path} is not a split file: {e}") from None
        s.check()
        return s


def make_split(items: Iterable[BBQItem], dev_frac: float = 0.2, seed: int = 0) -> Split:
    """Split templates, per category, so each category keeps about ``dev_frac`` of its templates in dev."""
    if not 0.0 < dev_frac < 1.0:
        raise InputError(f"dev_frac must be in (0, 1), got {dev_frac}")
    by_cat: dict[str, set[str]] = {}
    for it in items:
        by_cat.setdefault(it.category, set()).add(it.question_index)
    rng = random.Random(seed)
    train, dev = [], []
    for cat in sorted(by_cat):
        qids = sorted(by_cat[cat], key=lambda q: (len(q), q))
        rng.shuffle(qids)
        n_dev = max(1, round(dev_frac * len(qids))) if len(qids) > 1 else 0
        dev += [(cat, q) for q in sorted(qids[:n_dev])]
        train += [(cat, q) for q in sorted(qids[n_dev:])]
    s = Split(seed=seed, dev_frac=dev_frac, train_templates=train, dev_templates=dev)
    s.check()
    return s
