"""Phase 1: GRPO with the plain accuracy reward (lambda = 0) against the low-lr negative control.

Trains both runs (resuming what a kill left), evaluates the base and every checkpoint on the dev split,
appends to results_all.csv, then draws the decomposition s_AMB = coverage (1 - acc_ambig) x amb_commit_bias
for base vs adapter and prints whether the adapter's acc_ambig interval clears the base's.

    python analyses/phase1_grpo.py --model organism --lr 5e-4 --steps 300 --out runs/rl/phase1
"""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command()
@click.option("--model", default="organism", show_default=True)
@click.option("--out", "out_dir", type=click.Path(), default="runs/rl/phase1", show_default=True)
@click.option("--lr", type=float, default=5e-6, show_default=True, help="lr of the lambda-0 run (seed: 5e-6 for 3B).")
@click.option("--control-lr", type=float, default=1e-6, show_default=True)
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
def main(model, out_dir, lr, control_lr, steps, save_steps, batch_size, categories, bbq_dir, dev_limit, device,
         threads, n_boot, figures_dir):
    from rl.figures import phase1_figure, phase1_table, verdict_lines
    from rl.sweep import sweep

    t0 = time.time()
    cats = [c.strip() for c in categories.split(",")] if categories else None
    df = sweep(model, out_dir, lams=[0.0], lrs=[lr], control_lrs=[control_lr], steps=steps, save_steps=save_steps,
               batch_size=batch_size, categories=cats, bbq_dir=bbq_dir, dev_limit=dev_limit, device=device,
               threads=threads, n_boot=n_boot)
    figs = Path(figures_dir) if figures_dir else Path(out_dir) / "figures"
    fig = phase1_figure(df, figs / "rl_phase1_decomposition.png")
    table = phase1_table(df)
    table.to_csv(Path(out_dir) / "phase1_table.csv", index=False)
    click.echo(table.to_string(index=False))
    for line in verdict_lines(df, "acc_ambig"):
        click.echo(line)
    click.echo(f"wrote {fig} and {Path(out_dir) / 'phase1_table.csv'} ({(time.time() - t0) / 60:.1f} min)")


if __name__ == "__main__":
    main()
