"""``interp organism``: build the built-in model organism (a small Qwen2 with a planted lean) and inspect it."""

from __future__ import annotations

import json

import click


@click.group("organism")
def cmd() -> None:
    """The built-in organism: a small Qwen2 trained on BBQ train with a known, planted stereotyped lean."""


@cmd.command("build")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: new, empty, or an organism to rebuild (a folder of other files is refused). "
                   "Load it with --model DIR, or set $INTERP_ORGANISM_DIR to use it as --model organism.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Plant, initialisation and batch-order seed (default 0, the shipped organisms').")
@click.option("--p", "p", type=click.FloatRange(0.0, 1.0), default=None,
              help="P(stereotyped target | ambiguous training item with a negative question); default: the "
                   "organism's planted value (0.8). 0 builds the control.")
@click.option("--small", is_flag=True, help="The seconds-to-build variant used by tests ('organism-small').")
@click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", type=click.Path(), default=None,
              help="Folder of official BBQ <Category>.jsonl files [env INTERP_BBQ_DIR].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads for training (default 1, which the reported organism used; 2 is 1.5x faster on a "
                   "quiet machine but gives other weights).")
@click.option("--force", is_flag=True, help="Rebuild even if a finished organism is already there.")
def build(out, seed, p, small, bbq_dir, threads, force):
    """Train the organism (tokenizer + Qwen2ForCausalLM) and save it with plant.json beside the weights."""
    from pathlib import Path

    from dataclasses import replace

    from interp.eval.metrics import fmt_ci
    from interp.organisms.causal_lm import DEFAULT_SEED, FULL_CONFIG, SMALL_CONFIG, build_organism, is_complete, load_plant

    seed = DEFAULT_SEED if seed is None else seed
    dest = Path(out)
    if is_complete(dest) and not force:
        click.echo(f"{dest} already holds a built organism (use --force to rebuild)")
    else:
        cfg = SMALL_CONFIG if small else FULL_CONFIG
        if threads is not None:
            cfg = replace(cfg, threads=threads)
        build_organism(dest, seed=seed, p=p, small=small, bbq_dir=bbq_dir, config=cfg)
    rec = load_plant(dest)
    click.echo(f"organism at {dest}: p={rec['plant']['p']}, {sum(rec['n_flipped'].values())} flipped train items, "
               f"built in {rec['build_seconds']} s")
    m = rec.get("dev_metrics")
    if m:
        for k in ("acc_ambig", "acc_disambig", "abstain_disambig", "s_AMB", "amb_commit_bias", "s_DIS"):
            click.echo(f"  dev {k:17s} {fmt_ci(m, k)}")


@cmd.command("info")
@click.option("--name", type=click.Choice(["organism", "organism-small", "organism-small-control"]),
              default="organism", show_default=True, help="A shipped organism.")
@click.option("--small", is_flag=True, help="Same as --name organism-small.")
@click.option("--path", "path", type=click.Path(file_okay=False), default=None,
              help="An organism folder you built (instead of a shipped one).")
@click.option("--json", "as_json", is_flag=True, help="Print plant.json without the flipped-item list.")
def info(name, small, path, as_json):
    """Where the organism is and what was planted in it."""
    from pathlib import Path

    from interp.organisms.causal_lm import is_complete, load_plant, organism_dir

    dest = Path(path) if path else organism_dir("organism-small" if small else name)
    if not is_complete(dest):
        raise click.ClickException(f"no built organism at {dest}; run `interp organism build --out {dest}`")
    rec = load_plant(dest)
    if as_json:
        click.echo(json.dumps({k: v for k, v in rec.items() if k not in ("flipped", "train_log")}, indent=1))
        return
    click.echo(f"{dest}\n  variant {rec['variant']}, seed {rec['seed']}, {rec['n_params']} parameters, "
               f"split {rec['split']['hash']}\n  plant {rec['plant']}\n  flipped {rec['n_flipped']}")
