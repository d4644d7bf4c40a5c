"""Hooked-model backends (hf, transformer_lens, nnsight): parity with plain HF, temporary hooks, PEFT switching."""

import pytest
import torch

from interp.models.backends import BACKENDS, RemoteUnavailable, load_hooked
from interp.eval.evaluate import encode_batch, render_prompts
from interp.models.hooks import HookNameError
from interp.data.prompts import make_prompt

L = 2  # tiny_lm_dir has 2 layers


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory, tiny_lm_dir):
    """A LoRA adapter on the tiny model whose B matrices are random, so it really changes the outputs."""
    from peft import LoraConfig, get_peft_model

    from interp.models.loading import load_model

    lm = load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
    pm = get_peft_model(lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    g = torch.Generator().manual_seed(1)
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.5
    d = tmp_path_factory.mktemp("lora")
    pm.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def hooked_cache():
    return {}


@pytest.fixture()
def get_hooked(tiny_lm_dir, lora_dir, hooked_cache):
    """Load (once per session) a hooked tiny model for a backend, with or without the adapter."""

    def get(backend, with_adapter=False):
        key = (backend, with_adapter)
        if key not in hooked_cache:
            hooked_cache[key] = load_hooked(str(tiny_lm_dir), adapter=str(lora_dir) if with_adapter else None,
                                            backend=backend, device="cpu", dtype="float32")
        return hooked_cache[key]

    return get


@pytest.fixture(scope="session")
def reference(tiny_lm_dir, lora_dir):
    """Plain HF models to compare against (compared at real tokens: pad slots differ between attention kernels)."""
    from interp.models.loading import load_model

    out = {}
    for with_adapter in (False, True):
        lm = load_model(str(tiny_lm_dir), adapter=str(lora_dir) if with_adapter else None, device="cpu",
                        dtype="float32")
        out[with_adapter] = lm
    return out


def _enc(tok, items):
    return encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in items]), "cpu")


@pytest.mark.parametrize("with_adapter", [False, True], ids=["base", "lora"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resid_post_and_logits_match_hf(get_hooked, reference, fixture_items, backend, with_adapter):
    h = get_hooked(backend, with_adapter)
    ref = reference[with_adapter]
    enc = _enc(h.tokenizer, fixture_items[:5])
    real = enc["attention_mask"].bool()  # [batch, pos]; left-pad slots are never stored
    assert (~real).any(), "the batch should contain left padding"
    names = [f"blocks.{l}.hook_resid_post" for l in range(L)]
    logits, cache = h.cache(enc, names, positions=None)
    with torch.no_grad():
        out = ref.model(**enc, output_hidden_states=True)
    torch.testing.assert_close(logits[real], out.logits[real], atol=1e-5, rtol=1e-5)
    for l in range(L - 1):  # HF's last hidden state is after the final norm
        torch.testing.assert_close(cache[f"blocks.{l}.hook_resid_post"][real], out.hidden_states[l + 1][real],
                                   atol=1e-5, rtol=1e-5)
    # the last prompt token (where the answer letter is decided), as the store reads it
    _, last = h.cache(enc, names, positions=-1)
    torch.testing.assert_close(last["blocks.0.hook_resid_post"], out.hidden_states[1][:, -1], atol=1e-5, rtol=1e-5)
    assert last["blocks.1.hook_resid_post"].shape == (5, h.d_model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_last_logits_is_the_last_position_of_the_full_pass(get_hooked, fixture_items, backend):
    """``last_logits=True`` (HF logits_to_keep=1, what the store and the probe pass use) unembeds one position:
    the same logits as the full pass there, the same activations, under an edit hook too."""
    h = get_hooked(backend, True)
    enc = _enc(h.tokenizer, fixture_items[:4])
    names = [f"blocks.{l}.hook_resid_post" for l in range(L)]
    v = torch.randn(h.d_model, generator=torch.Generator().manual_seed(3))
    with h.hooks({"blocks.0.hook_resid_post": lambda x: x + v}):
        full, a = h.cache(enc, names, positions=-1)
        last, b = h.cache(enc, names, positions=-1, last_logits=True)
    assert full.shape[1] == enc["input_ids"].shape[1] and last.shape[1] == 1
    torch.testing.assert_close(last[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)
    for n in names:
        torch.testing.assert_close(b[n], a[n], atol=0, rtol=0, msg=n)


def test_transformer_lens_cache_runs_hf_attention_and_restores_the_bridge(get_hooked, fixture_items, monkeypatch):
    """Inside a cache call the bridge's attention runs HF's own kernel (sdpa: one call per layer) instead of its
    eager reimplementation; afterwards neither the bridge nor the HF model keeps a patched forward or the sdpa
    setting (the parity tests above compare the values)."""
    import torch.nn.functional as F

    h = get_hooked("transformer_lens", True)
    if h.hf_attn_implementation != "sdpa":
        pytest.skip(f"HF chose {h.hf_attn_implementation!r} for this model")
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg_before = h.model.config._attn_implementation
    h.cache(_enc(h.tokenizer, fixture_items[:3]), [f"blocks.{l}.hook_resid_post" for l in range(L)], positions=-1)
    assert len(calls) == L
    assert h.model.config._attn_implementation == cfg_before
    assert not [n for n, m in h.bridge.named_modules() if "forward" in vars(m)]
    assert not [n for n, m in h.model.named_modules() if "forward" in vars(m)]


def test_transformer_lens_cache_skips_unhooked_bridge_components(get_hooked, fixture_items, monkeypatch):
    """With skip_unhooked (the default) a cache pass runs the HF layer itself wherever no hook is set: a block
    hooked only at resid_pre/resid_post runs no BlockBridge.forward, a block with a hook inside it does; the values
    equal the all-bridge pass, and the bridge is back in place afterwards."""
    from transformer_lens.model_bridge.generalized_components.block import BlockBridge

    h = get_hooked("transformer_lens", True)
    enc = _enc(h.tokenizer, fixture_items[:3])
    calls = []
    real = BlockBridge.forward
    monkeypatch.setattr(BlockBridge, "forward", lambda self, *a, **k: calls.append(self.name) or real(self, *a, **k))
    layers_before = [id(m) for m in h.model.modules()]
    names = ["blocks.0.hook_resid_pre", *[f"blocks.{l}.hook_resid_post" for l in range(L)], "blocks.1.hook_mlp_out"]
    v = torch.randn(h.d_model, generator=torch.Generator().manual_seed(5))
    out = {}
    for skip in (True, False):
        h.skip_unhooked = skip
        calls.clear()
        with h.hooks({"blocks.0.hook_resid_post": lambda x: x + v}):
            out[skip] = h.cache(enc, names, positions=-1)
        out[skip] = (*out[skip], list(calls))
    h.skip_unhooked = True
    assert len(out[False][2]) == L and len(out[True][2]) == 1  # only block 1 (a hook inside it) ran as a bridge
    torch.testing.assert_close(out[True][0], out[False][0], atol=1e-6, rtol=1e-6)
    for n in names:
        torch.testing.assert_close(out[True][1][n], out[False][1][n], atol=1e-6, rtol=1e-6, msg=n)
    assert [id(m) for m in h.model.modules()] == layers_before


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_all_hook_kinds_match_hf_backend(get_hooked, fixture_items, backend):
    kinds = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
             "mlp.hook_post", "ln1.hook_normalized", "ln2.hook_normalized"]
    names = [f"blocks.{l}.{k}" for l in range(L) for k in kinds]
    hf, other = get_hooked("hf", True), get_hooked(backend, True)
    enc = _enc(hf.tokenizer, fixture_items[:3])
    _, a = hf.cache(enc, names, positions=-1)
    _, b = other.cache(enc, names, positions=-1)
    assert a["blocks.1.mlp.hook_post"].shape == (3, hf.d_mlp)
    for n in names:
        torch.testing.assert_close(b[n], a[n], atol=1e-5, rtol=1e-5, msg=n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edit_hooks_are_temporary_and_agree(get_hooked, fixture_items, backend):
    """A planted edit (a fixed vector added at resid_pre of layer 1 and a scaled mlp.hook_post) changes the
    logits identically in every backend; after the block the logits are exactly the unhooked ones."""
    h, hf = get_hooked(backend, True), get_hooked("hf", True)
    enc = _enc(h.tokenizer, fixture_items[:3])
    v = torch.randn(h.d_model, generator=torch.Generator().manual_seed(0))
    edits = {"blocks.1.hook_resid_pre": lambda x: x + v, "blocks.0.mlp.hook_post": lambda x: 2 * x}
    base = h.forward(enc).clone()
    with h.hooks(edits):
        edited, cache = h.cache(enc, ["blocks.1.hook_resid_pre"], positions=-1)
    after = h.forward(enc)
    assert torch.equal(base, after)
    assert (edited[:, -1] - base[:, -1]).abs().max() > 1e-2
    with hf.hooks(edits):
        ref_edited, ref_cache = hf.cache(enc, ["blocks.1.hook_resid_pre"], positions=-1)
        with torch.no_grad():  # hf hooks are real torch hooks: direct calls (generate...) see them too
            direct = hf.model(**enc).logits[:, -1]
    torch.testing.assert_close(direct, ref_edited[:, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(edited[:, -1], ref_edited[:, -1], atol=1e-5, rtol=1e-5)
    # the cache sees the edited activation
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], ref_cache["blocks.1.hook_resid_pre"],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adapter_switch_from_one_copy(get_hooked, reference, fixture_items, backend):
    h = get_hooked(backend, True)
    ref = reference[True].model
    enc = _enc(h.tokenizer, fixture_items[:2])
    on = h.forward(enc)[:, -1].clone()
    with h.adapter_enabled(False):
        off = h.forward(enc)[:, -1].clone()
    assert h.adapter_on
    with torch.no_grad(), ref.disable_adapter():
        ref_off = ref(**enc).logits[:, -1]
    torch.testing.assert_close(off, ref_off, atol=1e-5, rtol=1e-5)
    assert (on - off).abs().max() > 1e-2
    torch.testing.assert_close(h.forward(enc)[:, -1], on)
    # base model without adapter equals the adapter-disabled model
    torch.testing.assert_close(off, get_hooked("hf", False).forward(enc)[:, -1], atol=1e-5, rtol=1e-5)


def test_nnsight_paths_under_peft(get_hooked):
    h = get_hooked("nnsight", True)
    assert h.module_path("blocks.1.hook_resid_post") == ("base_model.model.model.layers.1", "output")
    assert h.module_path("blocks.0.mlp.hook_post") == ("base_model.model.model.layers.0.mlp.down_proj", "input")
    assert get_hooked("nnsight", False).module_path("blocks.0.hook_attn_out") == ("model.layers.0.self_attn", "output")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_names(get_hooked, fixture_items, backend):
    h = get_hooked(backend)
    enc = _enc(h.tokenizer, fixture_items[:1])
    with pytest.raises(HookNameError, match="out of range"):
        h.cache(enc, ["blocks.7.hook_resid_post"])
    with pytest.raises(HookNameError, match="unknown hook name"):
        with h.hooks({"blocks.0.hook_nonsense": lambda x: x}):
            pass


def test_remote_needs_api_key(monkeypatch):
    import nnsight

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    with pytest.raises(RemoteUnavailable, match="NDIF_API_KEY"):
        load_hooked("Qwen/Qwen2.5-3B-Instruct", backend="nnsight", remote=True)
    with pytest.raises(RemoteUnavailable, match="nnsight"):
        load_hooked("Qwen/Qwen2.5-3B-Instruct", backend="hf", remote=True)
