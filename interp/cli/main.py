"""The ``interp`` command line. Subcommands are imported only when called, so ``interp score`` starts fast
and a broken optional module cannot take the others down."""

from __future__ import annotations

import importlib

import click

from interp.console import FriendlyErrors

# name -> "module:attribute" of a click command or group
COMMANDS = {
    "data": "interp.cli.commands.data:cmd",
    "score": "interp.cli.commands.score:cmd",
    "eval": "interp.cli.commands.eval:cmd",
    "diff": "interp.cli.commands.diff:cmd",
    "organism": "interp.cli.commands.organism:cmd",
    "cache": "interp.cli.commands.cache:cmd",
    "probe": "interp.cli.commands.probe:cmd",
    "directions": "interp.cli.commands.directions:cmd",
    "steer": "interp.cli.commands.steer:cmd",
    "patch": "interp.cli.commands.patch:cmd",
    "compare": "interp.cli.commands.compare:cmd",
    "rm": "interp.cli.commands.rm:cmd",
    "models": "interp.cli.commands.models:cmd",
    "run": "interp.cli.commands.run:cmd",
    "reader": "interp.cli.commands.reader:cmd",
}


class LazyGroup(FriendlyErrors):
    def __init__(self, *args, lazy: dict[str, str], **kw):
        super().__init__(*args, **kw)
        self.lazy = lazy

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            mod, attr = self.lazy[name].split(":")
            try:
                return getattr(importlib.import_module(mod), attr)
            except ModuleNotFoundError as e:
                if e.name and e.name.startswith(mod):
                    return None  # not built yet: listed nowhere, "No such command" when called
                raise
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="interp-bbq")
def main() -> None:
    """Mechanistic interpretability of bias: BBQ evaluation, activations, probes, steering, RM debiasing."""


if __name__ == "__main__":
    main()
