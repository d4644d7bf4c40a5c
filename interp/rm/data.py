"""Preference data for reward models: JSONL with ``prompt``, ``chosen``, ``rejected``, validated on load.

Two layouts are accepted, record by record:

- RewardBench style: ``chosen`` and ``rejected`` are strings; one record is one pair.
- RM-Bench style: ``chosen`` and ``rejected`` are equal-length lists of style-controlled versions of the same
  response, ordered from least to most styled (concise, detailed plain, detailed markdown in RM-Bench). A
  record expands to every (chosen version i, rejected version j) pair, labelled as RM-Bench does:
  ``hard`` when i < j (the rejected response is more styled), ``normal`` when i == j, ``easy`` when i > j.

An optional ``split`` field (e.g. ``easy`` / ``hard`` / ``neutral``) is kept on the pair; an optional ``id``
names it (default: the line number).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from interp.errors import InterpError

RMBENCH_SPLITS = ("hard", "normal", "easy")


class PreferenceDataError(InterpError, ValueError):
    """A preference file or record is malformed; the message names the file and line."""


@dataclass
class PreferencePair:
    """One comparison: the response a judge preferred (``chosen``) and the other (``rejected``)."""

    prompt: str
    chosen: str
    rejected: str
    id: str
    split: str | None = None
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["meta"]:
            d.pop("meta")
        if d["split"] is None:
            d.pop("split")
        return d


def _fail(path: Path, lineno: int, msg: str) -> PreferenceDataError:
    return PreferenceDataError(f"{path}:{lineno}: {msg}")


def _check_text(value, name: str, path: Path, lineno: int) -> str:
    if not isinstance(value, str):
        raise _fail(path, lineno, f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _fail(path, lineno, f"field {name!r} is empty")
    return value


def parse_preference_record(rec: dict, path: Path, lineno: int) -> list[PreferencePair]:
    """Validate one JSON record and expand it into pairs (one, or n*n for an RM-Bench style record)."""
    if not isinstance(rec, dict):
        raise _fail(path, lineno, "record is not a JSON object")
    missing = [f for f in ("prompt", "chosen", "rejected") if f not in rec]
    if missing:
        raise _fail(path, lineno, f"missing field(s) {', '.join(missing)} (need prompt, chosen, rejected)")
    prompt = _check_text(rec["prompt"], "prompt", path, lineno)
    rid = str(rec.get("id", lineno))
    split = rec.get("split")
    if split is not None and not isinstance(split, str):
        raise _fail(path, lineno, f"field 'split' must be a string, got {type(split).__name__}")
    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise _fail(path, lineno, "field 'meta' must be an object")
    ch, rj = rec["chosen"], rec["rejected"]
    if isinstance(ch, str) and isinstance(rj, str):
        if ch == rj:
            raise _fail(path, lineno, "chosen and rejected are the same text: the pair cannot be ranked")
        return [PreferencePair(prompt, _check_text(ch, "chosen", path, lineno),
                               _check_text(rj, "rejected", path, lineno), rid, split, dict(meta))]
    if isinstance(ch, list) and isinstance(rj, list):
        if not ch or len(ch) != len(rj):
            raise _fail(path, lineno, f"RM-Bench style record needs equal, non-empty lists of chosen and rejected "
                                      f"versions, got {len(ch)} and {len(rj)}")
        ch = [_check_text(c, f"chosen[{i}]", path, lineno) for i, c in enumerate(ch)]
        rj = [_check_text(r, f"rejected[{i}]", path, lineno) for i, r in enumerate(rj)]
        out = []
        for i, c in enumerate(ch):
            for j, r in enumerate(rj):
                if c == r:
                    raise _fail(path, lineno, f"chosen[{i}] and rejected[{j}] are the same text: the pair cannot "
                                              "be ranked")
                s = "hard" if i < j else ("normal" if i == j else "easy")
                out.append(PreferencePair(prompt, c, r, f"{rid}:{i}:{j}", s,
                                          {**meta, "chosen_style": i, "rejected_style": j}))
        return out
    raise _fail(path, lineno, f"'chosen' and 'rejected' must both be strings or both lists of strings, got "
                              f"{type(ch).__name__} and {type(rj).__name__}")


def load_preferences(path: str | os.PathLike, limit: int | None = None) -> list[PreferencePair]:
    """Load and validate a preference JSONL; raises PreferenceDataError naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"preference file {p} does not exist")
    from interp.data.bbq import read_jsonl

    pairs: list[PreferencePair] = []
    seen: dict[str, int] = {}
    for lineno, rec in read_jsonl(p, _fail):
        for pair in parse_preference_record(rec, p, lineno):
            if pair.id in seen:
                raise _fail(p, lineno, f"duplicate id {pair.id!r} (first at line {seen[pair.id]})")
            seen[pair.id] = lineno
            pairs.append(pair)
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise PreferenceDataError(f"{p}: no preference records")
    return pairs[:limit] if limit is not None else pairs


def _jsonl_line(pair: PreferencePair) -> str:
    return json.dumps(pair.to_dict(), ensure_ascii=False) + "\n"


def save_preferences(pairs: Iterable[PreferencePair], path: str | os.PathLike) -> Path:
    """Write pairs as RewardBench-style JSONL (one pair per line)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as fh:
        for pair in pairs:
            fh.write(_jsonl_line(pair))
    return p


def preferences_sha256(pairs: Iterable[PreferencePair]) -> str:
    """The sha256 of the JSONL file ``save_preferences`` writes for these pairs (without writing it)."""
    import hashlib

    h = hashlib.sha256()
    for pair in pairs:
        h.update(_jsonl_line(pair).encode("utf-8"))
    return h.hexdigest()
