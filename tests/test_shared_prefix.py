"""Letter-mode eval with the batch's common prompt prefix run once (interp.eval.prefix) gives the plain
left-padded pass's letter logits, on the tiny model and on SmolLM2's real weights."""

from __future__ import annotations

import pytest
import torch

from interp.data.prompts import make_prompt
from interp.eval.evaluate import EvalConfig, evaluate_items, render_prompts
from interp.models.backends import as_lm
from interp.eval.prefix import common_prefix_len, has_hooks, last_logits_shared_prefix
from interp.methods.steering import steer


def test_common_prefix_len_leaves_one_token_after_it():
    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2  # identical rows keep their last token to score
    assert common_prefix_len([[7, 1], [8, 1]]) == 0
    assert common_prefix_len([]) == 0


def _plain_and_shared(lm, items, batch_size=4):
    plain = evaluate_items(as_lm(lm.model, lm.tokenizer), items,
                           EvalConfig(batch_size=batch_size, progress=False, share_prefix=False))
    shared = evaluate_items(as_lm(lm.model, lm.tokenizer), items,
                            EvalConfig(batch_size=batch_size, progress=False, share_prefix=True))
    return plain, shared


def _max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra["letter_logits"], rb["letter_logits"]))


def test_shared_prefix_equals_plain_pass_on_tiny_model(tiny_lm, fixture_items, monkeypatch):
    import interp.eval.evaluate as ev

    items = fixture_items[:10]
    texts = render_prompts(tiny_lm.tokenizer, [make_prompt(it) for it in items])
    ids = tiny_lm.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert common_prefix_len(ids) >= 8, "the fixture prompts share no prefix: the test would not test sharing"
    used = []
    real = ev.last_logits_shared_prefix
    monkeypatch.setattr(ev, "last_logits_shared_prefix", lambda *a, **k: used.append(1) or real(*a, **k))
    plain, shared = _plain_and_shared(tiny_lm, items)
    assert len(used) == 3  # every batch of the shared run took the split pass (10 items, batches of 4)
    assert _max_diff(plain, shared) < 1e-4
    assert [r["pred"] for r in plain] == [r["pred"] for r in shared]


def test_the_split_pass_really_runs_and_matches_per_row(tiny_lm, fixture_items):
    """Called directly (not through eval's fallback), each row's logits equal its own unpadded forward."""
    tok, model = tiny_lm.tokenizer, tiny_lm.model
    texts = render_prompts(tok, [make_prompt(it) for it in fixture_items[:5]])
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    got = last_logits_shared_prefix(model, ids, tok.pad_token_id or 0)
    assert got is not None and got.shape == (5, model.config.vocab_size)
    with torch.no_grad():
        want = torch.stack([model(input_ids=torch.tensor([s])).logits[0, -1] for s in ids])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert last_logits_shared_prefix(model, [[1, 2, 3], [4, 5, 6]], 0) is None  # no common prefix: caller's pass


def test_steering_keeps_the_shared_prefix_and_a_position_hook_takes_the_plain_pass(tiny_lm, fixture_items,
                                                                                  monkeypatch):
    """Steering every position is marked position-wise: the split pass gives the unshared pass's steered letters.
    A hook that picks positions by index (``from_pos``) is not: eval then takes the plain pass."""
    import interp.eval.evaluate as ev

    items = fixture_items[:6]
    used = []
    real = ev.last_logits_shared_prefix
    monkeypatch.setattr(ev, "last_logits_shared_prefix", lambda *a, **k: used.append(1) or real(*a, **k))
    v = torch.randn(tiny_lm.model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    unsteered = evaluate_items(as_lm(tiny_lm), items, EvalConfig(batch_size=4, progress=False))
    used.clear()
    with steer(tiny_lm.model, v, 0, 8.0):
        assert not has_hooks(tiny_lm.model)
        plain, shared = _plain_and_shared(tiny_lm, items)
    assert len(used) == 2  # the shared run's two batches took the split pass
    assert _max_diff(plain, shared) < 1e-4
    assert _max_diff(unsteered, shared) > 1e-3  # the hook did act, on the split pass too
    used.clear()
    with steer(tiny_lm.model, v, 0, 8.0, from_pos=-1):
        assert has_hooks(tiny_lm.model)
        plain, shared = _plain_and_shared(tiny_lm, items)
    assert used == [] and _max_diff(plain, shared) == 0.0
    handle = tiny_lm.model.model.layers[0].register_forward_hook(lambda m, a, o: None)  # a raw torch hook
    try:
        assert has_hooks(tiny_lm.model)
    finally:
        handle.remove()


def test_shared_prefix_on_smollm2(smollm2_dir, fixture_items):
    from interp.models.loading import load_model

    lm = load_model(str(smollm2_dir), device="cpu", dtype="float32")
    items = fixture_items[:6]
    plain, shared = _plain_and_shared(lm, items, batch_size=3)
    scale = max(abs(x) for r in plain for x in r["letter_logits"])
    assert _max_diff(plain, shared) <= 1e-4 * max(scale, 1.0)
    assert [r["pred"] for r in plain] == [r["pred"] for r in shared]


@pytest.mark.parametrize("n", [1, 2])
def test_single_and_pair_batches(tiny_lm, fixture_items, n):
    plain, shared = _plain_and_shared(tiny_lm, fixture_items[:n], batch_size=n)
    assert _max_diff(plain, shared) < 1e-4
