"""Scoring picks HF's scored position under left and right padding, batches exactly, and the median
intervention is a removable hook that writes the medians where asked."""

import numpy as np
import pytest
import torch

from interp.rm.intervention import NeuronIntervention, median_intervention
from interp.rm.neurons import Neuron, NeuronSelection
from interp.rm.scoring import PositionRef, RewardModelError, render, score, scored_positions

PROMPTS = ["Who was late?", "What is the capital?", "Why?"]
RESPONSES = ["The grandson was late. I hope this helps.", "It is the city.", "**Because** it rained!!"]


@pytest.fixture(scope="module")
def rm(tiny_tokenizer):
    from transformers import Qwen2ForSequenceClassification

    from interp.organisms.tiny import tiny_qwen2_config

    cfg = tiny_qwen2_config(len(tiny_tokenizer), num_labels=1, intermediate_size=48, initializer_range=0.2)
    cfg.pad_token_id = tiny_tokenizer.pad_token_id
    torch.manual_seed(0)
    return Qwen2ForSequenceClassification(cfg).eval()


@pytest.mark.parametrize("side", ["left", "right"])
def test_scored_position_matches_hf(rm, tiny_tokenizer, side):
    tiny_tokenizer.padding_side = side
    try:
        texts = [render(tiny_tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES)]
        enc = tiny_tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = rm(**enc, output_hidden_states=True)
        pos = scored_positions(enc["input_ids"], rm.config.pad_token_id)
        mine = rm.score(out.hidden_states[-1][torch.arange(len(texts)), pos])  # [batch, 1]
        torch.testing.assert_close(mine, out.logits)
        assert len(set(pos.tolist())) > 1 if side == "right" else set(pos.tolist()) == {enc["input_ids"].shape[1] - 1}
        batched = score(rm, tiny_tokenizer, PROMPTS, RESPONSES, batch_size=3).rewards
        single = score(rm, tiny_tokenizer, PROMPTS, RESPONSES, batch_size=1).rewards
        np.testing.assert_allclose(batched, single, atol=1e-5)
        np.testing.assert_allclose(batched, out.logits[:, 0].numpy(), atol=1e-5)
    finally:
        tiny_tokenizer.padding_side = "left"


def test_not_a_reward_model(tiny_tokenizer):
    from transformers import Qwen2ForSequenceClassification

    from interp.organisms.tiny import tiny_qwen2_config

    m = Qwen2ForSequenceClassification(tiny_qwen2_config(len(tiny_tokenizer), num_labels=2)).eval()
    with pytest.raises(RewardModelError, match="num_labels=2"):
        score(m, tiny_tokenizer, PROMPTS, RESPONSES)


def _selection(L, d):
    return NeuronSelection(neurons=[Neuron(0, 3, "length", 0.9), Neuron(1, 5, "bold", -0.8)], n_layers=L, d_mlp=d,
                           budget=2, attributes=["length", "bold"])


@pytest.mark.parametrize("positions", ["scored", "all"])
def test_intervention_writes_medians_and_is_removed(rm, tiny_tokenizer, positions):
    L, d = rm.config.num_hidden_layers, rm.config.intermediate_size
    base = score(rm, tiny_tokenizer, PROMPTS, RESPONSES, record_mlp=True)
    assert base.mlp.shape == (3, L, d)
    iv = median_intervention(_selection(L, d), base.mlp, positions=positions)
    assert iv.values[0][0] == pytest.approx(float(np.median(base.mlp[:, 0, 3])))
    ref = PositionRef()
    edited = score(rm, tiny_tokenizer, PROMPTS, RESPONSES, fwd_hooks=iv.hook_fns(ref), position_ref=ref,
                   record_mlp=True)
    # recorded after the edit: the selected neurons hold the medians at the scored position
    np.testing.assert_allclose(edited.mlp[:, 0, 3], iv.values[0][0], atol=1e-6)
    np.testing.assert_allclose(edited.mlp[:, 1, 5], iv.values[1][0], atol=1e-6)
    assert not np.allclose(edited.rewards, base.rewards)
    after = score(rm, tiny_tokenizer, PROMPTS, RESPONSES).rewards
    np.testing.assert_array_equal(after, base.rewards)


def test_scored_only_leaves_other_positions(rm, tiny_tokenizer):
    iv = NeuronIntervention(indices={0: [1, 2]}, values={0: [7.0, -7.0]}, positions="scored")
    ref = PositionRef(torch.tensor([2, 4]))
    fn = iv.hook_fns(ref)["blocks.0.mlp.hook_post"]
    x = torch.zeros(2, 6, 8)  # [batch, pos, d_mlp]
    y = fn(x)
    assert y[0, 2, 1] == 7.0 and y[1, 4, 2] == -7.0
    assert y[0, 4].abs().sum() == 0 and y[1, 2].abs().sum() == 0 and x.abs().sum() == 0
    y_all = NeuronIntervention(indices={0: [1]}, values={0: [3.0]}, positions="all").hook_fns()["blocks.0.mlp.hook_post"](x)
    assert (y_all[..., 1] == 3.0).all() and y_all[..., 0].abs().sum() == 0


def test_intervention_save_load(tmp_path):
    iv = NeuronIntervention(indices={0: [1, 2], 3: [4]}, values={0: [0.5, -1.0], 3: [2.0]}, positions="all")
    back = NeuronIntervention.load(iv.save(tmp_path / "iv.json"))
    assert back.indices == iv.indices and back.values == iv.values and back.positions == "all"
    with pytest.raises(ValueError, match="positions"):
        NeuronIntervention(indices={}, values={}, positions="middle")


def test_response_pooling_and_token_medians(rm, tiny_tokenizer):
    """Response pooling averages exactly the response's tokens; token medians match a direct computation."""
    from interp.models.hooks import hooks as hf_hooks
    from interp.rm.scoring import response_mask, token_medians

    tiny_tokenizer.padding_side = "left"
    texts = [render(tiny_tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES)]
    enc = tiny_tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    mask = response_mask(tiny_tokenizer, texts, RESPONSES, enc["input_ids"].shape[-1])
    for i, (t, r) in enumerate(zip(texts, RESPONSES)):
        got = tiny_tokenizer.decode(enc["input_ids"][i][mask[i].bool()])
        assert r.replace(" ", "") in got.replace(" ", "") and PROMPTS[i] not in got
    store = {}
    with torch.no_grad(), hf_hooks(rm, {"blocks.0.mlp.hook_post": lambda x: store.__setitem__("a", x.clone())}):
        rm(**enc)
    a = store["a"]  # [batch, pos, d_mlp]
    res = score(rm, tiny_tokenizer, PROMPTS, RESPONSES, batch_size=3, record_mlp="response")
    m = mask[..., None].float()
    want = (a * m).sum(1) / m.sum(1)  # [batch, d_mlp]
    np.testing.assert_allclose(res.mlp[:, 0], want.numpy(), rtol=1e-4, atol=1e-5)
    med = token_medians(rm, tiny_tokenizer, PROMPTS, RESPONSES, {0: [1, 5]}, batch_size=2)
    flat = a[enc["attention_mask"].bool()]  # [tokens, d_mlp]
    assert med[0] == pytest.approx([float(flat[:, 1].median()), float(flat[:, 5].median())], abs=1e-5)
