"""Find MLP neurons whose activation at the scored position tracks a spurious attribute.

Correlation is Pearson's r between a neuron's activation ``mlp.hook_post`` (one value per response) and an
attribute, over the responses of a validation set (chosen and rejected). With ``control`` (by default the
chosen/rejected label) both are first residualised on it, so a neuron that only tracks response quality,
which in natural data travels with the attributes, is not taken for an attribute neuron (a partial
correlation). The selection takes, attribute by attribute in turn, the neuron with the next-largest |r|
(optionally weighted by the neuron's attribution to the reward) until a budget (default 2% of all MLP neurons) is spent, keeping only neurons with |r| >= ``min_abs_corr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from interp.errors import InputError


def _residualise(x: np.ndarray, control: np.ndarray | None) -> np.ndarray:
    """Centre ``x`` ([n, ...]) and, with ``control`` ([n] or [n, k]), remove its least-squares fit."""
    x = x - x.mean(axis=0, keepdims=True)
    if control is None:
        return x
    c = np.asarray(control, dtype=np.float64).reshape(len(control), -1)
    c = c - c.mean(axis=0, keepdims=True)
    keep = c.std(axis=0) > 0
    if not keep.any():
        return x
    c = c[:, keep]
    flat = x.reshape(len(x), -1)
    beta, *_ = np.linalg.lstsq(c, flat, rcond=None)
    return (flat - c @ beta).reshape(x.shape)


def correlations(
    acts: np.ndarray, attributes: Mapping[str, np.ndarray], control: np.ndarray | None = None
) -> np.ndarray:
    """Pearson (partial, with ``control``) r of every neuron with every attribute: ``# [n_attr, L, d_mlp]``.

    ``acts`` is ``# [n, L, d_mlp]``; a constant neuron or attribute gets r = 0."""
    if acts.ndim != 3:
        raise InputError(f"activations must be [n, layers, d_mlp], got shape {acts.shape}")
    n = acts.shape[0]
    a = _residualise(acts.astype(np.float64), control)  # [n, L, d]
    a_sd = np.sqrt((a ** 2).sum(0))  # [L, d]
    out = np.zeros((len(attributes),) + acts.shape[1:], dtype=np.float64)
    for k, (name, v) in enumerate(attributes.items()):
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (n,):
            raise InputError(f"attribute {name!r} has {v.shape[0] if v.ndim else 0} values for {n} responses")
        z = _residualise(v, control)
        z_sd = np.sqrt((z ** 2).sum())
        if z_sd == 0:
            continue
        cov = np.einsum("n,nld->ld", z, a)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / (a_sd * z_sd)
        out[k] = np.nan_to_num(r)
    return out


@dataclass
class Neuron:
    """One selected neuron: where it is, which attribute picked it, and its r with that attribute."""

    layer: int
    index: int
    attribute: str
    corr: float


@dataclass
class NeuronSelection:
    """The selected neurons and the model's neuron count, with per-layer counts for the report."""

    neurons: list[Neuron]
    n_layers: int
    d_mlp: int
    budget: int
    attributes: list[str] = field(default_factory=list)

    @property
    def n_total(self) -> int:
        return self.n_layers * self.d_mlp

    @property
    def fraction(self) -> float:
        """Share of all MLP neurons selected."""
        return len(self.neurons) / self.n_total

    def per_layer(self) -> list[int]:
        """Number of selected neurons in each layer."""
        counts = [0] * self.n_layers
        for nr in self.neurons:
            counts[nr.layer] += 1
        return counts

    def per_attribute(self) -> dict[str, int]:
        out = {a: 0 for a in self.attributes}
        for nr in self.neurons:
            out[nr.attribute] = out.get(nr.attribute, 0) + 1
        return out

    def by_layer(self) -> dict[int, list[int]]:
        """Layer -> sorted neuron indices."""
        out: dict[int, list[int]] = {}
        for nr in self.neurons:
            out.setdefault(nr.layer, []).append(nr.index)
        return {l: sorted(v) for l, v in sorted(out.items())}


def select_neurons(
    corr: np.ndarray,
    attribute_names: Sequence[str],
    budget_frac: float = 0.02,
    min_abs_corr: float = 0.0,
    max_neurons: int | None = None,
    weight: np.ndarray | float = 1.0,
) -> NeuronSelection:
    """Round-robin over attributes, each turn taking that attribute's strongest unselected neuron, until
    ``floor(budget_frac * n_neurons)`` (or ``max_neurons``) are chosen or none pass ``min_abs_corr``.

    Strength is |r| times ``weight`` (broadcast to ``corr``; e.g. each neuron's attribution to the reward,
    so correlated neurons the reward does not read are passed over); ``min_abs_corr`` applies to |r|."""
    if corr.ndim != 3 or corr.shape[0] != len(attribute_names):
        raise InputError(f"corr must be [n_attr={len(attribute_names)}, L, d_mlp], got {corr.shape}")
    if not 0.0 < budget_frac <= 1.0:
        raise InputError(f"budget_frac must be in (0, 1], got {budget_frac}")
    _, L, d = corr.shape
    budget = int(np.floor(budget_frac * L * d))
    if max_neurons is not None:
        budget = min(budget, max_neurons)
    strength = np.abs(corr) * np.broadcast_to(np.asarray(weight, dtype=np.float64), corr.shape)
    ranked = [np.argsort(-s.reshape(-1), kind="stable") for s in strength]
    ptr = [0] * len(ranked)
    taken: set[int] = set()
    chosen: list[Neuron] = []
    active = [True] * len(ranked)
    while len(chosen) < budget and any(active):
        for k, order in enumerate(ranked):
            if len(chosen) >= budget or not active[k]:
                continue
            while ptr[k] < len(order) and int(order[ptr[k]]) in taken:
                ptr[k] += 1
            if ptr[k] >= len(order):
                active[k] = False
                continue
            flat = int(order[ptr[k]])
            r = float(corr[k].reshape(-1)[flat])
            if abs(r) < min_abs_corr or r == 0.0:
                active[k] = False
                continue
            taken.add(flat)
            chosen.append(Neuron(layer=flat // d, index=flat % d, attribute=attribute_names[k], corr=r))
    if not chosen:
        import warnings

        warnings.warn(f"no neuron selected: the budget is {budget} of {L * d} neurons (budget_frac {budget_frac})"
                      + (f" and none has |r| >= min_abs_corr {min_abs_corr}" if min_abs_corr else "")
                      + "; the intervention will change nothing", stacklevel=2)
    return NeuronSelection(neurons=chosen, n_layers=L, d_mlp=d, budget=budget, attributes=list(attribute_names))
