"""One error base: every exception class interp and rl define is an InterpError, and the CLI shows an error in one
line by its type (InterpError, OSError), while any other exception keeps its traceback."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import interp
import rl
from interp.errors import InputError, InterpError, MissingExtraError

ROOT = Path(__file__).resolve().parent.parent


def defined_exceptions() -> dict[str, type]:
    """Every exception class defined in a module of interp or rl, found by importing each module."""
    found = {}
    for pkg in (interp, rl):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if m.name.endswith("__main__"):  # runs the CLI on import
                continue
            mod = importlib.import_module(m.name)
            for name, obj in vars(mod).items():
                if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == m.name:
                    found[f"{m.name}.{name}"] = obj
    return found


def test_every_exception_class_is_an_interp_error():
    found = defined_exceptions()
    # the walk reaches every package: a class from each corner of the tree is among the found ones
    for name in ("interp.store.activations.CorruptStoreError", "interp.models.hooks.HookNameError",
                 "interp.pipeline.config.ConfigError", "interp.data.bbq.BBQDataError", "interp.errors.InputError"):
        assert name in found, sorted(found)
    assert len(found) >= 25
    assert [n for n, c in found.items() if not issubclass(c, InterpError)] == []


def test_the_walk_sees_a_class_that_is_not_an_interp_error(tmp_path, monkeypatch):
    """The check above can fail: a planted module in the interp package with a plain ValueError subclass."""
    pkg = tmp_path / "interp"
    pkg.mkdir()
    (pkg / "planted_mod.py").write_text("class PlantedError(ValueError):\n    pass\n")
    monkeypatch.setattr(interp, "__path__", [*interp.__path__, str(pkg)])
    try:
        found = defined_exceptions()
    finally:
        sys.modules.pop("interp.planted_mod", None)
    assert [n for n, c in found.items() if not issubclass(c, InterpError)] == ["interp.planted_mod.PlantedError"]


def test_named_errors_keep_their_builtin_base():
    """Callers that catch ValueError, RuntimeError or ImportError still catch ours."""
    from interp.store.activations import CorruptStoreError
    from rl.train import TrainConfig

    assert issubclass(InputError, ValueError) and issubclass(CorruptStoreError, RuntimeError)
    assert issubclass(MissingExtraError, ImportError)
    with pytest.raises(ValueError, match="lr must be > 0") as e:
        TrainConfig(model="m", out_dir="o", lr=-1.0).validate()
    assert isinstance(e.value, InterpError)


CLI = textwrap.dedent("""
    import errno, sys
    import click
    import numpy as np
    from interp.console import FriendlyErrors
    from interp.errors import InputError

    @click.group(cls=FriendlyErrors)
    def main():
        pass

    @main.command()
    def bug():
        np.zeros(-1)  # a ValueError raised inside a library: a bug, not bad input

    @main.command()
    def ours():
        raise InputError("lr must be > 0, got -1")

    @main.command()
    def disk():
        raise OSError(errno.ENOSPC, "No space left on device")

    @main.command()
    def plain():
        raise ValueError("a plain ValueError of our own: not named, so a bug")

    main(sys.argv[1:])
""")


@pytest.mark.parametrize("cmd, debug, one_line", [
    ("ours", False, "Error: InputError: lr must be > 0, got -1"),
    ("disk", False, "Error: OSError: [Errno 28] No space left on device"),
    ("bug", False, None), ("plain", False, None), ("ours", True, None),
])
def test_the_cli_shows_an_error_by_its_type(cmd, debug, one_line):
    """InterpError and OSError: one line, exit 1. Any other exception, raised by a library or by us: its
    traceback. INTERP_DEBUG=1: every traceback."""
    env = {k: v for k, v in os.environ.items() if k != "INTERP_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), **({"INTERP_DEBUG": "1"} if debug else {}))
    res = subprocess.run([sys.executable, "-c", CLI, cmd], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1, res.stderr
    if one_line:
        assert res.stderr.strip().splitlines()[0].startswith(one_line), res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    else:
        assert res.stderr.startswith("Traceback (most recent call last):"), res.stderr
        assert not res.stderr.splitlines()[-1].startswith("Error: "), res.stderr
