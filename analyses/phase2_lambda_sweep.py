"""Phase 2: the lambda dose-response. GRPO with reward = accuracy - lambda x [stereotype-congruent answer]
for lambda in {0, 0.5, 1.5} plus the lr 1e-6 negative control; base and every checkpoint evaluated on dev;
amb_commit_bias and abstention on ambiguous items plotted against lambda and step.

    python analyses/phase2_lambda_sweep.py --model organism --lr 5e-4 --steps 300 --out runs/rl/phase2
"""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command()
@click.option("--model", default="organism", show_default=True)
@click.option("--out", "out_dir", type=click.Path(), default="runs/rl/phase2", show_default=True)
@click.option("--lams", default="0,0.5,1.5", show_default=True)
@click.option("--lr", type=float, default=5e-6, show_default=True)
@click.option("--control-lr", type=float, default=1e-6, show_default=True)
@click.option("--lambda-on", type=click.Choice(["ambig", "all"]), default="ambig", show_default=True)
@click.option("--scale-rewards", type=click.Choice(["group", "batch", "none"]), default="none", show_default=True,
              help="TRL reward scaling. Not TRL's 'group' by default: group-standardized advantages ignore the "
                   "penalty in two-outcome groups, so lambda would barely act (README, Phase 2).")
@click.option("--steps", type=int, default=500, show_default=True)
@click.option("--save-steps", type=int, default=100, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--categories", default=None, help="Comma-separated categories (default: all).")
@click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", default=None)
@click.option("--dev-limit", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--n-boot", type=int, default=1000, show_default=True)
@click.option("--figures-dir", type=click.Path(), default=None, help="Default: <out>/figures.")
def main(model, out_dir, lams, lr, control_lr, lambda_on, scale_rewards, steps, save_steps, batch_size, categories,
         bbq_dir, dev_limit, device, threads, n_boot, figures_dir):
    from rl.figures import overall, phase2_figure, verdict_lines
    from rl.sweep import sweep

    t0 = time.time()
    cats = [c.strip() for c in categories.split(",")] if categories else None
    df = sweep(model, out_dir, lams=[float(x) for x in lams.split(",")], lrs=[lr], control_lrs=[control_lr],
               steps=steps, save_steps=save_steps, batch_size=batch_size, lambda_on=lambda_on, categories=cats,
               bbq_dir=bbq_dir, dev_limit=dev_limit, device=device, threads=threads, n_boot=n_boot,
               scale_rewards=scale_rewards)
    figs = Path(figures_dir) if figures_dir else Path(out_dir) / "figures"
    fig = phase2_figure(df, figs / "rl_phase2_dose_response.png")
    d = overall(df)
    cols = ["run", "lambda", "lr", "step"] + [f"{m}{s}" for m in ("amb_commit_bias", "abstain_ambig", "acc_ambig",
                                                                   "acc_disambig", "s_AMB") for s in ("", "_lo", "_hi")]
    table = d[cols].sort_values(["run", "step"])
    table.to_csv(Path(out_dir) / "phase2_table.csv", index=False)
    click.echo(table.round(3).to_string(index=False))
    for m in ("amb_commit_bias", "abstain_ambig"):
        for line in verdict_lines(df, m):
            click.echo(line)
    click.echo(f"wrote {fig} and {Path(out_dir) / 'phase2_table.csv'} ({(time.time() - t0) / 60:.1f} min)")


if __name__ == "__main__":
    main()
