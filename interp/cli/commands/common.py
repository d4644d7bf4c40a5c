"""Click options shared by every command, so flags mean the same thing everywhere."""

from __future__ import annotations

import functools

import click

from interp.console import comma_list  # noqa: F401  (every command takes it from here)


def data_options(f):
    """--bbq-dir, --templates-dir, --split, --split-file, --dev-frac, --split-seed, --categories, --limit."""
    opts = [
        click.option("--bbq-dir", envvar="INTERP_BBQ_DIR", type=click.Path(), default=None,
                     help="Folder of official BBQ <Category>.jsonl files [env INTERP_BBQ_DIR]."),
        click.option("--templates-dir", type=click.Path(), default=None,
                     help="Folder of BBQ template CSVs (default: templates/ beside the data)."),
        click.option("--split", "part", type=click.Choice(["train", "dev", "all"]), default="dev", show_default=True),
        click.option("--split-file", type=click.Path(), default=None,
                     help="Split JSON to read (or write, if absent). Default: made from --split-seed/--dev-frac."),
        click.option("--dev-frac", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.2,
                     show_default=True),
        click.option("--split-seed", type=click.IntRange(min=0), default=0, show_default=True),
        click.option("--categories", type=str, default=None, help="Comma-separated categories (default: all found)."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Keep a seeded random subset of this many items."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def model_options(f):
    """--model, --adapter, --device, --dtype, --batch-size."""
    opts = [
        click.option("--model", default="organism", show_default=True,
                     help="HF hub id or local folder, or 'organism' / 'organism-small' (built-in)."),
        click.option("--adapter", type=click.Path(), default=None, help="PEFT adapter folder to attach."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ..."),
        click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on a GPU; mixed bf16 on a CPU with native bf16, docs/models.md), float32, bfloat16, bfloat16-mixed."),
        click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed, categories, limit):
    """Resolve the data options into (items, split)."""
    from interp.data.bbq import split_items

    return split_items(part, bbq_dir, split_file, dev_frac, split_seed, comma_list(categories) or None, limit,
                       templates_dir)
