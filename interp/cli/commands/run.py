"""``interp run``: the whole study in one command, resumable stage by stage."""

from __future__ import annotations

import click

from interp.cli.commands.common import comma_list
from interp.pipeline.config import PRESETS


@click.command("run")
@click.option("--preset", type=click.Choice(PRESETS), default="quick", show_default=True,
              help="quick: the organism on a 2-core CPU in about 10 min; default: the seed's settings; "
                   "qwen3b: Qwen2.5-3B-Instruct on one GPU; real: SmolLM2-135M-Instruct, a real pretrained "
                   "model, on a CPU; test: the small organisms, minutes.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="A TOML file whose sections override the preset (see interp/pipeline/configs/default.toml).")
@click.option("--set", "overrides", multiple=True, help="Override one setting: section.key=value (repeatable).")
@click.option("--model", default=None, help="Shortcut for --set run.model=...")
@click.option("--out", default=None, help="Output folder (default: the preset's run.out).")
@click.option("--force", multiple=True, help="Rerun this stage even if up to date (repeatable; 'all' for every).")
@click.option("--stages", default=None, help="Comma-separated subset of stages to run.")
def cmd(preset, config_path, overrides, model, out, force, stages):
    """Organism, base eval, GRPO lambda sweep, activation caches, probes, directions, steering, adapter
    comparison and the reward-model study; writes results_all.csv, figures/ and report.md/.html."""
    from pathlib import Path

    from interp.pipeline.config import load_config
    from interp.pipeline.runner import Context, run_pipeline
    from interp.pipeline.stages import build_stages

    ov = list(overrides)
    if model:
        ov.append(f'run.model="{model}"')
    if out:
        ov.append(f'run.out="{out}"')
    if stages:
        ov.append("run.stages=[" + ",".join(f'"{s}"' for s in comma_list(stages)) + "]")
    from interp.data.download import ensure_bbq_dir

    cfg = load_config(config_path, preset, ov)  # a typo is named before anything is fetched or run
    cfg["run"]["preset"] = preset
    plan = build_stages(cfg)
    if any(s.name == "rl_sweep" for s in plan):  # GRPO needs the [rl] extra: named before any stage runs
        from interp.errors import require_extra

        require_extra("trl")
    ensure_bbq_dir(log=click.echo)
    ctx = Context(cfg=cfg, out=Path(cfg["run"]["out"]), log=click.echo)
    click.echo(f"interp run: preset {preset}, model {cfg['run']['model']}, out {ctx.out}")
    run_pipeline(plan, ctx, force=tuple(force))
