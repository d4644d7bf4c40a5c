"""Difference-of-means directions per layer, saved as safetensors with metadata and loadable by name.

For each hook (one per layer) and activations ``X # [n_items, d]`` with prediction records:

- ``stereotype``: mean(X | congruent commits) - mean(X | anti-congruent commits), where a commit is a parsed,
  non-Unknown answer with a bias target and congruent means pred == biased_loc;
- ``abstention``: mean(X | abstained, pred == unknown_loc) - mean(X | committed);
- ``stereotype_orth``: the stereotype direction minus its projection on the abstention direction (same layer).

Vectors are stored raw (not normalized); each entry records its norm, the class counts and, for alpha
units in steering, the standard deviation of every item's projection on the unit direction (``proj_std``)
and the mean residual norm (``resid_norm``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from interp.errors import InterpError
from interp.methods.probes import _keep_condition
from interp.models.hooks import hook_name, layer_of

KINDS = ("stereotype", "abstention", "stereotype_orth")
FORMAT = "interp-directions/1"
HOW = {
    "stereotype": "difference of means: mean(act | stereotype-congruent commits) - mean(act | anti-congruent commits)",
    "abstention": "difference of means: mean(act | abstain, pred == unknown) - mean(act | committed answers)",
    "stereotype_orth": "stereotype direction minus its projection on the abstention direction at the same layer",
}


class DirectionError(InterpError, ValueError):
    """A direction that is missing, malformed, or does not fit the model."""


@dataclass
class Direction:
    """One direction at one hook, with what is needed to cite and scale it."""

    name: str
    hook: str
    layer: int
    vector: torch.Tensor  # [d], float32, not normalized
    meta: dict = field(default_factory=dict)

    @property
    def unit(self) -> torch.Tensor:
        n = float(self.vector.norm())
        if n == 0:
            raise DirectionError(f"direction {self.name} at {self.hook} is zero; cannot normalize")
        return self.vector / n


def diff_of_means(X: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """mean(X[pos]) - mean(X[neg]) in float64 # [d]; an error naming the empty class."""
    if pos.sum() == 0 or neg.sum() == 0:
        raise DirectionError(f"difference of means needs both classes, got {int(pos.sum())} vs {int(neg.sum())}")
    X = np.asarray(X, dtype=np.float64)
    return X[pos].mean(0) - X[neg].mean(0)


def orthogonalize(v: np.ndarray, against: np.ndarray) -> np.ndarray:
    """v minus its projection on ``against`` (v itself when ``against`` is zero)."""
    a2 = float(against @ against)
    return v if a2 == 0 else v - (float(v @ against) / a2) * against


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def class_masks(records: Sequence[Mapping], condition: str = "all") -> dict[str, np.ndarray]:
    """Boolean masks # [n] over records: congruent / anti (the two classes of
    ``interp.methods.probes.stereotype_labels``) and abstain / commit (those of ``abstain_labels``), so the
    directions and the probes read one definition of each label."""
    from interp.methods.probes import abstain_labels, stereotype_labels

    n = len(records)
    m = {k: np.zeros(n, bool) for k in ("congruent", "anti", "abstain", "commit")}
    idx, y = stereotype_labels(records, condition)
    m["congruent"][idx[y == 1]] = True
    m["anti"][idx[y == 0]] = True
    idx, y = abstain_labels(records, condition)
    m["abstain"][idx[y == 1]] = True
    m["commit"][idx[y == 0]] = True
    return m


def _layer_of(hook: str) -> int:
    return layer_of(hook, default=-1)


@dataclass
class DirectionSet:
    """Every direction kind at every hook, keyed ``(kind, hook)``."""

    directions: dict[tuple[str, str], Direction]
    meta: dict = field(default_factory=dict)

    @property
    def hooks(self) -> list[str]:
        return sorted({h for _, h in self.directions}, key=lambda h: (_layer_of(h), h))

    def get(self, name: str, layer: int | None = None, hook: str | None = None,
            kind: str = "hook_resid_post") -> Direction:
        """A direction by name and layer (hook ``blocks.{layer}.{kind}``) or full hook name."""
        if hook is None:
            if layer is None:
                raise DirectionError("give a layer or a hook name")
            hook = hook_name(layer, kind)
        key = (name, hook)
        if key not in self.directions:
            names = sorted({k for k, _ in self.directions})
            raise DirectionError(f"no direction {name!r} at {hook}; this file has {names} at {self.hooks}")
        return self.directions[key]

    def cosine_rows(self) -> list[dict]:
        """Per hook: cosines between the three directions and their norms."""
        rows = []
        for h in self.hooks:
            v = {k: self.directions[(k, h)].vector.double().numpy() for k in KINDS if (k, h) in self.directions}
            if len(v) < 3:
                continue
            s, a, o = v["stereotype"], v["abstention"], v["stereotype_orth"]
            e = self.directions[("stereotype", h)].meta
            rows.append({
                "hook": h, "layer": _layer_of(h),
                "cos_stereotype_abstention": cosine(s, a),
                "cos_orth_abstention": cosine(o, a),
                "cos_orth_stereotype": cosine(o, s),
                "norm_stereotype": float(np.linalg.norm(s)), "norm_abstention": float(np.linalg.norm(a)),
                "norm_stereotype_orth": float(np.linalg.norm(o)),
                "n_congruent": e.get("n_pos"), "n_anti": e.get("n_neg"),
                "n_abstain": self.directions[("abstention", h)].meta.get("n_pos"),
                "n_commit": self.directions[("abstention", h)].meta.get("n_neg"),
            })
        return rows

    def save(self, path: str | os.PathLike) -> Path:
        """Write a safetensors file: tensor ``{kind}/{hook}`` [d] plus JSON metadata per entry."""
        from safetensors.torch import save_file

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"{k}/{h}": d.vector.float().contiguous() for (k, h), d in self.directions.items()}
        entries = {f"{k}/{h}": {**d.meta, "kind": k, "hook": h, "layer": d.layer} for (k, h), d in self.directions.items()}
        md = {"format": FORMAT, "meta": json.dumps(self.meta), "entries": json.dumps(entries)}
        md.update({k: str(v) for k, v in self.meta.items() if k in ("model", "adapter", "condition", "split")})
        save_file(tensors, str(p), metadata=md)
        return p


def model_weights_hash(model: str) -> str:
    """The weights fingerprint of a model by name or folder (``interp.models.loading.fingerprint``); '' when its
    files are not here (a hub model not in the cache)."""
    from interp.models.loading import fingerprint, resolve_model_path

    try:
        return fingerprint(resolve_model_path(model))
    except FileNotFoundError:
        return ""


def check_directions_base(ds: DirectionSet, model: str, path: str | os.PathLike) -> None:
    """Refuse directions built on other weights than ``model``'s, matched by the weights fingerprint recorded when
    they were built (never by name); a file without the record (older files) is not checked."""
    want = ds.meta.get("weights_hash") or ""
    have = model_weights_hash(model) if want else ""
    if want and have and want != have:
        raise DirectionError(f"{path} was built on a model with weights {want} ({ds.meta.get('model')}), not {model} "
                             f"({have}); build directions on this model with `interp directions --model {model}`")


def load_directions(path: str | os.PathLike) -> DirectionSet:
    """Read a file written by ``DirectionSet.save`` (safetensors: no pickle)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no directions file at {p} (build one with `interp directions`)")
    try:
        with safe_open(str(p), framework="pt") as fh:
            md = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as e:  # truncated or not safetensors
        raise DirectionError(f"{p} is not a readable safetensors directions file: {e}") from e
    if md.get("format") != FORMAT:
        raise DirectionError(f"{p} is not an interp directions file (format {md.get('format')!r}, want {FORMAT!r})")
    entries = json.loads(md.get("entries", "{}"))
    dirs = {}
    for key, t in tensors.items():
        e = entries.get(key, {})
        kind, hook = key.split("/", 1)
        dirs[(kind, hook)] = Direction(name=kind, hook=hook, layer=int(e.get("layer", _layer_of(hook))),
                                       vector=t.float(), meta=e)
    return DirectionSet(dirs, json.loads(md.get("meta", "{}")))


def load_direction(path: str | os.PathLike, name: str, layer: int | None = None, hook: str | None = None,
                   kind: str = "hook_resid_post") -> Direction:
    """One direction by name ('stereotype', 'abstention', 'stereotype_orth') and layer or hook name."""
    return load_directions(path).get(name, layer=layer, hook=hook, kind=kind)


def compute_directions(acts: Mapping[str, np.ndarray], records: Sequence[Mapping], condition: str = "all",
                       meta: Mapping | None = None) -> DirectionSet:
    """The three directions at every hook in ``acts`` (each ``[n_items, d]``, rows aligned with records)."""
    masks = class_masks(records, condition)
    counts = {k: int(v.sum()) for k, v in masks.items()}
    for need in (("congruent", "anti"), ("abstain", "commit")):
        if min(counts[need[0]], counts[need[1]]) == 0:
            raise DirectionError(f"cannot build directions on condition={condition!r}: class counts {counts}")
    dirs: dict[tuple[str, str], Direction] = {}
    for hook, X in acts.items():
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] != len(records):
            raise DirectionError(f"{hook}: {X.shape[0]} activation rows but {len(records)} records")
        s = diff_of_means(X, masks["congruent"], masks["anti"])
        a = diff_of_means(X, masks["abstain"], masks["commit"])
        vecs = {"stereotype": (s, counts["congruent"], counts["anti"]),
                "abstention": (a, counts["abstain"], counts["commit"]),
                "stereotype_orth": (orthogonalize(s, a), counts["congruent"], counts["anti"])}
        used = masks["congruent"] | masks["anti"] | masks["abstain"] | masks["commit"]
        resid_norm = float(np.linalg.norm(X[used], axis=1).mean())
        for k, (v, n_pos, n_neg) in vecs.items():
            nv = float(np.linalg.norm(v))
            proj = X[used] @ (v / nv) if nv > 0 else np.zeros(int(used.sum()))
            dirs[(k, hook)] = Direction(
                name=k, hook=hook, layer=_layer_of(hook), vector=torch.tensor(v, dtype=torch.float32),
                meta={"n_pos": n_pos, "n_neg": n_neg, "how": HOW[k], "condition": condition, "norm": nv,
                      "proj_std": float(proj.std()), "resid_norm": resid_norm, "d": int(X.shape[1]),
                      **{k2: v2 for k2, v2 in (meta or {}).items() if isinstance(v2, (str, int, float, bool))}},
            )
    return DirectionSet(dirs, {"condition": condition, **dict(meta or {})})


def default_directions_path(model: str, adapter: str | None = None) -> Path:
    """Where ``interp directions`` writes by default: ``<activations dir>/directions/<model>[+adapter].safetensors``."""
    from interp.paths import default_activations_dir

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.strip("/"))
    if adapter:
        slug += "+" + re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(adapter).name)
    return default_activations_dir() / "directions" / f"{slug}.safetensors"


def plot_cosines(rows: Sequence[Mapping], path, title: str | None = None):
    """Cosines between the directions per layer."""
    from interp.figures import band_plot, layer_axis, new_axes, save_figure

    fig, ax = new_axes()
    x = [r["layer"] for r in rows]
    band_plot(ax, x, [r["cos_stereotype_abstention"] for r in rows], label="cos(stereotype, abstention)")
    band_plot(ax, x, [r["cos_orth_stereotype"] for r in rows], label="cos(stereotype_orth, stereotype)")
    band_plot(ax, x, [r["cos_orth_abstention"] for r in rows], label="cos(stereotype_orth, abstention)")
    ax.axhline(0, color="black", lw=0.5)
    layer_axis(ax)
    ax.set_ylabel("cosine")
    ax.set_title(title or "difference-of-means directions")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
