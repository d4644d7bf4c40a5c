"""The whole RM debiasing study: on the RM organism (build or reuse it, run the comparison, write outputs, check
the ground truth: hard-split accuracy up, sensitivity down, overall accuracy within 2 points), or on a reward
model on a pretrained backbone (``run_backbone_study``, ``rm-smollm2``), where the paper's claims are
measured checks that may hold or not (``paper_claims``)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from interp.rm.evaluate import DebiasConfig, DebiasResult, run_debias, write_outputs

EDITS_PLANTED = ("padding", "exclamation", "bold", "paragraphs")


def ground_truth(result: DebiasResult, max_overall_change: float = 0.02, method: str = "intervention") -> dict:
    """The organism's expected effect of an intervention ``method``, measured against the plain RM: hard-split
    gain, |overall change| (balanced test set) and mean |sensitivity| over the planted edits before/after."""
    hard_gain = result.acc(method, "hard") - result.acc("rm", "hard")
    overall_change = result.acc(method, "overall") - result.acc("rm", "overall")
    sens_before = float(np.mean([abs(result.sens("rm", e)) for e in EDITS_PLANTED]))
    sens_after = float(np.mean([abs(result.sens(method, e)) for e in EDITS_PLANTED]))
    return {
        "method": method,
        "hard_gain": hard_gain,
        "overall_change": overall_change,
        "sensitivity_before": sens_before,
        "sensitivity_after": sens_after,
        "sensitivity_drop": 1 - sens_after / sens_before if sens_before else 0.0,
        "hard_up": hard_gain > 0,
        "sensitivity_down": sens_after < sens_before,
        "overall_within": abs(overall_change) < max_overall_change,
        "holds": bool(hard_gain > 0 and sens_after < sens_before and abs(overall_change) < max_overall_change),
    }


def run_rm_study(out_dir: str | os.PathLike, small: bool = False, seed: int = 0,
                 bbq_dir: str | os.PathLike | None = None, organism_dir: str | os.PathLike | None = None,
                 config: DebiasConfig | None = None, device: str = "auto", progress: bool = True) -> dict:
    """Take the RM organism (``ensure_rm_organism``: the shipped one for seed 0, else a cached build under
    ``interp.paths.home()/rm-organism``) or ``organism_dir``, run the debiasing
    comparison on its validation and test files, write CSVs and figures to ``out_dir``; returns the summary
    (accuracy, sensitivity, neuron counts) with a ``ground_truth`` entry."""
    from interp.organisms.rm import INFO_FILE, MODEL_DIR, ensure_rm_organism, load_rm_organism_data
    from interp.rm.scoring import load_reward_model

    org = Path(organism_dir) if organism_dir else ensure_rm_organism(small=small, seed=seed, bbq_dir=bbq_dir,
                                                                     progress=progress)
    val, test = load_rm_organism_data(org)  # first: names a folder that is not an RM organism
    lm = load_reward_model(str(org / MODEL_DIR), device=device, dtype="float32")
    cfg = replace(config or DebiasConfig(), seed=seed, progress=progress)
    result = run_debias(lm.model, lm.tokenizer, val, test, cfg)
    result.meta["ground_truth"] = ground_truth(result)
    result.meta["claims"] = paper_claims(result, seed=seed)  # the same measured checks as on a backbone RM
    if any(r["method"] == "intervention_scored" for r in result.accuracy):
        result.meta["ground_truth_scored_rule"] = ground_truth(result, method="intervention_scored")
    result.meta["organism"] = {"path": str(org), **{k: v for k, v in json.loads((org / INFO_FILE).read_text()).items()
                                                   if k in ("variant", "seed", "n_pairs", "train_log",
                                                            "build_seconds", "n_params", "n_mlp_neurons",
                                                            "planted_neurons")}}
    write_outputs(result, out_dir)
    return result.summary()


# ----------------------------------------------------------------------------------------------
# the paper's claims as measured checks (issue 32)

CLAIM_METHODS = ("intervention", "intervention_scored", "direction")


def _ci(samples: np.ndarray, ci: float = 0.95) -> list[float]:
    lo, hi = np.quantile(samples, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return [float(lo), float(hi)]


def early_share(per_layer: list[int], n_boot: int = 1000, seed: int = 0) -> dict:
    """Share of selected neurons in the first third of the layers (index < L/3) against the share a uniform
    draw over layers would give, with a bootstrap interval over the selected neurons."""
    from interp.eval.metrics import bootstrap_weights

    L = len(per_layer)
    layer_of = np.repeat(np.arange(L), per_layer)  # one entry per selected neuron
    early = (layer_of < L / 3).astype(np.float64)
    expected = float(np.mean(np.arange(L) < L / 3))
    if len(early) == 0:
        return {"share": None, "expected": expected, "ci": None, "n": 0, "holds": False}
    w = bootstrap_weights(len(early), n_boot, np.random.default_rng(seed))  # [n_boot, n]
    ci = _ci(w @ early / len(early))
    return {"share": float(early.mean()), "expected": expected, "ci": ci, "n": int(len(early)),
            "holds": bool(ci[0] > expected)}


def paper_claims(result: DebiasResult, methods: tuple[str, ...] = CLAIM_METHODS, n_boot: int = 1000,
                 seed: int = 0, budget: float = 0.02, max_drop: float = 0.01) -> dict:
    """The paper's claims measured on one run (each with ``holds`` true or false, never forced):
    selected neurons <= ``budget`` of all MLP neurons; their share in the first third of the layers above the
    uniform expectation (interval excludes it); per method, hard-split accuracy rises and mean |sensitivity|
    over the planted edits falls (paired bootstrap over test pairs / edited responses: the interval of the
    change excludes 0), and overall accuracy drops by at most ``max_drop``."""
    from interp.eval.metrics import bootstrap_weights

    rng = np.random.default_rng(seed)
    items = result.items
    out: dict = {"neuron_rules": {}, "methods": {}, "n_boot": n_boot}
    sels = {"intervention": result.selection, "intervention_scored": result.selection_scored}
    for name, sel in sels.items():
        if sel is None:
            continue
        out["neuron_rules"][name] = {
            "n_selected": len(sel.neurons), "n_total": sel.n_total, "fraction": sel.fraction,
            "le_2pct": {"value": sel.fraction, "limit": budget, "holds": bool(sel.fraction <= budget)},
            "early_layers": early_share(sel.per_layer(), n_boot, seed)}
    rc0, rr0 = items["rewards"]["rm"]
    hard, overall = items["masks"]["hard"], items["masks"]["overall"]
    correct = lambda rc, rr: (rc > rr) + 0.5 * (rc == rr)  # noqa: E731  [n] per-pair accuracy
    w_hard = bootstrap_weights(int(hard.sum()), n_boot, rng)  # [n_boot, n_hard]
    w_all = bootstrap_weights(int(overall.sum()), n_boot, rng)
    sens = items["sens"]
    edits = [e for e in EDITS_PLANTED if e in sens.get("rm", {})]
    n_resp = len(next(iter(sens["rm"].values()))) if edits else 0
    w_sens = bootstrap_weights(n_resp, n_boot, rng) if n_resp else None  # [n_boot, n_resp]
    sd = items.get("sd", 1.0) or 1.0

    def mean_abs_sens(m, w=None):  # mean over edits of |mean change| / sd, per bootstrap row when w is given
        if w is None:
            return float(np.mean([abs(sens[m][e].mean()) / sd for e in edits]))
        return np.mean([np.abs(w @ sens[m][e] / n_resp) / sd for e in edits], axis=0)

    base_c = correct(rc0, rr0).astype(np.float64)
    for m in methods:
        if m not in items["rewards"]:
            continue
        c = correct(*items["rewards"][m]).astype(np.float64)
        d_hard, d_all = (c - base_c)[hard], (c - base_c)[overall]
        hard_ci = _ci(w_hard @ d_hard / len(d_hard))
        all_ci = _ci(w_all @ d_all / len(d_all))
        row = {"hard_gain": {"value": float(d_hard.mean()), "ci": hard_ci, "holds": bool(hard_ci[0] > 0)},
               "overall_change": {"value": float(d_all.mean()), "ci": all_ci, "limit": -max_drop,
                                  "holds": bool(d_all.mean() >= -max_drop)}}
        if edits and m in sens:
            before, after = mean_abs_sens("rm"), mean_abs_sens(m)
            s_ci = _ci(mean_abs_sens(m, w_sens) - mean_abs_sens("rm", w_sens))
            row["sensitivity_change"] = {"before": before, "after": after, "value": after - before, "ci": s_ci,
                                         "holds": bool(s_ci[1] < 0)}
        row["holds"] = bool(all(v["holds"] for v in row.values() if isinstance(v, dict)))
        out["methods"][m] = row
    return out


def backbone_pairs(manifest: dict, bbq_dir: str | os.PathLike | None = None, items=None):
    """(validation, test) pairs of a backbone RM, drawn again from BBQ with its recorded config and seed and
    checked against the sha256 the build recorded (``RMPairsMismatch`` for other BBQ files)."""
    from interp.organisms.rm import RMPairsMismatch, rm_pairs
    from interp.organisms.rm_backbone import BackboneRMConfig

    if items is None:
        from interp.data.bbq import load_bbq

        items, _ = load_bbq(bbq_dir)
    cfg = BackboneRMConfig(**{k: (tuple(v) if k in ("grid_k", "grid_lr") else v)
                              for k, v in manifest["config"].items()})
    pairs = rm_pairs(items, cfg.pairs_config(), int(manifest["seed"]))
    got = pairs.sha256()
    for part in ("val", "test"):
        if got[part] != manifest["pairs_sha256"][part]:
            raise RMPairsMismatch(f"the BBQ files here draw other {part} pairs than the backbone RM was built and "
                                  f"measured on (sha256 {got[part][:12]} vs {manifest['pairs_sha256'][part][:12]})")
    return pairs.val, pairs.test


def take_per_split(pairs, n: int | None) -> list:
    """The first ``n`` pairs of each split label (all when ``n`` is None), in the original order."""
    if n is None:
        return list(pairs)
    seen: dict = {}
    out = []
    for p in pairs:
        seen[p.split] = seen.get(p.split, 0) + 1
        if seen[p.split] <= n:
            out.append(p)
    return out


BACKBONE_STUDY = DebiasConfig(n_val_sensitivity=12, n_sensitivity=30, batch_size=16)


def run_backbone_study(out_dir: str | os.PathLike, rm: str = "rm-smollm2", n_val: int | None = 40,
                       n_test_per_split: int | None = 30, config: DebiasConfig | None = None, seed: int = 0,
                       device: str = "auto", bbq_dir: str | os.PathLike | None = None,
                       model_dir: str | os.PathLike | None = None, pairs: tuple | None = None,
                       progress: bool = True) -> dict:
    """The study on a reward model on a pretrained backbone: ``rm`` (a shipped backbone RM, merged once by
    ``ensure_backbone_rm``; ``model_dir`` replaces its folder), its validation and test pairs drawn again from
    BBQ (``pairs`` = (val, test) replaces them), the first ``n_val`` validation pairs and ``n_test_per_split``
    test pairs per split; every method of the organism's study plus the direction projection; writes the
    same outputs plus ``claims.json``; returns the summary with ``claims``."""
    import time

    from interp.organisms.rm_backbone import MANIFEST_FILE, ensure_backbone_rm
    from interp.rm.evaluate import DIRECTION, METHODS
    from interp.rm.scoring import load_reward_model

    t0 = time.time()
    folder = Path(model_dir) if model_dir else ensure_backbone_rm(rm)
    manifest = json.loads((folder / MANIFEST_FILE).read_text()) if (folder / MANIFEST_FILE).is_file() else {}
    if pairs is None:
        if not manifest:
            raise FileNotFoundError(f"{folder} has no {MANIFEST_FILE}: give its pairs")
        pairs = backbone_pairs(manifest, bbq_dir)
    val = list(pairs[0])[:n_val] if n_val else list(pairs[0])
    test = take_per_split(pairs[1], n_test_per_split)
    lm = load_reward_model(str(folder), device=device, dtype="float32")
    cfg = replace(config or BACKBONE_STUDY, seed=seed, progress=progress)
    result = run_debias(lm.model, lm.tokenizer, val, test, cfg, methods=METHODS + (DIRECTION,))
    result.meta["claims"] = paper_claims(result, seed=seed)
    result.meta["ground_truth"] = ground_truth(result)
    result.meta["backbone_rm"] = {"rm": rm, "path": str(folder),
                                  **{k: manifest[k] for k in ("backbone", "k", "lr", "n_pairs", "build_seconds",
                                                              "backbone_fingerprint") if k in manifest}}
    result.meta["study_seconds"] = round(time.time() - t0, 1)
    write_outputs(result, out_dir)
    (Path(out_dir) / "claims.json").write_text(json.dumps(result.meta["claims"], indent=1))
    return result.summary()


# ----------------------------------------------------------------------------------------------
# the organism and a backbone RM side by side (issue 32 item 5)


def _change(d: dict | None) -> str:
    """'value [lo, hi] holds|fails' for one claim entry of ``paper_claims``."""
    if not d:
        return "-"
    lo, hi = d["ci"]
    return f"{d['value']:+.3f} [{lo:+.3f}, {hi:+.3f}] {'holds' if d['holds'] else 'fails'}"


def side_by_side(studies: dict[str, dict]) -> list[dict]:
    """One row per measure and one column per study (``{"organism": summary, "rm-smollm2": summary}``, each a
    ``run_rm_study`` / ``run_backbone_study`` summary with ``claims``): the paper's claims as measured checks and
    the accuracies behind them, so a pretrained backbone reads beside the organism whose bias was planted."""
    missing = [name for name, s in studies.items() if "claims" not in s]
    if missing:
        raise ValueError(f"no paper claims in the summary of {', '.join(missing)}")
    names = list(studies)
    rows: list[dict] = []

    def row(measure: str, cell) -> None:
        rows.append({"measure": measure, **{n: cell(studies[n]) for n in names}})

    def rule(s: dict) -> dict:
        return s["claims"]["neuron_rules"].get("intervention", {})

    row("MLP neurons", lambda s: str(s["n_total_neurons"]))
    row("selected neurons (share)", lambda s: f"{s['n_neurons']} ({s['fraction']:.2%})")
    row("claim: selected <= 2% of MLP neurons",
        lambda s: ("holds" if rule(s)["le_2pct"]["holds"] else "fails") if rule(s) else "-")

    def early(s: dict) -> str:
        e = rule(s).get("early_layers")
        if not e or e["share"] is None:
            return "- (no neuron selected)"
        lo, hi = e["ci"]
        return f"{e['share']:.2f} [{lo:.2f}, {hi:.2f}] vs {e['expected']:.2f} {'holds' if e['holds'] else 'fails'}"

    row("claim: share in the first third of layers above uniform", early)
    for split in ("overall", "hard"):
        for m in ("rm", "length_penalty", "lwr"):
            row(f"accuracy {split}: {m}",
                lambda s, m=m, split=split: f"{s['accuracy'][m][split]:.3f}" if split in s["accuracy"].get(m, {})
                else "-")
    methods = [m for m in CLAIM_METHODS if any(m in s["claims"]["methods"] for s in studies.values())]
    for m in methods:
        for key, label in (("hard_gain", "hard-pair accuracy change"), ("overall_change", "overall accuracy change"),
                           ("sensitivity_change", "mean |sensitivity| change")):
            row(f"{m}: {label}", lambda s, m=m, key=key: _change(s["claims"]["methods"].get(m, {}).get(key)))
        row(f"{m}: every claim holds", lambda s, m=m: "-" if m not in s["claims"]["methods"]
            else ("yes" if s["claims"]["methods"][m]["holds"] else "no"))
    return rows
