"""Option log-likelihood mode: equal to lm-eval's HFLM.loglikelihood (recorded fixtures), lm-eval's tokenization
rule at the context/continuation boundary, padding invariance, the length-normalized pick, and the eval records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp.eval.options import encode_pair, loglikelihoods, option_context, option_requests, option_scores, pick
from interp.models.backends import as_lm

FIX = Path(__file__).parent / "fixtures" / "lmeval"


def _check_against_lmeval(model_dir, name, fixture_items):
    from interp.models.loading import load_model

    rec = json.loads((FIX / f"{name}.json").read_text())
    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    items = {it.uid: it for it in fixture_items}
    chosen = [items[u] for u in rec["uids"]]
    reqs = [r for it in chosen for r in option_requests(lm.tokenizer, it)]
    assert [[r.context, r.continuation] for r in reqs] == rec["requests"]
    got = loglikelihoods(lm.model, lm.tokenizer, reqs, batch_size=5)  # batches that mix lengths
    want = rec["loglikelihood"]
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4, list(zip(got, want))
    assert len(set(round(x, 3) for x in want)) > len(want) // 2  # the fixture is not degenerate


def test_equals_lmeval_on_the_organism(fixture_items):
    from interp.models.loading import resolve_model_path

    _check_against_lmeval(resolve_model_path("organism"), "organism", fixture_items)


def test_equals_lmeval_on_smollm2(smollm2_dir, fixture_items):
    _check_against_lmeval(smollm2_dir, "smollm2", fixture_items)


def test_boundary_rule_moves_trailing_space_to_the_continuation(tiny_tokenizer):
    r = encode_pair(tiny_tokenizer, "Who was it?\nA: ", "the man")
    assert r.context == "Who was it?\nA:" and r.continuation == " the man"
    whole = tiny_tokenizer.encode("Who was it?\nA: the man", add_special_tokens=False)
    assert list(r.context_ids + r.continuation_ids) == whole
    with pytest.raises(ValueError, match="empty context"):
        encode_pair(tiny_tokenizer, "", " x")


def test_loglikelihood_is_the_unpadded_sum_and_ignores_batch_mates(tiny_lm, fixture_items):
    m, tok = tiny_lm.model, tiny_lm.tokenizer
    reqs = [r for it in fixture_items[:4] for r in option_requests(tok, it)]
    batched = loglikelihoods(m, tok, reqs, batch_size=len(reqs))
    for r, got in zip(reqs, batched):
        ids = torch.tensor([list(r.context_ids + r.continuation_ids)])  # [1, pos], no padding
        with torch.no_grad():
            logp = torch.log_softmax(m(input_ids=ids).logits.float(), -1)[0]
        n = len(r.continuation_ids)
        T = ids.shape[1]
        want = sum(float(logp[T - n - 1 + k, r.continuation_ids[k]]) for k in range(n))
        assert abs(got - want) < 1e-4
    lengths = {len(r.context_ids) + len(r.continuation_ids) for r in reqs}
    assert len(lengths) > 1, "the batch should mix lengths (left padding)"


def test_pick_raw_and_per_character():
    answers = ["Unknown", "The grandfather", "The grandson"]
    ll = [-7.0, -9.0, -12.0]
    assert pick(ll, answers, normalize=False) == 0
    assert pick(ll, answers, normalize=True) == 1  # -9/15 beats -7/7 and -12/12
    assert pick([-1.0, -1.0, -2.0], ["ab", "ab", "abcd"], normalize=False) == 0  # ties: the first


@pytest.mark.parametrize("mode", ["options", "options_norm"])
def test_eval_records_in_option_mode(tiny_lm, fixture_items, mode):
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize

    items = fixture_items[:9]
    recs = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), items, EvalConfig(mode=mode, batch_size=4,
                                                                               progress=False))
    scores = option_scores(tiny_lm.model, tiny_lm.tokenizer, items)
    for r, it, ll in zip(recs, items, scores):
        assert r["option_loglik"] == pytest.approx(ll, abs=1e-5)
        assert r["pred"] == pick(ll, it.answers, normalize=mode == "options_norm")
        assert r["letter"] == "ABC"[r["pred"]] and r["prompt_format"] == "options"
    rows = summarize(recs, n_boot=0)
    assert rows and 0 <= rows[0]["acc_ambig"] <= 1


def test_context_is_lmevals_doc_to_text(fixture_items):
    it = fixture_items[0]
    assert option_context(it) == f"{it.context}\n\nQ: {it.question}\nA:"


def test_shared_context_equals_the_unshared_pass(tiny_lm, fixture_items):
    """Each context once, its cache repeated for the three answers: the same log-likelihoods as whole requests."""
    m, tok = tiny_lm.model, tiny_lm.tokenizer
    items = fixture_items[:7]
    shared = option_scores(m, tok, items, batch_size=3, share_context=True)
    whole = option_scores(m, tok, items, batch_size=5, share_context=False)
    for a, b in zip(shared, whole):
        assert a == pytest.approx(b, abs=1e-4)
    assert len({len(r.continuation_ids) for it in items for r in option_requests(tok, it)}) > 1


def test_shared_context_equals_lmeval_on_smollm2(smollm2_dir, fixture_items):
    from interp.models.loading import load_model

    rec = json.loads((FIX / "smollm2.json").read_text())
    lm = load_model(str(smollm2_dir), device="cpu", dtype="float32")
    items = {it.uid: it for it in fixture_items}
    got = option_scores(lm.model, lm.tokenizer, [items[u] for u in rec["uids"]], batch_size=4)
    flat = [x for row in got for x in row]
    assert max(abs(a - b) for a, b in zip(flat, rec["loglikelihood"])) < 1e-4
