"""The backend-free hook core: names resolve, cached resid_post equals HF hidden states, hooks are removed."""

import pytest
import torch

from interp.eval.evaluate import encode_batch, render_prompts
from interp.models.hooks import HookNameError, hooks, n_layers, run_with_cache
from interp.data.prompts import make_prompt


def _inputs(lm, items):
    texts = render_prompts(lm.tokenizer, [make_prompt(it) for it in items])
    return encode_batch(lm.tokenizer, texts, "cpu")


def test_resid_post_matches_hidden_states(tiny_lm, fixture_items):
    enc = _inputs(tiny_lm, fixture_items[:4])
    L = n_layers(tiny_lm.model)
    names = [f"blocks.{l}.hook_resid_post" for l in range(L)] + [f"blocks.{l}.hook_resid_pre" for l in range(L)]
    logits, cache = run_with_cache(tiny_lm.model, enc, names)
    with torch.no_grad():
        out = tiny_lm.model(**enc, output_hidden_states=True)
    torch.testing.assert_close(logits, out.logits)
    for l in range(L):
        torch.testing.assert_close(cache[f"blocks.{l}.hook_resid_pre"], out.hidden_states[l])
        if l < L - 1:  # the last hidden state is after the final norm in HF
            torch.testing.assert_close(cache[f"blocks.{l}.hook_resid_post"], out.hidden_states[l + 1])


def test_hooks_edit_then_restore_exactly(tiny_lm, fixture_items):
    enc = _inputs(tiny_lm, fixture_items[:2])
    with torch.no_grad():
        base = tiny_lm.model(**enc).logits.clone()
        with hooks(tiny_lm.model, {"blocks.0.hook_resid_post": lambda x: x + 1.0}):
            edited = tiny_lm.model(**enc).logits
        after = tiny_lm.model(**enc).logits
    assert not torch.allclose(base, edited)
    assert torch.equal(base, after)


def test_bad_names(tiny_lm):
    with pytest.raises(HookNameError, match="out of range"):
        with hooks(tiny_lm.model, {"blocks.99.hook_resid_post": lambda x: None}):
            pass
    with pytest.raises(HookNameError, match="unknown hook name"):
        with hooks(tiny_lm.model, {"blocks.0.hook_nonsense": lambda x: None}):
            pass


def test_run_with_cache_builds_no_graph(tiny_lm, fixture_items):
    """The activation pass is inference: nothing it returns carries autograd history (no memory held)."""
    from interp.eval.evaluate import encode_batch, render_prompts
    from interp.data.prompts import make_prompt

    enc = encode_batch(tiny_lm.tokenizer, render_prompts(tiny_lm.tokenizer, [make_prompt(it) for it in fixture_items[:2]]), "cpu")
    logits, cache = run_with_cache(tiny_lm.model, enc, ["blocks.0.hook_resid_post"],
                                   edits={"blocks.0.hook_resid_post": [lambda x: x * 1.0]})
    assert not logits.requires_grad and not cache["blocks.0.hook_resid_post"].requires_grad
