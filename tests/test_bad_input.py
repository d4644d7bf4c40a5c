"""Bad input, as a careless user types it: each case must end in one named error line (no traceback) and
leave what was already written alone. One row per case: the command, and a fragment the error must contain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from interp.models.backends import as_lm


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_lm_dir, fixture_bbq_dir):
    """Folders and files the cases point at."""
    root = tmp_path_factory.mktemp("bad")
    corrupt = root / "corrupt_model"
    shutil.copytree(tiny_lm_dir, corrupt)
    w = corrupt / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])  # truncated
    seqcls = root / "seqcls"
    shutil.copytree(tiny_lm_dir, seqcls)
    cfg = json.loads((seqcls / "config.json").read_text())
    (seqcls / "config.json").write_text(json.dumps(dict(cfg, architectures=["Qwen2ForSequenceClassification"])))
    noconfig = root / "noconfig"
    noconfig.mkdir()
    (noconfig / "model.safetensors").write_bytes(b"x")
    adapter = root / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{not json")
    data = root / "data"
    shutil.copytree(fixture_bbq_dir, data)
    latin = root / "latin1"
    latin.mkdir()
    src = next(data.glob("*.jsonl"))
    (latin / src.name).write_bytes(src.read_bytes().replace(b"a", "\u00e9".encode("latin-1"), 1))
    empty = root / "emptycat"
    shutil.copytree(data, empty)
    next(empty.glob("*.jsonl")).write_text("")
    nullctx = root / "nullctx"
    nullctx.mkdir()
    lines = src.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["context"] = None
    (nullctx / src.name).write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    empty_preds = root / "empty.jsonl"
    empty_preds.write_text("")
    dup_preds = root / "dup.jsonl"
    first = dict(json.loads(src.read_text().splitlines()[0]), prediction=0)
    dup_preds.write_text(json.dumps(first) + "\n" + json.dumps(first) + "\n")
    good_preds = root / "good.jsonl"
    good_preds.write_text(json.dumps(first) + "\n")
    adir = root / "adir"  # an existing folder with something in it
    adir.mkdir()
    (adir / "keep.txt").write_text("mine")
    afile = root / "afile.txt"  # an existing file
    afile.write_text("mine")
    tpl_latin = root / "tpl_latin"
    shutil.copytree(fixture_bbq_dir.parent / "templates", tpl_latin)
    age = tpl_latin / "Age.csv"
    age.write_bytes(age.read_bytes().replace(b"old", "\u00e2g\u00e9".encode("latin-1"), 1))
    other_split = root / "other_split.json"  # a split of categories these data do not have
    other_split.write_text(json.dumps({"seed": 0, "dev_frac": 0.2, "train_templates": [["Nationality", "1"]],
                                       "dev_templates": [["Nationality", "2"]]}))
    base_empty = root / "adapter_base_empty"  # an interp adapter whose base record is empty
    base_empty.mkdir()
    (base_empty / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_lm_dir),
                                                                "peft_type": "LORA"}))
    (base_empty / "interp_base.json").write_text("")
    other_base = root / "other" / tiny_lm_dir.name  # another model in a folder of the same name
    shutil.copytree(tiny_lm_dir, other_base)
    w = other_base / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 1  # one weight byte differs: same shapes, other weights
    w.write_bytes(bytes(raw))
    foreign_adapter = root / "adapter_foreign"  # a plain PEFT adapter trained on that other model
    foreign_adapter.mkdir()
    (foreign_adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(other_base),
                                                                     "peft_type": "LORA"}))
    no_weights = root / "adapter_no_weights"  # a well-formed adapter folder without its weights
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_lm_dir),
                                                                "peft_type": "LORA"}))
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"good answer {i}", "rejected": f"bad {i}"})
                             + "\n" for i in range(6)))
    same_pairs = root / "same_pairs.jsonl"
    same_pairs.write_text(json.dumps({"prompt": "q", "chosen": "same", "rejected": "same"}) + "\n")
    (root / "steps_ten.toml").write_text('[rl]\nsteps = "ten"\n')
    (root / "nboot_list.toml").write_text("[eval]\nn_boot = [1, 2]\n")
    (root / "binary.toml").write_bytes(bytes(range(256)))
    return dict(root=root, tiny=str(tiny_lm_dir), corrupt=str(corrupt), seqcls=str(seqcls), noconfig=str(noconfig),
                adapter=str(adapter), data=str(data), latin=str(latin), empty=str(empty), nullctx=str(nullctx),
                empty_preds=str(empty_preds), dup_preds=str(dup_preds), good_preds=str(good_preds), adir=str(adir),
                afile=str(afile), tpl_latin=str(tpl_latin), other_split=str(other_split), base_empty=str(base_empty),
                foreign_adapter=str(foreign_adapter), no_weights=str(no_weights), pairs=str(pairs),
                same_pairs=str(same_pairs))


EVAL = ["eval", "--bbq-dir", "{data}", "--device", "cpu", "--n-boot", "10", "--out", "{root}/ev"]
CASES = [
    # (program, args, fragment of the error)
    ("interp", ["eval", "--model", "/no/such/model", "--bbq-dir", "{data}"], "no model at /no/such/model"),
    ("interp", ["eval", "--model", "./missing-folder", "--bbq-dir", "{data}"], "folder does not exist"),
    ("interp", [*EVAL, "--model", "{corrupt}"], "cannot load model"),
    ("interp", [*EVAL, "--model", "{seqcls}"], "not a causal LM"),
    ("interp", [*EVAL, "--model", "{noconfig}"], "no config.json"),
    ("interp", [*EVAL, "--model", "{tiny}", "--adapter", "{adapter}"], "adapter"),
    ("interp", [*EVAL, "--model", "{tiny}", "--batch-size", "-3"], "Invalid value for '--batch-size'"),
    ("interp", [*EVAL, "--model", "{tiny}", "--limit", "0"], "Invalid value for '--limit'"),
    ("interp", [*EVAL, "--model", "{tiny}", "--n-boot", "-5"], "Invalid value for '--n-boot'"),
    ("interp", [*EVAL, "--model", "{tiny}", "--device", "cuda:7"], "GPU"),
    ("interp", [*EVAL, "--model", "{tiny}", "--categories", "Nope"], "Nope"),
    ("interp", ["eval", "--model", "{tiny}", "--bbq-dir", "{latin}", "--device", "cpu"], "not UTF-8"),
    ("interp", ["eval", "--model", "{tiny}", "--bbq-dir", "{empty}", "--device", "cpu"], "empty category file"),
    ("interp", ["eval", "--model", "{tiny}", "--bbq-dir", "{nullctx}", "--device", "cpu"],
     "field context must be non-empty text"),
    ("interp", ["cache", "--model", "{tiny}", "--bbq-dir", "{data}", "--device", "cpu", "--layers", "2-1",
                "--out", "{root}/c.h5"], "runs backwards"),
    ("interp", ["cache", "--model", "{tiny}", "--bbq-dir", "{data}", "--device", "cpu", "--layers", "9",
                "--out", "{root}/c9.h5"], "out of range"),
    ("interp", ["run", "--preset", "test", "--set", "rl.stpes=80", "--out", "{root}/run"], "did you mean 'steps'"),
    ("interp", ["run", "--preset", "test", "--set", "nosuch.x=1", "--out", "{root}/run"], "unknown section"),
    ("interp", ["organism", "build", "--small", "--out", "{data}", "--bbq-dir", "{data}"],
     "non-empty folder that holds no organism"),
    ("interp", ["score", "--predictions", "{empty_preds}", "--out", "{root}/s.csv"], "no predictions"),
    ("interp", ["score", "--predictions", "{dup_preds}", "--out", "{root}/s.csv"], "again (first at line 1)"),
    ("interp", ["steer", "--model", "{tiny}", "--bbq-dir", "{data}", "--device", "cpu", "--layer", "0",
                "--alphas", "1,two"], "'two' is not a valid float"),
    ("rl", ["sweep", "--model", "{tiny}", "--bbq-dir", "{data}", "--lams", "0,x", "--out", "{root}/sw"],
     "Invalid value for --lams: 'x' is not a valid float"),
    ("rl", ["sweep", "--model", "{tiny}", "--bbq-dir", "{data}", "--replicate-seeds", "1,2.5",
            "--out", "{root}/sw"], "'2.5' is not a valid int"),
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--lr", "nan", "--out", "{root}/r"],
     "lr must be a finite number"),
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--temperature", "0", "--out", "{root}/r"],
     "temperature must be > 0"),
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--lora-r", "0", "--out", "{root}/r"],
     "lora_r must be >= 1"),
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--grad-accum", "0", "--out", "{root}/r"],
     "grad_accum must be >= 1"),
    # issue 27: interp data
    ("interp", ["data", "split", "--bbq-dir", "{data}", "--out", "{adir}"], "IsADirectoryError: "),
    ("interp", ["data", "info", "--bbq-dir", "{data}", "--templates-dir", "{tpl_latin}"],
     "BBQDataError: {tpl_latin}/Age.csv: not UTF-8 text"),
    ("interp", ["data", "info", "--bbq-dir", "{data}", "--split-file", "{other_split}"],
     "InputError: split file {other_split} selects no dev item: it names templates of ['Nationality']"),
    ("interp", ["data", "info", "--bbq-dir", "{data}", "--split-file", "{adir}"],
     "IsADirectoryError: split file {adir} is a folder"),
    # interp eval
    ("interp", [*EVAL, "--model", "{tiny}", "--max-new-tokens", "0"], "Invalid value for '--max-new-tokens'"),
    ("interp", [*EVAL, "--model", "{tiny}", "--max-new-tokens", "-2"], "Invalid value for '--max-new-tokens'"),
    ("interp", [*EVAL, "--model", "{tiny}", "--out", "{afile}"], "OutputDirError: --out {afile} is a file"),
    ("interp", [*EVAL, "--model", "{tiny}", "--adapter", "{base_empty}"],
     "ModelLoadError: adapter {base_empty}: interp_base.json is not a base record"),
    ("interp", [*EVAL, "--model", "{tiny}", "--adapter", "{foreign_adapter}"],
     "ModelLoadError: adapter {foreign_adapter} was trained on a base with weights hash sha256:"),
    ("interp", [*EVAL, "--model", "{tiny}", "--adapter", "{no_weights}"],
     "ModelLoadError: adapter {no_weights} has no weights (adapter_model.safetensors or adapter_model.bin)"),
    ("interp", [*EVAL, "--model", "{tiny}/model.safetensors"],
     "ModelLoadError: {tiny}/model.safetensors is a file, not a model: give the folder"),
    ("interp", [*EVAL, "--model", "{afile}.gguf"], "GGUFError: no GGUF file at {afile}.gguf"),
    ("interp", [*EVAL, "--model", "{tiny}/config.json", "--mode", "options"],
     "ModelLoadError: {tiny}/config.json is a file, not a model"),
    # interp score
    ("interp", ["score", "--predictions", "{good_preds}", "--out", "{adir}"], "IsADirectoryError: {adir} is a folder"),
    ("interp", ["score", "--predictions", "{good_preds}", "--templates-dir", "/no/such/templates", "--out",
                "{root}/s.csv"], "FileNotFoundError: templates folder /no/such/templates does not exist"),
    # interp steer
    ("interp", ["steer", "--model", "{tiny}", "--bbq-dir", "{data}", "--device", "cpu", "--layer", "0",
                "--alphas", "1,,2"], "Invalid value for --alphas: '1,,2' has an empty item"),
    # rl train: validated before anything is written (no run folder is left behind)
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--target-modules", "foo", "--out", "{root}/r"],
     "InputError: target_modules ['foo'] match no module"),
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--loss-type", "foo", "--out", "{root}/r"],
     "InputError: loss_type must be one of"),
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--lr-scheduler", "foo", "--out", "{root}/r"],
     "InputError: lr_scheduler must be one of"),
    ("rl", ["train", "--model", "{tiny}", "--bbq-dir", "{data}", "--out", "{afile}"],
     "FileExistsError: --out {afile} is a file"),
    # interp rm
    ("interp", ["rm", "debias", "--rm", "{tiny}", "--data", "{pairs}", "--attributes", "foo", "--out", "{root}/rmo"],
     "InputError: unknown attribute(s) ['foo']"),
    ("interp", ["rm", "debias", "--rm", "{tiny}", "--data", "{pairs}", "--limit", "0", "--out", "{root}/rmo"],
     "Invalid value for '--limit'"),
    ("interp", ["rm", "debias", "--rm", "{tiny}", "--data", "{pairs}", "--n-sensitivity", "0", "--out", "{root}/rmo"],
     "Invalid value for '--n-sensitivity'"),
    ("interp", ["rm", "debias", "--rm", "{tiny}", "--data", "{same_pairs}", "--out", "{root}/rmo"],
     "PreferenceDataError: {same_pairs}:1: chosen and rejected are the same text"),
    # interp run and TOML configs: type-checked when read, for every stage
    ("interp", ["run", "--preset", "test", "--set", "rl.steps=abc", "--out", "{root}/run"],
     "ConfigError: override 'rl.steps=abc': rl.steps must be an integer"),
    ("interp", ["run", "--preset", "test", "--set", "eval.n_boot=abc", "--out", "{root}/run"],
     "eval.n_boot must be an integer"),
    ("interp", ["run", "--preset", "test", "--config", "{root}/steps_ten.toml", "--out", "{root}/run"],
     "rl.steps must be an integer like 500, got 'ten'"),
    ("interp", ["run", "--preset", "test", "--config", "{root}/nboot_list.toml", "--out", "{root}/run"],
     "eval.n_boot must be an integer like 1000, got [1, 2]"),
    ("interp", ["run", "--preset", "test", "--set", "data.limit_dev=-5", "--out", "{root}/run"],
     "data.limit_dev must be >= 0, got -5"),
    ("interp", ["run", "--preset", "test", "--config", "{root}/binary.toml", "--out", "{root}/run"],
     "not a TOML file (not UTF-8 text)"),
]


def _snapshot(root) -> dict:
    """Every path under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("prog, args, fragment", CASES, ids=[f"{p} {' '.join(a[:1] + a[-3:-2])} {f}"[:60]
                                                               for p, a, f in CASES])
def test_bad_input_is_one_named_error(bad, prog, args, fragment, monkeypatch):
    if prog == "interp":
        from interp.cli import main
    else:
        from rl.cli import main
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    before = _snapshot(bad["root"])
    res = CliRunner().invoke(main, [a.format(**bad) for a in args])
    out = " ".join(res.output.split())  # click wraps long usage errors
    assert res.exit_code in (1, 2), out  # 2: a usage error click names; 1: the toolkit's named error
    assert "Traceback" not in out, out
    assert " ".join(fragment.format(**bad).split()) in out, out
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # click's error exit, not a crash
    assert _snapshot(bad["root"]) == before  # nothing written, nothing already there changed


@pytest.mark.parametrize("vec, alpha, match", [
    ("nan", 1.0, "NaN or inf"), ("inf", 1.0, "NaN or inf"), ("ok", float("nan"), "alpha must be a finite number"),
    ("ok", float("inf"), "alpha must be a finite number"),
])
def test_steering_refuses_nan_and_inf(tiny_lm, vec, alpha, match):
    """A NaN direction or alpha would give NaN logits that logits mode scores as 'A'."""
    import torch

    from interp.methods.steering import SteeringError, steer

    d = tiny_lm.model.config.hidden_size
    v = torch.ones(d)
    if vec != "ok":
        v[3] = float(vec)
    with pytest.raises(SteeringError, match=match):
        steer(tiny_lm, v, 0, alpha)


def test_prompts_longer_than_the_model_warn(tiny_lm_dir, fixture_items, tmp_path):
    import json
    import shutil

    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.models.loading import load_model

    short = tmp_path / "short"
    shutil.copytree(tiny_lm_dir, short)
    cfg = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps(dict(cfg, max_position_embeddings=16)))
    lm = load_model(str(short), device="cpu", dtype="float32")
    with pytest.warns(UserWarning, match="but the model has 16 positions"):
        evaluate_items(as_lm(lm.model, lm.tokenizer), fixture_items[:2], EvalConfig(progress=False))


def test_a_budget_that_selects_no_neuron_warns():
    import numpy as np

    from interp.rm.neurons import select_neurons

    corr = np.full((2, 1, 10), 0.5)  # [attributes, layers, d_mlp]
    with pytest.warns(UserWarning, match="no neuron selected"):
        sel = select_neurons(corr, ["length", "bold"], budget_frac=0.01)
    assert sel.neurons == []


def test_a_read_only_eval_out_is_named_before_the_model_runs(readonly_dir, tiny_lm_dir, fixture_bbq_dir, monkeypatch):
    from interp.cli import main

    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    res = CliRunner().invoke(main, ["eval", "--model", str(tiny_lm_dir), "--bbq-dir", str(fixture_bbq_dir),
                                    "--device", "cpu", "--n-boot", "10", "--out", str(readonly_dir / "ev")])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert f"Error: OutputDirError: --out {readonly_dir / 'ev'} cannot be written" in res.output
    assert list(readonly_dir.iterdir()) == []


def test_an_empty_template_csv_warns_in_one_line_and_says_what_was_done(tmp_path, fixture_bbq_dir, monkeypatch):
    """Legal but suspicious: Age's items lose their template target (and are counted without one); Religion's
    keep theirs."""
    import os
    import subprocess
    import sys

    from interp.data.bbq import load_bbq

    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    tpl = tmp_path / "tpl"
    shutil.copytree(fixture_bbq_dir.parent / "templates", tpl)
    (tpl / "Age.csv").write_text("")
    # a real process: pytest records warnings instead of printing them
    res = subprocess.run([sys.executable, "-m", "interp.cli", "data", "info", "--bbq-dir", str(fixture_bbq_dir),
                          "--templates-dir", str(tpl)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Warning: UserWarning: ") and "Age.csv has no template rows" in \
        lines[0] and "count as without one" in lines[0], res.stderr
    with pytest.warns(UserWarning, match="Age.csv has no template rows"):
        items, report = load_bbq(fixture_bbq_dir, templates_dir=tpl)
    n_age = sum(it.category == "Age" for it in items)
    assert report.no_target.get("Age") == n_age > 0
    _, full = load_bbq(fixture_bbq_dir, templates_dir=fixture_bbq_dir.parent / "templates")
    assert report.no_target.get("Religion", 0) == full.no_target.get("Religion", 0)


def test_from_pos_past_the_prompt_warns_and_steers_nothing(tiny_lm, fixture_items):
    """--from-pos 99999: no prompt position is steered (alpha 2 equals alpha 0), and a warning says so."""
    import torch

    from interp.eval.evaluate import encode_batch, render_prompts
    from interp.data.prompts import make_prompt
    from interp.methods.steering import steer

    tok = tiny_lm.tokenizer
    tok.padding_side = "left"
    enc = encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in fixture_items[:4]]), "cpu",
                       as_lm(tiny_lm))
    v = torch.ones(tiny_lm.model.config.hidden_size)
    with torch.no_grad():
        plain = tiny_lm.model(**enc).logits
        with pytest.warns(UserWarning, match="from_pos 99999 is past the end of the .*-position prompt batch"):
            with steer(tiny_lm, v, 0, 2.0, from_pos=99999, normalize=False):
                far = tiny_lm.model(**enc).logits
        with steer(tiny_lm, v, 0, 2.0, from_pos=-1, normalize=False):
            last = tiny_lm.model(**enc).logits
    assert torch.equal(far, plain)
    assert not torch.allclose(last[:, -1], plain[:, -1])  # the check can fail: a real position is steered


def test_directions_are_matched_to_their_base_by_weights_fingerprint(tmp_path, tiny_lm_dir):
    """A directions file built on other weights is refused even when the model folder has the same name; the
    same weights under another folder name are accepted."""
    import torch

    from interp.methods.directions import (Direction, DirectionError, DirectionSet, check_directions_base,
                                           load_directions, model_weights_hash)

    d = Direction("stereotype", "blocks.0.hook_resid_post", 0, torch.ones(4))
    other = tmp_path / "other" / tiny_lm_dir.name
    shutil.copytree(tiny_lm_dir, other)
    w = other / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 1
    w.write_bytes(bytes(raw))
    p = DirectionSet({("stereotype", d.hook): d}, {"model": str(other), "weights_hash": model_weights_hash(str(other))}
                     ).save(tmp_path / "dirs.safetensors")
    with pytest.raises(DirectionError, match=r"dirs\.safetensors was built on a model with weights sha256:"):
        check_directions_base(load_directions(p), str(tiny_lm_dir), p)
    renamed = tmp_path / "renamed"
    shutil.copytree(tiny_lm_dir, renamed)
    q = DirectionSet({("stereotype", d.hook): d}, {"model": str(renamed),
                                                   "weights_hash": model_weights_hash(str(renamed))}
                     ).save(tmp_path / "same.safetensors")
    check_directions_base(load_directions(q), str(tiny_lm_dir), q)  # same weights: accepted


def test_a_plain_adapter_is_matched_by_its_base_weights_not_its_name(tmp_path, tiny_lm):
    """check_adapter_base: the same weights under another folder name pass; other weights under the same name
    fail (the folder-name rule had it backwards)."""
    from interp.models.loading import check_adapter_base

    src = Path(tiny_lm.model.config._name_or_path)
    renamed = tmp_path / "renamed"
    shutil.copytree(src, renamed)
    ad = tmp_path / "ad"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(renamed)}))
    (ad / "adapter_model.safetensors").write_bytes(b"")  # only its presence is checked here
    check_adapter_base(ad, str(src), tiny_lm.model)
    raw = bytearray((renamed / "model.safetensors").read_bytes())
    raw[-1] ^= 1
    (renamed / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="was trained on a base with weights hash"):
        check_adapter_base(ad, str(src), tiny_lm.model)


def test_rl_settings_checked_up_front_accept_what_trl_and_peft_accept(tiny_lm):
    """The up-front checks refuse 'foo' (rows above) but keep every value the libraries take."""
    from rl.train import TrainConfig, check_target_modules, trl_loss_types

    assert {"grpo", "dapo", "dr_grpo"} <= set(trl_loss_types())  # read from TRL: the check is not switched off
    for lt in ("grpo", "dr_grpo"):
        TrainConfig(model="m", out_dir="o", loss_type=lt, lr_scheduler="cosine").validate()
    for ok in ("all-linear", "q_proj,v_proj", "self_attn.q_proj"):
        check_target_modules(tiny_lm.model, ok)
    with pytest.raises(ValueError, match=r"\['foo'\] match no module.*'q_proj'"):
        check_target_modules(tiny_lm.model, "q_proj,foo")
