"""Hook points found by structure (``interp.models.hooks.structural_sites``, with ``ARCH_EXCEPTIONS``) on tiny random
models of each layout, built from config classes in code (no hub, no tokenizer: random input_ids). Ground truth is independent of the
table: HF ``output_hidden_states``, forward hooks on the module that really is the MLP's output projection,
the residual sums, and the other backend."""

from __future__ import annotations

import pytest
import torch

from interp.models import hooks as hc
from interp.models.hooks import HookNameError

torch.set_num_threads(1)

V, D, F, L = 512, 32, 64, 2  # vocab (covers the tiny tokenizer), d_model, d_mlp, layers


def _config(arch: str):
    import transformers as T

    common = dict(vocab_size=V, hidden_size=D, num_hidden_layers=L, num_attention_heads=4)
    if arch == "gpt2":
        return T.GPT2Config(vocab_size=V, n_embd=D, n_layer=L, n_head=4, n_inner=F, n_positions=64,
                            initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    if arch in ("gpt_neox", "gpt_neox_seq"):
        return T.GPTNeoXConfig(**common, intermediate_size=F, max_position_embeddings=64, initializer_range=0.2,
                               use_parallel_residual=arch == "gpt_neox")
    if arch == "opt":
        return T.OPTConfig(**common, ffn_dim=F, max_position_embeddings=64, word_embed_proj_dim=D, init_std=0.2,
                           pad_token_id=1)
    if arch in ("falcon", "falcon_seq", "falcon_2ln"):
        kw = dict(parallel_attn=arch != "falcon_seq")
        if arch == "falcon_2ln":
            kw.update(new_decoder_architecture=True, num_kv_heads=2)
        return T.FalconConfig(**common, ffn_hidden_size=F, initializer_range=0.2, **kw)
    if arch == "llama":
        return T.LlamaConfig(**common, num_key_value_heads=2, intermediate_size=F, initializer_range=0.2)
    if arch == "qwen2":
        return T.Qwen2Config(**common, num_key_value_heads=2, intermediate_size=F, initializer_range=0.2,
                             use_sliding_window=False)
    if arch == "gemma2":
        return T.Gemma2Config(**common, num_key_value_heads=2, intermediate_size=F, head_dim=8,
                              initializer_range=0.2)
    raise KeyError(arch)


# arch -> (attn_out module inside a layer, layer list path, output projection inside a layer, LoRA targets):
# written out by hand, independently of interp.models.hooks, as the ground truth.
ARCHS = {
    "gpt2": ("attn", "transformer.h", "mlp.c_proj", ["c_attn", "c_fc", "c_proj"]),
    "gpt_neox": ("attention", "gpt_neox.layers", "mlp.dense_4h_to_h", ["query_key_value", "dense_4h_to_h"]),
    "gpt_neox_seq": ("attention", "gpt_neox.layers", "mlp.dense_4h_to_h", ["query_key_value", "dense_4h_to_h"]),
    "opt": ("self_attn", "model.decoder.layers", "fc2", ["q_proj", "v_proj", "fc2"]),
    "falcon": ("self_attention", "transformer.h", "mlp.dense_4h_to_h", ["query_key_value", "dense_4h_to_h"]),
    "falcon_seq": ("self_attention", "transformer.h", "mlp.dense_4h_to_h", ["query_key_value", "dense_4h_to_h"]),
    "falcon_2ln": ("self_attention", "transformer.h", "mlp.dense_4h_to_h", ["query_key_value", "dense_4h_to_h"]),
    "llama": ("self_attn", "model.layers", "mlp.down_proj", ["q_proj", "v_proj", "down_proj"]),
    "qwen2": ("self_attn", "model.layers", "mlp.down_proj", ["q_proj", "v_proj", "down_proj"]),
    "gemma2": ("post_attention_layernorm", "model.layers", "mlp.down_proj", ["q_proj", "v_proj", "down_proj"]),
}
PARALLEL = {"gpt_neox", "falcon", "falcon_2ln"}
SEQUENTIAL = [a for a in ARCHS if a not in PARALLEL]
ALL = list(ARCHS)


def _build(arch: str, head: str = "causal", seed: int = 0) -> torch.nn.Module:
    import transformers as T

    cfg = _config(arch)
    torch.manual_seed(seed)
    if head == "causal":
        return T.AutoModelForCausalLM.from_config(cfg).eval()
    cfg.num_labels = 1
    if cfg.pad_token_id is None:
        cfg.pad_token_id = 0
    return T.AutoModelForSequenceClassification.from_config(cfg).eval()


def _peft(model: torch.nn.Module, arch: str) -> torch.nn.Module:
    """LoRA on the architecture's own module names, B matrices random so the adapter changes outputs."""
    from peft import LoraConfig, get_peft_model

    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=ARCHS[arch][3],
                                          fan_in_fan_out=arch == "gpt2"))
    g = torch.Generator().manual_seed(1)
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.3
    return pm.eval()


def _ids(batch: int = 2, pos: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 400, (batch, pos), generator=g)  # [batch, pos]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _left_padded() -> dict[str, torch.Tensor]:
    enc = _ids(3, 7, seed=3)
    enc["attention_mask"][0, :2] = 0  # two left-pad slots in row 0
    enc["input_ids"][0, :2] = 1
    return enc


def _available(arch: str) -> list[str]:
    sites = hc.layer_sites(_build(arch))
    return [k for k in hc.HOOK_KINDS if isinstance(sites[k], hc.Site)]


def _names(arch: str) -> list[str]:
    return [f"blocks.{l}.{k}" for l in range(L) for k in _available(arch)]


def _out_proj_inputs(model: torch.nn.Module, layers_path: str, proj: str, enc) -> tuple[torch.Tensor, list]:
    """Logits and, per layer, what the output projection really receives ``# [batch, pos, d_mlp]``."""
    seen: list[torch.Tensor] = []
    b, p = enc["input_ids"].shape
    hs = [model.get_submodule(f"{layers_path}.{l}.{proj}").register_forward_pre_hook(
        lambda m, a: seen.append(a[0].detach().reshape(b, p, -1))) for l in range(L)]
    try:
        with torch.no_grad():
            logits = model(**enc).logits
    finally:
        for h in hs:
            h.remove()
    return logits, seen


def _hooked(model: torch.nn.Module, backend: str, tok=None):
    """Wrap an in-memory model as ``load_hooked`` does (hf or nnsight; nnsight's pipeline wants a tokenizer)."""
    from interp.models.backends import HFHooked, NNsightHooked

    cfg = model.config
    info = dict(model=model, tokenizer=tok, name=cfg.model_type, adapter=None, backend=backend,
                n_layers=hc.n_layers(model), d_model=cfg.hidden_size, d_mlp=hc.mlp_dim(cfg), weights_hash="test",
                explicit_positions=not hc.positions_from_mask(cfg))
    if backend == "hf":
        return HFHooked(**info)
    from nnsight import TransformersModel

    h = NNsightHooked(**info)
    h.nn = TransformersModel(model, tokenizer=tok, task="text-generation")
    return h


@pytest.mark.parametrize("arch", ALL)
def test_every_layout_lists_every_hook_kind(arch):
    sites = hc.layer_sites(_build(arch))
    assert set(sites) == set(hc.HOOK_KINDS), arch
    assert isinstance(sites["hook_resid_pre"], hc.Site) and isinstance(sites["hook_resid_post"], hc.Site)
    assert sites["hook_attn_out"].path == ARCHS[arch][0]  # the exception for Gemma 2's sandwich norms included
    assert isinstance(sites["hook_resid_mid"], str) == (arch in PARALLEL)


# ---- layout, layer list -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_layout_and_layer_list(arch):
    _, layers_path, proj, _ = ARCHS[arch]
    m = _build(arch)
    assert hc.find_layers(m)[0] == layers_path
    hp = hc.parse_hook_name(m, "blocks.1.mlp.hook_post")
    assert (hp.module_path, hp.direction) == (f"{layers_path}.1.{proj}", "input")
    assert hc.mlp_dim(m.config) == F
    pm = _peft(m, arch)
    assert hc.layer_sites(pm) == hc.layer_sites(m)
    assert hc.find_layers(pm)[0] == f"base_model.model.{layers_path}"
    for n in _names(arch):
        assert hc.parse_hook_name(pm, n).module_path == "base_model.model." + hc.parse_hook_name(m, n).module_path


# ---- ground truth on the hf backend ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_resid_matches_hidden_states_and_mlp_post_is_projection_input(arch):
    _, layers_path, proj, _ = ARCHS[arch]
    m = _build(arch)
    h = _hooked(m, "hf")
    enc = _ids()
    names = _names(arch)
    logits, cache = h.cache(enc, names)
    with torch.no_grad():
        out = m(**enc, output_hidden_states=True)
    ref_logits, proj_in = _out_proj_inputs(m, layers_path, proj, enc)
    torch.testing.assert_close(logits, out.logits)
    for l in range(L):
        torch.testing.assert_close(cache[f"blocks.{l}.hook_resid_pre"], out.hidden_states[l])
        if l < L - 1:  # HF's last hidden state is after the final norm
            torch.testing.assert_close(cache[f"blocks.{l}.hook_resid_post"], out.hidden_states[l + 1])
        post = cache[f"blocks.{l}.mlp.hook_post"]
        assert post.shape == (2, 6, F)
        torch.testing.assert_close(post, proj_in[l])
        for n in names:
            assert cache[n].shape[:2] == (2, 6), n  # every hook is [batch, pos, d], OPT's flat MLP half too


@pytest.mark.parametrize("arch", ALL)
def test_residual_sums(arch):
    """resid_pre + attn_out + mlp_out == resid_post on every layout (parallel ones add both to resid_pre; for
    Falcon this also checks the stored mlp_out is not the in-place-updated tensor); on sequential layouts
    resid_pre + attn_out == resid_mid."""
    m = _build(arch)
    _, cache = hc.run_with_cache(m, _ids(), _names(arch))
    for l in range(L):
        pre, attn, mlp = (cache[f"blocks.{l}.{k}"] for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out"))
        torch.testing.assert_close(pre + attn + mlp, cache[f"blocks.{l}.hook_resid_post"], atol=1e-5, rtol=1e-5)
        if arch not in PARALLEL:
            torch.testing.assert_close(pre + attn, cache[f"blocks.{l}.hook_resid_mid"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ALL)
def test_zero_mlp_out_changes_logits_then_restores(arch):
    m = _build(arch)
    enc = _ids()
    with torch.no_grad():
        base = m(**enc).logits.clone()
        with hc.hooks(m, {"blocks.0.hook_mlp_out": torch.zeros_like}):
            zeroed = m(**enc).logits
        after = m(**enc).logits
    assert (zeroed - base).abs().max() > 1e-3
    assert torch.equal(base, after)
    # zeroing it is the same as removing the MLP's contribution by hand from resid_post
    _, cache = hc.run_with_cache(m, enc, ["blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"])
    minus = {"blocks.0.hook_resid_post": lambda x: x - cache["blocks.0.hook_mlp_out"]}
    with torch.no_grad(), hc.hooks(m, minus):
        by_hand = m(**enc).logits
    torch.testing.assert_close(by_hand, zeroed, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", sorted(PARALLEL))
def test_parallel_layers_have_no_resid_mid(arch, tiny_tokenizer):
    m = _build(arch)
    with pytest.raises(HookNameError, match="hook_resid_mid does not exist"):
        with hc.hooks(m, {"blocks.0.hook_resid_mid": lambda x: None}):
            pass
    for backend in ("hf", "nnsight"):
        h = _hooked(m, backend, tiny_tokenizer)
        with pytest.raises(HookNameError, match="parallel"):
            h.cache(_ids(), ["blocks.1.hook_resid_mid"])
        with pytest.raises(HookNameError, match="parallel"):
            with h.hooks({"blocks.0.hook_resid_mid": lambda x: x}):
                pass
    if arch == "falcon":  # one shared norm feeds both branches
        with pytest.raises(HookNameError, match="no separate ln2"):
            hc.parse_hook_name(m, "blocks.0.ln2.hook_normalized")


# ---- nnsight == hf ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_nnsight_matches_hf_backend(arch, tiny_tokenizer):
    """Every available hook, on a left-padded batch (compared at real tokens), and one edit; the hf backend's
    logits equal a plain HF forward (for OPT: positions derived from the mask, as HF does)."""
    m = _build(arch)
    hf, nn = _hooked(m, "hf"), _hooked(m, "nnsight", tiny_tokenizer)
    enc = _left_padded()
    real = enc["attention_mask"].bool()  # [batch, pos]
    names = _names(arch)
    la, a = hf.cache(enc, names)
    lb, b = nn.cache(enc, names)
    with torch.no_grad():
        plain = m(**enc).logits
    torch.testing.assert_close(la[real], plain[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lb[real], la[real], atol=1e-5, rtol=1e-5)
    for n in names:
        torch.testing.assert_close(b[n][real], a[n][real], atol=1e-5, rtol=1e-5, msg=n)
    edits = {"blocks.0.mlp.hook_post": lambda x: 2 * x, "blocks.1.hook_mlp_out": torch.zeros_like}
    with hf.hooks(edits):
        ea, ca = hf.cache(enc, ["blocks.1.hook_mlp_out", "blocks.1.hook_resid_pre"], positions=-1)
    with nn.hooks(edits):
        eb, cb = nn.cache(enc, ["blocks.1.hook_mlp_out", "blocks.1.hook_resid_pre"], positions=-1)
    assert (ea[:, -1] - la[:, -1]).abs().max() > 1e-3
    torch.testing.assert_close(eb[:, -1], ea[:, -1], atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(cb["blocks.1.hook_mlp_out"]) == 0
    torch.testing.assert_close(cb["blocks.1.hook_resid_pre"], ca["blocks.1.hook_resid_pre"], atol=1e-5, rtol=1e-5)
    assert torch.equal(hf.forward(enc), la)  # hooks gone


# ---- PEFT ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_peft_wrapped_model_same_names(arch, tiny_tokenizer):
    _, layers_path, proj, _ = ARCHS[arch]
    pm = _peft(_build(arch), arch)
    enc = _ids()
    names = _names(arch)
    _, a = hc.run_with_cache(pm, enc, names)
    with torch.no_grad():
        out = pm(**enc, output_hidden_states=True)
    _, proj_in = _out_proj_inputs(pm, f"base_model.model.{layers_path}", proj, enc)
    torch.testing.assert_close(a["blocks.0.hook_resid_post"], out.hidden_states[1])
    for l in range(L):
        torch.testing.assert_close(a[f"blocks.{l}.mlp.hook_post"], proj_in[l])
    _, b = _hooked(pm, "nnsight", tiny_tokenizer).cache(enc, names)
    for n in names:
        torch.testing.assert_close(b[n], a[n], atol=1e-5, rtol=1e-5, msg=n)
    with pm.disable_adapter():  # the adapter really acts at these hooks
        _, off = hc.run_with_cache(pm, enc, ["blocks.1.hook_resid_post"])
    assert (off["blocks.1.hook_resid_post"] - a["blocks.1.hook_resid_post"]).abs().max() > 1e-3


# ---- unmapped architectures -------------------------------------------------------------------------------------
def test_unmapped_architecture_found_by_structure(tiny_tokenizer):
    """GPT-J, which no table names: a parallel block with one norm. Its hooks are found from its module tree, on
    both backends, and hold the residual identities; the RM path takes its MLP's output projection."""
    import transformers as T

    torch.manual_seed(0)
    gptj = T.GPTJForCausalLM(T.GPTJConfig(vocab_size=V, n_embd=D, n_layer=L, n_head=4, rotary_dim=4, n_inner=F,
                                          n_positions=64, initializer_range=0.2)).eval()
    enc = _ids()
    names = [f"blocks.{l}.{k}" for l in range(L) for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out",
                                                             "mlp.hook_post", "hook_resid_post")]
    _, cache = hc.run_with_cache(gptj, enc, names)
    with torch.no_grad():
        out = gptj(**enc, output_hidden_states=True)
    _, proj_in = _out_proj_inputs(gptj, "transformer.h", "mlp.fc_out", enc)
    for l in range(L):
        c = {k: cache[f"blocks.{l}.{k}"] for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "mlp.hook_post",
                                                   "hook_resid_post")}
        torch.testing.assert_close(c["hook_resid_pre"], out.hidden_states[l])
        torch.testing.assert_close(c["hook_resid_pre"] + c["hook_attn_out"] + c["hook_mlp_out"], c["hook_resid_post"],
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c["mlp.hook_post"], proj_in[l])
    with pytest.raises(HookNameError, match=r"GPTJBlock.*one norm"):
        hc.parse_hook_name(gptj, "blocks.0.hook_resid_mid")
    _, b = _hooked(gptj, "nnsight", tiny_tokenizer).cache(enc, names)
    for n in names:
        torch.testing.assert_close(b[n], cache[n], atol=1e-5, rtol=1e-5, msg=n)
    from interp.rm.scoring import mlp_hook_names

    assert mlp_hook_names(gptj) == ["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"]


def test_olmo2_post_norms_are_an_exception():
    """OLMo 2 has Llama's module names but normalizes each sublayer's output (no pre-norms): the structural rule
    would take its two norms for ln1 / ln2; ``ARCH_EXCEPTIONS`` makes attn_out / mlp_out what is added to the
    residual, resid_mid the MLP's input, and refuses ln1 / ln2."""
    import transformers as T

    torch.manual_seed(0)
    olmo = T.Olmo2ForCausalLM(T.Olmo2Config(vocab_size=V, hidden_size=D, num_hidden_layers=L, num_attention_heads=4,
                                            intermediate_size=F, initializer_range=0.2)).eval()
    kinds = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")
    _, cache = hc.run_with_cache(olmo, _ids(), [f"blocks.{l}.{k}" for l in range(L) for k in kinds])
    for l in range(L):
        pre, attn, mid, mlp, post = (cache[f"blocks.{l}.{k}"] for k in kinds)
        torch.testing.assert_close(pre + attn, mid, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mid + mlp, post, atol=1e-5, rtol=1e-5)
    for k in ("ln1.hook_normalized", "ln2.hook_normalized"):
        with pytest.raises(HookNameError, match="post-norm"):
            hc.parse_hook_name(olmo, f"blocks.0.{k}")


def test_unknown_model_type_with_llama_tree_is_detected():
    m = _build("qwen2")
    m.config.model_type = "my_qwen_finetune"
    assert hc.parse_hook_name(m, "blocks.0.mlp.hook_post").module_path == "model.layers.0.mlp.down_proj"
    _, cache = hc.run_with_cache(m, _ids(), ["blocks.0.mlp.hook_post"])
    assert cache["blocks.0.mlp.hook_post"].shape == (2, 6, F)


def test_post_norm_opt_refuses_norm_hooks():
    m = _build("opt")
    m.config.do_layer_norm_before = False
    with pytest.raises(HookNameError, match="post-norm OPT"):
        hc.parse_hook_name(m, "blocks.0.hook_resid_mid")
    assert hc.parse_hook_name(m, "blocks.0.mlp.hook_post").module_path == "model.decoder.layers.0.fc2"


def test_hook_name_value_type():
    """Parse, format, negative layers, and one named error for anything malformed."""
    from interp.models.hooks import HookName, hook_name, hook_names, layer_of

    hn = HookName.parse("blocks.3.mlp.hook_post")
    assert (hn.layer, hn.kind, str(hn)) == (3, "mlp.hook_post", "blocks.3.mlp.hook_post")
    assert HookName.parse("blocks.-1.hook_resid_post", 4) == HookName(3, "hook_resid_post")
    assert str(HookName(-2).resolve(4)) == "blocks.2.hook_resid_post"
    assert hook_name(0, "hook_attn_out") == "blocks.0.hook_attn_out"
    assert hook_names("-2--1", 4, ("hook_resid_pre", "hook_mlp_out")) == [
        "blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre", "blocks.2.hook_mlp_out", "blocks.3.hook_mlp_out"]
    assert sorted(map(HookName.parse, ["blocks.10.hook_resid_post", "blocks.2.hook_resid_post"]))[0].layer == 2
    assert layer_of("blocks.7.hook_resid_pre") == 7 and layer_of("probe_acc", default=-1) == -1
    for bad in ("blocks.x.hook_resid_post", "block.0.hook_resid_post", "blocks.0.hook_nonsense", "blocks.0", ""):
        with pytest.raises(HookNameError, match="unknown hook name"):
            HookName.parse(bad)
    with pytest.raises(HookNameError, match=r"unknown hook name 'blocks.0.resid_post'"):
        HookName(0, "resid_post")
    with pytest.raises(HookNameError, match="out of range"):
        HookName.parse("blocks.-5.hook_resid_post", 4)
    with pytest.raises(HookNameError, match="out of range"):
        HookName.parse("blocks.4.hook_resid_post", 4)
    m = _build("llama")  # a negative layer reaches the model's last layer
    assert hc.parse_hook_name(m, "blocks.-1.hook_resid_post").module_path == f"model.layers.{L - 1}"


# ---- load_hooked from disk -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["gpt2", "opt", "falcon"])
def test_load_hooked_from_folder(tmp_path, tiny_tokenizer, arch):
    from interp.models.backends import load_hooked

    m = _build(arch)
    m.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    enc = _left_padded()
    real = enc["attention_mask"].bool()
    with torch.no_grad():
        plain = m(**enc, output_hidden_states=True)
    for backend in ("hf", "nnsight"):
        h = load_hooked(str(tmp_path), backend=backend, device="cpu", dtype="float32")
        assert (h.n_layers, h.d_model, h.d_mlp) == (L, D, F)
        logits, cache = h.cache(enc, ["blocks.0.hook_resid_post", "blocks.1.mlp.hook_post"])
        torch.testing.assert_close(logits[real], plain.logits[real], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache["blocks.0.hook_resid_post"][real], plain.hidden_states[1][real],
                                   atol=1e-5, rtol=1e-5)
        assert cache["blocks.1.mlp.hook_post"].shape == (3, 7, F)


# ---- reward-model scoring (sequence classification heads) ------------------------------------------------------
@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "opt", "falcon", "llama", "qwen2"])
def test_rm_scoring_records_mlp_post(arch, tiny_tokenizer):
    from interp.rm.scoring import mlp_attribution, score, scored_positions

    _, layers_path, proj, _ = ARCHS[arch]
    rm = _build(arch, head="seqcls")
    rm.config.pad_token_id = tiny_tokenizer.pad_token_id
    prompts = ["Who was late?", "Pick one."]
    responses = ["The nurse.", "It cannot be determined from the context given."]
    res = score(rm, tiny_tokenizer, prompts, responses, batch_size=2, record_mlp=True)
    assert res.mlp.shape == (2, L, F)
    # independently: the output projection's input at the position HF scores
    from interp.rm.scoring import render

    enc = tiny_tokenizer([render(tiny_tokenizer, p, r) for p, r in zip(prompts, responses)], return_tensors="pt",
                         padding=True, add_special_tokens=False)
    logits, proj_in = _out_proj_inputs(rm, layers_path, proj, dict(enc))
    pos = scored_positions(enc["input_ids"], rm.config.pad_token_id)  # [batch]
    torch.testing.assert_close(torch.from_numpy(res.rewards).float(), logits[:, 0], atol=1e-5, rtol=1e-5)
    for l in range(L):
        torch.testing.assert_close(torch.from_numpy(res.mlp[:, l]), proj_in[l][torch.arange(2), pos],
                                   atol=1e-5, rtol=1e-5)
    eff = mlp_attribution(rm, tiny_tokenizer, prompts, responses, batch_size=2)  # gradients reach the hook
    assert eff.shape == (L, F) and eff.sum() > 0
