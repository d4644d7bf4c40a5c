"""The shipped-name registry: the organisms that ship inside the package, and where ``--model organism`` (or
``organism-small``...) loads from, checksums verified. It sits below ``interp.models`` so that model loading
needs nothing from ``interp.organisms``, which builds organisms on top of it."""

from __future__ import annotations

import os
from pathlib import Path

from interp.data.download import first_mismatch, sha256
from interp.errors import InterpError

ENV_ORGANISM_DIR = "INTERP_ORGANISM_DIR"
PLANT_FILE = "plant.json"
WEIGHTS_FILE = "model.safetensors"


class OrganismError(InterpError, ValueError):
    """A shipped or user-built organism folder is missing, incomplete or fails its checksums."""


# the organisms shipped in the package (``interp/organisms/weights/<name>``); each folder has a SHA256SUMS
SHIPPED_NAMES = ("organism", "organism-small", "organism-small-control")
SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "organisms" / "weights"
SUMS_FILE = "SHA256SUMS"
_verified: set[Path] = set()


def write_checksums(folder: str | os.PathLike) -> Path:
    """Write ``SHA256SUMS`` (``sha256  name`` lines, sorted) for every file of an organism folder."""
    d = Path(folder)
    lines = [f"{sha256(f)}  {f.name}" for f in sorted(d.iterdir()) if f.is_file() and f.name != SUMS_FILE]
    (d / SUMS_FILE).write_text("\n".join(lines) + "\n")
    return d / SUMS_FILE


def verify_checksums(folder: str | os.PathLike) -> None:
    """Check every file listed in the folder's ``SHA256SUMS``; raise :class:`OrganismError` naming the first
    missing or changed file."""
    d = Path(folder)
    sums = d / SUMS_FILE
    if not sums.is_file():
        raise OrganismError(f"{d} has no {SUMS_FILE}: not a shipped organism")
    expected = dict(reversed(line.split(maxsplit=1)) for line in sums.read_text().splitlines() if line.strip())
    bad = first_mismatch(d, expected)
    if bad and bad[1] == "missing":
        raise OrganismError(f"shipped organism {d.name}: {bad[0]} is missing (reinstall the package)")
    if bad:
        raise OrganismError(f"shipped organism {d.name}: {bad[0]} does not match its sha256 in {SUMS_FILE} "
                            f"(reinstall the package)")


def _shipped_path(name: str) -> Path:
    if name not in SHIPPED_NAMES:
        raise OrganismError(f"unknown organism {name!r}; shipped: {', '.join(SHIPPED_NAMES)}")
    return SHIPPED_ROOT / name


def shipped_dir(name: str = "organism") -> Path:
    """The folder of a shipped organism, its checksums verified (once per process)."""
    d = _shipped_path(name)
    if d not in _verified:
        verify_checksums(d)
        _verified.add(d)
    return d


def organism_dir(name: str = "organism") -> Path:
    """Where ``--model organism`` (or ``organism-small``...) loads from: ``$INTERP_ORGANISM_DIR`` (a folder
    the user built, ``-small`` appended for the small variant) when set, else the shipped, verified copy."""
    env = os.environ.get(ENV_ORGANISM_DIR)
    if env and name in ("organism", "organism-small"):
        base = Path(env)
        d = base.with_name(base.name + "-small") if name == "organism-small" else base
        if not is_complete(d):
            raise OrganismError(f"${ENV_ORGANISM_DIR} points at {d}, which holds no built organism "
                                f"(run `interp organism build --out {d}`, or unset it to use the shipped one)")
        return d
    return shipped_dir(name)


def is_complete(path: str | os.PathLike) -> bool:
    """True when a folder holds a finished organism (weights, tokenizer and plant.json)."""
    p = Path(path)
    return all((p / f).is_file() for f in (PLANT_FILE, WEIGHTS_FILE, "config.json", "tokenizer.json"))
