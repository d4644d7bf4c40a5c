"""The main job's settings: one TOML file, presets shipped with the package, overrides from the command line.

Defaults are the seed study's values (GRPO lr 5e-6, beta 0.04, temperature 1.3, 8 generations, 500 steps,
lambda in {0, 0.5, 1.5} plus an lr 1e-6 control, alphas -8..8)."""

from __future__ import annotations

import copy
import functools
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from interp.errors import InterpError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESETS = ("default", "quick", "test", "qwen3b", "real")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_toml(name: str) -> dict[str, Any]:
    """One shipped TOML file of ``interp/pipeline/configs``."""
    return tomllib.loads(resources.files("interp.pipeline.configs").joinpath(f"{name}.toml").read_text())


def load_preset(name: str) -> dict[str, Any]:
    """A preset merged over the defaults ('default' is the seed's full settings)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    base = _read_toml("default")
    return base if name == "default" else _merge(base, _read_toml(name))


class ConfigError(InterpError, ValueError):
    """An unknown section or key, or a value of the wrong type, in a config file or a ``--set`` override."""


# [rl] keys the sweep sets per run itself; every other rl.train.TrainConfig field may be set in [rl]
_RL_SET_BY_SWEEP = {"model", "out_dir", "lam", "device", "dtype", "progress", "resume", "bbq_dir", "templates_dir",
                    "split_file", "dev_frac", "split_seed", "categories", "limit", "seed"}


@functools.lru_cache(maxsize=1)
def known_keys() -> dict[str, frozenset[str]]:
    """Every valid key, by section: the default config's, plus the TrainConfig fields [rl] passes through
    (read once per process)."""
    from dataclasses import fields

    from rl.train import TrainConfig  # the pipeline drives rl; only the key list is read here

    keys = {sec: set(vals) for sec, vals in _read_toml("default").items()}
    keys["rl"] |= {f.name for f in fields(TrainConfig)} - _RL_SET_BY_SWEEP
    return {sec: frozenset(v) for sec, v in keys.items()}


def _unknown(where: str, kind: str, name: str, valid) -> ConfigError:
    import difflib

    close = difflib.get_close_matches(name, sorted(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(valid))}"
    return ConfigError(f"{where}: unknown {kind} {name!r}{hint}")


def check_config(cfg: dict, where: str = "config") -> None:
    """Refuse any section or key that no stage reads, naming the closest valid one."""
    keys = known_keys()
    for sec, vals in cfg.items():
        if sec not in keys:
            raise _unknown(where, "section", sec, keys)
        if not isinstance(vals, dict):
            raise ConfigError(f"{where}: [{sec}] must be a table of settings")
        for k in vals:
            if k not in keys[sec]:
                raise _unknown(where, f"key in [{sec}]:", k, keys[sec])


# settings whose type may differ from the default's; and the smallest value of numeric settings with a bound
_ALSO_ALLOWED = {("cache", "layers"): (int, list)}
_MINIMUM = {("data", "limit_dev"): 0, ("data", "limit_train"): 0, ("eval", "n_boot"): 0, ("probe", "n_boot"): 0,
            ("eval", "batch_size"): 1, ("cache", "batch_size"): 1, ("probe", "folds"): 2, ("probe", "fold_seeds"): 1,
            ("rl", "steps"): 1, ("rl", "save_steps"): 1, ("rl", "batch_size"): 1, ("rl", "num_generations"): 2,
            ("rl", "lora_r"): 1, ("rl", "lora_alpha"): 1, ("run", "seed"): 0, ("data", "split_seed"): 0}


@functools.lru_cache(maxsize=1)
def default_values() -> dict[tuple[str, str], Any]:
    """(section, key) -> its default value: the default config's, and TrainConfig's for the other [rl] keys."""
    from dataclasses import MISSING, fields

    from rl.train import TrainConfig

    out = {(sec, k): v for sec, vals in _read_toml("default").items() for k, v in vals.items()}
    for f in fields(TrainConfig):
        if ("rl", f.name) not in out and f.name not in _RL_SET_BY_SWEEP and f.default is not MISSING:
            out[("rl", f.name)] = f.default
    return out


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def check_types(cfg: dict, where: str = "config") -> None:
    """Refuse a value whose type differs from its default's (an integer where a number is expected is fine; a
    list's items are checked against the default list's items), or below its bound, naming the key."""
    defaults = default_values()
    for sec, vals in cfg.items():
        for k, v in vals.items():
            want = defaults.get((sec, k))
            if want is None:
                continue
            ok_types = (type(want),) + _ALSO_ALLOWED.get((sec, k), ())
            ok = isinstance(v, ok_types) and not (isinstance(v, bool) and not isinstance(want, bool))
            if isinstance(want, float) and isinstance(v, int) and not isinstance(v, bool):
                ok = True
            if ok and isinstance(want, list) and want and isinstance(v, list):
                item = want[0]
                ok = all((isinstance(x, type(item)) or (isinstance(item, float) and isinstance(x, int)))
                         and not (isinstance(x, bool) and not isinstance(item, bool)) for x in v)
                if not ok:
                    raise ConfigError(f"{where}: {sec}.{k} must be a list of {_type_name(item).split()[-1]}s "
                                      f"like {want!r}, got {v!r}")
            if not ok:
                raise ConfigError(f"{where}: {sec}.{k} must be {_type_name(want)} like {want!r}, got {v!r} "
                                  f"({_type_name(v)})")
            low = _MINIMUM.get((sec, k))
            if low is not None and v < low:
                raise ConfigError(f"{where}: {sec}.{k} must be >= {low}, got {v!r}")


def load_config(path: str | Path | None = None, preset: str = "default", overrides: list[str] | None = None) -> dict:
    """Preset, then a user TOML file, then ``section.key=value`` overrides (values parsed as TOML). An unknown
    section or key anywhere is a :class:`ConfigError` naming the closest valid one."""
    cfg = load_preset(preset)
    if path:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file {p} not found")
        if p.is_dir():
            raise IsADirectoryError(f"config file {p} is a folder, not a TOML file")
        try:
            user = tomllib.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a TOML file (not UTF-8 text)") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        check_config(user, str(p))
        check_types(user, str(p))
        cfg = _merge(cfg, user)
    for ov in overrides or []:
        if "=" not in ov or "." not in ov.split("=", 1)[0]:
            raise ConfigError(f"override {ov!r} must look like section.key=value")
        key, val = ov.split("=", 1)
        sec, k = key.split(".", 1)
        check_config({sec: {k: None}}, f"override {ov!r}")
        try:
            parsed = tomllib.loads(f"v = {val}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = val
        check_types({sec: {k: parsed}}, f"override {ov!r}")
        cfg.setdefault(sec, {})[k] = parsed
    check_config(cfg, f"preset {preset!r}")
    check_types(cfg, f"preset {preset!r}")
    return cfg


def dump_toml(cfg: dict) -> str:
    """Write a config back as TOML (flat sections of scalars and lists), for the run folder's record."""

    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    lines = []
    for sec, vals in cfg.items():
        lines.append(f"[{sec}]")
        for k, v in vals.items():
            lines.append(f"{k} = {fmt(v)}")
        lines.append("")
    return "\n".join(lines)
