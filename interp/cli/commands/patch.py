"""``interp patch``: activation patching (and attribution patching) of BBQ pairs, by layer and position role."""

from __future__ import annotations

import time
from pathlib import Path

import click

from interp.cli.commands.common import comma_list, data_options, load_items_from_options, model_options


@click.command("patch")
@model_options
@data_options
@click.option("--pairs", "kind", type=click.Choice(["evidence", "group_swap", "group-swap", "polarity"]),
              default="evidence", show_default=True,
              help="evidence: disambiguated vs ambiguous context; group_swap: the two people named in the other "
                   "order; polarity: negative vs non-negative question.")
@click.option("--hooks", default="hook_resid_pre,hook_resid_post,hook_attn_out,hook_mlp_out", show_default=True,
              help="Comma-separated hook kinds to patch.")
@click.option("--positions", default="all", show_default=True,
              help="'all' or comma-separated roles: name1, name2, context, evidence, question, options, suffix, "
                   "final.")
@click.option("--layers", default="all", show_default=True, help="'all', '0,3,5', '2-6' or '-1'.")
@click.option("--backend", "hook_backend", type=click.Choice(["hf", "transformer_lens", "nnsight"]), default="hf",
              show_default=True, help="Hooked-model backend (attribution patching: hf or transformer_lens).")
@click.option("--attribution/--no-attribution", default=True, show_default=True,
              help="Also run attribution patching and report its Pearson r with the exact grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit pair subset.")
@click.option("--out", type=click.Path(file_okay=False), default="results/patch", show_default=True,
              help="Output folder: patching.csv, patching.png, patching_raw.csv, patching.json.")
def cmd(model, adapter, device, dtype, batch_size, bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
        categories, limit, kind, hooks, positions, layers, hook_backend, attribution, seed, out):
    """Patch clean activations into the corrupted run for every (layer, position role) of each hook. --limit
    keeps a seeded subset of this many pairs (pairs are built from the whole split part). --batch-size is the
    number of cells per forward pass."""
    import pandas as pd

    from interp.data.pairs import build_pairs
    from interp.methods.patching import run_patching, write_result
    from interp.models.backends import load_hooked

    hook_list = comma_list(hooks)
    items, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                           categories, None)
    pairs = build_pairs(items, kind, limit=limit, seed=seed)
    lm = load_hooked(model, adapter=adapter, backend=hook_backend, device=device, dtype=dtype)
    t0 = time.perf_counter()
    res = run_patching(lm, pairs, hooks=hook_list, positions=positions, layers=layers, attribution=attribution,
                       batch_size=batch_size, progress=True)
    seconds = time.perf_counter() - t0
    res.meta.update(model=model, adapter=adapter or "", backend=hook_backend, split=part, split_hash=split.hash,
                    seed=seed, seconds=round(seconds, 2))
    files = write_result(res, out, title=f"{model}: {kind} pairs on {part} (n={len(pairs)})")
    table = pd.read_csv(files["csv"])
    best = table.sort_values("effect", ascending=False).head(5)
    click.echo(best[["layer", "hook", "role", "effect", "n"]].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if res.attribution is not None:
        click.echo(f"attribution vs exact: Pearson r = {res.attribution_r:.3f} over the grid")
    click.echo(f"wrote {', '.join(str(f) for f in files.values())} ({seconds:.1f} s)")
