"""``interp steer``: evaluate a split while adding alpha times a saved direction at one layer."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.cli.commands.common import comma_list, data_options, load_items_from_options, model_options


def parse_alphas(spec: str) -> list[float]:
    vals = comma_list(spec, float, "--alphas")
    if not vals:
        raise click.BadParameter("no alphas given")
    return vals


@click.command("steer")
@model_options
@data_options
@click.option("--directions", "directions_file", type=click.Path(), default=None,
              help="Directions file from `interp directions` (default: its default path for --model).")
@click.option("--direction", default="stereotype", show_default=True,
              help="Direction name(s), comma-separated: stereotype, abstention, stereotype_orth.")
@click.option("--layer", type=int, required=True, help="Layer to steer at.")
@click.option("--hook", default="hook_resid_post", show_default=True)
@click.option("--alphas", default="-8,-4,0,4,8", show_default=True, help="Comma-separated alphas.")
@click.option("--units", type=click.Choice(["sigma", "unit", "raw"]), default="sigma", show_default=True,
              help="sigma: alpha in std of the items' projection; unit: added L2 norm; raw: x diff of means.")
@click.option("--from-pos", type=int, default=None,
              help="Steer from this padded position on (-1: last prompt token and new tokens); default all.")
@click.option("--mode", type=click.Choice(["logits", "generate"]), default="logits", show_default=True)
@click.option("--backend", "hook_backend", type=click.Choice(["hf", "transformer_lens", "nnsight"]), default="hf",
              show_default=True, help="Which hooked-model backend applies the steering hook.")
@click.option("--max-new-tokens", type=int, default=4, show_default=True)
@click.option("--n-boot", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), default="results/steer/alpha_curve.csv", show_default=True)
@click.option("--figures", "fig_dir", type=click.Path(), default=None, help="Figure folder (default figures/).")
def cmd(model, adapter, device, dtype, batch_size, bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
        categories, limit, directions_file, direction, layer, hook, alphas, units, from_pos, mode, hook_backend,
        max_new_tokens, n_boot, seed, out, fig_dir):
    """Alpha curve: acc_ambig, acc_disambig, abstain rates, s_AMB, amb_commit_bias (with intervals) per alpha;
    CSV, curve figure and s_AMB frontier figure. Several --direction names are plotted together."""
    from interp.methods.directions import (DirectionError, check_directions_base, default_directions_path,
                                           load_directions)
    from interp.eval.evaluate import EvalConfig
    from interp.figures import figures_dir
    from interp.eval.score import write_csv
    from interp.methods.steering import SteeringError, alpha_curve, direction_vector, plot_alpha_curves, plot_frontier

    alpha_list = parse_alphas(alphas)
    path = Path(directions_file) if directions_file else default_directions_path(model)
    try:
        ds = load_directions(path)
        check_directions_base(ds, model, path)
        dirs = {n: ds.get(n, layer=layer, kind=hook) for n in comma_list(direction)}
    except (DirectionError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    items, split = load_items_from_options(bbq_dir, templates_dir, part, split_file, dev_frac, split_seed,
                                           categories, limit)
    if hook_backend == "hf":
        from interp.models.loading import load_model

        target = load_model(model, adapter=adapter, device=device, dtype=dtype)
    else:
        from interp.models.backends import load_hooked

        target = load_hooked(model, adapter=adapter, backend=hook_backend, device=device, dtype=dtype)
    cfg = EvalConfig(mode=mode, batch_size=batch_size, seed=seed, max_new_tokens=max_new_tokens, progress=False)
    curves, rows = {}, []
    for name, d in dirs.items():
        try:
            vec = direction_vector(d, units)
            curve = alpha_curve(target, items, vec, layer, alpha_list, cfg, hook, from_pos, n_boot, seed, label=name)
        except SteeringError as e:
            raise click.ClickException(str(e)) from e
        for r in curve:
            r.update(model=model, adapter=adapter or "", units=units, directions_file=str(path),
                     split=part, split_hash=split.hash, backend=hook_backend, from_pos=from_pos)
        curves[name] = curve
        rows += curve
    write_csv(rows, out)
    fd = figures_dir(fig_dir)
    stem = Path(out).stem
    f1 = plot_alpha_curves(curves, fd / f"{stem}_L{layer}.png", title=f"steering at layer {layer} ({units} units), {model}")
    f2 = plot_frontier(curves, fd / f"{stem}_L{layer}_frontier.png")
    Path(out).with_suffix(".json").write_text(json.dumps(
        {"model": model, "adapter": adapter, "layer": layer, "units": units, "alphas": alpha_list,
         "directions": {n: d.meta for n, d in dirs.items()}, "split_hash": split.hash}, indent=1))
    for r in rows:
        click.echo(f"{r['direction']:16s} alpha {r['alpha']:+6.2f}  acc_ambig {r['acc_ambig']:.3f}  "
                   f"acc_disambig {r['acc_disambig']:.3f}  abstain_ambig {r['abstain_ambig']:.3f}  "
                   f"s_AMB {r['s_AMB']:+.3f}  amb_commit_bias {r['amb_commit_bias']:+.3f} "
                   f"[{r['amb_commit_bias_lo']:+.3f}, {r['amb_commit_bias_hi']:+.3f}]")
    click.echo(f"wrote {out}, {f1}, {f2}")
