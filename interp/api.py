"""The notebook API: load a model, collect activations, sweep probes, build a direction, steer, compare an
adapter with its base, and evaluate on BBQ, each returning a typed result that carries its table and a plot.

Every function here composes the library's own pieces (``interp.models.backends``, ``interp.methods.probes``,
``interp.methods.directions``, ``interp.methods.steering``, ``interp.methods.compare``, ``interp.eval.evaluate``); the CLI and the main job
call the same pieces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from interp.data.bbq import BBQItem
from interp.errors import InputError
from interp.methods.directions import Direction
from interp.methods.probes import Activations
from interp.models.protocol import LanguageModel

LABELS = ("stereotype", "abstain")  # what a probe can be asked to read (interp.methods.probes' label functions)
DIRECTIONS = ("stereotype", "abstention", "stereotype_orth")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def load(name: str = "organism", adapter: str | os.PathLike | None = None, backend: str = "hf",
         device: str | None = "auto", dtype: str | None = "auto") -> LanguageModel:
    """A causal LM with TransformerLens-named hooks (``interp.models.protocol.LanguageModel``): a hub id, a local folder or a
    shipped organism (``organism``, ``organism-small``, ``organism-small-control``), optionally with a PEFT
    adapter on the same weight copy (switch it with ``.adapter_enabled(False)``)."""
    from interp.models.backends import load_hooked

    return load_hooked(name, adapter=str(adapter) if adapter else None, backend=backend, device=device, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# activations


def _as_activations(acts, hook: str = "hook_resid_post") -> Activations:
    """An Activations from itself, an ``ActivationStore`` or a store's path."""
    from interp.store.activations import ActivationStore

    if isinstance(acts, Activations):
        return acts
    if isinstance(acts, (ActivationStore, str, os.PathLike)):
        return Activations.from_store(acts, hook=hook)
    raise TypeError(f"expected Activations, an ActivationStore or a store path, not {type(acts).__name__}")


def collect(lm: LanguageModel, items: Sequence[BBQItem], layers: str | int | Sequence[int] = "all",
            hook: str = "hook_resid_post", batch_size: int = 16, progress: bool = True) -> Activations:
    """One forward pass per batch over ``items``: the activations at the last prompt token of every chosen
    layer, and the predictions they led to. ``layers``: 'all', an int (-1 is the last), '0,3,5', '2-6' or a
    list. For a large model or many items, write a store instead (``interp cache``; read it with
    ``ActivationStore``)."""
    from interp.methods.probes import collect as _collect
    from interp.models.backends import as_lm
    from interp.models.hooks import hook_names

    lm = as_lm(lm)
    items = _nonempty(items)
    names = hook_names(layers, lm.n_layers, (hook,))
    return _collect(lm, items, names, batch_size=batch_size, progress=progress)


def _nonempty(items: Sequence[BBQItem]) -> list[BBQItem]:
    items = list(items)
    if not items:
        raise InputError("no items selected (an empty list): check the split, categories and limit")
    return items


# ----------------------------------------------------------------------------------------------
# probes


@dataclass
class ProbeSweep:
    """A probe per layer: grouped-CV accuracy with its template-bootstrap interval, the majority rate and
    the shuffled-label control. ``best`` is the layer with the highest accuracy."""

    label: str
    rows: list[dict]

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    @property
    def best(self) -> int:
        from interp.methods.probes import best_layer

        return int(best_layer(self.rows)["layer"])

    @property
    def best_row(self) -> dict:
        from interp.methods.probes import best_layer

        return dict(best_layer(self.rows))

    def plot(self, path: str | os.PathLike | None = None):
        """The accuracy-by-layer figure; saved to ``path`` when given, returned as a matplotlib Figure."""
        from interp.methods.probes import plot_probe_accuracy

        from interp.figures import draw_to

        return draw_to(lambda p: plot_probe_accuracy(self.rows, p, title=f"{self.label} probe by layer"), path)


def probe_layers(acts, label: str = "stereotype", condition: str = "all", n_splits: int = 5, n_shuffles: int = 3,
                 n_boot: int = 1000, seed: int = 0, backend: str = "sklearn") -> ProbeSweep:
    """Probe every layer of ``acts`` (Activations, an ActivationStore or its path) for ``label``: 'stereotype'
    (did the model pick the biased answer, among its commits) or 'abstain' (did it answer Unknown), with folds
    grouped by template so no template is in both train and test."""
    from interp.methods.probes import ProbeConfig, abstain_labels, probe_sweep, stereotype_labels, template_groups

    if label not in LABELS:
        raise InputError(f"label must be one of {LABELS}, not {label!r}")
    a = _as_activations(acts)
    idx, y = (stereotype_labels if label == "stereotype" else abstain_labels)(a.records, condition)
    if len(idx) == 0:
        raise InputError(f"no items carry a {label!r} label under condition {condition!r}")
    cfg = ProbeConfig(n_splits=n_splits, n_shuffles=n_shuffles, n_boot=n_boot, seed=seed, backend=backend)
    rows = probe_sweep({n: x[idx] for n, x in a.acts.items()}, y, template_groups(a.records)[idx], cfg)
    return ProbeSweep(label, rows)


# ----------------------------------------------------------------------------------------------
# directions and steering


def diff_means(acts, name: str = "stereotype", layer: int = -1, condition: str = "all") -> Direction:
    """A difference-of-means direction at one layer: 'stereotype' (biased minus anti-biased commits),
    'abstention' (Unknown minus committed) or 'stereotype_orth' (stereotype with its abstention component
    removed). The Direction carries its layer and hook, so steering needs nothing else."""
    from interp.methods.directions import compute_directions
    from interp.layers import resolve_layers
    from interp.models.hooks import hook_name

    if name not in DIRECTIONS:
        raise InputError(f"direction must be one of {DIRECTIONS}, not {name!r}")
    a = _as_activations(acts)
    (lay,) = resolve_layers(layer, max(a.layers) + 1, available=a.layers)
    name_ = hook_name(lay, a.hook)
    ds = compute_directions({name_: a.acts[name_]}, a.records, condition)
    return ds.get(name, hook=name_)


@dataclass
class AlphaCurve:
    """BBQ metrics (with intervals) at each steering strength along one direction."""

    direction: Direction
    rows: list[dict]

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def plot(self, path: str | os.PathLike | None = None):
        """The four-panel alpha-curve figure (accuracies, abstention, s_AMB, amb_commit_bias)."""
        from interp.methods.steering import plot_alpha_curves

        from interp.figures import draw_to

        return draw_to(lambda p: plot_alpha_curves({self.direction.name: self.rows}, p,
                                                   title=f"steering along {self.direction.name} at "
                                                         f"{self.direction.hook}"), path)


def alpha_curve(lm: LanguageModel, items: Sequence[BBQItem], direction: Direction, alphas: Sequence[float] = (-8, -4, 0, 4, 8),
                units: str = "sigma", mode: str = "logits", batch_size: int = 32, n_boot: int = 1000, seed: int = 0,
                progress: bool = True) -> AlphaCurve:
    """Evaluate ``items`` with ``alpha * direction`` added at the direction's own hook, for each alpha.
    ``units``: 'sigma' (alpha in standard deviations of the activations along it), 'unit' or 'raw'."""
    from interp.eval.evaluate import EvalConfig
    from interp.methods.steering import alpha_curve as _curve
    from interp.methods.steering import direction_vector

    items = _nonempty(items)
    kind = direction.hook.split(".", 2)[2]
    rows = _curve(lm, items, direction_vector(direction, units), direction.layer, list(alphas),
                  EvalConfig(mode=mode, batch_size=batch_size, progress=False), hook=kind, n_boot=n_boot, seed=seed,
                  label=direction.name, progress=progress)
    return AlphaCurve(direction, rows)


# ----------------------------------------------------------------------------------------------
# base vs adapter


@dataclass
class Comparison:
    """Base vs adapter representations per layer: CKA, direction cosines and probe transfer."""

    rows: list[dict]

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def plot(self, path: str | os.PathLike | None = None):
        from interp.methods.compare import plot_compare

        from interp.figures import draw_to

        return draw_to(lambda p: plot_compare(self.table, p), path)


def compare(lm: LanguageModel, items: Sequence[BBQItem], layers: str | int | Sequence[int] = "all", hook: str = "hook_resid_post",
            batch_size: int = 16, seed: int = 0, progress: bool = True) -> Comparison:
    """Compare a model loaded with an adapter (``load(name, adapter=...)``) against its own base: one weight
    copy, read once with the adapter disabled and once enabled. The model is left as it came."""
    from interp.methods.compare import compare_acts
    from interp.methods.probes import collect as _collect
    from interp.models.backends import as_lm
    from interp.models.hooks import hook_names

    lm = as_lm(lm)
    if lm.adapter is None:
        raise InputError("compare needs a model loaded with an adapter: interp.load(name, adapter=PATH)")
    items = _nonempty(items)
    if len(items) < 4:
        raise InputError(f"need at least 4 items to compare representations, got {len(items)}")
    names = hook_names(layers, lm.n_layers, (hook,))
    kw = dict(batch_size=batch_size, seed=seed, progress=progress)
    with lm.adapter_enabled(False):
        base = _collect(lm, items, names, label="base", **kw)
    with lm.adapter_enabled(True):
        other = _collect(lm, items, names, label=str(lm.adapter), **kw)
    return Comparison(compare_acts(base, other, names, seed=seed))


# ----------------------------------------------------------------------------------------------
# BBQ evaluation


@dataclass
class EvalResult:
    """Per-item predictions and the BBQ metrics with bootstrap intervals (overall first, then per category)."""

    records: list[dict]
    summary: list[dict] = field(default_factory=list)

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.summary)

    @property
    def overall(self) -> dict:
        return self.summary[0]

    def plot(self, path: str | os.PathLike | None = None):
        """Bars of the headline metrics by category, with their intervals."""
        plt = _plt()
        metrics = ("acc_ambig", "acc_disambig", "s_AMB", "amb_commit_bias")
        fig, ax = plt.subplots(figsize=(8, 3.5))
        w = 0.8 / len(self.summary)
        for i, r in enumerate(self.summary):
            x = np.arange(len(metrics)) + (i - (len(self.summary) - 1) / 2) * w
            v = np.array([r[m] for m in metrics], float)
            err = np.array([[v[j] - r[f"{m}_lo"], r[f"{m}_hi"] - v[j]] for j, m in enumerate(metrics)]).T
            ax.bar(x, v, w, yerr=np.clip(err, 0, None), capsize=2, label=r.get("group", "overall"))
        ax.set_xticks(np.arange(len(metrics)), metrics)
        ax.axhline(0, color="k", lw=0.6)
        ax.legend(fontsize=7)
        fig.tight_layout()

        def draw(p):
            p.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(p, dpi=130)
            plt.close(fig)
            return p

        from interp.figures import draw_to

        return draw_to(draw, path)


def evaluate_bbq(lm: LanguageModel, items: Sequence[BBQItem], mode: str = "logits", batch_size: int = 32, n_boot: int = 1000,
                 seed: int = 0, cluster: str = "item", progress: bool = True) -> EvalResult:
    """Answer every item with one letter (``logits``: the A/B/C logits at the answer position; ``generate``:
    greedy decoding, parsed) and score it as the official BBQ analysis does."""
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize
    from interp.models.backends import as_lm

    items = _nonempty(items)
    recs = evaluate_items(as_lm(lm), items, EvalConfig(mode=mode, batch_size=batch_size, seed=seed,
                                                        progress=progress))
    return EvalResult(recs, summarize(recs, n_boot=n_boot, seed=seed, cluster=cluster))


# ----------------------------------------------------------------------------------------------
# activation patching


def patch(lm: LanguageModel, pairs, hooks: Sequence[str] = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out"),
          positions: str | Sequence[str] = "all", metric="logit_diff", layers: str | int | Sequence[int] = "all",
          attribution: bool = True, batch_size: int = 64, progress: bool = True):
    """Activation patching, clean into corrupted, of BBQ ``pairs`` (``interp.pairs.build_pairs(items, kind)``:
    'evidence', 'group_swap' or 'polarity') for every (layer, position role) of each hook, scored by the
    normalized logit difference of the pair's two letters (0 = corrupted, 1 = clean); with ``attribution``, the
    gradient approximation of the same grid too. Returns a ``PatchResult`` (``.table``, ``.plot()``,
    ``.attribution_r``)."""
    from interp.methods.patching import run_patching

    return run_patching(lm, list(pairs), hooks=hooks, positions=positions, metric=metric, layers=layers,
                        attribution=attribution, batch_size=batch_size, progress=progress)
