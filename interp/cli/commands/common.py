"""Click options shared by every command, so flags mean the same thing everywhere."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import click

T = TypeVar("T")


def comma_list(spec: str | None, kind: Callable[[str], T] = str, param: str | None = None) -> list[T]:
    """A comma-separated option as a list of ``kind`` (None or '' is []). A part ``kind`` refuses, or an empty
    part ('1,,2': a typo, not a value), is a ``click.BadParameter`` naming the option (``param``)."""
    out = []
    parts = (spec or "").split(",")
    if any(p.strip() for p in parts) and not all(p.strip() for p in parts):
        raise click.BadParameter(f"{spec!r} has an empty item", param_hint=param)
    for part in parts:
        if part.strip():
            try:
                out.append(kind(part.strip()))
            except ValueError as e:
                raise click.BadParameter(f"{part.strip()!r} is not a valid {getattr(kind, '__name__', 'value')} "
                                         f"in {spec!r}", param_hint=param) from e
    return out


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
        click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on GPU), float32, bfloat16."),
        click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed, categories, limit):
    """Resolve the data options into (items, split)."""
    from interp.data.split import split_items

    return split_items(part, bbq_dir, split_file, dev_frac, split_seed, comma_list(categories) or None, limit,
                       templates_dir)
