"""The ``rl`` command line: ``rl train``, ``rl sweep``, ``rl figures``."""

from __future__ import annotations

import functools

import click

from interp.console import FriendlyErrors, comma_list


def _data_options(f):
    """Which BBQ items to train on: the train part of the template-disjoint split."""
    opts = [
        click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", type=click.Path(), default=None,
                     help="Folder of official BBQ <Category>.jsonl files [env INTERP_BBQ_DIR]."),
        click.option("--templates-dir", type=click.Path(), default=None,
                     help="Folder of BBQ template CSVs (default: templates/ beside the data)."),
        click.option("--split-file", type=click.Path(), default=None,
                     help="Split JSON to read (or write, if absent). Default: made from --split-seed/--dev-frac."),
        click.option("--dev-frac", type=float, default=0.2, show_default=True),
        click.option("--split-seed", type=int, default=0, show_default=True),
        click.option("--categories", type=str, default=None, help="Comma-separated categories (default: all)."),
        click.option("--limit", type=int, default=None, help="Keep a seeded random subset of the train items."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def _train_options(f):
    """GRPO / LoRA settings; defaults are the seed's."""
    opts = [
        click.option("--model", default="organism", show_default=True,
                     help="HF hub id or local folder, or 'organism' / 'organism-small'."),
        click.option("--steps", type=int, default=500, show_default=True),
        click.option("--beta", type=float, default=0.04, show_default=True, help="KL coefficient."),
        click.option("--temperature", type=float, default=1.3, show_default=True),
        click.option("--num-generations", type=int, default=8, show_default=True),
        click.option("--batch-size", type=int, default=8, show_default=True,
                     help="Completions per step (prompts per step = batch-size / num-generations)."),
        click.option("--grad-accum", type=int, default=1, show_default=True),
        click.option("--max-completion-length", type=int, default=4, show_default=True),
        click.option("--loss-type", default="grpo", show_default=True, help="TRL loss_type (grpo, dapo, dr_grpo...)."),
        click.option("--scale-rewards", type=click.Choice(["group", "batch", "none"]), default="group", show_default=True,
                     help="TRL reward scaling: by each group's std (TRL default; a lambda penalty can vanish in "
                          "two-outcome groups), by the batch's, or none."),
        click.option("--lr-scheduler", default="constant", show_default=True),
        click.option("--lora-r", type=int, default=16, show_default=True),
        click.option("--lora-alpha", type=int, default=32, show_default=True),
        click.option("--lora-dropout", type=float, default=0.0, show_default=True),
        click.option("--target-modules", default="all-linear", show_default=True),
        click.option("--lambda-on", type=click.Choice(["ambig", "all"]), default="ambig", show_default=True,
                     help="Where the lambda penalty applies: ambiguous items only, or every item."),
        click.option("--save-steps", type=int, default=100, show_default=True, help="Checkpoint every N steps."),
        click.option("--logging-steps", type=int, default=10, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--shuffle-options/--keep-order", default=False, show_default=True),
        click.option("--device", default="auto", show_default=True),
        click.option("--dtype", default="float32", show_default=True),
        click.option("--threads", type=int, default=None, help="torch CPU threads."),
        click.option("--report-to", default="none", show_default=True, help="Passed to TRL (none, wandb, tensorboard...)."),
        click.option("--resume/--no-resume", default=True, show_default=True,
                     help="Continue from the last complete checkpoint in --out."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def _train_kw(kw: dict) -> dict:
    cats = kw.pop("categories", None)
    kw["categories"] = comma_list(cats) or None
    return kw


@click.group(cls=FriendlyErrors, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """GRPO LoRA adapters for BBQ (TRL), the lambda sweep and its figures."""


@main.command("train")
@_train_options
@_data_options
@click.option("--lam", type=float, default=0.0, show_default=True, help="Penalty for a stereotype-congruent answer.")
@click.option("--lr", type=float, default=5e-6, show_default=True)
@click.option("--out", "out_dir", type=click.Path(), default=None, help="Run folder (default runs/rl/lam<L>_lr<LR>).")
def train_cmd(out_dir, model, lam, lr, steps, **kw):
    """Train (or resume) one GRPO LoRA adapter on the BBQ train split."""
    from rl.train import train

    out_dir = out_dir or f"runs/rl/lam{lam:g}_lr{lr:g}"
    cks = train(model, out_dir, lam=lam, lr=lr, steps=steps, **_train_kw(kw))
    click.echo(f"{len(cks)} checkpoint(s) in {out_dir}:")
    for c in cks:
        click.echo(f"  {c}")


@main.command("sweep")
@_train_options
@_data_options
@click.option("--lams", default="0,0.5,1.5", show_default=True, help="Comma-separated lambdas.")
@click.option("--lrs", default="5e-6", show_default=True, help="Comma-separated learning rates for every lambda.")
@click.option("--control-lrs", default="1e-6", show_default=True,
              help="Comma-separated lrs run at lambda 0 as negative controls ('' for none).")
@click.option("--out", "out_dir", type=click.Path(), default="runs/rl/sweep", show_default=True)
@click.option("--results-csv", type=click.Path(), default=None, help="Default: <out>/results_all.csv.")
@click.option("--eval-mode", type=click.Choice(["logits", "generate"]), default="logits", show_default=True)
@click.option("--eval-batch-size", type=int, default=16, show_default=True)
@click.option("--n-boot", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--dev-limit", type=int, default=None, help="Evaluate on a seeded subset of dev.")
@click.option("--skip-train", is_flag=True, help="Only evaluate the checkpoints already in --out.")
@click.option("--replicate-seeds", default="", show_default=True,
              help="Comma-separated extra training seeds: every non-control run is repeated with each.")
@click.option("--replicate-scalings", default="", show_default=True,
              help="Comma-separated --scale-rewards values whose runs are repeated ('' for all).")
def sweep_cmd(out_dir, model, steps, lams, lrs, control_lrs, results_csv, eval_mode, eval_batch_size, n_boot,
              dev_limit, skip_train, replicate_seeds, replicate_scalings, **kw):
    """Train lambda in --lams (and the low-lr control), evaluate base + every checkpoint on dev."""
    from interp.eval.metrics import format_table
    from rl.sweep import sweep

    kw = _train_kw(kw)
    kw.pop("resume")
    df = sweep(model, out_dir, lams=comma_list(lams, float, "--lams"), lrs=comma_list(lrs, float, "--lrs"),
               steps=steps, control_lrs=comma_list(control_lrs, float, "--control-lrs"),
               results_csv=results_csv, eval_mode=eval_mode, eval_batch_size=eval_batch_size, n_boot=n_boot,
               dev_limit=dev_limit, skip_train=skip_train,
               replicate_seeds=comma_list(replicate_seeds, int, "--replicate-seeds"),
               replicate_scalings=comma_list(replicate_scalings) or None, **kw)
    rows = df[df["group"] == "overall"].to_dict("records")
    for r in rows:
        r["group"] = f"{r['run']}@{int(r['step'])}"
    click.echo(format_table(rows, ("acc_ambig", "abstain_ambig", "amb_commit_bias", "s_AMB", "acc_disambig")))


@main.command("figures")
@click.option("--results-csv", type=click.Path(exists=True), required=True)
@click.option("--out-dir", type=click.Path(), default=None, help="Default: the project's figures/ folder.")
@click.option("--run", default=None, help="Phase-1 adapter run (default: the lambda-0 main run).")
@click.option("--step", type=int, default=None, help="Phase-1 adapter step (default: last).")
def figures_cmd(results_csv, out_dir, run, step):
    """Phase-1 decomposition and Phase-2 dose-response figures from results_all.csv."""
    from pathlib import Path

    from interp.paths import default_figures_dir
    from rl.figures import phase1_figure, phase1_table, phase2_figure
    from rl.sweep import read_results

    df = read_results(results_csv)
    od = Path(out_dir) if out_dir else default_figures_dir()
    p1 = phase1_figure(df, od / "rl_phase1_decomposition.png", run=run, step=step)
    click.echo(phase1_table(df, run, step).to_string(index=False))
    click.echo(f"wrote {p1}")
    try:
        p2 = phase2_figure(df, od / "rl_phase2_dose_response.png")
        click.echo(f"wrote {p2}")
    except ValueError as e:
        click.echo(f"no Phase-2 figure: {e}")


if __name__ == "__main__":
    main()
