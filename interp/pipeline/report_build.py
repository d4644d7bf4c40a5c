"""Assemble the main job's report from the stage outputs (see interp.pipeline.report for the writer)."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

import numpy as np

from interp.pipeline.runner import Context
from interp.pipeline.report import Section, read_csv, with_ci, write_report

METRICS = ("acc_ambig", "acc_disambig", "abstain_disambig", "s_AMB", "amb_commit_bias", "s_DIS")


def _steer_why(o: dict) -> str:
    """Why the steer stage steered the layer it did (its layer.json), or '' for a run without the record."""
    f = o.get("steer", {}).get("layer")
    return json.loads(Path(f).read_text())["why"] if f and Path(f).is_file() else ""


def _cmd(ctx: Context, stage: str) -> str:
    """The exact command that reruns one stage of this run (everything else is reused)."""
    base = f"interp run --preset {ctx.cfg['run'].get('preset', 'quick')} --out {shlex.quote(str(ctx.out))}"
    if ctx.cfg["run"]["model"] not in ("organism",):
        base += f" --model {shlex.quote(ctx.cfg['run']['model'])}"
    return f"{base} --force {stage}"


def _overall(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("group", "overall") == "overall"]


SEED_RESULTS = "seed_results.csv"  # shipped in interp/pipeline/configs: the seed study's published numbers


def _shipped_table(name: str) -> list[dict]:
    """The rows of a CSV shipped in ``interp/pipeline/configs``."""
    from importlib import resources

    with resources.as_file(resources.files("interp.pipeline.configs").joinpath(name)) as f:
        return read_csv(f)


def _seed_section(ctx: Context) -> list[Section]:
    """The seed study's published numbers (shipped, or ``report.seed_csv``), each row with its source."""
    path = ctx.cfg.get("report", {}).get("seed_csv") or ""
    if path:
        rows, where = read_csv(path), f"`{path}`"
    else:
        rows, where = _shipped_table(SEED_RESULTS), "the toolkit's shipped `interp/pipeline/configs/seed_results.csv`"
    return [Section("Seed study, as reported (Qwen2.5-3B-Instruct)", text=(
        f"Published numbers of the study this toolkit reproduces, from {where}; each row names its source. "
        "Ours follow below, measured by this run on its own model."), table=rows)]


ZERO_SHOT_REAL = "zero_shot_real.csv"  # shipped beside it: the built-in real models' zero-shot numbers, with sources


def _zero_shot_section(ctx: Context) -> list[Section]:
    """The built-in real models' zero-shot numbers measured earlier (each row with its command and date), shown
    beside the seed's when the run studies a model other than the shipped organisms."""
    from interp.models.shipped import SHIPPED_NAMES

    if ctx.cfg["run"]["model"] in SHIPPED_NAMES:
        return []
    rows = _shipped_table(ZERO_SHOT_REAL)
    return [Section("Zero-shot real models, as measured earlier (template-disjoint dev)", text=(
        "The two built-in real models answering BBQ untrained, beside the seed's numbers above; each row names the "
        "command and date that measured it (docs/results.md). Letters by logits are near a position habit on both."),
        table=rows)]


def _f(x) -> float:
    return float(x) if x not in (None, "") else float("nan")


def study_checks(o: dict) -> list[dict]:
    """What the main job must show on a model with a planted lean, each with its measured value and whether it
    holds: the base lean, GRPO above base with separate intervals, the control at base, the probe above its
    baselines, steering monotone, and lambda acting under ``scale_rewards = none``."""
    rows = []

    def add(check, value, holds):
        rows.append({"check": check, "measured": value, "holds": "yes" if holds else "NO"})

    base = None
    if "base_eval" in o:
        base = json.loads(Path(o["base_eval"]["summary"]).read_text())["rows"][0]
        add("base lean: amb_commit_bias lower bound > 0",
            f"{base['amb_commit_bias']:.3f} [{base['amb_commit_bias_lo']:.3f}, {base['amb_commit_bias_hi']:.3f}]",
            base["amb_commit_bias_lo"] > 0)
    if "rl_sweep" in o:
        from rl.figures import base_row, final_row, lambda_effect, overall
        from rl.sweep import read_results

        d = overall(read_results(o["rl_sweep"]["results"]))
        b = base_row(d)
        sr = d["scale_rewards"] if "scale_rewards" in d.columns else "group"
        main = d[(d["run"] != "base") & (~d["control"]) & (d["lambda"].astype(float) == 0) & (sr == "group")]
        if not main.empty:
            r = final_row(d, main.iloc[0]["run"])
            add(f"lambda-0 adapter ({r['run']}, step {int(r['step'])}) raises acc_ambig, separate intervals",
                f"base {b['acc_ambig']:.3f} [{b['acc_ambig_lo']:.3f}, {b['acc_ambig_hi']:.3f}] -> "
                f"{r['acc_ambig']:.3f} [{r['acc_ambig_lo']:.3f}, {r['acc_ambig_hi']:.3f}]",
                r["acc_ambig_lo"] > b["acc_ambig_hi"])
        ctrl = d[d["control"]]
        if not ctrl.empty:
            r = final_row(d, ctrl.iloc[0]["run"])
            add("lr 1e-6 control stays within 0.02 of base acc_ambig",
                f"{r['acc_ambig']:.3f} vs base {b['acc_ambig']:.3f} ({r['acc_ambig'] - b['acc_ambig']:+.3f})",
                abs(r["acc_ambig"] - b["acc_ambig"]) <= 0.02)
        eff = lambda_effect(d, "none")
        if eff is not None:
            per_seed = ", ".join(f"seed {s} {v:+.3f}" for s, v in sorted(eff.diffs.items()))
            what = "ends" if len(eff.diffs) == 1 else f"ends, on the mean over {len(eff.diffs)} training seeds,"
            ci = eff.interval()  # None with one seed
            add(f"scale_rewards none: lambda {eff.lam_high:g} {what} >= 0.05 below lambda {eff.lam_low:g} in "
                f"amb_commit_bias", f"lambda {eff.lam_high:g} minus {eff.lam_low:g} at step {eff.step}: {per_seed}"
                + (" (one training seed; rl.replicate_seeds gives the mean over several)" if ci is None
                   else f"; mean {eff.mean:+.3f}, 95% t-interval over seeds [{ci[0]:+.3f}, {ci[1]:+.3f}]"),
                eff.mean <= -0.05)
    if "probes" in o:
        from interp.methods.probes import probe_margin

        summ = json.loads(Path(o["probes"]["summary"]).read_text())
        st, split = summ["stereotype"], summ.get("split", "train")
        # the margin of every fold seed the stage fitted (a summary without them: the reported sweep's alone)
        margins = [s["margin"] for s in summ.get("stereotype_fold_seeds") or [{"margin": probe_margin(st)}]]
        med = float(np.median(margins))
        add(f"stereotype probe's best layer ({split} split) beats majority and shuffled control by >= 0.03, "
            f"median over {len(margins)} fold seed(s)",
            f"margins {', '.join(f'{m:+.3f}' for m in margins)} (median {med:+.3f}); first fold seed: layer "
            f"{st['layer']} {st['acc']:.3f} vs majority {st['majority']:.3f} (n {st['n']})", med >= 0.03)
    if "steer" in o:
        curve = [r for r in read_csv(o["steer"]["csv"]) if r["direction"] == "stereotype"]
        curve.sort(key=lambda r: _f(r["alpha"]))
        against = [_f(r["amb_commit_bias"]) for r in curve if _f(r["alpha"]) <= 0]  # alpha <= 0: against it
        lay = int(_f(curve[0]["layer"])) if curve and "layer" in curve[0] else None
        why = _steer_why(o)
        add("steering against the stereotype direction (alpha < 0) lowers amb_commit_bias monotonically"
            + (f" (at layer {lay}{', ' + why if why else ''})" if lay is not None else ""),
            ", ".join(f"{_f(r['alpha']):g}: {_f(r['amb_commit_bias']):.3f}" for r in curve),
            len(against) > 1 and all(a <= b for a, b in zip(against, against[1:])) and against[0] < against[-1])
    return rows


def _patch_section(ctx: Context, outs: dict) -> Section:
    """Activation patching: the grids of the base and the adapter, and the layers where they differ."""
    summ = json.loads(Path(outs["summary"]).read_text())
    rs = "; ".join(f"{g['pairs']} {g['model']} r = {g['attribution_r']}" for g in summ["grids"])
    text = ("Clean activations patched into the corrupted run, per (hook, layer, position role); the effect is the "
            "normalized logit difference of the pair's two letters (0 = corrupted, 1 = clean; docs/methods.md, "
            f"\"Activation patching\"). Attribution patching vs exact, Pearson r over the grid: {rs}.")
    rows: list[dict] = []
    if summ.get("adapter"):
        rows = read_csv(outs["diff"]) if "diff" in outs else []
        differ = [r for r in rows if r["differs"] == "True"]
        text += (f" The adapter is `{summ['adapter']}`. Per pair kind, hook and layer: the position whose effect the "
                 f"adapter moves most; {len(differ)} of {len(rows)} (hook, layer) cells move by more than "
                 f"{summ['threshold']} (`differs`). `gap_*`: mean clean - mean corrupted logit difference, the ratio's "
                 f"denominator; where it is small the effects are mostly noise.")
        rows = differ or rows
    else:
        text += " No lambda-0 adapter in this run: the base grids only."
    figs = [v for k, v in outs.items() if k.startswith("fig_")]
    return Section("Activation patching: where the answer is computed (base vs adapter)", command=_cmd(ctx, "patch"),
                   text=text, table=rows, figures=figs,
                   columns=["pairs", "hook", "layer", "role", "base", "adapter", "difference", "differs", "gap_base",
                            "gap_adapter"] if rows else None)


def build_report(ctx: Context) -> dict:
    out = ctx.out
    sections: list[Section] = []
    figs: dict[str, str] = {}
    o = ctx.outputs

    # results_all.csv: the sweep's table (base + every checkpoint), copied to the run's top level
    results = out / "results_all.csv"
    if "rl_sweep" in o:
        shutil.copy(o["rl_sweep"]["results"], results)
    elif "base_eval" in o:
        shutil.copy(Path(o["base_eval"]["summary"]).with_name("summary.csv"), results)

    plant: dict = {}
    if "organism" in o:
        info = json.loads(Path(o["organism"]["organism"]).read_text())
        plant = info.get("plant") or {}
        text = f"Model: `{info['model']}` at `{info['path']}`."
        if plant:
            text += " Planted lean: " + ", ".join(f"{k} = {v}" for k, v in (plant.get("plant") or plant).items()
                                                  if not isinstance(v, (dict, list))) + "."
        sections.append(Section("Model", text=text))
    checks = study_checks(o)
    if checks:
        planted = bool(plant)
        sections.append(Section(
            "What this run shows (checks on the model's " + ("planted lean)" if planted else "lean)"), table=checks,
            text="Each check's measured value, from the tables below." + ("" if planted else (
                " Nothing was planted in this model: whatever lean it shows comes from its pretraining, so a check "
                "may fail because the model has no lean to find."))))
    sections += _seed_section(ctx)
    sections += _zero_shot_section(ctx)

    if "base_eval" in o:
        rows = json.loads(Path(o["base_eval"]["summary"]).read_text())["rows"]
        sections.append(Section("Base model on dev (per category)", command=_cmd(ctx, "base_eval"),
                                table=with_ci(rows, METRICS), columns=["group", "n", *METRICS]))

    if "rl_sweep" in o:
        rows = _overall(read_csv(o["rl_sweep"]["results"]))
        cols = ["run", "lambda", "lr", "step", *METRICS]
        sections.append(Section("Base vs adapters (every checkpoint, dev, overall)", command=_cmd(ctx, "rl_sweep"),
                                table=with_ci(rows, METRICS), columns=cols))
        dec = [{"run": r["run"], "step": r["step"], "coverage (1 - acc_ambig)": 1 - float(r["acc_ambig"]),
                "amb_commit_bias": r["amb_commit_bias"], "s_AMB": r["s_AMB"]} for r in rows]
        sections.append(Section("Phase 1: s_AMB = coverage x conditional", command=_cmd(ctx, "rl_sweep"),
                                table=dec, figures=[o["rl_sweep"]["fig_phase1"]]))
        from rl.figures import phase2_table
        from rl.sweep import read_results

        p2 = phase2_table(read_results(o["rl_sweep"]["results"])).to_dict("records")
        keep = ("amb_commit_bias", "abstain_ambig", "acc_ambig", "acc_disambig")
        sections.append(Section(
            "Phase 2: dose-response over lambda, under both reward scalings", command=_cmd(ctx, "rl_sweep"),
            text=("`group` is TRL's default (the seed's setting): rewards standardized within each group of "
                  "completions, which hides a constant lambda penalty in groups with two outcomes; `none` lets it "
                  "act. `lambda_active` is the share of groups whose advantages the penalty changed."),
            table=with_ci(p2, keep), columns=["scale_rewards", "lambda", "train_seed", "step", "lambda_active", *keep],
            figures=[o["rl_sweep"]["fig_phase2"]]))

    if "probes" in o:
        rows = read_csv(o["probes"]["csv_stereotype"])
        summ = json.loads(Path(o["probes"]["summary"]).read_text())
        split = summ.get("split", "train")
        text = ""
        if "train" in summ:
            t = summ["train"]["stereotype"]
            why = _steer_why(o)
            text = (f"Base model's activations on the {split} split, folds grouped by template. On the train split the "
                    f"best layer is {t['layer']}: {t['acc']:.3f} vs majority {t['majority']:.3f} (n {t['n']}). "
                    + (f"The layer steered is {why}; " if why else "That layer is the one steered: ")
                    + "no layer is chosen on the split the steering curve reports.")
        cols = [c for c in ("layer", "n", "acc", "acc_lo", "acc_hi", "majority", "shuffled_mean", "best") if c in rows[0]]
        sections.append(Section(f"Phase 3: stereotype probe by layer ({split})", command=_cmd(ctx, "probes"),
                                table=rows, columns=cols, text=text,
                                figures=[o["probes"]["fig_stereotype"], o["probes"]["fig_abstain"]]))
    if "directions" in o:
        sections.append(Section("Phase 3: direction cosines by layer", command=_cmd(ctx, "directions"),
                                table=read_csv(o["directions"]["cosines"]), figures=[o["directions"]["fig"]]))
    if "steer" in o:
        rows = read_csv(o["steer"]["csv"])
        keep = ("acc_ambig", "acc_disambig", "abstain_ambig", "s_AMB", "amb_commit_bias")
        sections.append(Section("Phase 4: steering alpha-curves (raw vs orthogonalized)", command=_cmd(ctx, "steer"),
                                table=with_ci(rows, keep), columns=["direction", "layer", "alpha", *keep],
                                figures=[o["steer"]["fig_curves"], o["steer"]["fig_frontier"]]))
    if "patch" in o:
        sections.append(_patch_section(ctx, o["patch"]))
    if "compare" in o:
        p = Path(o["compare"]["csv"])
        rows = read_csv(p) if p.read_text().count("\n") > 1 else []
        sections.append(Section("Base vs adapter representations", command=_cmd(ctx, "compare"), table=rows,
                                columns=[c for c in ("adapter", "layer", "cka", "cos_stereo", "cos_abstain",
                                                     "probe_base_acc", "probe_transfer_acc") if rows and c in rows[0]]
                                or None, figures=[o["compare"]["fig"]] if "fig" in o["compare"] else []))
    if "rm" in o:
        # the organism-vs-backbone table (when the stage studied a backbone RM too) leads
        tables = sorted((k for k, v in o["rm"].items() if str(v).endswith(".csv")), key=lambda k: k != "side_by_side")
        pngs = [v for v in o["rm"].values() if str(v).endswith(".png")]
        first = True
        for k in tables:
            title = "organism and real backbone side by side (the paper's claims)" if k == "side_by_side" else k
            sections.append(Section(f"Reward-model debiasing: {title}", command=_cmd(ctx, "rm") if first else "",
                                    table=read_csv(o["rm"][k])))
            first = False
        if pngs:
            sections.append(Section("Reward-model debiasing: figures", figures=pngs))

    intro = (f"Run folder `{out}`; configuration in `config.toml`; every metric row carries its 95% bootstrap "
             f"interval as `value [lo, hi]`. All numbers below were produced by this run.")
    md, html = write_report(out, "interp: BBQ abstention and reward-model debiasing", intro, sections)
    return {"report_md": md, "report_html": html, "results_all": results}
