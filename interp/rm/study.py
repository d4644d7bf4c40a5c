"""The whole RM debiasing study on the RM organism: build (or reuse) it, run the comparison, write outputs,
and check the ground truth (hard-split accuracy up, sensitivity down, overall accuracy within 2 points)."""

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
    if any(r["method"] == "intervention_scored" for r in result.accuracy):
        result.meta["ground_truth_scored_rule"] = ground_truth(result, method="intervention_scored")
    result.meta["organism"] = {"path": str(org), **{k: v for k, v in json.loads((org / INFO_FILE).read_text()).items()
                                                   if k in ("variant", "seed", "n_pairs", "train_log",
                                                            "build_seconds", "n_params", "n_mlp_neurons",
                                                            "planted_neurons")}}
    write_outputs(result, out_dir)
    return result.summary()
