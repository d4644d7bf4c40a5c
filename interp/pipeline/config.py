"""The main job's settings: one TOML file, presets shipped with the package, overrides from the command line.

Defaults are the seed study's values (GRPO lr 5e-6, beta 0.04, temperature 1.3, 8 generations, 500 steps,
lambda in {0, 0.5, 1.5} plus an lr 1e-6 control, alphas -8..8)."""

from __future__ import annotations

import sys
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from interp.errors import InterpError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESETS = ("default", "quick", "test", "qwen3b", "real")


def _read_toml(name: str) -> dict[str, Any]:
    """One shipped TOML file of ``interp/pipeline/configs``."""
    return tomllib.loads(resources.files("interp.pipeline.configs").joinpath(f"{name}.toml").read_text())


def load_preset(name: str) -> dict[str, Any]:
    """A preset merged over the defaults ('default' is the seed's full settings), not yet validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    base = _read_toml("default")
    return base if name == "default" else _overlay(base, _read_toml(name))


def _overlay(base: dict, over: dict) -> dict:
    """``over``'s sections laid over ``base``'s, key by key (sections are flat tables)."""
    out = {sec: dict(vals) for sec, vals in base.items()}
    for sec, vals in over.items():
        out[sec] = {**out.get(sec, {}), **vals} if isinstance(vals, dict) and isinstance(out.get(sec), dict) else vals
    return out


class ConfigError(InterpError, ValueError):
    """An unknown section or key, or a value of the wrong type, in a config file or a ``--set`` override."""


# ------------------------------------------------------------------------------------------- the typed config
# Every key of default.toml is required here (default.toml holds the defaults, and every preset is laid over it);
# the few keys that default.toml leaves out (steer.units, the TrainConfig fields [rl] passes through) have
# defaults and are written back only when set, so a run folder's config and stage hashes stay as they were.


class Section(BaseModel):
    """One table of the config: unknown keys are refused, and values are not coerced (TOML values are typed)."""

    model_config = ConfigDict(extra="forbid", strict=True)


NonNeg = Annotated[int, Field(ge=0)]


class RunSection(Section):
    model: str
    out: str
    seed: NonNeg
    device: str
    dtype: str
    stages: list[str]
    preset: str | None = None  # written by ``interp run`` into the run folder's config.toml


class DataSection(Section):
    split_seed: NonNeg
    dev_frac: float
    categories: list[str]
    limit_dev: NonNeg
    limit_train: NonNeg


class EvalSection(Section):
    """The evaluation settings of every stage that evaluates; checked by :class:`interp.eval.evaluate.EvalConfig`."""

    mode: str
    batch_size: Annotated[int, Field(ge=1)]
    n_boot: NonNeg

    @model_validator(mode="after")
    def _check(self) -> "EvalSection":
        from interp.eval.evaluate import EvalConfig

        EvalConfig(mode=self.mode, batch_size=self.batch_size)  # its own checks, one definition
        return self


class CacheSection(Section):
    hooks: list[str]
    layers: str | int | list[int]
    positions: str | int | list[int]
    dtype: str
    batch_size: Annotated[int, Field(ge=1)]


class ProbeSection(Section):
    """Probe settings; ``folds`` and ``n_boot`` become :class:`interp.methods.probes.ProbeConfig`'s n_splits and n_boot."""

    condition: Literal["all", "ambig", "disambig"]
    split: Literal["train", "dev"]
    folds: Annotated[int, Field(ge=2)]
    fold_seeds: Annotated[int, Field(ge=1)]
    n_boot: NonNeg


class SteerSection(Section):
    alphas: list[float]
    layer: int
    directions: list[str]
    units: str = "sigma"  # alpha per: one of interp.methods.steering.UNITS

    @field_validator("units")
    @classmethod
    def _units(cls, v: str) -> str:
        from interp.methods.steering import UNITS

        if v not in UNITS:
            raise ValueError(f"must be one of {', '.join(map(repr, UNITS))}")
        return v


class PatchSection(Section):
    pairs: list[str]
    limit: NonNeg
    hooks: list[str]
    positions: str | list[str]
    attribution: bool
    batch_size: Annotated[int, Field(ge=1)]
    adapter_lam: float
    diff_threshold: float


class RmSection(Section):
    """The RM study: the RM organism (``small`` picks the small one) and, when ``backbone`` names a shipped
    backbone RM (``rm-smollm2``), the same study on it with its pair counts, side by side in the report."""

    enabled: bool
    small: bool
    backbone: str = ""  # "" = the organism only
    backbone_n_val: Annotated[int, Field(ge=4)] = 40
    backbone_n_test_per_split: Annotated[int, Field(ge=2)] = 30

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        from interp.organisms.rm_backbone import SHIPPED_BACKBONE_RMS

        if v and v not in SHIPPED_BACKBONE_RMS:
            raise ValueError(f"must be \"\" or one of {', '.join(map(repr, SHIPPED_BACKBONE_RMS))}")
        return v


class ReportSection(Section):
    seed_csv: str


# [rl] keys the sweep sets per run itself; every other rl.train.TrainConfig field may be set in [rl]
_RL_SET_BY_SWEEP = {"model", "out_dir", "lam", "device", "dtype", "progress", "resume", "bbq_dir", "templates_dir",
                    "split_file", "dev_frac", "split_seed", "categories", "limit", "seed"}
# bounds on TrainConfig fields checked here, before any stage runs (TrainConfig.validate checks them again)
_RL_BOUNDS = {"steps": 1, "save_steps": 1, "batch_size": 1, "num_generations": 2, "lora_r": 1, "lora_alpha": 1,
              "grad_accum": 1, "max_completion_length": 1, "logging_steps": 1}


def _rl_fields() -> dict[str, Any]:
    import dataclasses

    from rl.train import SCALE_REWARDS, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in _RL_SET_BY_SWEEP:
            continue
        typ = hints[f.name]
        if f.name in _RL_BOUNDS:
            typ = Annotated[typ, Field(ge=_RL_BOUNDS[f.name])]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = (typ, default)
    scaling = Literal[SCALE_REWARDS]  # type: ignore[valid-type]
    out.update(  # the sweep's own keys: one entry per run, or per sweep
        lams=(list[Annotated[float, Field(ge=0)]], ...), lr=(Annotated[float, Field(gt=0)], ...),
        control_lr=(Annotated[float, Field(ge=0)], ...), steps=(Annotated[int, Field(ge=1)], ...),
        scale_rewards=(list[scaling], ...), replicate_seeds=(list[NonNeg], ...),
        replicate_scalings=(list[scaling], ...))
    first = [k for k in _read_toml("default")["rl"] if k in out]  # default.toml's order, so dumps read the same
    return {k: out[k] for k in first + [k for k in out if k not in first]}


RlSection = create_model("RlSection", __base__=Section, __doc__="The GRPO sweep's settings.", **_rl_fields())


class PipelineConfig(BaseModel):
    """The whole job's settings, one typed section per table of default.toml."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run: RunSection
    data: DataSection
    eval: EvalSection
    rl: RlSection  # type: ignore[valid-type]
    cache: CacheSection
    probe: ProbeSection
    steer: SteerSection
    patch: PatchSection
    rm: RmSection
    report: ReportSection


_WANTS = {"int_type": "an integer", "float_type": "a number", "bool_type": "a boolean", "string_type": "a string",
          "list_type": "a list", "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
          "literal_error": "one of {expected}", "greater_than_equal": ">= {ge}", "greater_than": "> {gt}"}


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _unknown(where: str, kind: str, name: str, valid) -> ConfigError:
    import difflib

    close = difflib.get_close_matches(name, sorted(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(valid))}"
    return ConfigError(f"{where}: unknown {kind} {name!r}{hint}")


def _config_error(err: ValidationError, cfg: dict, where: str) -> ConfigError:
    """The first problem of a failed validation as one line naming the key, the type it wants and the default."""
    e = err.errors(include_url=False)[0]
    loc = [x for x in e["loc"]]
    sec = loc[0] if loc else None
    fields = PipelineConfig.model_fields
    if e["type"] == "extra_forbidden" and len(loc) == 1:
        return _unknown(where, "section", str(sec), fields)
    model = fields[sec].annotation if sec in fields else None
    if e["type"] == "extra_forbidden" and len(loc) == 2 and model is not None:
        return _unknown(where, f"key in [{sec}]:", str(loc[1]), model.model_fields)
    if len(loc) == 1 and e["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return ConfigError(f"{where}: [{sec}] must be a table of settings")
    if len(loc) < 2:
        return ConfigError(f"{where}: [{sec}]: {e['msg'].removeprefix('Value error, ')}")
    key = loc[1]
    name = f"{sec}.{key}"
    if e["type"] == "missing":
        return ConfigError(f"{where}: {name} is missing")
    got = cfg.get(sec, {}).get(key)
    if e["type"] == "value_error":
        return ConfigError(f"{where}: {name} {e['msg'].removeprefix('Value error, ')}, got {got!r}")
    default = _read_toml("default").get(sec, {}).get(key)
    like = f" like {default!r}" if default is not None else ""
    # every alternative of a union (loc[2] names the member type), or one item of a list (loc[2] is its index)
    mine = [x for x in err.errors(include_url=False) if tuple(x["loc"][:2]) == (sec, key)]
    wants = list(dict.fromkeys(_WANTS.get(x["type"], x["msg"]).format(**x.get("ctx", {})) for x in mine))
    if len(loc) > 2 and isinstance(loc[2], int) and len(mine) == 1:
        items = f"{wants[0].split()[-1]}s" if wants[0].split()[0] in ("a", "an") else f"items each {wants[0]}"
        return ConfigError(f"{where}: {name} must be a list of {items}{like}, got {got!r}")
    if e["type"] in ("greater_than_equal", "greater_than"):
        return ConfigError(f"{where}: {name} must be {wants[0]}, got {got!r}")
    return ConfigError(f"{where}: {name} must be {' or '.join(wants)}{like}, got {got!r} ({_type_name(got)})")


def validate_config(cfg: dict, where: str = "config") -> PipelineConfig:
    """The typed config, or a :class:`ConfigError` naming the first bad section, key or value."""
    try:
        return PipelineConfig.model_validate(cfg)
    except ValidationError as e:
        raise _config_error(e, cfg, where) from None


def as_dict(cfg: PipelineConfig) -> dict:
    """The settings as plain tables: what was set (the preset, a file, overrides), not the defaults of keys left out."""
    return cfg.model_dump(mode="json", exclude_unset=True)


def section(cfg: dict, name: str) -> Section:
    """One section of a loaded config as its typed model, defaults of keys left out filled in."""
    return PipelineConfig.model_fields[name].annotation.model_validate(cfg[name])


def _read_user_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} not found")
    if p.is_dir():
        raise IsADirectoryError(f"config file {p} is a folder, not a TOML file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None


def _parse_override(ov: str) -> dict:
    """``section.key=value`` as {section: {key: value}}, the value read as TOML (a bare word stays a string)."""
    if "=" not in ov or "." not in ov.split("=", 1)[0]:
        raise ConfigError(f"override {ov!r} must look like section.key=value")
    key, val = ov.split("=", 1)
    sec, k = key.split(".", 1)
    try:
        parsed = tomllib.loads(f"v = {val}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = val
    return {sec.strip(): {k.strip(): parsed}}


def load_config(path: str | Path | None = None, preset: str = "default", overrides: list[str] | None = None) -> dict:
    """Preset, then a user TOML file, then ``section.key=value`` overrides (values parsed as TOML), each layer
    validated by :class:`PipelineConfig`: an unknown section or key, or a value of the wrong type, is a
    :class:`ConfigError` naming it (and the closest valid key, or the type it wants). Returns plain tables."""
    cfg = as_dict(validate_config(load_preset(preset), f"preset {preset!r}"))
    layers = [(_read_user_toml(path), str(path))] if path else []
    layers += [(_parse_override(ov), f"override {ov!r}") for ov in overrides or []]
    for over, where in layers:
        cfg = as_dict(validate_config(_overlay(cfg, over), where))
    return cfg


def dump_toml(cfg: dict) -> str:
    """Write a config back as TOML (flat sections of scalars and lists), for the run folder's record."""

    def fmt(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{fmt(str(k))} = {fmt(x)}" for k, x in v.items()) + "}"
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
