def test_tiny_eval_runs(tiny_lm, fixture_items):
    from interp.eval.evaluate import EvalConfig, evaluate_items

    recs = evaluate_items(tiny_lm.model, tiny_lm.tokenizer, fixture_items[:8], EvalConfig(progress=False))
    assert len(recs) == 8 and all(r["letter"] in "ABC" for r in recs)
