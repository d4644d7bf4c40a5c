"""``interp organism``: build the built-in model organism (a small Qwen2 with a planted lean) and inspect it."""

from __future__ import annotations

import json

import click


@click.group("organism")
def cmd() -> None:
    """The built-in organism: a small Qwen2 trained on BBQ train with a known, planted stereotyped lean."""


@cmd.command("build")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: the cache that --model organism resolves to).")
@click.option("--seed", type=int, default=None,
              help="Plant, initialisation and batch-order seed (default 3, selected: README).")
@click.option("--p", "p", type=float, default=None,
              help="P(stereotyped target | ambiguous training item with a negative question); default: the "
                   "organism's planted value (0.5; 0.8 with --small). 0 builds the control.")
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

    from interp.metrics import fmt_ci
    from interp.organism import (DEFAULT_SEED, FULL_CONFIG, SMALL_CONFIG, build_organism, default_organism_dir,
                                 is_current, load_plant)

    seed = DEFAULT_SEED if seed is None else seed
    dest = Path(out) if out else default_organism_dir(small)
    if is_current(dest, seed) and not force:
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
@click.option("--small", is_flag=True, help="The small variant.")
@click.option("--path", "path", type=click.Path(file_okay=False), default=None, help="An organism folder.")
@click.option("--json", "as_json", is_flag=True, help="Print plant.json without the flipped-item list.")
def info(small, path, as_json):
    """Where the organism is and what was planted in it."""
    from pathlib import Path

    from interp.organism import default_organism_dir, is_complete, load_plant

    dest = Path(path) if path else default_organism_dir(small)
    if not is_complete(dest):
        raise click.ClickException(f"no built organism at {dest}; run `interp organism build"
                                   f"{' --small' if small else ''}`")
    rec = load_plant(dest)
    if as_json:
        click.echo(json.dumps({k: v for k, v in rec.items() if k not in ("flipped", "train_log")}, indent=1))
        return
    click.echo(f"{dest}\n  variant {rec['variant']}, seed {rec['seed']}, {rec['n_params']} parameters, "
               f"split {rec['split']['hash']}\n  plant {rec['plant']}\n  flipped {rec['n_flipped']}")
