"""``interp eval``: run a model (and optional adapter) over a BBQ split and write predictions + metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from interp.cli.commands.common import data_options, load_items_from_options, model_options
from interp.eval.evaluate import MODES
from interp.eval.metrics import CLUSTERS
from interp.models.precision import precision_name


@click.command("eval")
@model_options
@data_options
@click.option("--mode", type=click.Choice(MODES), default="logits", show_default=True,
              help="logits: the A/B/C letter logits; generate: a greedy reply's letter; options / options_norm: "
                   "each answer's log-likelihood (summed / per character), as lm-eval scores BBQ.")
@click.option("--shuffle-options/--keep-order", default=False, show_default=True,
              help="Shuffle A/B/C per item with --seed (gold and target letters follow).")
@click.option("--seed", type=int, default=0, show_default=True, help="Option-shuffle and bootstrap seed.")
@click.option("--n-boot", type=click.IntRange(min=0), default=1000, show_default=True, help="Bootstrap resamples for intervals.")
@click.option("--cluster", type=click.Choice(CLUSTERS), default="item", show_default=True,
              help="Bootstrap unit for the intervals: items, or whole templates (for claims about unseen "
                   "templates; wider).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--out", type=click.Path(), default="results/eval", show_default=True, help="Output folder.")
def cmd(model, adapter, device, dtype, batch_size, bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
        categories, limit, mode, shuffle_options, seed, n_boot, cluster, max_new_tokens, out):
    """Evaluate a causal LM on BBQ: per-item JSONL, summary CSV/JSON, printed table."""
    from interp.eval.evaluate import EvalConfig, evaluate_items, prepare_out_dir, print_summary, write_results
    from interp.models.backends import as_lm
    from interp.models.loading import load_model
    from interp.tables import write_text_atomic

    cfg = EvalConfig(mode=mode, batch_size=batch_size, shuffle_options=shuffle_options, seed=seed,
                     max_new_tokens=max_new_tokens)
    prepare_out_dir(out)
    items, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                           categories, limit)
    lm = load_model(model, adapter=adapter, device=device, dtype=dtype)
    t0 = time.time()
    recs = evaluate_items(as_lm(lm), items, cfg)
    meta = dict(model=model, adapter=adapter, mode=mode, dtype=precision_name(lm.model),
                split=part, split_hash=split.hash, n_items=len(items),
                seconds=round(time.time() - t0, 2), shuffle_options=shuffle_options, seed=seed,
                cluster=cluster)
    write_text_atomic(Path(out, "split.json"), split.to_json())
    rows = write_results(recs, out, n_boot=n_boot, seed=seed, meta=meta, cluster=cluster)
    print_summary(rows)
    click.echo(f"wrote {out}/predictions.jsonl, summary.csv, summary.json ({meta['seconds']} s)")
