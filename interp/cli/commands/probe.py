"""``interp probe``: per-layer linear probes for the stereotype lean, cross-validated by template."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from interp.cli.commands.common import data_options, load_items_from_options, model_options

if TYPE_CHECKING:
    from interp.methods.probes import Activations


def parse_layers(spec: str | None) -> str | None:
    """The --layers spec as given (None for every layer): ``interp.layers.resolve_layers`` reads it once the
    model's (or store's) layer count is known."""
    return None if spec in (None, "", "all") else spec


def activations_for(model, adapter, device, dtype, batch_size, items, hook: str, layers, store: str | None,
                    part: str | None = None, progress: bool = True) -> Activations:
    """Activations at the last prompt position per layer and the prediction records that label them: read
    from ``store`` (or, when ``store`` is None, the default store of model/adapter/part if it exists), else
    computed in process (one logits-mode forward pass per batch; ``store=''`` forces this)."""
    if store is None and part is not None:  # the store `interp cache` writes by default, when it exists
        from interp.store.activations import default_store_path

        cand = default_store_path(model, adapter, part)
        if cand.exists():
            click.echo(f"reading activations from {cand} (pass --store '' to compute them in process)")
            store = str(cand)
    if store:
        from interp.methods.probes import Activations, check_store_model

        check_store_model(store, model, adapter)
        try:
            got = Activations.from_store(store, hook, layers)
        except (ValueError, KeyError) as e:
            raise click.ClickException(str(e)) from e
        if items is not None and [r.get("uid") for r in got.records] != [it.uid for it in items]:
            click.echo(f"note: {store} holds other items than the selected split; using the store's "
                       f"{got.n_items} items")
        return got
    from interp.models.loading import load_model
    from interp.methods.probes import collect, resid_hooks

    lm = load_model(model, adapter=adapter, device=device, dtype=dtype)
    try:
        names = resid_hooks(lm.model, hook, layers)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    return collect(lm, items, names, batch_size=batch_size, progress=progress)


@click.command("probe")
@model_options
@data_options
@click.option("--hook", default="hook_resid_post", show_default=True, help="Hook kind probed at every layer.")
@click.option("--layers", default="all", show_default=True, help="'all', '0,3,5' or '2-6'.")
@click.option("--target", type=click.Choice(["stereotype", "abstain"]), default="stereotype", show_default=True,
              help="stereotype: congruent vs anti-congruent commits; abstain: Unknown vs committed answers.")
@click.option("--condition", type=click.Choice(["all", "ambig", "disambig"]), default="all", show_default=True,
              help="Which contexts' items to use.")
@click.option("--n-splits", type=int, default=5, show_default=True, help="Folds, grouped by template.")
@click.option("--n-shuffles", type=int, default=3, show_default=True, help="Shuffled-label control runs.")
@click.option("--C", "C", type=float, default=1.0, show_default=True, help="Inverse L2 strength (as sklearn).")
@click.option("--backend", "probe_backend", type=click.Choice(["sklearn"]), default="sklearn", show_default=True,
              help="The probe fitter: scikit-learn (the only one; the torch solver was removed).")
@click.option("--n-boot", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--store", type=click.Path(), default=None,
              help="Activation store from `interp cache` (default: its default path for model/adapter/split if "
                   "present, else activations are computed in process; '' forces in-process).")
@click.option("--out", type=click.Path(), default="results/probe/probe.csv", show_default=True)
@click.option("--figures", "fig_dir", type=click.Path(), default=None, help="Figure folder (default figures/).")
def cmd(model, adapter, device, dtype, batch_size, bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
        categories, limit, hook, layers, target, condition, n_splits, n_shuffles, C, probe_backend, n_boot, seed,
        store, out, fig_dir):
    """Probe accuracy by layer (grouped CV) with intervals, majority and shuffled-label lines; CSV + figure."""
    from interp.figures import figures_dir
    from interp.methods.probes import (ProbeConfig, abstain_labels, best_layer, plot_probe_accuracy, probe_sweep,
                               stereotype_labels, template_groups)
    from interp.eval.score import write_csv

    items, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                           categories, limit)
    got = activations_for(model, adapter, device, dtype, batch_size, items, hook, parse_layers(layers), store,
                          part if limit is None and categories is None else None)
    acts, recs = got.acts, got.records
    idx, y = (stereotype_labels if target == "stereotype" else abstain_labels)(recs, condition)
    groups = template_groups(recs)[idx]
    t0 = time.time()
    try:
        rows = probe_sweep({n: a[idx] for n, a in acts.items()}, y, groups,
                           ProbeConfig(n_splits=n_splits, n_shuffles=n_shuffles, C=C, backend=probe_backend,
                                       n_boot=n_boot, seed=seed, progress=True))
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    secs = time.time() - t0
    for r in rows:
        r.update(model=model, adapter=adapter or "", target=target, condition=condition,
                 split=part)
    write_csv(rows, out)
    fig = plot_probe_accuracy(rows, figures_dir(fig_dir) / f"{Path(out).stem}_accuracy_by_layer.png",
                              title=f"{target} probe, {model}, condition={condition}")
    b = best_layer(rows)
    Path(out).with_suffix(".json").write_text(json.dumps(
        {"model": model, "adapter": adapter, "split_hash": getattr(split, "hash", None), "best": b,
         "probe_seconds": round(secs, 2)}, indent=1))
    for r in rows:
        click.echo(f"layer {r['layer']:3d}  acc {r['acc']:.3f} [{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]  "
                   f"shuffled {r['shuffled_mean']:.3f}  majority {r['majority']:.3f}{'  *' if r['best'] else ''}")
    click.echo(f"{len(y)} items ({int(y.sum())} positive), {rows[0]['n_templates']} templates; best layer "
               f"{b['layer']}; probes fitted in {secs:.1f} s; wrote {out} and {fig}")
