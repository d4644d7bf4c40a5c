"""``interp diff A B``: paired comparison of two evaluations of the same items (e.g. base vs adapter)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.eval.metrics import CLUSTERS, METRICS, paired_difference


def _records(folder: str) -> list[dict]:
    from interp.data.bbq import read_jsonl

    f = Path(folder) / "predictions.jsonl"
    if not f.is_file():
        raise click.ClickException(f"{folder} holds no predictions.jsonl (write one with `interp eval --out`)")
    return [rec for _, rec in read_jsonl(f)]  # a malformed line: BBQDataError naming file and line (clierrors)


@click.command("diff")
@click.argument("a", type=click.Path(exists=True, file_okay=False))
@click.argument("b", type=click.Path(exists=True, file_okay=False))
@click.option("--n-boot", type=click.IntRange(min=100), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cluster", type=click.Choice(CLUSTERS), default="item", show_default=True,
              help="Resample items, or whole templates (category, question_index) for claims about unseen "
                   "templates.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def cmd(a, b, n_boot, seed, cluster, as_json):
    """Metric differences B - A over the same items, with paired bootstrap 95% intervals (A, B: `interp eval
    --out` folders)."""
    res = paired_difference(_records(a), _records(b), n_boot=n_boot, seed=seed, cluster=cluster)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    unit = "items" if cluster == "item" else "templates"
    click.echo(f"{res['n']} items; B - A with paired bootstrap 95% intervals ({n_boot} resamples of {unit})")
    for m in METRICS:
        click.echo(f"  {m:18s} {res[f'{m}_a']:.3f} -> {res[f'{m}_b']:.3f}   "
                   f"diff {res[f'd_{m}']:+.3f} [{res[f'd_{m}_lo']:+.3f}, {res[f'd_{m}_hi']:+.3f}]")
