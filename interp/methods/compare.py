"""Compare a base model with LoRA adapters on the same items, layer by layer.

For each adapter and layer: linear CKA between base and adapter activations (Kornblith et al. 2019), the
cosine between difference-of-means directions built in each model (stereotype lean, abstention), and probe
transfer (a stereotype-lean probe trained on base activations, tested on the adapter's).

Base and adapters share ONE copy of the weights: the adapters are attached to the model with PEFT and the
base is read inside ``model.disable_adapter()``. Activations are taken at the last prompt token (where the
answer letter is decided), so every model sees the same prompts at the same positions.

The core (``linear_cka``, ``unit_direction``, ``probe_transfer``, ``compare_acts``) works on plain arrays;
labels, difference-of-means directions, template-grouped folds and the in-process activation pass are
those of ``interp.methods.probes`` and ``interp.methods.directions``, so there is one definition of each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from interp.methods.probes import Activations
from interp.errors import InputError

CSV_COLUMNS = ("adapter", "layer", "cka", "cos_stereo", "cos_abstain", "probe_base_acc", "probe_transfer_acc")


# ----------------------------------------------------------------------------------------------
# linear CKA


def _as_2d_float64(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"{name} must be 2-D [n_items, d], got shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError(f"{name} has non-finite values (nan/inf)")
    return X


def _centered_unit(X: np.ndarray) -> np.ndarray | None:
    """Column-centered X scaled to unit Frobenius norm (CKA is scale invariant; this keeps float64 sums
    in a safe range even for residual streams with huge outlier dimensions). None when X is constant."""
    Xc = X - X.mean(axis=0, keepdims=True)
    s = np.linalg.norm(Xc)
    if s == 0 or not np.isfinite(s):
        return None
    return Xc / s


def _unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Unbiased HSIC estimator (Song et al. 2012) of two [n, n] Gram matrices, n > 3."""
    n = K.shape[0]
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    k1, l1 = K.sum(axis=1), L.sum(axis=1)  # [n]
    term = (K * L).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 * (k1 @ l1) / (n - 2)
    return float(term / (n * (n - 3)))


def linear_cka(X, Y, debiased: bool = False) -> float:
    """Linear CKA between X [n, d1] and Y [n, d2] (rows are the same items), in float64.

    CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centered Xc, Yc: 1 for identical
    representations, invariant to orthogonal transforms and isotropic scaling of either side, near 0 for
    independent ones when n >> d. ``debiased=True`` uses the unbiased HSIC estimator (needs n > 3), whose
    value for independent representations is near 0 even when d >> n. NaN when either side is constant."""
    X = _as_2d_float64(X, "X")
    Y = _as_2d_float64(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X and Y must have the same rows (items): {X.shape[0]} != {Y.shape[0]}")
    n = X.shape[0]
    if n < 2 or (debiased and n < 4):
        raise InputError(f"need at least {4 if debiased else 2} items for {'debiased ' if debiased else ''}CKA, got {n}")
    Xc, Yc = _centered_unit(X), _centered_unit(Y)
    if Xc is None or Yc is None:
        return float("nan")
    if debiased:
        K, L = Xc @ Xc.T, Yc @ Yc.T  # [n, n]
        hxy, hxx, hyy = _unbiased_hsic(K, L), _unbiased_hsic(K, K), _unbiased_hsic(L, L)
        den = np.sqrt(hxx * hyy) if hxx > 0 and hyy > 0 else 0.0
        return float(hxy / den) if den > 0 else float("nan")
    d1, d2 = Xc.shape[1], Yc.shape[1]
    if n * n * (d1 + d2) < n * (d1 * d2 + d1 * d1 + d2 * d2):  # Gram form is cheaper when n < d
        K, L = Xc @ Xc.T, Yc @ Yc.T  # [n, n]; centered already
        hxy, hxx, hyy = (K * L).sum(), (K * K).sum(), (L * L).sum()
    else:
        hxy = np.square(Yc.T @ Xc).sum()  # [d2, d1]
        hxx = np.square(Xc.T @ Xc).sum()
        hyy = np.square(Yc.T @ Yc).sum()
    return float(hxy / np.sqrt(hxx * hyy))


# ----------------------------------------------------------------------------------------------
# labels, directions and probes (built with interp.methods.probes / interp.methods.directions, so there is one definition)


def label_arrays(records: Sequence[Mapping], condition: str = "all") -> dict[str, np.ndarray]:
    """Per-item labels as float arrays ``# [n]`` with NaN where an item has none: ``stereo`` (1 congruent
    commit, 0 anti-congruent commit; ``interp.methods.probes.stereotype_labels``) and ``abstain`` (1 answered
    Unknown, 0 committed; ``interp.methods.probes.abstain_labels``)."""
    from interp.methods.probes import abstain_labels, stereotype_labels

    out = {}
    for key, fn in (("stereo", stereotype_labels), ("abstain", abstain_labels)):
        y = np.full(len(records), np.nan)
        idx, lab = fn(records, condition)
        y[idx] = lab
        out[key] = y
    return out


def unit_direction(X, labels, min_per_class: int = 2) -> np.ndarray | None:
    """Unit difference-of-means direction ``# [d]`` between label 1 and label 0 rows (NaN labels ignored),
    via ``interp.methods.directions.diff_of_means``; None when a class has fewer than ``min_per_class`` items."""
    from interp.methods.directions import diff_of_means

    y = np.asarray(labels, dtype=np.float64)
    if np.shape(X)[0] != y.shape[0]:
        raise InputError(f"{np.shape(X)[0]} activation rows but {y.shape[0]} labels")
    pos, neg = y == 1.0, y == 0.0
    if pos.sum() < min_per_class or neg.sum() < min_per_class:
        return None
    v = diff_of_means(X, pos, neg)
    n = np.linalg.norm(v)
    return v / n if n > 0 else None


def orth_direction(stereo: np.ndarray | None, abstain: np.ndarray | None) -> np.ndarray | None:
    """The stereotype direction with its abstention component removed (``interp.methods.directions.orthogonalize``)."""
    from interp.methods.directions import orthogonalize

    if stereo is None or abstain is None:
        return None
    return orthogonalize(stereo, abstain)


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Cosine of two vectors; NaN when either is missing or zero."""
    from interp.methods.directions import cosine as _cos

    return float("nan") if a is None or b is None else _cos(np.asarray(a), np.asarray(b))


@dataclass
class ProbeTransfer:
    """Out-of-fold accuracy of a base-trained probe on held-out base items and on the adapter's."""

    base_acc: float
    transfer_acc: float
    n_base: int  # labelled items in base
    n_adapter: int  # labelled items in the adapter
    folds: int


def _fit_predict(Xtr: np.ndarray, ytr: np.ndarray, tests: list[np.ndarray], C: float) -> list[np.ndarray]:
    """Standardize on the training rows, fit L2 logistic regression (the ``interp.methods.probes`` objective),
    predict each test array."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(ytr)) < 2:  # one class in training: the probe can only say that class
        return [np.full(T.shape[0], ytr[0]) for T in tests]
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    sd = np.where(sd > 1e-10, sd, 1.0)
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit((Xtr - mu) / sd, ytr)
    return [clf.predict((T - mu) / sd) if T.shape[0] else np.empty(0) for T in tests]


def probe_transfer(X_base, y_base, X_adapter, y_adapter, groups=None, n_folds: int = 5, C: float = 1.0,
                   seed: int = 0, min_per_class: int = 2) -> ProbeTransfer:
    """Cross-validated transfer of a stereotype-lean probe from base to adapter activations.

    Folds are over items, grouped by template when ``groups`` is given (``interp.methods.probes.group_folds``).
    Per fold: fit on the base's train-fold items (base labels), score on the held-out items' base
    activations (base labels: ``base_acc``) and the same held-out items' adapter activations (adapter labels:
    ``transfer_acc``); accuracies pool all folds. NaN labels mark items without a label. Both accuracies are
    NaN when the base has fewer than ``min_per_class`` items of a class."""
    from threadpoolctl import threadpool_limits

    from interp.methods.probes import group_folds

    Xb, Xa = np.asarray(X_base, dtype=np.float64), np.asarray(X_adapter, dtype=np.float64)
    yb, ya = np.asarray(y_base, dtype=np.float64), np.asarray(y_adapter, dtype=np.float64)
    n = Xb.shape[0]
    if not (Xa.shape[0] == yb.shape[0] == ya.shape[0] == n):
        raise InputError(f"base and adapter must cover the same items: {Xb.shape[0]}, {Xa.shape[0]}, "
                         f"{yb.shape[0]}, {ya.shape[0]} rows")
    if Xb.shape[1] != Xa.shape[1]:
        raise InputError(f"probe transfer needs the same hidden size: base {Xb.shape[1]}, adapter {Xa.shape[1]}")
    groups = np.arange(n).astype(str) if groups is None else np.asarray(groups)
    if groups.shape[0] != n:
        raise InputError(f"{groups.shape[0]} groups for {n} items")
    lb, la = ~np.isnan(yb), ~np.isnan(ya)
    n_b, n_a = int(lb.sum()), int(la.sum())
    if min((yb == 1).sum(), (yb == 0).sum()) < min_per_class or len(np.unique(groups)) < 2:
        return ProbeTransfer(float("nan"), float("nan"), n_b, n_a, 0)
    folds = group_folds(groups, n_folds, seed)
    k = int(folds.max()) + 1
    hits_b = hits_a = tot_b = tot_a = 0
    # small L-BFGS problems: BLAS threads only add contention (40x slower on a loaded 2-core machine)
    with threadpool_limits(limits=1 if Xb.size < 2_000_000 else None, user_api="blas"):
        for f in range(k):
            tr = np.flatnonzero((folds != f) & lb)
            te_b, te_a = np.flatnonzero((folds == f) & lb), np.flatnonzero((folds == f) & la)
            if tr.size == 0:
                continue
            pb, pa = _fit_predict(Xb[tr], yb[tr].astype(int), [Xb[te_b], Xa[te_a]], C)
            hits_b += int((pb == yb[te_b]).sum())
            hits_a += int((pa == ya[te_a]).sum())
            tot_b += te_b.size
            tot_a += te_a.size
    acc = lambda h, t: h / t if t else float("nan")  # noqa: E731
    return ProbeTransfer(acc(hits_b, tot_b), acc(hits_a, tot_a), n_b, n_a, k)


# ----------------------------------------------------------------------------------------------
# comparing two sets of activations on the same items


def compare_acts(base: Activations, other: Activations, names: Sequence[str] | None = None, n_folds: int = 5,
                 C: float = 1.0, seed: int = 0, condition: str = "all", debiased: bool = False) -> list[dict]:
    """One row per hook name: CKA, direction cosines and probe transfer between ``base`` and ``other``
    (each direction and probe label built from that model's own predictions)."""
    from interp.methods.probes import template_groups
    from interp.models.hooks import layer_of

    names = list(names if names is not None else base.acts)
    if [r.get("uid") for r in base.records] != [r.get("uid") for r in other.records]:
        raise InputError(f"{base.label} and {other.label} were not run on the same items in the same order")
    lb, lo = label_arrays(base.records, condition), label_arrays(other.records, condition)
    groups = template_groups(base.records)
    rows = []
    for name in tqdm(names, desc=f"compare ({other.label})", disable=len(names) < 8, unit="layer"):
        for m in (base, other):
            if name not in m.acts:
                raise KeyError(f"{m.label} has no activations for {name!r}; it has {sorted(m.acts)}")
        Xb, Xo = base.acts[name], other.acts[name]
        sb, so = unit_direction(Xb, lb["stereo"]), unit_direction(Xo, lo["stereo"])
        ab, ao = unit_direction(Xb, lb["abstain"]), unit_direction(Xo, lo["abstain"])
        pt = probe_transfer(Xb, lb["stereo"], Xo, lo["stereo"], groups, n_folds=n_folds, C=C, seed=seed)
        row = {
            "adapter": other.label,
            "layer": layer_of(name, default=-1),
            "cka": linear_cka(Xb, Xo),
            "cos_stereo": cosine(sb, so),
            "cos_abstain": cosine(ab, ao),
            "probe_base_acc": pt.base_acc,
            "probe_transfer_acc": pt.transfer_acc,
            "cos_stereo_orth": cosine(orth_direction(sb, ab), orth_direction(so, ao)),
            "hook": name,
            "n_items": Xb.shape[0],
            "n_stereo_base": pt.n_base,
            "n_stereo_adapter": pt.n_adapter,
            "n_abstain_base": int(np.nansum(lb["abstain"])),
            "n_abstain_adapter": int(np.nansum(lo["abstain"])),
            "probe_folds": pt.folds,
        }
        if debiased:
            row["cka_debiased"] = linear_cka(Xb, Xo, debiased=True)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# running the models


def resolve_layers(model, layers="all", hook: str = "hook_resid_post") -> list[str]:
    """Hook names ``blocks.{l}.{hook}`` for a layer spec (``interp.layers``) on ``model``."""
    from interp.models.hooks import hook_names, n_layers, parse_hook_name

    names = hook_names(layers, n_layers(model), (hook,))
    for n in names:
        parse_hook_name(model, n)  # an unknown hook kind is named
    return names


def attach_adapters(model, adapters: Sequence[str], model_name: str | None = None):
    """Attach each adapter folder to ``model`` (one copy of the base weights) and return
    (peft_model, [adapter names inside PEFT]). A model that is already a PeftModel keeps its adapters."""
    from peft import PeftModel

    from interp.models.loading import check_adapter_base

    if not adapters:
        raise InputError("no adapters to compare")
    is_peft = isinstance(model, PeftModel)
    for a in adapters:  # the weights hash is only comparable on the plain (unwrapped) base
        check_adapter_base(a, model_name or "", None if is_peft else model)
    names = [f"cmp{i}" for i in range(len(adapters))]
    for i, (a, nm) in enumerate(zip(adapters, names)):
        if not is_peft:
            model = PeftModel.from_pretrained(model, a, adapter_name=nm)
            is_peft = True
        else:
            model.load_adapter(a, adapter_name=nm)
    model.eval()
    return model, names


def compare_adapters(model, adapters: Sequence[str], items, out_dir: str | os.PathLike, layers="all",
                     tokenizer=None, hook: str = "hook_resid_post", batch_size: int = 16, n_folds: int = 5,
                     C: float = 1.0, seed: int = 0, shuffle_options: bool = False, condition: str = "all",
                     labels: Sequence[str] | None = None, model_name: str | None = None, debiased: bool = False,
                     progress: bool = True):
    """Compare the base model with each adapter on ``items``; write ``compare.csv`` and ``compare.png``
    to ``out_dir`` and return the table (one row per adapter and layer, columns ``CSV_COLUMNS`` first).

    ``model`` is a LoadedModel or a HF causal LM (then pass ``tokenizer``). The adapters are attached to
    one copy of the base weights for the comparison (the base is read with them disabled) and removed again
    afterwards, so the model given is left as it was. ``layers``: 'all', an int, '0,3,5' or a list; ``labels`` name the adapters in the table
    (default: their paths)."""
    from interp.models.loading import LoadedModel

    if isinstance(model, LoadedModel):
        tokenizer = tokenizer or model.tokenizer
        model_name = model_name or model.name
        model = model.model
    if tokenizer is None:
        raise InputError("compare_adapters needs a tokenizer (pass a LoadedModel or tokenizer=...)")
    items = list(items)
    if len(items) < 4:
        raise InputError(f"need at least 4 items to compare representations, got {len(items)}")
    labels = list(labels) if labels is not None else [str(a) for a in adapters]
    if len(labels) != len(adapters) or len(set(labels)) != len(labels):
        raise InputError(f"need one distinct label per adapter: {labels} for {list(adapters)}")
    from peft import PeftModel

    from interp.methods.probes import collect
    from interp.models.backends import as_lm

    names = resolve_layers(model, layers, hook)
    was_peft = isinstance(model, PeftModel)
    active = model.active_adapter if was_peft else None
    peft_model, pnames = attach_adapters(model, adapters, model_name)
    kw = dict(batch_size=batch_size, shuffle_options=shuffle_options, seed=seed, progress=progress)
    rows: list[dict] = []
    try:
        lm = as_lm(peft_model, tokenizer)
        with peft_model.disable_adapter():
            base = collect(lm, items, names, label="base", **kw)
        for pname, lab in zip(pnames, labels):
            peft_model.set_adapter(pname)
            other = collect(lm, items, names, label=lab, **kw)
            rows += compare_acts(base, other, names, n_folds=n_folds, C=C, seed=seed, condition=condition,
                                 debiased=debiased)
            del other
    finally:  # leave the caller's model as it came: no LoRA layers of ours left in it
        if was_peft:
            for pname in pnames:
                peft_model.delete_adapter(pname)
            peft_model.set_adapter(active)
        else:
            peft_model.unload()
    return _write_compare(rows, out_dir)


def _write_compare(rows: list[dict], out_dir: str | os.PathLike):
    """compare.csv and compare.png in out_dir; returns the table."""
    import pandas as pd

    df = pd.DataFrame(rows)
    od = Path(out_dir)
    od.mkdir(parents=True, exist_ok=True)
    df.to_csv(od / "compare.csv", index=False)
    plot_compare(df, od / "compare.png")
    return df


# fingerprint keys that must agree for two stores to hold the same prompts at the same positions
_SAME_PROMPTS = ("items_hash", "n_items", "positions", "shuffle_options", "seed", "prompt_template_hash")


def check_stores_comparable(base_fp: Mapping, other_fp: Mapping, base_path, other_path) -> None:
    """Refuse two activation stores (``ActivationStore.fingerprint``) that do not hold the same items, prompts
    and positions, or that were made from different base weights; the error names the differing keys."""
    bad = [k for k in _SAME_PROMPTS if base_fp.get(k) != other_fp.get(k)]
    if base_fp.get("weights_hash") and other_fp.get("weights_hash") and base_fp["weights_hash"] != other_fp["weights_hash"]:
        bad.append("weights_hash")
    if bad:
        diffs = ", ".join(f"{k}: {base_fp.get(k)!r} vs {other_fp.get(k)!r}" for k in bad)
        raise InputError(f"{base_path} and {other_path} are not comparable ({diffs}); cache both with the same "
                         "model, split, positions and option order")


def compare_stores(base_path: str | os.PathLike, adapter_paths: Sequence[str | os.PathLike],
                   out_dir: str | os.PathLike, layers: Sequence[int] | None = None, hook: str = "hook_resid_post",
                   labels: Sequence[str] | None = None, n_folds: int = 5, C: float = 1.0, seed: int = 0,
                   condition: str = "all", debiased: bool = False):
    """``compare_adapters`` from activation stores (``interp cache``): the base store (``--no-adapter``) and
    one store per adapter, all of the same items at the same positions. Writes compare.csv / compare.png."""
    from interp.methods.probes import Activations
    from interp.store.activations import ActivationStore

    if not adapter_paths:
        raise InputError("no adapter stores to compare")
    labels = list(labels) if labels is not None else [str(p) for p in adapter_paths]
    if len(labels) != len(adapter_paths) or len(set(labels)) != len(labels):
        raise InputError(f"need one distinct label per adapter store: {labels} for {list(adapter_paths)}")
    with ActivationStore(base_path) as st:
        base_fp = dict(st.fingerprint)
    if base_fp.get("adapter") and base_fp.get("adapter_enabled", True):
        raise InputError(f"{base_path} was cached with adapter {base_fp['adapter']} enabled; the base store "
                         "needs no adapter (or `interp cache --no-adapter`)")
    base = Activations.from_store(base_path, hook, layers, label="base")
    rows: list[dict] = []
    for p, lab in zip(adapter_paths, labels):
        with ActivationStore(p) as st:
            check_stores_comparable(base_fp, st.fingerprint, base_path, p)
        rows += compare_acts(base, Activations.from_store(p, hook, layers, label=lab), list(base.acts), n_folds=n_folds, C=C, seed=seed,
                             condition=condition, debiased=debiased)
    return _write_compare(rows, out_dir)


# ----------------------------------------------------------------------------------------------
# figure


def plot_compare(df, path: str | os.PathLike) -> Path:
    """Four panels by layer, one line per adapter: CKA, stereotype cosine, abstention cosine, probe
    accuracy (transfer solid, base held-out dashed)."""
    from matplotlib.ticker import MaxNLocator

    from interp.figures import layer_axis, new_axes, save_figure

    fig, axes = new_axes(4, width=4.2, height=3.4)
    panels = [("cka", "linear CKA (base vs adapter)"), ("cos_stereo", "cos(stereotype directions)"),
              ("cos_abstain", "cos(abstention directions)"), ("probe_transfer_acc", "stereotype probe accuracy")]
    for k, (adapter, g) in enumerate(df.groupby("adapter", sort=False)):
        g = g.sort_values("layer")
        lab = Path(str(adapter)).name or str(adapter)
        for ax, (col, title) in zip(axes, panels):
            ax.plot(g["layer"], g[col], marker="o", ms=3, color=f"C{k}", label=lab)
            ax.set_title(title, fontsize=10)
        if k == 0:  # the same for every adapter: one base model, labels and folds
            axes[3].plot(g["layer"], g["probe_base_acc"], ls="--", color="black", label="base, held-out")
    axes[0].set_ylim(0, 1.05)
    for ax in axes[1:3]:
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylim(-1.05, 1.05)
    axes[3].axhline(0.5, color="grey", lw=0.5)
    axes[3].set_ylim(0, 1.05)
    axes[3].legend(handles=axes[3].get_lines()[1:2], fontsize=7, loc="lower left")  # the dashed base line
    axes[3].text(0.02, 0.95, "solid: probe on each adapter", transform=axes[3].transAxes, fontsize=7, va="top")
    for ax in axes:
        layer_axis(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)
