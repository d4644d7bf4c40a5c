"""The ``interp`` command line: ``main`` (the group) and one module per subcommand in ``commands/``. A command
parses its options, calls the library and prints; no library logic lives here."""

from interp.cli.main import main

__all__ = ["main"]
