"""Per-layer linear probes for the stereotype lean, cross-validated by template.

Inputs are plain arrays, so this does not depend on how activations were stored: ``acts`` maps a hook
name to ``X # [n_items, d]`` (one row per item, e.g. the residual at the last prompt position) and
``records`` are prediction records (``interp.eval.score.prediction_record``: pred, biased_loc, unknown_loc,
context_condition, category, question_index).

Labels (``stereotype_labels``): an item counts when its answer is committed (parsed and not Unknown) and
has a bias target; y = 1 when the answer is the stereotype-congruent one (pred == biased_loc, the BBQ
definition), else 0. The abstention label (``abstain_labels``) is pred == unknown_loc among parsed answers.

Probe: scikit-learn's ``LogisticRegression(C)`` (L2, lbfgs) after a ``StandardScaler`` fitted on the training
fold, one fit per (label set, layer, fold). (A hand-written batched torch solver was removed in session 10: on
SmolLM2's activations it was not the 2x faster than scikit-learn that would have paid for keeping it;
docs/results.md has the measurement.)

Cross validation is grouped by template (category, question_index): no template is in a train and a test
fold. Out-of-fold accuracy per layer gets a percentile bootstrap interval over templates (clusters), seeded.
Chance lines: the majority-class rate, and the same CV with labels permuted (``n_shuffles`` times).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.models.protocol import LanguageModel
from interp.errors import InputError
from interp.models.hooks import layer_of

CONDITIONS = ("ambig", "disambig", "all")
BACKENDS = ("sklearn",)


# ----------------------------------------------------------------------------------------------
# labels


def _keep_condition(r: Mapping, condition: str) -> bool:
    if condition not in CONDITIONS:
        raise InputError(f"condition must be one of {CONDITIONS}, not {condition!r}")
    return condition == "all" or r["context_condition"] == condition


def template_groups(records: Sequence[Mapping]) -> np.ndarray:
    """The template of each record as a string 'category:question_index' # [n]."""
    return np.array([f"{r['category']}:{r['question_index']}" for r in records])


def stereotype_labels(records: Sequence[Mapping], condition: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """(index of the committed items with a bias target in ``condition``, y = congruent) # [m], [m]."""
    idx, y = [], []
    for i, r in enumerate(records):
        p, b, u = r.get("pred"), r.get("biased_loc"), r.get("unknown_loc")
        if p is None or b is None or p == u or not _keep_condition(r, condition):
            continue
        idx.append(i)
        y.append(int(p == b))
    return np.array(idx, dtype=np.int64), np.array(y, dtype=np.int64)


def abstain_labels(records: Sequence[Mapping], condition: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """(index of the parsed items in ``condition``, y = abstained, i.e. pred == unknown_loc) # [m], [m]."""
    idx, y = [], []
    for i, r in enumerate(records):
        p = r.get("pred")
        if p is None or not _keep_condition(r, condition):
            continue
        idx.append(i)
        y.append(int(p == r["unknown_loc"]))
    return np.array(idx, dtype=np.int64), np.array(y, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# folds


def group_folds(groups: np.ndarray, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """A fold id per item # [n] such that each group lies in one fold: scikit-learn's ``GroupKFold`` (largest
    groups first, each to the lightest fold), over group ids permuted by ``seed`` so that ties between
    equal-sized templates break by the seed. ``n_splits`` is capped at the number of groups; fewer than 2
    groups is an error."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    if len(uniq) < 2:
        raise InputError(f"grouped cross validation needs at least 2 templates, got {len(uniq)}")
    k = min(n_splits, len(uniq))
    ids = np.random.default_rng(seed).permutation(len(uniq))[inv]  # [n] seeded group ids
    folds = np.empty(len(groups), dtype=np.int64)
    for f, (_, test) in enumerate(GroupKFold(n_splits=k).split(np.zeros((len(groups), 1)), groups=ids)):
        folds[test] = f
    return folds


# ----------------------------------------------------------------------------------------------
# fitting


def _stack(acts: Mapping[str, np.ndarray], idx: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    names = list(acts)
    if not names:
        raise InputError("no activations given")
    d = {np.asarray(acts[n]).shape[-1] for n in names}
    if len(d) != 1:
        raise InputError(f"layers have different widths {sorted(d)}; probe one hook kind at a time")
    arrs = []
    for n in names:
        a = np.asarray(acts[n], dtype=np.float32)
        if a.ndim != 2:
            raise InputError(f"activations for {n} must be [n_items, d], got shape {a.shape}")
        arrs.append(a if idx is None else a[idx])
    return names, np.stack(arrs)  # [L, n, d]


def cv_decision_sklearn(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, C: float = 1.0, max_iter: int = 1000,
                        progress: bool = False) -> np.ndarray:
    """Out-of-fold decision values of StandardScaler + LogisticRegression(C), one fit per label set, layer and
    fold. X [L, n, d], Y [S, n] in {0, 1} (several label sets, e.g. true plus shuffled), folds [n]; returns
    z [S, L, n]: item i's score from the model trained without its fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X)
    S, (L, n, _) = Y.shape[0], X.shape
    out = np.zeros((S, L, n))
    F = int(folds.max()) + 1
    bar = tqdm(total=S * L * F, desc="probe (sklearn)", disable=not progress)
    for s in range(S):
        for l in range(L):
            for f in range(F):
                tr, te = folds != f, folds == f
                y = Y[s, tr]
                if len(np.unique(y)) < 2:  # one class only: predict it
                    out[s, l, te] = 1.0 if y[0] == 1 else -1.0
                else:
                    sc = StandardScaler().fit(X[l, tr])
                    clf = LogisticRegression(C=C, max_iter=max_iter).fit(sc.transform(X[l, tr]), y)
                    out[s, l, te] = clf.decision_function(sc.transform(X[l, te]))
                bar.update(1)
    bar.close()
    return out


# ----------------------------------------------------------------------------------------------
# the sweep


@dataclass
class ProbeConfig:
    """Settings of one probe sweep: folds, shuffled-label controls, the L2 strength C and the bootstrap."""

    n_splits: int = 5
    n_shuffles: int = 3
    C: float = 1.0
    backend: str = "sklearn"  # the only one; kept as the tables' column
    n_boot: int = 1000
    ci: float = 0.95
    seed: int = 0
    max_iter: int = 1000
    progress: bool = False


def cluster_bootstrap_acc(correct: np.ndarray, groups: np.ndarray, n_boot: int = 1000, seed: int = 0,
                          ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of accuracy, resampling whole groups: correct [L, n] bool -> (lo [L], hi [L])."""
    uniq, inv = np.unique(groups, return_inverse=True)
    G = len(uniq)
    sums = np.zeros((correct.shape[0], G))
    np.add.at(sums.T, inv, correct.T.astype(np.float64))  # [L, G]
    sizes = np.bincount(inv, minlength=G).astype(np.float64)  # [G]
    rng = np.random.default_rng(seed)
    w = rng.multinomial(G, np.full(G, 1.0 / G), size=n_boot).astype(np.float64)  # [B, G]
    acc = (w @ sums.T) / np.maximum(w @ sizes, 1)[:, None]  # [B, L]
    q = (1 - ci) / 2
    lo, hi = np.quantile(acc, [q, 1 - q], axis=0)
    return lo, hi


def probe_sweep(acts: Mapping[str, np.ndarray], y: np.ndarray, groups: np.ndarray,
                cfg: ProbeConfig | None = None) -> list[dict]:
    """Grouped-CV probe accuracy per hook name, with interval and chance lines. ``acts[name]`` is [m, d]
    for the labelled items only (same order as y and groups). One row per name, in the given order."""
    cfg = cfg or ProbeConfig()
    if cfg.backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, not {cfg.backend!r} (the torch solver was removed: "
                         "scikit-learn was as fast on real activations)")
    y = np.asarray(y).astype(np.int64)
    groups = np.asarray(groups)
    names, X = _stack(acts, None)  # [L, m, d]
    if X.shape[1] != len(y) or len(groups) != len(y):
        raise InputError(f"{X.shape[1]} activation rows but {len(y)} labels and {len(groups)} groups")
    if len(np.unique(y)) < 2:
        raise InputError(f"labels have one class only ({int(y[0]) if len(y) else 'none'}); nothing to probe")
    folds = group_folds(groups, cfg.n_splits, cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    Y = np.stack([y] + [rng.permutation(y) for _ in range(cfg.n_shuffles)])  # [S, m]
    z = cv_decision_sklearn(X, Y, folds, cfg.C, cfg.max_iter, progress=cfg.progress)
    correct = (z > 0) == Y[:, None, :].astype(bool)  # [S, L, m]
    acc = correct.mean(-1)  # [S, L]
    lo, hi = cluster_bootstrap_acc(correct[0], groups, cfg.n_boot, cfg.seed, cfg.ci)
    p1 = float(y.mean())
    rows = []
    for j, name in enumerate(names):
        sh = acc[1:, j]
        rows.append({
            "hook": name,
            "layer": layer_of(name, default=j),
            "n": int(len(y)),
            "n_pos": int(y.sum()),
            "n_templates": int(len(np.unique(groups))),
            "n_folds": int(folds.max()) + 1,
            "acc": float(acc[0, j]),
            "acc_lo": float(lo[j]),
            "acc_hi": float(hi[j]),
            "majority": max(p1, 1 - p1),
            "shuffled_mean": float(sh.mean()) if len(sh) else float("nan"),
            "shuffled_max": float(sh.max()) if len(sh) else float("nan"),
            "backend": cfg.backend,
            "C": cfg.C,
        })
    b = best_layer(rows)
    for r in rows:
        r["best"] = r["hook"] == b["hook"]
    return rows



def best_layer(rows: Sequence[Mapping]) -> Mapping:
    """The row with the highest out-of-fold accuracy (the earliest layer on ties)."""
    return max(rows, key=lambda r: (r["acc"], -r["layer"]))


def probe_margin(row: Mapping) -> float:
    """How far a probe row's accuracy clears both chance lines: acc - max(majority rate, shuffled-label max,
    shuffled-label mean)."""
    shuf = [float(row[k]) for k in ("shuffled_max", "shuffled_mean") if k in row and row[k] == row[k]]
    return float(row["acc"]) - max([float(row["majority"])] + shuf)


def plot_probe_accuracy(rows: Sequence[Mapping], path, title: str | None = None):
    """Probe accuracy by layer with its interval, the majority rate and the shuffled-label control."""
    from interp.figures import band_plot, layer_axis, new_axes, save_figure

    fig, ax = new_axes()
    x = [r["layer"] for r in rows]
    band_plot(ax, x, [r["acc"] for r in rows], [r["acc_lo"] for r in rows], [r["acc_hi"] for r in rows],
              label="probe (out-of-fold)")
    ax.plot(x, [r["shuffled_mean"] for r in rows], ls="--", color="gray", label="shuffled labels")
    ax.axhline(rows[0]["majority"], ls=":", color="black", label="majority rate")
    b = best_layer(rows)
    ax.scatter([b["layer"]], [b["acc"]], color="red", zorder=5, label=f"best: layer {b['layer']}")
    layer_axis(ax)
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"stereotype-congruent commit probe (n={rows[0]['n']}, {rows[0]['n_templates']} templates)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# activations in process (fallback when no activation store is given)


def resid_hooks(model, kind: str = "hook_resid_post", layers=None) -> list[str]:
    """Canonical hook names ``blocks.{l}.{kind}`` for a layer spec (``interp.layers``; default: all)."""
    from interp.models.hooks import hook_names, n_layers

    return hook_names(layers, n_layers(model), (kind,))


@dataclass
class Activations:
    """Activations of one model on a list of items at one position (the last prompt token, where the answer letter
    is decided), one array per hook name, with the model's logits-mode prediction records on the same items
    (rows aligned). Made in process by ``collect`` or read from an activation store by ``from_store``."""

    acts: dict[str, np.ndarray]  # hook name -> [n_items, d]
    records: list[dict]  # prediction records (uid, pred, biased_loc, unknown_loc, category, question_index ...)
    hook: str = "hook_resid_post"
    label: str = "base"

    def __post_init__(self) -> None:
        """Every array has one row per record."""
        n = len(self.records)
        for name, a in self.acts.items():
            if a.ndim != 2 or a.shape[0] != n:
                raise InputError(f"{self.label}: activations {name} have shape {a.shape}; expected [{n}, d]")

    @property
    def layers(self) -> list[int]:
        return [layer_of(n, default=-1) for n in self.acts]

    @property
    def n_items(self) -> int:
        return len(self.records)

    @classmethod
    def from_store(cls, store, hook: str = "hook_resid_post", layers=None, position: int = -1,
                   label: str = "base") -> "Activations":
        """One hook kind of an activation store (``interp.store.activations.ActivationStore`` or its path) for a
        layer spec (``interp.layers``: negative layers count from the model's last); stores with several positions
        give the one at offset ``position`` from the prompt end."""
        from interp.models.hooks import HookName, hook_names
        from interp.store.activations import ActivationStore

        path = store.path if isinstance(store, ActivationStore) else store
        with ActivationStore(path) as st:
            parsed = sorted(h for h in map(HookName.parse, st.names) if h.kind == hook)
            if not parsed:
                raise InputError(f"{path} has no {hook} activations; it holds {st.names}")
            stored = [h.layer for h in parsed]
            n_model = int(st.attrs.get("n_layers") or max(stored) + 1)
            names = [str(h) for h in parsed]
            if layers is not None:
                names = sorted(hook_names(layers, n_model, (hook,), available=stored), key=HookName.parse)
            pos = list(st.fingerprint.get("positions", [-1]))
            acts = {}
            for n in names:
                a = st.layer(n)
                if a.ndim == 3:
                    if position not in pos:
                        raise InputError(f"{path} has positions {pos}, not {position}")
                    a = a[:, pos.index(position)]
                acts[n] = np.asarray(a, dtype=np.float32)
            recs = records_from_meta(st.meta)
        return cls(acts, recs, hook, label)


@torch.no_grad()
def collect(lm: LanguageModel, items, names: Sequence[str], batch_size: int = 16, shuffle_options: bool = False, seed: int = 0,
            progress: bool = True, label: str = "base") -> Activations:
    """The answer pass (``interp.models.answers.answer_batches``) over ``items``: the activations at the last
    prompt position ``{name: [n_items, d]}`` float32, and logits-mode prediction records identical to
    ``evaluate_items``'. ``lm``: a model handle (any backend), a LoadedModel or a HF module (``as_lm``)."""
    from interp.data.prompts import LETTERS
    from interp.eval.score import prediction_record
    from interp.models.answers import answer_batches
    from interp.models.backends import as_lm
    from interp.models.hooks import HookName

    lm = as_lm(lm)
    names = list(names)
    kinds = {HookName.parse(n).kind for n in names}
    acts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    recs: list[dict] = []
    bar = tqdm(total=len(items), desc="activations", disable=not progress, unit="item")
    for b in answer_batches(lm, items, batch_size, names, -1, shuffle_options=shuffle_options, seed=seed):
        for n in names:
            acts[n].append(b.acts[n].float().cpu().numpy())  # [batch, d]
        for j, p in enumerate(b.prompted):
            letter = LETTERS[int(b.letter_logits[j].argmax())]
            recs.append(prediction_record(
                p.item, p.answer_of(letter), letter=letter, reply=None,
                letter_logits=[round(float(x), 5) for x in b.letter_logits[j]], gold_letter=p.gold_letter,
                target_letter=p.target_letter, biased_letter=p.biased_letter, unknown_letter=p.unknown_letter,
                order=list(p.order)))
        bar.update(len(b.index))
    bar.close()
    out = {n: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for n, v in acts.items()}
    hook = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "hook_resid_post")
    return Activations(out, recs, hook, label)


def records_from_meta(meta) -> list[dict]:
    """Prediction records (pred, biased_loc, unknown_loc, target_loc, ...) from an activation store's
    per-item table (``ActivationStore.meta``: -1 stands for None in index columns)."""
    cols = [c for c in ("uid", "example_id", "category", "question_index", "context_condition", "question_polarity",
                        "label", "unknown_loc", "target_loc", "biased_loc", "pred") if c in meta.columns]
    out = []
    for row in meta[cols].itertuples(index=False):
        r = dict(zip(cols, row))
        for k in ("label", "unknown_loc", "target_loc", "biased_loc", "pred", "example_id"):
            if k in r:
                v = int(r[k])
                r[k] = None if v < 0 and k != "example_id" else v
        r["question_index"] = str(r.get("question_index", ""))
        out.append(r)
    return out


def check_store_model(path, model: str, adapter: str | None = None) -> None:
    """Refuse a store written by other weights than ``model`` (+ ``adapter``): matched by the weights
    fingerprint and the adapter's hash, never by name."""
    from interp.store.activations import ActivationStore, ForeignStoreError
    from interp.models.backends import adapter_hash
    from interp.models.loading import fingerprint, resolve_model_path

    with ActivationStore(path) as st:
        fp = dict(st.fingerprint)
    want = fingerprint(resolve_model_path(model))
    if fp.get("weights_hash") and fp["weights_hash"] != want:
        raise ForeignStoreError(f"{path} was written by a model with weights {fp['weights_hash']} ({fp.get('model')}), "
                                f"not {model} ({want}); pass the --model that wrote it")
    stored = (fp.get("adapter_hash") or None) if fp.get("adapter_enabled", True) else None
    if stored != (adapter_hash(adapter) if adapter else None):
        raise ForeignStoreError(f"{path} was written with adapter {fp.get('adapter') or 'none'}, not "
                                f"{adapter or 'none'}")
