"""``interp rm``: the RM organism, and neuron-level debiasing of a reward model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.cli.commands.common import comma_list


@click.group("rm")
def cmd() -> None:
    """Reward-model debiasing by neuron-level intervention (Shinoda et al., ACL 2026)."""


@cmd.group("organism")
def organism() -> None:
    """The RM organism: a tiny Qwen2 reward model trained here on BBQ pairs with planted spurious attributes."""


@organism.command("build")
@click.option("--small", is_flag=True, help="The seconds-to-build variant (tests, smoke runs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), default=None,
              help="Output folder (default: $INTERP_HOME/rm-organism/{small|full}-seed{seed}).")
@click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", type=click.Path(), default=None,
              help="Folder of official BBQ <Category>.jsonl files [env INTERP_BBQ_DIR].")
@click.option("--force", is_flag=True, help="Rebuild even when a finished organism is there.")
@click.option("--backbone", type=click.Choice(["smollm2"]), default=None,
              help="Train a reward model on this pretrained backbone instead (LoRA on its top layers plus a score "
                   "head; the recipe is chosen on validation pairs; docs/rm.md).")
@click.option("--pairs", "n_pairs", type=click.IntRange(min=8), default=None,
              help="Training pairs of a --backbone build (default 256).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs of a --backbone build (default 2).")
def organism_build(small, seed, out, bbq_dir, force, backbone, n_pairs, epochs):
    """Train the RM organism and write its model, train/val/test pairs and organism.json (the shipped seed-0
    organisms were made this way; `--rm organism` keeps using them). With --backbone, train a reward model
    on a pretrained backbone and write its adapter, score head and manifest.json."""
    if backbone:
        _build_backbone(backbone, seed, out, bbq_dir, force, n_pairs, epochs)
        return
    if n_pairs is not None or epochs is not None:
        raise click.UsageError("--pairs and --epochs apply to a --backbone build")
    from interp.organisms.rm import INFO_FILE, build_rm_organism, default_rm_organism_dir, is_complete

    dest = Path(out) if out else default_rm_organism_dir(small, seed)
    if is_complete(dest) and not force:
        click.echo(f"RM organism already built at {dest} (use --force to rebuild)")
    else:
        build_rm_organism(dest, small=small, seed=seed, bbq_dir=bbq_dir)
    rec = json.loads((dest / INFO_FILE).read_text())
    click.echo(f"RM organism ({rec['variant']}, seed {rec['seed']}) at {dest}: {rec['n_params']} parameters, "
               f"{rec['n_mlp_neurons']} MLP neurons, pairs {rec['n_pairs']}, built in {rec['build_seconds']} s; "
               f"last epoch {rec['train_log'][-1]}")
    click.echo(f"use it with: interp rm study --organism {dest}  (or interp rm debias --rm {dest})")


def _build_backbone(backbone, seed, out, bbq_dir, force, n_pairs, epochs) -> None:
    from dataclasses import replace

    from interp.organisms.rm_backbone import (MANIFEST_FILE, BackboneRMConfig, build_backbone_rm,
                                              default_backbone_rm_dir, is_built)

    dest = Path(out) if out else default_backbone_rm_dir(backbone, seed)
    cfg = BackboneRMConfig(backbone=backbone)
    cfg = replace(cfg, n_train_pairs=n_pairs or cfg.n_train_pairs, epochs=epochs or cfg.epochs)
    if is_built(dest) and not force:
        click.echo(f"backbone RM already built at {dest} (use --force to rebuild)")
    else:
        build_backbone_rm(dest, cfg, seed=seed, bbq_dir=bbq_dir)
    m = json.loads((dest / MANIFEST_FILE).read_text())
    click.echo(f"backbone RM on {m['backbone']} at {dest}: K={m['k']} top layers, lr {m['lr']:g} (chosen on "
               f"validation), pairs {m['n_pairs']}, built in {m['build_seconds']} s")
    for r in m["grid"]:
        click.echo(f"  K={r['k']} lr={r['lr']:g}: val loss {r['val_loss']:.4f}, val acc {r['val_acc']:.3f}")
    click.echo("ship it with: python -c \"from interp.organisms.rm_backbone import ship_backbone_rm; "
               f"ship_backbone_rm('{dest}')\"")


def _resolve_rm(rm: str, seed: int, bbq_dir):
    """(model folder, organism folder or None) for a path or 'organism' / 'organism-small'."""
    from interp.organisms.rm import MODEL_DIR, ensure_rm_organism, is_complete

    if rm in ("organism", "organism-small"):
        org = ensure_rm_organism(small=rm == "organism-small", seed=seed, bbq_dir=bbq_dir)
        return org / MODEL_DIR, org
    from interp.organisms.rm_backbone import SHIPPED_BACKBONE_RMS, ensure_backbone_rm

    if rm in SHIPPED_BACKBONE_RMS:
        return ensure_backbone_rm(rm), None
    p = Path(rm)
    if is_complete(p):
        return p / MODEL_DIR, p
    if not (p / "config.json").is_file():
        raise click.BadParameter(f"{rm} is neither a model folder (config.json) nor a built RM organism", param_hint="--rm")
    return p, None


@cmd.command("debias")
@click.option("--rm", "rm", required=True,
              help="Reward model folder (AutoModelForSequenceClassification, 1 output), a built RM organism "
                   "folder, or 'organism' / 'organism-small'.")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Test preference JSONL (prompt/chosen/rejected; RM-Bench style lists allowed). "
                   "Default for an organism: its test.jsonl.")
@click.option("--val", "val", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Validation JSONL for neuron finding, medians and baseline fits. Default: the organism's "
                   "val.jsonl, else a seeded --val-frac of --data (held out of the test).")
@click.option("--val-frac", type=float, default=0.3, show_default=True)
@click.option("--attributes", default=None, help="Comma-separated attribute names (default: all registered).")
@click.option("--budget", type=float, default=0.02, show_default=True, help="Largest share of MLP neurons to edit.")
@click.option("--min-corr", type=float, default=0.0, show_default=True, help="Smallest |r| a selected neuron needs.")
@click.option("--positions", type=click.Choice(["scored", "all"]), default="all", show_default=True,
              help="Edit the neurons at every position (median over validation tokens) or only at the scored "
                   "position (median there).")
@click.option("--pool", type=click.Choice(["response", "mean", "scored"]), default="response", show_default=True,
              help="Activation correlated with the attributes: mean over the response tokens, over all tokens, "
                   "or at the scored position (the paper's rule; also reported as intervention_scored).")
@click.option("--control-label/--no-control-label", default=True, show_default=True,
              help="Partial correlation given chosen/rejected (ignore neurons that only track quality).")
@click.option("--n-sensitivity", type=click.IntRange(min=1), default=200, show_default=True,
              help="Responses edited for sensitivity.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Keep only the first N test pairs.")
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", default="float32", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", type=click.Path(), default=None, hidden=True)
@click.option("--out", type=click.Path(), default="results/rm_debias", show_default=True, help="Output folder.")
def debias(rm, data, val, val_frac, attributes, budget, min_corr, positions, pool, control_label, n_sensitivity, limit,
           device, dtype, batch_size, seed, bbq_dir, out):
    """Find attribute neurons, intervene with validation medians, compare with length baselines; write
    results.csv, accuracy.csv, sensitivity.csv, neurons.csv, summary.json and figures to --out."""
    import random

    from interp.rm.data import load_preferences
    from interp.rm.evaluate import DebiasConfig, run_debias, write_outputs
    from interp.organisms.rm import TEST_FILE, VAL_FILE
    from interp.rm.scoring import load_reward_model

    model_dir, org = _resolve_rm(rm, seed, bbq_dir)
    if data is None:
        if org is None:
            raise click.UsageError("--data is required unless --rm is an RM organism")
        data = org / TEST_FILE
    test = load_preferences(data)
    if val is None and org is not None:
        val = org / VAL_FILE
    if val is not None:
        val_pairs = load_preferences(val)
    else:
        if not 0 < val_frac < 1:
            raise click.BadParameter("must be in (0, 1)", param_hint="--val-frac")
        idx = list(range(len(test)))
        random.Random(f"val:{seed}").shuffle(idx)
        k = max(1, int(round(val_frac * len(test))))
        keep = set(idx[:k])
        val_pairs = [p for i, p in enumerate(test) if i in keep]
        test = [p for i, p in enumerate(test) if i not in keep]
    if limit is not None:
        test = test[:limit]
    attrs = tuple(comma_list(attributes)) or None
    cfg = DebiasConfig(budget_frac=budget, min_abs_corr=min_corr, positions=positions, pool=pool,
                       control_label=control_label,
                       n_sensitivity=n_sensitivity, batch_size=batch_size, seed=seed, progress=True,
                       **({"attributes": attrs} if attrs else {}))
    lm = load_reward_model(str(model_dir), device=device, dtype=dtype)
    result = run_debias(lm.model, lm.tokenizer, val_pairs, test, cfg)
    result.meta.update({"rm": str(rm), "data": str(data), "val": str(val) if val else f"{val_frac} of data"})
    write_outputs(result, out)
    _print_summary(result)
    click.echo(f"wrote {out}/results.csv, accuracy.csv, sensitivity.csv, neurons.csv, summary.json, "
               f"accuracy.png, neurons_per_layer.png")


def _print_summary(result) -> None:
    s = result.summary()
    splits = [k for k in next(iter(s["accuracy"].values())) if not k.startswith("hard:")]
    click.echo(f"{s['n_neurons']} of {s['n_total_neurons']} MLP neurons edited ({100 * s['fraction']:.2f}%); "
               f"per layer {s['per_layer']}; per attribute {s['per_attribute']}")
    click.echo("accuracy".ljust(20) + "".join(f"{x:>10s}" for x in splits))
    for m, row in s["accuracy"].items():
        click.echo(m.ljust(20) + "".join(f"{row[x]:10.3f}" for x in splits))
    edits = list(next(iter(s["sensitivity"].values())))
    click.echo("sensitivity/sd".ljust(20) + "".join(f"{x:>12s}" for x in edits))
    for m, row in s["sensitivity"].items():
        click.echo(m.ljust(20) + "".join(f"{row[x]:12.3f}" for x in edits))


@cmd.command("study")
@click.option("--small", is_flag=True, help="Use the small RM organism.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", type=click.Path(), default=None)
@click.option("--out", type=click.Path(), default="results/rm_study", show_default=True)
@click.option("--organism", "organism_dir", type=click.Path(), default=None,
              help="An RM organism folder you built (`interp rm organism build --out DIR`) instead of the shipped one.")
@click.option("--rm", "rm", type=click.Choice(["organism", "rm-smollm2"]), default="organism", show_default=True,
              help="The RM organism, or the reward model on SmolLM2 (merged onto the installed smollm2 once; the "
                   "paper's claims are then measured checks in claims.json).")
@click.option("--n-val", type=click.IntRange(min=4), default=40, show_default=True,
              help="--rm rm-smollm2: validation pairs for neurons, directions, medians and baseline fits.")
@click.option("--n-test-per-split", type=click.IntRange(min=2), default=30, show_default=True,
              help="--rm rm-smollm2: test pairs per split (neutral, easy, hard).")
def study(small, seed, device, bbq_dir, out, organism_dir, rm, n_val, n_test_per_split):
    """Run the whole debiasing study on the shipped RM organism (seed 0; another seed is built once), on
    --organism, or on --rm rm-smollm2."""
    from interp.pipeline.rm_study import run_backbone_study, run_rm_study

    if rm != "organism":
        if small or organism_dir:
            raise click.UsageError("--small and --organism apply to the RM organism, not --rm " + rm)
        s = run_backbone_study(out, rm=rm, n_val=n_val, n_test_per_split=n_test_per_split, seed=seed,
                               device=device, bbq_dir=bbq_dir)
        acc = {m: {k: round(v, 3) for k, v in row.items() if not k.startswith("hard:")}
               for m, row in s["accuracy"].items()}
        click.echo(json.dumps({"accuracy": acc, "sensitivity": s["sensitivity"], "per_layer": s["per_layer"],
                               "fraction": s["fraction"], "direction": s.get("direction"),
                               "claims": s["claims"]}, indent=1))
        click.echo(f"wrote {out} (claims.json holds the paper's claims as measured checks)")
        return

    s = run_rm_study(out, small=small, seed=seed, bbq_dir=bbq_dir, organism_dir=organism_dir, device=device)
    acc = {m: {k: round(v, 3) for k, v in row.items() if not k.startswith("hard:")} for m, row in s["accuracy"].items()}
    click.echo(json.dumps({"accuracy": acc, "sensitivity": s["sensitivity"], "per_layer": s["per_layer"],
                           "fraction": s["fraction"], "ground_truth": s["ground_truth"],
                           "ground_truth_scored_rule": s.get("ground_truth_scored_rule")}, indent=1))
    click.echo(f"wrote {out}")
