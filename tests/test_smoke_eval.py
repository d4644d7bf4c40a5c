from interp.models.backends import as_lm
def test_tiny_eval_runs(tiny_lm, fixture_items):
    from interp.eval.evaluate import EvalConfig, evaluate_items

    recs = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), fixture_items[:8], EvalConfig(progress=False))
    assert len(recs) == 8
    for r in recs:  # one letter, the argmax of the three letter logits ("" or "AB" would not pass)
        assert r["letter"] in ("A", "B", "C")
        assert r["letter"] == "ABC"[max(range(3), key=lambda i: r["letter_logits"][i])]
