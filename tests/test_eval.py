"""Evaluation in both modes, and the `interp eval` command end to end."""

import json
import subprocess
import sys

import pytest

from interp.eval.evaluate import EvalConfig, evaluate_items, letter_token_ids
from interp.models.backends import as_lm


def test_letter_tokens_are_single(tiny_lm):
    ids = letter_token_ids(tiny_lm.tokenizer)
    assert len(set(ids)) == 3


def test_logits_mode_is_argmax_of_letter_logits(tiny_lm, fixture_items):
    recs = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), fixture_items[:6], EvalConfig(progress=False))
    for r in recs:
        assert r["letter"] == "ABC"[max(range(3), key=lambda j: r["letter_logits"][j])]
        assert r["pred"] == r["order"]["ABC".index(r["letter"])]


def test_batching_does_not_change_answers(tiny_lm, fixture_items):
    a = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), fixture_items[:10], EvalConfig(batch_size=1, progress=False))
    b = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), fixture_items[:10], EvalConfig(batch_size=10, progress=False))
    assert [r["letter"] for r in a] == [r["letter"] for r in b]
    for x, y in zip(a, b):
        assert x["letter_logits"] == pytest.approx(y["letter_logits"], abs=1e-3)


def test_modes_agree_on_a_model_that_answers_with_letters(bbq_dir):
    """Greedy generate and logits argmax give the same letters on the (small) organism."""
    from interp.models.loading import load_model
    from interp.data.bbq import split_items

    lm = load_model("organism-small", device="cpu", dtype="float32")
    items, _ = split_items("dev", bbq_dir, limit=60)
    lo = evaluate_items(as_lm(lm.model, lm.tokenizer), items, EvalConfig(mode="logits", progress=False))
    ge = evaluate_items(as_lm(lm.model, lm.tokenizer), items, EvalConfig(mode="generate", progress=False))
    assert sum(r["letter"] is None for r in ge) == 0  # it replies with a parseable letter
    agree = sum(a["letter"] == b["letter"] for a, b in zip(lo, ge)) / len(items)
    assert agree == 1.0


def test_eval_cli_writes_outputs(tiny_lm_dir, fixture_bbq_dir, tmp_path):
    out = tmp_path / "ev"
    res = subprocess.run(
        [sys.executable, "-m", "interp.cli", "eval", "--model", str(tiny_lm_dir), "--bbq-dir", str(fixture_bbq_dir),
         "--split", "all", "--mode", "generate", "--n-boot", "50", "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 64
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["mode"] == "generate" and summary["rows"][0]["group"] == "overall"
    assert "acc_ambig" in res.stdout
