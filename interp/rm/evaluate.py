"""The debiasing study on one RM: find attribute neurons on a validation set, build the median intervention,
and compare methods (plain RM, intervention, length penalty, LWR) on pairwise accuracy and sensitivity.

Splits: ``overall`` (every test pair); each split label the data carries (``easy`` / ``hard`` / ``neutral``
for the RM organism, ``hard`` / ``normal`` / ``easy`` for RM-Bench style records); and, for every attribute,
``hard:<attr>``, the pairs where that attribute is larger on the rejected response. When the data has no
``hard`` label, ``hard`` is ``hard:<primary attribute>`` (length by default).

``overall`` is balanced when the data has equal ``neutral`` / ``easy`` / ``hard`` splits (the RM organism's
test set): the attributes sit on the chosen and the rejected side equally often.

Sensitivity of a method to an edit: the mean reward change when the edit (``interp.rm.edits``) is applied to a
response (same response, attribute-only edit), divided by the standard deviation of the plain RM's rewards
over the same unedited responses (one scale for all methods).

Two intervention rules: ``intervention`` follows ``DebiasConfig`` (default: neurons ranked by the partial
correlation of their mean activation over the response tokens with each attribute, times their attribution
to the reward; set to their median over validation tokens at every position), and ``intervention_scored``
the scored-position rule (activation at the scored position, set to its median there).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from interp.errors import InputError
from interp.rm.attributes import DEFAULT_ATTRIBUTES, compute_attributes
from interp.rm.baselines import LengthPenalty, LWRCorrection
from interp.rm.data import PreferencePair
from interp.rm.edits import EDIT_ATTRIBUTE, EDITS
from interp.rm.intervention import NeuronIntervention, median_intervention
from interp.rm.neurons import NeuronSelection, correlations, select_neurons
from interp.rm.scoring import PositionRef, mlp_attribution, score, token_medians

METHODS = ("rm", "intervention", "intervention_scored", "length_penalty", "lwr")
DIRECTION = "direction"  # the residual-stream projection method (``interp.rm.directions``), asked for by name
POOLS = ("scored", "mean", "response")
RANKS = ("corr_x_effect", "corr")


@dataclass
class DebiasConfig:
    """Settings of one debiasing run."""

    attributes: tuple[str, ...] = DEFAULT_ATTRIBUTES
    budget_frac: float = 0.02
    min_abs_corr: float = 0.0
    control_label: bool = True
    positions: str = "all"  # where the intervention writes: "all" positions or the "scored" one
    pool: str = "response"  # activation correlated with the attributes: "response" mean, "mean", "scored"
    rank: str = "corr_x_effect"  # or "corr": rank neurons by |r| alone
    choose_k: str = "val_sensitivity"  # or "budget": use every neuron the budget allows
    n_val_sensitivity: int = 100  # validation responses edited to choose k
    primary_attribute: str = "length"
    n_sensitivity: int = 200
    lwr_frac: float = 0.3
    batch_size: int = 16
    seed: int = 0
    progress: bool = False
    direction_layers: tuple[int, ...] = ()  # candidate layers of the direction method (default: L/6, L/3, L/2)

    def __post_init__(self) -> None:
        """Refuse unknown attributes and empty sensitivity samples when the settings are made."""
        from interp.rm.attributes import list_attributes

        unknown = [a for a in self.attributes if a not in list_attributes()]
        if unknown or not self.attributes:
            raise InputError(f"unknown attribute(s) {unknown or list(self.attributes)}; known: "
                             f"{', '.join(list_attributes())}")
        for name in ("n_sensitivity", "n_val_sensitivity", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")


class Scorer:
    """Rewards under each method, with plain and intervened rewards cached by (prompt, response)."""

    def __init__(self, model, tokenizer, intervention: NeuronIntervention | None, batch_size: int = 16,
                 progress: bool = False, others: dict[str, NeuronIntervention] | None = None):
        self.model, self.tokenizer, self.intervention = model, tokenizer, intervention
        self.interventions = {"intervention": intervention, **(others or {})}
        self.batch_size, self.progress = batch_size, progress
        self._cache: dict[tuple[str, str, bool], float] = {}
        self.length_penalty: LengthPenalty | None = None
        self.lwr: LWRCorrection | None = None

    def raw(self, prompts: Sequence[str], responses: Sequence[str], intervene: bool | str = False) -> np.ndarray:
        """Rewards of the RM, with or without (the named) intervention's hooks, ``# [n]``."""
        name = "intervention" if intervene is True else (intervene or "")
        keys = [(p, r, name) for p, r in zip(prompts, responses)]
        todo = sorted({k for k in keys if k not in self._cache})
        if todo:
            fwd, ref = None, PositionRef()
            if name:
                if self.interventions.get(name) is None:
                    raise InputError(f"no intervention {name!r} to apply")
                fwd = self.interventions[name].hook_fns(ref)
            res = score(self.model, self.tokenizer, [k[0] for k in todo], [k[1] for k in todo],
                        batch_size=self.batch_size, fwd_hooks=fwd, position_ref=ref, progress=self.progress)
            self._cache.update(zip(todo, res.rewards.tolist()))
        return np.array([self._cache[k] for k in keys], dtype=np.float64)

    def lengths(self, responses: Sequence[str]) -> np.ndarray:
        return compute_attributes(responses, [""] * len(responses), ["length"], self.tokenizer)["length"]

    def fit_baselines(self, prompts: Sequence[str], responses: Sequence[str], lwr_frac: float = 0.3) -> None:
        """Fit the length penalty and the LWR curve on validation responses."""
        r, n = self.raw(prompts, responses), self.lengths(responses)
        self.length_penalty = LengthPenalty.fit(n, r)
        self.lwr = LWRCorrection.fit(n, r, frac=lwr_frac)

    def rewards(self, method: str, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Rewards of one method (``rm``, ``intervention``, ``length_penalty``, ``lwr``)."""
        if method == "rm":
            return self.raw(prompts, responses)
        if method in self.interventions:
            return self.raw(prompts, responses, intervene=method)
        if method in ("length_penalty", "lwr"):
            corr = self.length_penalty if method == "length_penalty" else self.lwr
            if corr is None:
                raise InputError("baselines are not fitted: call fit_baselines on validation data first")
            return corr.apply(self.lengths(responses), self.raw(prompts, responses))
        raise InputError(f"unknown method {method!r}; known: {METHODS}")


def pairwise_accuracy(r_chosen: np.ndarray, r_rejected: np.ndarray) -> float:
    """Share of pairs where the chosen response gets the higher reward (a tie counts one half)."""
    if len(r_chosen) == 0:
        return float("nan")
    return float(((r_chosen > r_rejected) + 0.5 * (r_chosen == r_rejected)).mean())


def split_masks(pairs: Sequence[PreferencePair], attrs_c: dict[str, np.ndarray], attrs_r: dict[str, np.ndarray],
                primary: str = "length") -> dict[str, np.ndarray]:
    """Boolean masks ``# [n_pairs]`` of every split (see the module docstring)."""
    n = len(pairs)
    masks = {"overall": np.ones(n, dtype=bool)}
    for s in sorted({p.split for p in pairs if p.split}):
        masks[s] = np.array([p.split == s for p in pairs])
    for a in attrs_c:
        masks[f"hard:{a}"] = attrs_r[a] > attrs_c[a]
    if "hard" not in masks and f"hard:{primary}" in masks:
        masks["hard"] = masks[f"hard:{primary}"]
    return masks


@dataclass
class DebiasResult:
    """Everything one run measured."""

    selection: NeuronSelection
    intervention: NeuronIntervention
    corr: np.ndarray  # [n_attr, L, d_mlp]
    accuracy: list[dict] = field(default_factory=list)  # method, split, accuracy, n
    sensitivity: list[dict] = field(default_factory=list)  # method, edit, attribute, mean_change, normalized, n
    meta: dict = field(default_factory=dict)
    # per-item numbers for paired intervals: {"rewards": {method: (r_chosen [n], r_rejected [n])}, "masks":
    # {split: [n] bool}, "sens": {method: {edit: reward change [m]}}, "sd": the plain RM's reward sd}
    items: dict = field(default_factory=dict)
    selection_scored: NeuronSelection | None = None

    def acc(self, method: str, split: str) -> float:
        for r in self.accuracy:
            if r["method"] == method and r["split"] == split:
                return r["accuracy"]
        raise KeyError(f"no accuracy for {method}/{split}")

    def sens(self, method: str, edit: str) -> float:
        for r in self.sensitivity:
            if r["method"] == method and r["edit"] == edit:
                return r["normalized"]
        raise KeyError(f"no sensitivity for {method}/{edit}")

    def summary(self) -> dict:
        """Accuracy by method and split, sensitivity by method and edit, neuron counts."""
        acc: dict = {}
        for r in self.accuracy:
            acc.setdefault(r["method"], {})[r["split"]] = r["accuracy"]
        sens: dict = {}
        for r in self.sensitivity:
            sens.setdefault(r["method"], {})[r["edit"]] = r["normalized"]
        return {"accuracy": acc, "sensitivity": sens, "n_neurons": len(self.selection.neurons),
                "n_total_neurons": self.selection.n_total, "fraction": self.selection.fraction,
                "per_layer": self.selection.per_layer(), "per_attribute": self.selection.per_attribute(),
                **self.meta}


def find_intervention(model, tokenizer, val_pairs: Sequence[PreferencePair], cfg: DebiasConfig,
                      memo: dict | None = None) -> tuple[NeuronSelection, NeuronIntervention, np.ndarray, np.ndarray]:
    """Correlate MLP neurons with the attributes on the validation responses, select within the budget, and
    set each selected neuron to its validation median. Returns (selection, intervention, corr, rewards).
    ``memo`` (a dict shared between calls on the same model and pairs) keeps the neuron attributions."""
    prompts = [p.prompt for p in val_pairs] * 2
    responses = [p.chosen for p in val_pairs] + [p.rejected for p in val_pairs]
    label = np.r_[np.ones(len(val_pairs)), np.zeros(len(val_pairs))]
    if cfg.pool not in POOLS:
        raise InputError(f"pool must be one of {POOLS}, not {cfg.pool!r}")
    res = score(model, tokenizer, prompts, responses, batch_size=cfg.batch_size, record_mlp=cfg.pool,
                progress=cfg.progress)
    attrs = compute_attributes(responses, prompts, cfg.attributes, tokenizer)
    corr = correlations(res.mlp, attrs, control=label if cfg.control_label else None)
    if cfg.rank not in RANKS:
        raise InputError(f"rank must be one of {RANKS}, not {cfg.rank!r}")
    weight = 1.0
    if cfg.rank == "corr_x_effect":
        memo = {} if memo is None else memo
        if "attribution" not in memo:
            memo["attribution"] = mlp_attribution(model, tokenizer, prompts, responses, cfg.batch_size, cfg.progress)
        weight = memo["attribution"][None]
    sel = select_neurons(corr, list(attrs), budget_frac=cfg.budget_frac, min_abs_corr=cfg.min_abs_corr,
                         weight=weight)
    if cfg.positions == "all":  # one constant at every position: the neuron's median over validation tokens
        med = token_medians(model, tokenizer, prompts, responses, sel.by_layer(), cfg.batch_size, cfg.progress)
        iv = NeuronIntervention(indices=sel.by_layer(), values=med, positions="all",
                                meta={"median_over": "validation tokens", "fraction": sel.fraction})
    else:  # the scored position: the median of the activation there
        at = res.mlp if cfg.pool == "scored" else score(model, tokenizer, prompts, responses, cfg.batch_size,
                                                        record_mlp="scored").mlp
        iv = median_intervention(sel, at, positions="scored")
    iv.meta.update({"pool": cfg.pool, "rank": cfg.rank})
    if cfg.choose_k == "val_sensitivity" and len(sel.neurons) > 1:
        sel, iv = _choose_k(model, tokenizer, prompts, responses, sel, iv, cfg)
    elif cfg.choose_k not in ("val_sensitivity", "budget"):
        raise InputError(f"choose_k must be 'val_sensitivity' or 'budget', not {cfg.choose_k!r}")
    return sel, iv, corr, res.rewards


def _subset(sel: NeuronSelection, iv: NeuronIntervention, k: int) -> tuple[NeuronSelection, NeuronIntervention]:
    """The first ``k`` selected neurons (a round-robin prefix is itself a valid selection) and their values."""
    val = {(l, i): v for l in iv.indices for i, v in zip(iv.indices[l], iv.values[l])}
    sub = replace(sel, neurons=sel.neurons[:k])
    by = sub.by_layer()
    return sub, NeuronIntervention(indices=by, values={l: [val[(l, i)] for i in idx] for l, idx in by.items()},
                                   positions=iv.positions, meta=dict(iv.meta, fraction=sub.fraction))


def _choose_k(model, tokenizer, prompts, responses, sel, iv, cfg: DebiasConfig):
    """Among prefixes of the ranked selection (1/4, 1/2, 3/4, all of it), keep the one whose intervention
    leaves the smallest mean |sensitivity| on validation responses: more neurons cut more of the lean, and
    too many over-correct (the sign flips), which validation shows without touching the test set."""
    rng = random.Random(f"choose_k:{cfg.seed}")
    idx = rng.sample(range(len(responses)), min(cfg.n_val_sensitivity, len(responses)))
    ps, rs = [prompts[i] for i in idx], [responses[i] for i in idx]
    n = len(sel.neurons)
    ks = sorted({max(1, int(np.ceil(f * n))) for f in (0.25, 0.5, 0.75, 1.0)})
    curve, best = [], None
    for k in ks:
        s_k, iv_k = _subset(sel, iv, k)
        sc = Scorer(model, tokenizer, iv_k, cfg.batch_size)
        rows = sensitivity_rows(sc, ["intervention"], ps, rs)
        m = float(np.mean([abs(r["normalized"]) for r in rows]))
        curve.append({"k": k, "val_sensitivity": round(m, 4)})
        if best is None or m < best[0] - 1e-9:
            best = (m, s_k, iv_k)
    best[2].meta["choose_k"] = curve
    return best[1], best[2]


def sensitivity_rows(scorer: Scorer, methods: Sequence[str], prompts: Sequence[str], responses: Sequence[str],
                     deltas: dict | None = None) -> list[dict]:
    """Mean reward change ``reward(edit(response)) - reward(response)`` under each attribute-only edit, raw and
    in units of the plain RM's reward sd over the same unedited responses (the same scale for every method,
    so a method cannot look less sensitive by spreading its rewards). ``deltas``, when given, is filled with
    ``{method: {edit: per-response change # [n]}}`` and ``"sd"``."""
    rows = []
    sd = float(scorer.rewards("rm", prompts, responses).std()) or 1.0  # one scale for every method
    if deltas is not None:
        deltas["sd"] = sd
    for m in methods:
        base = scorer.rewards(m, prompts, responses)
        for edit, fn in EDITS.items():
            edited = [fn(r) for r in responses]
            d = scorer.rewards(m, prompts, edited) - base
            if deltas is not None:
                deltas.setdefault(m, {})[edit] = d
            rows.append({"method": m, "edit": edit, "attribute": EDIT_ATTRIBUTE[edit],
                         "mean_change": float(d.mean()), "normalized": float(d.mean() / sd), "n": len(responses)})
    return rows


def run_debias(model, tokenizer, val_pairs: Sequence[PreferencePair], test_pairs: Sequence[PreferencePair],
               cfg: DebiasConfig | None = None, methods: Sequence[str] = METHODS) -> DebiasResult:
    """The whole comparison on one RM (see the module docstring)."""
    cfg = cfg or DebiasConfig()
    t0 = time.time()
    if not val_pairs or not test_pairs:
        raise InputError(f"need validation and test pairs, got {len(val_pairs)} and {len(test_pairs)}")
    memo: dict = {}
    sel, iv, corr, _ = find_intervention(model, tokenizer, val_pairs, cfg, memo)
    others: dict = {}
    sel_s = None
    if "intervention_scored" in methods:  # the scored-position rule, for comparison
        cfg_s = replace(cfg, pool="scored", positions="scored")
        sel_s, iv_s, _, _ = find_intervention(model, tokenizer, val_pairs, cfg_s, memo)
        others["intervention_scored"] = iv_s
    if DIRECTION in methods:  # project out per-attribute diff-of-means directions of the residual stream
        from interp.rm.directions import find_projection

        def val_sensitivity(proj, ps, rs):  # mean |sensitivity| of one candidate projection
            rows = sensitivity_rows(Scorer(model, tokenizer, None, cfg.batch_size, others={DIRECTION: proj}),
                                    [DIRECTION], ps, rs)
            return float(np.mean([abs(r["normalized"]) for r in rows]))

        others[DIRECTION] = find_projection(model, tokenizer, val_pairs, cfg, val_sensitivity)
    scorer = Scorer(model, tokenizer, iv, cfg.batch_size, cfg.progress, others=others)
    scorer.fit_baselines([p.prompt for p in val_pairs] * 2,
                         [p.chosen for p in val_pairs] + [p.rejected for p in val_pairs], cfg.lwr_frac)

    tp = [p.prompt for p in test_pairs]
    ac = compute_attributes([p.chosen for p in test_pairs], tp, cfg.attributes, tokenizer)
    ar = compute_attributes([p.rejected for p in test_pairs], tp, cfg.attributes, tokenizer)
    masks = split_masks(test_pairs, ac, ar, cfg.primary_attribute)
    acc_rows = []
    items: dict = {"rewards": {}, "masks": masks, "sens": {}}
    for m in methods:
        rc = scorer.rewards(m, tp, [p.chosen for p in test_pairs])
        rr = scorer.rewards(m, tp, [p.rejected for p in test_pairs])
        items["rewards"][m] = (rc, rr)
        for s, mask in masks.items():
            acc_rows.append({"method": m, "split": s, "accuracy": pairwise_accuracy(rc[mask], rr[mask]),
                             "n": int(mask.sum())})

    # sensitivity: responses of undecorated ("neutral") pairs when the data labels them, else all test pairs
    pool = [p for p in test_pairs if p.split == "neutral"] or list(test_pairs)
    cand = [(p.prompt, r) for p in pool for r in (p.chosen, p.rejected)]
    rng = random.Random(f"sensitivity:{cfg.seed}")
    if len(cand) > cfg.n_sensitivity:
        cand = rng.sample(cand, cfg.n_sensitivity)
    sens_rows = sensitivity_rows(scorer, methods, [c[0] for c in cand], [c[1] for c in cand], items["sens"])
    items["sd"] = items["sens"].pop("sd")
    meta = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "n_val_pairs": len(val_pairs), "n_test_pairs": len(test_pairs),
            "length_penalty_alpha": scorer.length_penalty.alpha if scorer.length_penalty else None,
            "seconds": round(time.time() - t0, 1)}
    if DIRECTION in others:
        meta[DIRECTION] = others[DIRECTION].describe()
    if "intervention_scored" in others:
        meta["intervention_scored"] = {"n_neurons": others["intervention_scored"].n_neurons,
                                       "per_layer": sel_s.per_layer(),
                                       "neurons": {str(l): v for l, v in sel_s.by_layer().items()}}
    return DebiasResult(selection=sel, intervention=iv, corr=corr, accuracy=acc_rows, sensitivity=sens_rows,
                        meta=meta, items=items, selection_scored=sel_s)


# ----------------------------------------------------------------------------------------------
# outputs


def _write_csv(rows: list[dict], path: Path) -> None:
    if not rows:
        path.write_text("")
        return
    from interp.tables import write_table

    write_table(rows, path)


def write_outputs(result: DebiasResult, out_dir: str | os.PathLike, figures: bool = True) -> dict[str, Path]:
    """Write ``results.csv`` (long: kind, method, name, value, n), ``accuracy.csv``, ``sensitivity.csv``,
    ``neurons.csv``, ``neurons_per_layer.csv``, ``intervention.json``, ``summary.json`` and the figures
    ``accuracy.png`` and ``neurons_per_layer.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    long = [{"kind": "accuracy", "method": r["method"], "name": r["split"], "value": r["accuracy"], "n": r["n"]}
            for r in result.accuracy]
    long += [{"kind": "sensitivity", "method": r["method"], "name": r["edit"], "value": r["normalized"],
              "n": r["n"]} for r in result.sensitivity]
    for name, rows in (("results.csv", long), ("accuracy.csv", result.accuracy),
                       ("sensitivity.csv", result.sensitivity)):
        _write_csv(rows, out / name)
        paths[name] = out / name
    sel = result.selection
    attr_idx = {a: i for i, a in enumerate(sel.attributes)}
    med = {(l, i): v for l in result.intervention.indices
           for i, v in zip(result.intervention.indices[l], result.intervention.values[l])}
    _write_csv([{"layer": n.layer, "index": n.index, "attribute": n.attribute, "corr": n.corr,
                 "median": med.get((n.layer, n.index)),
                 **{f"corr_{a}": float(result.corr[k, n.layer, n.index]) for a, k in attr_idx.items()}}
                for n in sel.neurons], out / "neurons.csv")
    _write_csv([{"layer": l, "n_selected": c, "n_neurons": sel.d_mlp} for l, c in enumerate(sel.per_layer())],
               out / "neurons_per_layer.csv")
    result.intervention.save(out / "intervention.json")
    (out / "summary.json").write_text(json.dumps(result.summary(), indent=1))
    paths.update({k: out / k for k in ("neurons.csv", "neurons_per_layer.csv", "intervention.json", "summary.json")})
    if figures:
        paths.update(plot_results(result, out))
    return paths


def plot_results(result: DebiasResult, out_dir: Path) -> dict[str, Path]:
    """Accuracy by method and split as grouped bars; selected neurons per layer as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in result.accuracy))
    splits = [s for s in dict.fromkeys(r["split"] for r in result.accuracy) if not s.startswith("hard:")]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(splits), 3.4))
    w = 0.8 / len(methods)
    for k, m in enumerate(methods):
        vals = [result.acc(m, s) for s in splits]
        ax.bar(np.arange(len(splits)) + (k - (len(methods) - 1) / 2) * w, vals, w, label=m)
    ax.set_xticks(np.arange(len(splits)), splits)
    ax.set_ylim(0, 1)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("pairwise accuracy")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("RM accuracy by method and split")
    fig.tight_layout()
    p1 = Path(out_dir) / "accuracy.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    counts = result.selection.per_layer()
    fig, ax = plt.subplots(figsize=(max(3.0, 0.5 * len(counts) + 1.5), 3.0))
    ax.bar(range(len(counts)), counts, color="tab:purple")
    ax.set_xlabel("layer")
    ax.set_ylabel("selected neurons")
    ax.set_xticks(range(len(counts)))
    ax.set_title(f"{len(result.selection.neurons)} of {result.selection.n_total} MLP neurons "
                 f"({100 * result.selection.fraction:.2f}%)")
    fig.tight_layout()
    p2 = Path(out_dir) / "neurons_per_layer.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return {"accuracy.png": p1, "neurons_per_layer.png": p2}
