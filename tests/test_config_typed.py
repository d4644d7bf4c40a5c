"""The typed pipeline config (pydantic, extra keys forbidden): wrong types named through the CLI, steer.units
reaching its stage, presets unchanged by validation, old run folders still loading, and TRL's GRPOConfig built
from TrainConfig without a hand copy."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from interp.pipeline.config import PRESETS, ConfigError, dump_toml, load_config, load_preset

OLD_RUN = Path(__file__).parent / "fixtures" / "old_run"  # written by interp at e3b54d8, before the typed config


@pytest.mark.parametrize("override, fragment", [
    ("rl.steps=abc", "rl.steps must be an integer like 500, got 'abc'"),
    ("rl.lr=true", "rl.lr must be a number like 5e-06, got True (a boolean)"),
    ("steer.units=\"sigmaa\"", "steer.units must be one of 'unit', 'sigma', 'raw', got 'sigmaa'"),
    ("cache.layers=1.5", "cache.layers must be a string or an integer or a list like 'all', got 1.5"),
    ("rl.scale_rewards=[\"nope\"]", "rl.scale_rewards must be a list of items each one of 'group', 'batch' or 'none'"),
    ("rl.extra=3", "rl.extra must be a table, got 3"),
    ("eval.mode=\"foo\"", "[eval]: mode must be one of ('logits', 'generate'"),
])
def test_cli_refuses_a_wrong_type_by_name(tmp_path, override, fragment, monkeypatch):
    from interp.cli import main

    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    res = CliRunner().invoke(main, ["run", "--preset", "test", "--set", override, "--out", str(tmp_path / "run")])
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "Traceback" not in out, out
    assert f"ConfigError: override '{override}': {fragment}" in out, out
    assert not (tmp_path / "run").exists()


def test_presets_are_unchanged_by_validation():
    """Every preset loads to exactly its TOML tables (default.toml under the preset): no key added, dropped or
    retyped, so run folders' stage hashes stay as they were."""
    for p in PRESETS:
        cfg = load_config(preset=p)
        assert cfg == load_preset(p)
        assert "units" not in cfg["steer"] and "extra" not in cfg["rl"]  # defaults of keys left out are not written


def test_an_int_where_a_number_is_wanted_becomes_a_float():
    cfg = load_config(preset="quick", overrides=["rl.lr=1", "steer.alphas=[-1, 0, 2]"])
    assert cfg["rl"]["lr"] == 1.0 and isinstance(cfg["rl"]["lr"], float)
    assert cfg["steer"]["alphas"] == [-1.0, 0.0, 2.0] and all(isinstance(a, float) for a in cfg["steer"]["alphas"])


def test_steer_units_is_settable_and_reaches_the_stage(tmp_path, monkeypatch):
    """steer.units set with --set arrives at direction_vector inside the steer stage (default: sigma)."""
    import interp.methods.directions as directions
    import interp.methods.steering as steering
    import interp.models.loading as loading
    from interp.pipeline import stages
    from interp.pipeline.runner import Context

    class Reached(Exception):
        pass

    seen = []

    def fake_vector(d, units="unit"):
        seen.append(units)
        raise Reached

    monkeypatch.setattr(stages, "items_for", lambda ctx, part: ([], None))
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: None)
    monkeypatch.setattr(directions, "load_direction", lambda *a, **k: None)
    monkeypatch.setattr(steering, "direction_vector", fake_vector)
    for overrides, want in ((["steer.units=\"raw\""], "raw"), (["steer.units=\"unit\""], "unit"), ([], "sigma")):
        cfg = load_config(preset="test", overrides=["steer.layer=0", *overrides])
        ctx = Context(cfg, tmp_path, outputs={"directions": {"directions": "unused"}}, log=lambda m: None)
        with pytest.raises(Reached):
            stages.stage_steer(ctx)
        assert seen[-1] == want


def test_run_folder_config_round_trips(tmp_path):
    """A run folder's config.toml (with rl.extra, a table) loads back as --config to the same settings."""
    cfg = load_config(preset="quick", overrides=["rl.extra={warmup_steps = 2}", "steer.units=\"raw\""])
    cfg["run"]["preset"] = "quick"
    f = tmp_path / "config.toml"
    f.write_text(dump_toml(cfg))
    assert load_config(f, preset="default") == cfg


def test_old_run_folders_still_load(tmp_path):
    """config.toml and an rl run's run_config.json written before the typed config are still read: the config
    loads as --config to the quick preset's settings, and resuming the rl run checks its saved settings."""
    from rl.train import TrainConfig, _check_resume

    cfg = load_config(OLD_RUN / "config.toml", preset="default")
    quick = load_config(preset="quick")
    assert cfg == {**quick, "run": {**quick["run"], "preset": "quick"}}

    run = tmp_path / "lam0"
    run.mkdir()
    (run / "run_config.json").write_text((OLD_RUN / "run_config.json").read_text())
    saved = json.loads((OLD_RUN / "run_config.json").read_text())["config"]
    same = TrainConfig(**{**saved, "out_dir": str(run)})
    _check_resume(same, run)  # the same settings resume
    with pytest.raises(ValueError, match=r"lr: saved 0.0003 vs now 0.001"):
        _check_resume(TrainConfig(**{**saved, "out_dir": str(run), "lr": 1e-3}), run)


def test_unknown_keys_are_refused_in_every_section():
    for sec in load_preset("default"):
        with pytest.raises(ConfigError, match=rf"unknown key in \[{sec}\]: 'nosuch'"):
            load_config(overrides=[f"{sec}.nosuch=1"])


def test_grpo_config_takes_train_config_fields_by_name():
    """Every TrainConfig field that TRL's GRPOConfig declares reaches it (under TRL's name where it differs), then
    the fixed settings, then ``extra``."""
    pytest.importorskip("trl")
    import dataclasses

    from trl import GRPOConfig

    from rl.train import GRPO_NAMES, TrainConfig, grpo_config

    cfg = TrainConfig(out_dir="runs/x", lr=3e-4, steps=7, batch_size=6, grad_accum=2, num_generations=3,
                      temperature=0.7, beta=0.02, save_steps=3, seed=11, loss_type="dr_grpo", scale_rewards="none",
                      progress=False, extra={"warmup_steps": 2})
    args = grpo_config(cfg, on_cpu=True, bf16=False)
    trl = {f.name for f in dataclasses.fields(GRPOConfig)}
    passed = [k for k in dataclasses.asdict(cfg) if GRPO_NAMES.get(k, k) in trl]
    assert set(GRPO_NAMES) <= set(passed) and {"beta", "temperature", "num_generations", "seed"} <= set(passed)
    for k in passed:
        want = [] if (k, getattr(cfg, k)) == ("report_to", "none") else getattr(cfg, k)  # TRL's spelling of none
        assert getattr(args, GRPO_NAMES.get(k, k)) == want, k
    assert (args.learning_rate, args.max_steps, args.per_device_train_batch_size) == (3e-4, 7, 6)
    assert args.warmup_steps == 2 and args.data_seed == 11 and args.disable_tqdm and args.use_cpu
