"""``interp data``: fetch the official BBQ files, inspect them, write a template-disjoint split."""

from __future__ import annotations

import click

from interp.cli.commands.common import comma_list, data_options, load_items_from_options


@click.group("data")
def cmd() -> None:
    """BBQ data: download, info, split."""


@cmd.command("download")
@click.option("--dest", type=click.Path(), default=None, help="Cache folder (default $INTERP_HOME/bbq).")
@click.option("--force", is_flag=True, help="Download again even if cached files verify.")
def download(dest, force):
    """Download the official BBQ JSONL and template files (pinned commit, sha256-checked)."""
    from interp.data.download import download_bbq

    path = download_bbq(dest, force=force)
    click.echo(f"BBQ ready at {path}  (export INTERP_BBQ_DIR={path})")


@cmd.command("info")
@data_options
def info(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed, categories, limit):
    """Validate the data and print counts per category, condition and split."""
    from collections import Counter

    from interp.data.bbq import load_bbq

    cats = comma_list(categories) or None
    items, report = load_bbq(bbq_dir, cats, templates_dir)
    click.echo(report.summary())
    chosen, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                            categories, limit)
    c = Counter((it.category, it.context_condition) for it in chosen)
    click.echo(f"split {part}: {len(chosen)} items, {len(split.dev_templates)} dev / "
               f"{len(split.train_templates)} train templates, hash {split.hash}")
    for (cat, cond), n in sorted(c.items()):
        click.echo(f"  {cat:22s} {cond:9s} {n}")


@cmd.command("split")
@data_options
@click.option("--out", type=click.Path(), default="results/split.json", show_default=True)
def split_cmd(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed, categories, limit, out):
    """Write the template-disjoint split to a file that later runs can cite (--split-file)."""
    from interp.data.bbq import check_categories, load_bbq
    from interp.data.split import Split, make_split

    cats = comma_list(categories) or None
    items, _ = load_bbq(bbq_dir, None, templates_dir)
    if cats:
        check_categories(cats, {it.category for it in items}, "the BBQ folder")
    s = make_split(items, dev_frac=dev_frac, seed=split_seed)  # on every category, then restricted (split_items)
    if cats:
        s = Split(seed=s.seed, dev_frac=s.dev_frac, train_templates=[t for t in s.train_templates if t[0] in cats],
                  dev_templates=[t for t in s.dev_templates if t[0] in cats])
    s.save(out)
    click.echo(f"wrote {out}: {len(s.train_templates)} train / {len(s.dev_templates)} dev templates, "
               f"0 shared, hash {s.hash}")
