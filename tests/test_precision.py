"""Mixed bf16 (interp.models.precision): bf16 matmuls, a float32 residual stream and a float32 unembedding.

Ground truth is the float32 forward of the same weights: mixed must come closer to it than pure bf16 does, hooks
must see float32 activations, and 'auto' must pick it only where it is meant to (a bf16 CPU, a backend that runs the
model's own forward)."""

from __future__ import annotations

import pytest
import torch

from interp.models import loading
from interp.models.precision import MIXED, is_mixed, precision_name, use_mixed_bf16

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def three(tiny_lm_dir):
    """The tiny model in float32, pure bf16 and mixed bf16, and one left-padded batch of BBQ prompts."""
    from interp.data.bbq import load_bbq
    from interp.data.prompts import make_prompt
    from interp.models.answers import encode_batch, render_prompts
    from pathlib import Path

    lms = {d: loading.load_model(str(tiny_lm_dir), device="cpu", dtype=d) for d in ("float32", "bfloat16", MIXED)}
    tok = lms["float32"].tokenizer
    tok.padding_side = "left"
    items, _ = load_bbq(Path(__file__).parent / "fixtures/bbq/data")
    enc = encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in items[:6]]), "cpu")
    return lms, enc


def test_mixed_is_closer_to_float32_than_pure_bf16_and_returns_float32(three):
    import copy

    lms, enc = three
    rounded = copy.deepcopy(lms["float32"].model)  # float32 arithmetic on the bf16-rounded weights: both bf16
    with torch.no_grad():  # runs round their weights alike, so what differs is the arithmetic
        for p in rounded.parameters():
            p.copy_(p.bfloat16().float())
        ref = rounded(**enc).logits  # [batch, pos, vocab]
        out = {d: lms[d].model(**enc).logits for d in ("bfloat16", MIXED)}
    real = enc["attention_mask"].bool()
    err = {d: (out[d].float() - ref)[real].abs().mean().item() for d in out}
    assert out[MIXED].dtype == torch.float32 and out["bfloat16"].dtype == torch.bfloat16
    assert err[MIXED] < err["bfloat16"] / 2, err
    assert precision_name(lms[MIXED].model) == MIXED and precision_name(lms["bfloat16"].model) == "bfloat16"
    assert is_mixed(lms[MIXED].model) and not is_mixed(lms["bfloat16"].model)


def test_hooks_see_a_float32_residual_and_edits_still_apply(three):
    from interp.models.backends import as_lm

    lms, enc = three
    h = as_lm(lms[MIXED].model, lms[MIXED].tokenizer)
    name = "blocks.0.hook_resid_post"
    logits, acts = h.cache(enc, [name], -1)
    _, ref = as_lm(lms["float32"].model, lms["float32"].tokenizer).cache(enc, [name], -1)
    assert acts[name].dtype == torch.float32
    assert torch.allclose(acts[name], ref[name], rtol=0.05, atol=0.05)
    with h.hooks({name: lambda x: x + 3.0}):
        steered = h.forward(enc)
    assert (steered - logits).abs().max() > 1e-3  # the edit reached the logits


def test_the_float32_head_follows_in_place_weight_changes(three):
    lms, enc = three
    model = lms[MIXED].model
    head = model.get_output_embeddings()
    with torch.no_grad():
        before = model(**enc).logits.clone()
        head.weight.mul_(2.0)  # in place: the float32 copy must not go stale
        after = model(**enc).logits.clone()
        head.weight.div_(2.0)
        back = model(**enc).logits
    assert not torch.allclose(before, after)
    assert torch.allclose(back, before)


def test_use_mixed_refuses_a_model_without_a_head():
    lin = torch.nn.Linear(4, 4)
    with pytest.raises(TypeError, match="mixed bf16 needs a causal LM"):
        use_mixed_bf16(lin)


def test_auto_picks_mixed_on_a_bf16_cpu_and_float32_for_the_bridge(tiny_lm_dir, monkeypatch):
    monkeypatch.setenv("INTERP_CPU_BF16", "1")
    monkeypatch.setattr(loading, "CPU_BF16_MIN_BYTES", 0)  # the tiny model counts as real here
    lm = loading.load_model(str(tiny_lm_dir), device="cpu")
    assert precision_name(lm.model) == MIXED
    use_mixed_bf16(lm.model)  # a second call changes nothing
    assert lm.model(**lm.tokenizer(["a b"], return_tensors="pt")).logits.dtype == torch.float32
    bridge_side = loading.load_model(str(tiny_lm_dir), device="cpu", mixed_ok=False)
    assert precision_name(bridge_side.model) == "float32"
    with pytest.raises(loading.ModelLoadError, match="cannot run on the transformer_lens backend"):
        loading.load_model(str(tiny_lm_dir), device="cpu", dtype=MIXED, mixed_ok=False)
    monkeypatch.setenv("INTERP_CPU_BF16", "0")
    assert precision_name(loading.load_model(str(tiny_lm_dir), device="cpu").model) == "float32"


def test_generate_and_the_provenance_record_mixed(three):
    from interp.models.backends import as_lm

    lms, enc = three
    h = as_lm(lms[MIXED].model, lms[MIXED].tokenizer)
    gen = h.generate(enc, 3, pad_token_id=h.tokenizer.pad_token_id)
    assert gen.sequences.shape[1] == enc["input_ids"].shape[1] + 3 and gen.scores[0].dtype == torch.float32
    assert h.provenance()["model_dtype"] == MIXED
