"""The capability matrix (issue #18): every toolkit capability on each mapped architecture family, end to end
on a saved tiny random model folder (model + the fixture tokenizer, loaded with ``load_model`` /
``load_hooked``): eval in both modes, the activation cache on every backend with parity against HF
``output_hidden_states``, directions / probes / steering from the stored activations, LoRA + two GRPO steps,
adapter comparison, base models without a chat template, and Gemma's scaled, tied embeddings.

Configs come from ``tests/test_architectures.py``'s builders (only the position table is widened: BBQ prompts
are ~150 tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_architectures import D, L, _config
from interp.models.backends import as_lm

torch.set_num_threads(1)

ARCHS = ["gpt2", "gpt_neox", "opt", "falcon", "llama"]
BACKENDS = ["hf", "nnsight", "transformer_lens"]
MAX_POS = 256
# the final norm HF applies before its last hidden state (ground truth for the last layer's resid_post)
FINAL_NORM = {"gpt2": "transformer.ln_f", "gpt_neox": "gpt_neox.final_layer_norm",
              "opt": "model.decoder.final_layer_norm", "falcon": "transformer.ln_f", "llama": "model.norm"}


def _wide_config(arch: str):
    cfg = _config(arch)
    for key in ("n_positions", "max_position_embeddings"):
        if hasattr(cfg, key):
            setattr(cfg, key, MAX_POS)
    return cfg


def _save(cfg, tok, d: Path, seed: int = 0) -> Path:
    import transformers as T

    torch.manual_seed(seed)
    T.AutoModelForCausalLM.from_config(cfg).eval().save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def items(fixture_items):
    """A handful of items: both categories, both conditions, several templates."""
    return list(fixture_items[::3])  # 22 items


@pytest.fixture(scope="module", params=ARCHS)
def arch_dir(request, tmp_path_factory, tiny_tokenizer):
    arch = request.param
    return arch, _save(_wide_config(arch), tiny_tokenizer, tmp_path_factory.mktemp(f"arch_{arch}"))


@pytest.fixture(scope="module")
def hf_store(arch_dir, items, tmp_path_factory):
    """The hf backend's float32 store of every layer's resid_post at the last prompt token (shuffled options)."""
    from interp.models.backends import load_hooked
    from interp.store.activations import cache_split

    arch, d = arch_dir
    h = load_hooked(str(d), backend="hf", device="cpu", dtype="float32")
    names = [f"blocks.{l}.hook_resid_post" for l in range(L)]
    out = tmp_path_factory.mktemp(f"store_{arch}") / "hf.h5"
    return cache_split(h, items, out, names, dtype="float32", batch_size=8, shuffle_options=True, progress=False)


def _reference_last(model, tok, items) -> tuple[list[torch.Tensor], torch.Tensor]:
    """HF ``output_hidden_states`` at the last prompt token, one unpadded item at a time: (per hidden state
    ``# [n_items, d]``, letter logits ``# [n_items, 3]``)."""
    from interp.data.prompts import apply_chat, make_prompt
    from interp.eval.evaluate import letter_token_ids

    hs, ll = [], []
    for it in items:
        ids = tok(apply_chat(tok, make_prompt(it, True).user_text), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model(**ids, output_hidden_states=True)
        hs.append(torch.stack([h[0, -1] for h in out.hidden_states]))  # [L + 1, d]
        ll.append(out.logits[0, -1, letter_token_ids(tok)])
    return list(torch.stack(hs).unbind(1)), torch.stack(ll)


# ---- 1. eval, both modes ------------------------------------------------------------------------------------
def test_eval_both_modes(arch_dir, items):
    from interp.data.prompts import LETTERS
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.models.loading import load_model

    arch, d = arch_dir
    lm = load_model(str(d), device="cpu", dtype="float32")
    assert lm.model.config.model_type == arch
    few = items[:6]
    lo = evaluate_items(as_lm(lm.model, lm.tokenizer), few, EvalConfig(mode="logits", batch_size=3, progress=False))
    for r in lo:
        assert r["letter"] == LETTERS[int(np.argmax(r["letter_logits"]))]
        assert r["pred"] == r["order"][LETTERS.index(r["letter"])]
        assert r["prompt_format"] == "chat"
    ge = evaluate_items(as_lm(lm.model, lm.tokenizer), few, EvalConfig(mode="generate", batch_size=3, max_new_tokens=3,
                                                                progress=False))
    for r in ge:
        assert isinstance(r["reply"], str)
        assert r["letter"] in (None, *LETTERS)
        assert r["pred"] is None if r["letter"] is None else r["pred"] == r["order"][LETTERS.index(r["letter"])]
    # the first generated position is the logits-mode position, and neither depends on the batch's padding
    # (learned absolute positions, GPT-2's, are counted over each row's real tokens as in HF generate)
    one = evaluate_items(as_lm(lm.model, lm.tokenizer), few, EvalConfig(mode="logits", batch_size=1, progress=False))
    for a, b, c in zip(lo, ge, one):
        assert a["letter_logits"] == pytest.approx(b["letter_logits"], abs=1e-3)
        assert a["letter_logits"] == pytest.approx(c["letter_logits"], abs=1e-3)


# ---- 2. cache on every backend, parity with HF hidden states ------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_cache_parity(arch_dir, items, backend, tmp_path):
    from interp.data.prompts import make_prompt
    from interp.eval.evaluate import render_prompts
    from interp.models.backends import load_hooked
    from interp.models.loading import load_model
    from interp.store.activations import ActivationStore, cache_split

    arch, d = arch_dir
    few = items[:6]
    h = load_hooked(str(d), backend=backend, device="cpu", dtype="float32")
    names = [f"blocks.{l}.hook_resid_post" for l in range(L)] + ["blocks.0.hook_resid_pre"]
    p = cache_split(h, few, tmp_path / f"{backend}.h5", names, dtype="float32", batch_size=3, shuffle_options=True,
                    progress=False)
    lm = load_model(str(d), device="cpu", dtype="float32")
    hs, ll = _reference_last(lm.model, lm.tokenizer, few)  # unpadded; the store's batches of 3 are left-padded
    lens = [len(lm.tokenizer(t, add_special_tokens=False).input_ids)
            for t in render_prompts(lm.tokenizer, [make_prompt(it, True) for it in few])]
    assert len(set(lens[:3])) > 1 and len(set(lens[3:])) > 1
    with ActivationStore(p) as st:
        assert st.attrs["backend"] == backend
        torch.testing.assert_close(torch.from_numpy(st.layer("blocks.0.hook_resid_pre")), hs[0], atol=1e-4, rtol=1e-4)
        for l in range(L - 1):
            torch.testing.assert_close(torch.from_numpy(st.layer(f"blocks.{l}.hook_resid_post")), hs[l + 1],
                                       atol=1e-4, rtol=1e-4)
        last = torch.from_numpy(st.layer(f"blocks.{L - 1}.hook_resid_post"))
        with torch.no_grad():  # HF's last hidden state is after the final norm
            normed = lm.model.get_submodule(FINAL_NORM[arch])(last)
        torch.testing.assert_close(normed, hs[L], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(st.meta[["logit_A", "logit_B", "logit_C"]].to_numpy()), ll,
                                   atol=1e-4, rtol=1e-4)


# ---- 3. directions, probes, steering from the stored activations --------------------------------------------
def test_directions_probes_steering(arch_dir, hf_store, items):
    from interp.data.prompts import make_prompt
    from interp.eval.evaluate import encode_batch, render_prompts
    from interp.methods.directions import compute_directions
    from interp.methods.probes import ProbeConfig, abstain_labels, probe_sweep, Activations, template_groups
    from interp.methods.steering import steer
    from interp.models.loading import load_model

    arch, d = arch_dir
    got = Activations.from_store(hf_store)
    acts, recs = got.acts, got.records
    assert sorted(acts) == [f"blocks.{l}.hook_resid_post" for l in range(L)]
    assert all(a.shape == (len(items), D) for a in acts.values())
    assert [r["uid"] for r in recs] == [it.uid for it in items]
    ds = compute_directions(acts, recs)  # needs congruent, anti-congruent, abstaining and committed items
    v = ds.get("stereotype", layer=0)
    assert v.vector.shape == (D,) and float(v.vector.norm()) > 0
    idx, y = abstain_labels(recs)
    rows = probe_sweep({n: a[idx] for n, a in acts.items()}, y, template_groups([recs[i] for i in idx]),
                       ProbeConfig(n_splits=2, n_shuffles=1, n_boot=20))
    assert [r["layer"] for r in rows] == list(range(L)) and all(0 <= r["acc"] <= 1 for r in rows)

    lm = load_model(str(d), device="cpu", dtype="float32")
    enc = encode_batch(lm.tokenizer, render_prompts(lm.tokenizer, [make_prompt(it) for it in items[:3]]), "cpu",
                       as_lm(lm))
    with torch.no_grad():
        base = lm.model(**enc).logits.clone()
        with steer(lm, v, 0, alpha=4.0):
            steered = lm.model(**enc).logits
        after = lm.model(**enc).logits
    assert (steered - base).abs().max() > 1e-3
    assert torch.equal(after, base)


# ---- 4. LoRA + two GRPO steps; 5. compare -------------------------------------------------------------------
@pytest.fixture(scope="module")
def grpo_checkpoint(arch_dir, items, tmp_path_factory):
    from rl.train import train

    arch, d = arch_dir
    out = tmp_path_factory.mktemp(f"grpo_{arch}")
    cks = train(str(d), out, steps=2, items=items[:4], batch_size=4, num_generations=2, save_steps=2, device="cpu",
                progress=False, threads=1, max_completion_length=1)
    return cks


def test_lora_grpo_two_steps_and_reload(arch_dir, grpo_checkpoint, items):
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.models import hooks as hc
    from interp.models.loading import load_model

    arch, d = arch_dir
    assert [ck.name for ck in grpo_checkpoint] == ["checkpoint-2"]
    ck = grpo_checkpoint[-1]
    acfg = json.loads((ck / "adapter_config.json").read_text())
    lm = load_model(str(d), adapter=str(ck), device="cpu", dtype="float32")
    # every linear projection of the decoder layers carries LoRA ("all-linear"), the output head does not
    wrapped = {n.removeprefix("base_model.model.").removesuffix(".lora_A") for n, _ in lm.model.named_modules()
               if n.endswith(".lora_A")}
    assert wrapped and wrapped == set(acfg["target_modules"])
    plain = load_model(str(d), device="cpu", dtype="float32").model
    layers_path = hc.find_layers(plain)[0]
    linear = {n for n, mod in plain.named_modules() if n.startswith(layers_path + ".")
              and (isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D")}  # GPT-2's projections
    assert wrapped == linear, (wrapped ^ linear)
    assert json.loads((ck / "trainer_state.json").read_text())["global_step"] == 2
    recs = evaluate_items(as_lm(lm.model, lm.tokenizer), items[:4], EvalConfig(progress=False))
    assert all(r["letter"] in "ABC" for r in recs)


def test_compare_adapters_and_model_left_clean(arch_dir, grpo_checkpoint, items, tmp_path):
    import pandas as pd

    from interp.methods.compare import compare_adapters
    from interp.models.loading import load_model

    arch, d = arch_dir
    lm = load_model(str(d), device="cpu", dtype="float32")
    cls = type(lm.model)
    enc = lm.tokenizer(["Context: The nurse was late."], return_tensors="pt")
    with torch.no_grad():
        before = lm.model(**enc).logits.clone()
    df = compare_adapters(lm, [str(grpo_checkpoint[-1])], items, tmp_path / "cmp", shuffle_options=True,
                          n_folds=2, progress=False)
    assert sorted(df["layer"].unique()) == list(range(L))
    assert len(pd.read_csv(tmp_path / "cmp" / "compare.csv")) == L
    assert not any("lora" in n for n, _ in lm.model.named_modules())
    assert type(lm.model) is cls
    with torch.no_grad():
        assert torch.equal(lm.model(**enc).logits, before)


# ---- 6. base models without a chat template -----------------------------------------------------------------
def test_base_model_without_chat_template_uses_plain_prompt(tiny_tokenizer, items, tmp_path):
    import copy

    from interp.data.prompts import apply_chat, make_prompt, prompt_format
    from interp.eval.evaluate import EvalConfig, evaluate_items, render_prompts, write_results
    from interp.models.loading import load_model

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    d = _save(_wide_config("gpt2"), tok, tmp_path / "base")
    lm = load_model(str(d), device="cpu", dtype="float32")
    assert prompt_format(lm.tokenizer) == "plain" and prompt_format(tiny_tokenizer) == "chat"
    p = make_prompt(items[0])
    plain = apply_chat(lm.tokenizer, p.user_text)
    assert plain == p.user_text and plain.endswith("\nAnswer:") and "<|im_start|>" not in plain
    assert render_prompts(lm.tokenizer, [p]) == [plain]
    for mode in ("logits", "generate"):
        recs = evaluate_items(as_lm(lm.model, lm.tokenizer), items[:4], EvalConfig(mode=mode, max_new_tokens=2,
                                                                            progress=False))
        assert {r["prompt_format"] for r in recs} == {"plain"}
        write_results(recs, tmp_path / mode, n_boot=10, meta={"mode": mode})
        meta = json.loads((tmp_path / mode / "summary.json").read_text())["meta"]
        assert meta == {"mode": mode, "prompt_format": "plain"}
    # a chat model's run says so too
    chat = evaluate_items(as_lm(lm.model, tiny_tokenizer), items[:2], EvalConfig(progress=False))
    write_results(chat, tmp_path / "chat", n_boot=10)
    assert json.loads((tmp_path / "chat" / "summary.json").read_text())["meta"]["prompt_format"] == "chat"


# ---- 7. Gemma: scaled, tied embeddings ----------------------------------------------------------------------
def _gemma_config(arch: str):
    import transformers as T

    if arch == "gemma2":
        cfg = _config("gemma2")
    else:
        if not hasattr(T, "GemmaConfig"):
            pytest.skip("no GemmaConfig in this transformers")
        cfg = T.GemmaConfig(vocab_size=512, hidden_size=D, num_hidden_layers=L, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=64, head_dim=8, initializer_range=0.2)
    cfg.max_position_embeddings = MAX_POS
    return cfg


@pytest.mark.parametrize("arch", ["gemma", "gemma2"])
@pytest.mark.parametrize("backend", ["hf", "nnsight"])
def test_gemma_resid_pre_includes_embedding_scale(arch, backend, tiny_tokenizer, items, tmp_path):
    from interp.data.prompts import make_prompt
    from interp.eval.evaluate import encode_batch, render_prompts
    from interp.models.backends import load_hooked
    from interp.models import hooks as hc

    d = _save(_gemma_config(arch), tiny_tokenizer, tmp_path / arch)
    h = load_hooked(str(d), backend=backend, device="cpu", dtype="float32")
    m = h.model
    assert hc.layer_sites(m)["hook_attn_out"].path == ("post_attention_layernorm" if arch == "gemma2" else "self_attn")
    assert m.config.tie_word_embeddings
    assert m.get_output_embeddings().weight.data_ptr() == m.get_input_embeddings().weight.data_ptr()
    enc = encode_batch(h.tokenizer, render_prompts(h.tokenizer, [make_prompt(it) for it in items[:3]]), "cpu")
    real = enc["attention_mask"].bool()
    logits, cache = h.cache(enc, ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"])
    with torch.no_grad():
        out = m(**enc, output_hidden_states=True)
        raw = torch.nn.functional.embedding(enc["input_ids"], m.get_input_embeddings().weight)  # unscaled rows
    pre = cache["blocks.0.hook_resid_pre"]
    torch.testing.assert_close(pre[real], out.hidden_states[0][real], atol=1e-5, rtol=1e-5)
    # the sqrt(d_model) scale is in it: not the raw embedding rows
    torch.testing.assert_close(pre[real], raw[real] * torch.tensor(D ** 0.5), atol=1e-4, rtol=1e-3)
    assert not torch.allclose(pre[real], raw[real])
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"][real], out.hidden_states[1][real],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[real], out.logits[real], atol=1e-4, rtol=1e-4)
