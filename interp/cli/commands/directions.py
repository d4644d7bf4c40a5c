"""``interp directions``: difference-of-means stereotype / abstention / orthogonalized directions per layer."""

from __future__ import annotations

from pathlib import Path

import click

from interp.cli.commands.common import data_options, load_items_from_options, model_options
from interp.cli.commands.probe import activations_for, parse_layers


@click.command("directions")
@model_options
@data_options
@click.option("--hook", default="hook_resid_post", show_default=True, help="Hook kind, at every layer.")
@click.option("--layers", default="all", show_default=True, help="'all', '0,3,5' or '2-6'.")
@click.option("--condition", type=click.Choice(["all", "ambig", "disambig"]), default="all", show_default=True,
              help="Which contexts' items define the classes.")
@click.option("--store", type=click.Path(), default=None,
              help="Activation store from `interp cache` (default: its default path for model/adapter/split if "
                   "present, else activations are computed in process; '' forces in-process).")
@click.option("--out", type=click.Path(), default=None,
              help="Safetensors file (default: <activations dir>/directions/<model>.safetensors).")
@click.option("--figures", "fig_dir", type=click.Path(), default=None, help="Figure folder (default figures/).")
def cmd(model, adapter, device, dtype, batch_size, bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
        categories, limit, hook, layers, condition, store, out, fig_dir):
    """Build the directions on a split (default: --split train) and save them with metadata; print cosines."""
    from interp.methods.directions import (DirectionError, compute_directions, default_directions_path,
                                           model_weights_hash, plot_cosines)
    from interp.figures import figures_dir
    from interp.eval.score import write_csv

    ctx = click.get_current_context()
    if ctx.get_parameter_source("part") == click.core.ParameterSource.DEFAULT:
        part = "train"  # directions are built on train; steering is evaluated on dev
    items, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                           categories, limit)
    got = activations_for(model, adapter, device, dtype, batch_size, items, hook, parse_layers(layers), store,
                          part if limit is None and categories is None else None)
    acts, recs = got.acts, got.records
    meta = {"model": model, "adapter": adapter or "", "weights_hash": model_weights_hash(model), "split": part,
            "split_hash": getattr(split, "hash", "") or "", "position": "last prompt token",
            "labels_from": "logits-mode predictions"}
    try:
        ds = compute_directions(acts, recs, condition, meta)
    except DirectionError as e:
        raise click.ClickException(str(e)) from e
    path = Path(out) if out else default_directions_path(model, adapter)
    ds.save(path)
    rows = ds.cosine_rows()
    csv = write_csv(rows, path.with_suffix(".cosines.csv"))
    fig = plot_cosines(rows, figures_dir(fig_dir) / f"directions_cosines_{path.stem}.png",
                       title=f"directions, {model}, condition={condition}")
    for r in rows:
        click.echo(f"layer {r['layer']:3d}  cos(stereo, abstain) {r['cos_stereotype_abstention']:+.3f}  "
                   f"cos(orth, stereo) {r['cos_orth_stereotype']:+.3f}  |stereo| {r['norm_stereotype']:.3g}")
    r0 = rows[0]
    click.echo(f"classes: {r0['n_congruent']} congruent / {r0['n_anti']} anti commits, {r0['n_abstain']} abstain / "
               f"{r0['n_commit']} commit; wrote {path}, {csv}, {fig}")
