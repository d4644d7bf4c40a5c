"""Bad input, as a careless user types it: each case must end in one named error line (no traceback) and
leave what was already written alone. One row per case: the command, and a fragment the error must contain."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner


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
    return dict(root=root, tiny=str(tiny_lm_dir), corrupt=str(corrupt), seqcls=str(seqcls), noconfig=str(noconfig),
                adapter=str(adapter), data=str(data), latin=str(latin), empty=str(empty), nullctx=str(nullctx),
                empty_preds=str(empty_preds), dup_preds=str(dup_preds))


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
]


@pytest.mark.parametrize("prog, args, fragment", CASES, ids=[f"{p} {' '.join(a[:1] + a[-3:-2])} {f}"[:60]
                                                               for p, a, f in CASES])
def test_bad_input_is_one_named_error(bad, prog, args, fragment, monkeypatch):
    if prog == "interp":
        from interp.cli import main
    else:
        from rl.cli import main
    monkeypatch.delenv("INTERP_DEBUG", raising=False)
    before = sorted(p.name for p in bad["root"].rglob("*"))
    res = CliRunner().invoke(main, [a.format(**bad) for a in args])
    out = res.output
    assert res.exit_code != 0, out
    assert "Traceback" not in out, out
    assert fragment in out, out
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # click's error exit, not a crash
    after = sorted(p.name for p in bad["root"].rglob("*"))
    assert set(before) <= set(after), set(before) - set(after)  # nothing already there was removed


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
        evaluate_items(lm.model, lm.tokenizer, fixture_items[:2], EvalConfig(progress=False))


def test_a_budget_that_selects_no_neuron_warns():
    import numpy as np

    from interp.rm.neurons import select_neurons

    corr = np.full((2, 1, 10), 0.5)  # [attributes, layers, d_mlp]
    with pytest.warns(UserWarning, match="no neuron selected"):
        sel = select_neurons(corr, ["length", "bold"], budget_frac=0.01)
    assert sel.neurons == []
