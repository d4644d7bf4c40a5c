"""``interp compare``: base model vs LoRA adapters, per layer: linear CKA, direction cosines, probe transfer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from interp.cli.commands.common import data_options, load_items_from_options


@click.command("compare")
@click.option("--model", default="organism", show_default=True,
              help="HF hub id or local folder, or 'organism' / 'organism-small' (built-in): the base.")
@click.option("--adapter", "adapters", type=click.Path(exists=True, file_okay=False), multiple=True,
              help="PEFT adapter folder to compare with the base; repeat for several.")
@click.option("--base-store", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Instead of running models: the base's activation store (`interp cache`, no adapter) ...")
@click.option("--store", "stores", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="... and one store per adapter (`interp cache --adapter A`), same split and positions.")
@click.option("--label", "labels", multiple=True,
              help="Name for each --adapter / --store in the table (default: its path).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on GPU), float32, bfloat16.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@data_options
@click.option("--layers", default="all", show_default=True, help="'all' or comma-separated layer indices.")
@click.option("--hook", default="hook_resid_post", show_default=True,
              help="Hook kind per layer (blocks.<layer>.<hook>), e.g. hook_resid_post, mlp.hook_post.")
@click.option("--condition", type=click.Choice(["all", "ambig", "disambig"]), default="all", show_default=True,
              help="Items whose predictions label the directions and probes.")
@click.option("--n-folds", type=int, default=5, show_default=True, help="Template-grouped folds for the probe.")
@click.option("--C", "C", type=float, default=1.0, show_default=True, help="Probe inverse L2 strength.")
@click.option("--shuffle-options/--keep-order", default=False, show_default=True,
              help="Shuffle A/B/C per item with --seed (same order for base and adapters).")
@click.option("--seed", type=int, default=0, show_default=True, help="Option-shuffle and fold seed.")
@click.option("--debiased", is_flag=True, help="Also report debiased (unbiased-HSIC) CKA.")
@click.option("--out", type=click.Path(), default="results/compare", show_default=True, help="Output folder.")
def cmd(model, adapters, base_store, stores, labels, device, dtype, batch_size, bbq_dir, templates_dir, part, split_file, dev_frac,
        split_seed, categories, limit, layers, hook, condition, n_folds, C, shuffle_options, seed, debiased, out):
    """Compare base and adapters on the same items (run here, or read from activation stores with
    --base-store/--store): per-layer CKA, direction cosines, probe transfer in compare.csv and compare.png."""
    from interp.methods.compare import CSV_COLUMNS, compare_adapters, compare_stores

    use_stores = base_store is not None or bool(stores)
    if use_stores and (base_store is None or not stores):
        raise click.UsageError("comparing stores needs --base-store and at least one --store")
    if not use_stores and not adapters:
        raise click.UsageError("give --adapter (repeatable), or --base-store with --store")
    others = list(stores) if use_stores else list(adapters)
    if labels and len(labels) != len(others):
        raise click.BadParameter(f"{len(labels)} --label for {len(others)} adapters", param_hint="--label")
    t0 = time.time()
    meta = dict(labels=list(labels) or others, layers=layers, hook=hook, condition=condition, n_folds=n_folds,
                C=C, seed=seed)
    if use_stores:
        from interp.cli.commands.probe import parse_layers

        df = compare_stores(base_store, others, out, layers=parse_layers(layers), hook=hook,
                            labels=list(labels) or None, n_folds=n_folds, C=C, seed=seed, condition=condition,
                            debiased=debiased)
        meta.update(base_store=base_store, stores=others)
    else:
        from interp.models.loading import load_model

        items, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                               categories, limit)
        lm = load_model(model, device=device, dtype=dtype)
        df = compare_adapters(lm, others, items, out, layers=layers, hook=hook, batch_size=batch_size,
                              n_folds=n_folds, C=C, seed=seed, shuffle_options=shuffle_options,
                              condition=condition, labels=list(labels) or None, debiased=debiased)
        meta.update(model=model, adapters=others, split=part, split_hash=split.hash, n_items=len(items),
                    shuffle_options=shuffle_options)
        Path(out, "split.json").write_text(split.to_json())
    meta["seconds"] = round(time.time() - t0, 2)
    Path(out, "compare.json").write_text(json.dumps(meta, indent=1))
    with_cols = [c for c in CSV_COLUMNS if c in df.columns]
    click.echo(df[with_cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    click.echo(f"wrote {out}/compare.csv, compare.png, compare.json ({meta['seconds']} s)")
