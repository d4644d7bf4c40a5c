"""Assemble the main job's report from the stage outputs (see interp.report for the writer)."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

from interp.pipeline import Context
from interp.report import Section, read_csv, with_ci, write_report

METRICS = ("acc_ambig", "acc_disambig", "abstain_disambig", "s_AMB", "amb_commit_bias", "s_DIS")


def _cmd(ctx: Context, stage: str) -> str:
    """The exact command that reruns one stage of this run (everything else is reused)."""
    base = f"interp run --preset {ctx.cfg['run'].get('preset', 'quick')} --out {shlex.quote(str(ctx.out))}"
    if ctx.cfg["run"]["model"] not in ("organism",):
        base += f" --model {shlex.quote(ctx.cfg['run']['model'])}"
    return f"{base} --force {stage}"


def _overall(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("group", "overall") == "overall"]


def _seed_section(ctx: Context) -> list[Section]:
    path = ctx.cfg.get("report", {}).get("seed_csv") or ""
    if not path:
        return [Section("Seed study, as reported", text=(
            "The seed study's own tables are not shipped with the toolkit. Put them in a CSV and set "
            "`report.seed_csv` in the config to print them here, beside ours."))]
    return [Section("Seed study, as reported", text=f"From `{path}`.", table=read_csv(path))]


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

    if "organism" in o:
        info = json.loads(Path(o["organism"]["organism"]).read_text())
        plant = info.get("plant") or {}
        text = f"Model: `{info['model']}` at `{info['path']}`."
        if plant:
            text += " Planted lean: " + ", ".join(f"{k} = {v}" for k, v in (plant.get("plant") or plant).items()
                                                  if not isinstance(v, (dict, list))) + "."
        sections.append(Section("Model", text=text))
    sections += _seed_section(ctx)

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
        sections.append(Section("Phase 2: dose-response over lambda and step", command=_cmd(ctx, "rl_sweep"),
                                figures=[o["rl_sweep"]["fig_phase2"]]))

    if "probes" in o:
        rows = read_csv(o["probes"]["csv_stereotype"])
        cols = [c for c in ("layer", "n", "acc", "acc_lo", "acc_hi", "majority", "shuffled_mean", "best") if c in rows[0]]
        sections.append(Section("Phase 3: stereotype probe by layer", command=_cmd(ctx, "probes"), table=rows,
                                columns=cols, figures=[o["probes"]["fig_stereotype"], o["probes"]["fig_abstain"]]))
    if "directions" in o:
        sections.append(Section("Phase 3: direction cosines by layer", command=_cmd(ctx, "directions"),
                                table=read_csv(o["directions"]["cosines"]), figures=[o["directions"]["fig"]]))
    if "steer" in o:
        rows = read_csv(o["steer"]["csv"])
        keep = ("acc_ambig", "acc_disambig", "abstain_ambig", "s_AMB", "amb_commit_bias")
        sections.append(Section("Phase 4: steering alpha-curves (raw vs orthogonalized)", command=_cmd(ctx, "steer"),
                                table=with_ci(rows, keep), columns=["direction", "layer", "alpha", *keep],
                                figures=[o["steer"]["fig_curves"], o["steer"]["fig_frontier"]]))
    if "compare" in o:
        p = Path(o["compare"]["csv"])
        rows = read_csv(p) if p.read_text().count("\n") > 1 else []
        sections.append(Section("Base vs adapter representations", command=_cmd(ctx, "compare"), table=rows,
                                columns=[c for c in ("adapter", "layer", "cka", "cos_stereo", "cos_abstain",
                                                     "probe_base_acc", "probe_transfer_acc") if rows and c in rows[0]]
                                or None, figures=[o["compare"]["fig"]] if "fig" in o["compare"] else []))
    if "rm" in o:
        tables = [k for k, v in o["rm"].items() if str(v).endswith(".csv")]
        pngs = [v for v in o["rm"].values() if str(v).endswith(".png")]
        first = True
        for k in tables:
            sections.append(Section(f"Reward-model debiasing: {k}", command=_cmd(ctx, "rm") if first else "",
                                    table=read_csv(o["rm"][k])))
            first = False
        if pngs:
            sections.append(Section("Reward-model debiasing: figures", figures=pngs))

    intro = (f"Run folder `{out}`; configuration in `config.toml`; every metric row carries its 95% bootstrap "
             f"interval as `value [lo, hi]`. All numbers below were produced by this run.")
    md, html = write_report(out, "interp: BBQ abstention and reward-model debiasing", intro, sections)
    return {"report_md": md, "report_html": html, "results_all": results}
