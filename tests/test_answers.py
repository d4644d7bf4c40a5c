"""The one answer pass (``interp.models.answers``) and the one model handle (``interp.models.protocol``)."""

import numpy as np
import pytest
import torch

from interp.models.backends import as_lm
from interp.models.protocol import LanguageModel


@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight"])
def test_every_backend_handle_satisfies_the_protocol(tiny_lm_dir, backend):
    from interp.models.backends import load_hooked

    h = load_hooked(str(tiny_lm_dir), backend=backend, device="cpu", dtype="float32")
    assert isinstance(h, LanguageModel)
    assert as_lm(h) is h  # a handle passes the boundary unchanged
    assert h.takes_position_ids and (h.n_layers, h.d_model) == (2, 64)


def test_as_lm_converts_at_the_boundary_and_refuses_the_rest(tiny_lm):
    from interp.models.loading import LoadedModel

    assert not isinstance(tiny_lm, LanguageModel)  # a LoadedModel is not a handle: it is converted
    for lm in (as_lm(tiny_lm), as_lm(tiny_lm.model, tiny_lm.tokenizer)):
        assert isinstance(lm, LanguageModel) and lm.backend == "hf" and lm.model is tiny_lm.model
        assert lm.provenance()["weights_hash"]  # read when asked for
    assert isinstance(tiny_lm, LoadedModel)
    with pytest.raises(TypeError, match="expected a model handle"):
        as_lm("organism")


def test_answer_pass_feeds_eval_collect_and_store_the_same_numbers(tiny_lm, fixture_items, tmp_path):
    """Sorted batches come back with the right indices: the pass's letter logits and activations, placed by
    index, equal evaluate_items' records, collect's arrays (item order) and the store writer's datasets."""
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.methods.probes import collect
    from interp.models.answers import answer_batches
    from interp.store.activations import ActivationStore, cache_split

    lm = as_lm(tiny_lm)
    items = fixture_items[:11]
    names = ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"]
    ll = np.zeros((len(items), 3), np.float32)
    acts = {n: np.zeros((len(items), 64 if "resid" in n else 192), np.float32) for n in names}
    seen = []
    for b in answer_batches(lm, items, batch_size=4, names=names, sort_by_length=True):
        assert b.letter_logits.shape == (len(b.index), 3) and all(p.item is items[i] for i, p in zip(b.index,
                                                                                                       b.prompted))
        seen += b.index
        ll[b.index] = b.letter_logits.numpy()
        for n in names:
            acts[n][b.index] = b.acts[n].numpy()
    assert sorted(seen) == list(range(len(items))) and seen != list(range(len(items)))  # really reordered
    recs = evaluate_items(lm, items, EvalConfig(batch_size=4, progress=False))
    np.testing.assert_allclose([r["letter_logits"] for r in recs], ll, atol=1e-4)
    got = collect(lm, items, names, batch_size=4, progress=False)
    assert got.hook == "mixed" and [r["uid"] for r in got.records] == [it.uid for it in items]
    for n in names:
        np.testing.assert_allclose(got.acts[n], acts[n], atol=1e-5)
    path = cache_split(lm, items, tmp_path / "s.h5", names, dtype="float32", batch_size=4, progress=False)
    with ActivationStore(path) as st:
        for n in names:
            np.testing.assert_allclose(st.layer(n), acts[n], atol=1e-5)
        assert list(st.meta["pred"]) == [r["pred"] for r in got.records]


def test_answer_pass_refuses_offsets_before_the_prompt_and_activations_in_generate_mode(tiny_lm, fixture_items):
    from interp.models.answers import answer_batches

    lm = as_lm(tiny_lm)
    with pytest.raises(ValueError, match="before the start of a"):
        next(answer_batches(lm, fixture_items[:2], names=["blocks.0.hook_resid_post"], positions=[-1, -100000]))
    with pytest.raises(ValueError, match="logits mode only"):
        next(answer_batches(lm, fixture_items[:2], names=["blocks.0.hook_resid_post"], mode="generate"))


def test_text_pass_pools_with_a_function(tiny_lm):
    """A function as ``positions`` pools each activation (what the RM scorer uses): a planted masked mean."""
    from interp.models.answers import text_batches

    lm = as_lm(tiny_lm)
    texts = ["a b c d", "a b"]
    name = "blocks.1.hook_resid_post"
    (full,) = [b.acts[name] for b in text_batches(lm, texts, 2, [name])]  # [batch, pos, d]
    (mean,) = [b.acts[name] for b in text_batches(lm, texts, 2, [name], lambda n, x: x.mean(1))]
    torch.testing.assert_close(mean, full.mean(1), rtol=0, atol=0)
