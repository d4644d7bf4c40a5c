"""The ``interp`` command line. Subcommands are imported only when called, so ``interp score`` starts fast
and a broken optional module cannot take the others down."""

from __future__ import annotations

import importlib

import click

from interp.clierrors import FriendlyErrors

# name -> "module:attribute" of a click command or group
COMMANDS = {
    "data": "interp.commands.data:cmd",
    "score": "interp.commands.score:cmd",
    "eval": "interp.commands.eval:cmd",
    "diff": "interp.commands.diff:cmd",
    "organism": "interp.commands.organism:cmd",
    "cache": "interp.commands.cache:cmd",
    "probe": "interp.commands.probe:cmd",
    "directions": "interp.commands.directions:cmd",
    "steer": "interp.commands.steer:cmd",
    "compare": "interp.commands.compare:cmd",
    "rm": "interp.commands.rm:cmd",
    "run": "interp.commands.run:cmd",
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
