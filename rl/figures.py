"""Figures from ``results_all.csv``: the Phase-1 decomposition and the Phase-2 dose-response.

Phase 1: s_AMB = coverage x amb_commit_bias, where coverage = 1 - acc_ambig (the share of ambiguous items on
which the model commits instead of answering Unknown) and amb_commit_bias the bias among those commits; bars for
the base, the lambda-0 adapter and the low-lr control, with bootstrap intervals.
Phase 2: amb_commit_bias and abstention on ambiguous items against step (one line per run) and against lambda
(at the last step), the base as a dashed line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from interp.errors import InputError

PHASE1_METRICS = (("s_AMB", "s_AMB"), ("coverage", "coverage\n(1 - acc_ambig)"),
                  ("amb_commit_bias", "amb_commit_bias"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overall(df: pd.DataFrame) -> pd.DataFrame:
    """Overall rows only, with ``coverage`` (1 - acc_ambig) and its interval added."""
    d = df[df["group"] == "overall"].copy() if "group" in df.columns else df.copy()
    d["coverage"] = 1 - d["acc_ambig"]
    d["coverage_lo"] = 1 - d["acc_ambig_hi"]
    d["coverage_hi"] = 1 - d["acc_ambig_lo"]
    d["control"] = d["control"].astype(str).str.lower().isin(("true", "1"))
    return d


def base_row(d: pd.DataFrame) -> pd.Series:
    b = d[d["run"] == "base"]
    if b.empty:
        raise InputError("results have no base row (run == 'base'); run the sweep's evaluation first")
    return b.iloc[-1]


def final_row(d: pd.DataFrame, run: str, step: int | None = None) -> pd.Series:
    r = d[d["run"] == run]
    if r.empty:
        raise InputError(f"no results for run {run!r}; runs present: {sorted(set(d['run']))}")
    if step is not None:
        r = r[r["step"] == step]
        if r.empty:
            raise InputError(f"run {run!r} has no step {step}")
    return r.sort_values("step").iloc[-1]


def pick_phase1_runs(d: pd.DataFrame) -> tuple[str, str | None]:
    """The lambda-0 main run (highest lr among non-controls) and the control run, if present."""
    main = d[(d["run"] != "base") & (~d["control"]) & (d["lambda"].astype(float) == 0.0)]
    if main.empty:
        raise InputError("results have no lambda = 0 run")
    if "scale_rewards" in main.columns and (main["scale_rewards"] == "group").any():
        main = main[main["scale_rewards"] == "group"]  # the seed's setting, when the sweep ran several
    main_run = main.sort_values("lr").iloc[-1]["run"]
    ctrl = d[(d["run"] != "base") & d["control"]]
    return main_run, (ctrl.iloc[0]["run"] if not ctrl.empty else None)


def _err(rows: list[pd.Series], m: str) -> np.ndarray:
    v = np.array([r[m] for r in rows], float)
    lo = np.array([r[f"{m}_lo"] for r in rows], float)
    hi = np.array([r[f"{m}_hi"] for r in rows], float)
    return np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])


def phase1_figure(df: pd.DataFrame, out: str | os.PathLike, run: str | None = None, step: int | None = None,
                  title: str | None = None) -> Path:
    """Bars of s_AMB, coverage and amb_commit_bias for base, the lambda-0 adapter and the control."""
    plt = _plt()
    d = overall(df)
    main_run, ctrl_run = pick_phase1_runs(d)
    run = run or main_run
    rows = [("base", base_row(d)), (f"{run} step {int(final_row(d, run, step)['step'])}", final_row(d, run, step))]
    if ctrl_run and ctrl_run != run:
        r = final_row(d, ctrl_run)
        rows.append((f"{ctrl_run} step {int(r['step'])}", r))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(rows)
    x = np.arange(len(PHASE1_METRICS))
    for i, (label, r) in enumerate(rows):
        vals = [r[m] for m, _ in PHASE1_METRICS]
        errs = np.hstack([_err([r], m) for m, _ in PHASE1_METRICS])
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, yerr=errs, capsize=3, label=label)
    ax.set_xticks(x, [lab for _, lab in PHASE1_METRICS])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("value (95% bootstrap CI)")
    ax.set_title(title or f"Phase 1: s_AMB = coverage x amb_commit_bias ({df['model'].iloc[0]})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def phase2_figure(df: pd.DataFrame, out: str | os.PathLike, metrics=("amb_commit_bias", "abstain_ambig"),
                  title: str | None = None) -> Path:
    """Top row: each metric against step, a line per run (the base at step 0). Bottom row: each metric
    against lambda at every run's last step (non-control runs), with intervals."""
    plt = _plt()
    d = overall(df)
    base = base_row(d)
    runs = d[d["run"] != "base"]
    fig, axes = plt.subplots(2, len(metrics), figsize=(5 * len(metrics), 7), squeeze=False)
    for j, m in enumerate(metrics):
        ax = axes[0, j]
        for run, g in runs.groupby("run"):
            g = g.sort_values("step")
            steps = np.r_[0, g["step"].to_numpy(float)]
            vals = np.r_[base[m], g[m].to_numpy(float)]
            lo = np.r_[base[f"{m}_lo"], g[f"{m}_lo"].to_numpy(float)]
            hi = np.r_[base[f"{m}_hi"], g[f"{m}_hi"].to_numpy(float)]
            style = "--" if bool(g["control"].iloc[0]) else "-"
            line, = ax.plot(steps, vals, style, marker="o", ms=3, label=run)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("step")
        ax.set_ylabel(m)
        ax.legend(fontsize=7)
        ax = axes[1, j]
        main = runs[~runs["control"]]
        last = main.sort_values("step").groupby("run").tail(1).sort_values("lambda")
        last = last.assign(train_seed=train_seeds(last))
        keys = ["scale_rewards", "lr"] if "scale_rewards" in last.columns else ["lr"]
        for gi, (key, grp) in enumerate(last.groupby(keys)):
            label = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in zip(keys, key))
            seeds = sorted(set(grp["train_seed"]))
            for seed in seeds:  # replicates: a thin line per training seed, then their mean
                g = grp[grp["train_seed"] == seed]
                rows = [r for _, r in g.iterrows()]
                ax.errorbar(g["lambda"].astype(float), g[m], yerr=_err(rows, m), marker="o", capsize=3,
                            lw=1 if len(seeds) > 1 else 1.5, alpha=0.6 if len(seeds) > 1 else 1.0,
                            label=f"{label}" + (f", seed {seed}" if len(seeds) > 1 else "") + ", last step")
            if len(seeds) > 1:
                mean = grp.groupby(grp["lambda"].astype(float))[m].mean()
                ax.plot(mean.index, mean.to_numpy(), color="k", ls=("-", "--", ":", "-.")[gi % 4], lw=2.5, marker="s",
                        label=f"{label}: mean over {len(seeds)} seeds")
        ax.axhline(base[m], color="gray", ls="--", label="base")
        ax.axhspan(base[f"{m}_lo"], base[f"{m}_hi"], color="gray", alpha=0.1)
        ax.set_xlabel("lambda")
        ax.set_ylabel(m)
        ax.legend(fontsize=7)
    fig.suptitle(title or f"Phase 2: dose-response in lambda ({df['model'].iloc[0]})")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def phase1_table(df: pd.DataFrame, run: str | None = None, step: int | None = None) -> pd.DataFrame:
    """The numbers behind the Phase-1 figure: base, the lambda-0 run's last step and the control's."""
    d = overall(df)
    main_run, ctrl_run = pick_phase1_runs(d)
    run = run or main_run
    rows = [base_row(d), final_row(d, run, step)]
    if ctrl_run and ctrl_run != run:
        rows.append(final_row(d, ctrl_run))
    cols = ["run", "step", "lambda", "lr"]
    for m in ("acc_ambig", "coverage", "amb_commit_bias", "s_AMB", "abstain_ambig", "acc_disambig", "s_DIS"):
        cols += [m, f"{m}_lo", f"{m}_hi"]
    return pd.DataFrame(rows)[cols].reset_index(drop=True)


def phase2_table(df: pd.DataFrame) -> pd.DataFrame:
    """The dose-response behind Phase 2: every non-control run's last step, by reward scaling and lambda, with
    the share of groups the penalty reached (``lambda_active``)."""
    d = overall(df)
    runs = d[(d["run"] != "base") & (~d["control"])]
    last = runs.sort_values("step").groupby("run").tail(1)
    if "scale_rewards" not in last.columns:
        last = last.assign(scale_rewards="group")
    if "lambda_active" not in last.columns:
        last = last.assign(lambda_active=np.nan)
    last = last.assign(train_seed=train_seeds(last))
    cols = ["scale_rewards", "lambda", "lr", "train_seed", "step", "lambda_active"]
    for m in ("amb_commit_bias", "abstain_ambig", "acc_ambig", "acc_disambig"):
        cols += [m, f"{m}_lo", f"{m}_hi"]
    return last[cols].sort_values(["scale_rewards", "lambda", "train_seed"]).reset_index(drop=True)


def train_seeds(d: pd.DataFrame) -> pd.Series:
    """Each row's training seed (``train_seed``; 0, the sweep's default, where a results file predates it)."""
    if "train_seed" not in d.columns:
        return pd.Series(0, index=d.index, dtype=int)
    return d["train_seed"].fillna(0).astype(int)


@dataclass(frozen=True)
class LambdaEffect:
    """The Phase 2 effect under one reward scaling: amb_commit_bias at the top lambda minus at the lowest, at
    the same step, for each training seed the sweep ran both with."""

    scale_rewards: str
    lam_low: float
    lam_high: float
    step: int
    diffs: dict[int, float]  # train seed -> difference

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.diffs.values())))

    def interval(self, level: float = 0.95) -> tuple[float, float] | None:
        """Student-t interval of the mean over the seeds (None with one seed): the spread a claim must carry."""
        from scipy import stats

        v = np.asarray(list(self.diffs.values()), float)
        if len(v) < 2:
            return None
        half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        return float(v.mean() - half), float(v.mean() + half)


def lambda_effect(df: pd.DataFrame, scale_rewards: str = "none", metric: str = "amb_commit_bias") -> LambdaEffect | None:
    """Top lambda minus lowest lambda in ``metric`` under ``scale_rewards``, paired by training seed at the low
    run's last step; None when the sweep ran fewer than two lambdas under that scaling."""
    d = overall(df)
    d = d[(d["run"] != "base") & (~d["control"])]
    sr = d["scale_rewards"] if "scale_rewards" in d.columns else pd.Series("group", index=d.index)
    d = d[sr == scale_rewards].assign(train_seed=lambda x: train_seeds(x), lam=lambda x: x["lambda"].astype(float))
    lams = sorted(set(d["lam"]))
    if len(lams) < 2:
        return None
    diffs, step = {}, None
    for seed, g in d.groupby("train_seed"):
        lo, hi = g[g["lam"] == lams[0]], g[g["lam"] == lams[-1]]
        if lo.empty or hi.empty:
            continue
        r0 = lo.sort_values("step").iloc[-1]
        r1 = hi[hi["step"] == r0["step"]]
        if r1.empty:
            continue
        step = int(r0["step"]) if step is None else min(step, int(r0["step"]))
        diffs[int(seed)] = float(r1.iloc[-1][metric] - r0[metric])
    if not diffs:
        return None
    return LambdaEffect(scale_rewards, lams[0], lams[-1], int(step), diffs)


def intervals_separate(a: pd.Series, b: pd.Series, metric: str) -> int:
    """+1 when a's interval for ``metric`` lies wholly above b's, -1 wholly below, 0 when they overlap."""
    if a[f"{metric}_lo"] > b[f"{metric}_hi"]:
        return 1
    if a[f"{metric}_hi"] < b[f"{metric}_lo"]:
        return -1
    return 0


def verdict_lines(df: pd.DataFrame, metric: str = "acc_ambig") -> list[str]:
    """One line per run's last step: the metric with its interval against the base's, and whether they separate."""
    d = overall(df)
    base = base_row(d)
    out = [f"base: {metric} {base[metric]:.3f} [{base[f'{metric}_lo']:.3f}, {base[f'{metric}_hi']:.3f}]"]
    for run in [r for r in dict.fromkeys(d["run"]) if r != "base"]:
        r = final_row(d, run)
        s = intervals_separate(r, base, metric)
        word = {1: "ABOVE base (intervals do not overlap)", -1: "BELOW base (intervals do not overlap)",
                0: "overlaps base"}[s]
        out.append(f"{run} step {int(r['step'])}: {metric} {r[metric]:.3f} [{r[f'{metric}_lo']:.3f}, "
                   f"{r[f'{metric}_hi']:.3f}] -> {word}")
    return out
