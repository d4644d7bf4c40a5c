"""Hook points found by structure (``interp.models.hooks.structural_sites``) on every decoder-only architecture
transformers can build from its config: each model type of ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``, built tiny
(hidden 32 or 64, 2 layers, vocab 256) with random weights. Nothing here names an architecture: a model type
transformers adds tomorrow is tested the day it appears. Skipped, with the reason in pytest's summary (``-rs``):
types that are not decoder-only (encoder or encoder-decoder families) and those that cannot be built tiny from
their default config (a vision tower of billions of weights, a validator the generic shrink breaks).

Ground truth is independent of the hook code: HF ``output_hidden_states`` for every layer's input, and, for the
last layer's output, what the first module run after the decoder layers (the final norm) receives."""

from __future__ import annotations

import functools
import re

import pytest
import torch

from interp.models import hooks as hc

torch.set_num_threads(1)

V, L = 256, 2
MAX_PARAMS = 3_000_000  # "tiny": a default config that stays bigger than this (a vision tower) is skipped


def _tiny_kwargs(h: int) -> dict:
    return dict(vocab_size=V, hidden_size=h, num_hidden_layers=L, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=2 * h, head_dim=h // 4, max_position_embeddings=128, n_positions=128, n_ctx=128,
                moe_intermediate_size=h, num_experts=4, num_local_experts=4, n_routed_experts=4,
                num_experts_per_tok=2, n_shared_experts=1, shared_expert_intermediate_size=h, ffn_dim=2 * h,
                n_inner=2 * h, rotary_dim=4, ffn_hidden_size=2 * h, kv_lora_rank=16, q_lora_rank=16,
                qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=h // 4, first_k_dense_replace=1, d_model=h,
                d_ff=2 * h, num_layers=L, n_layer=L, n_head=4, n_embd=h, num_blocks=L)


def _has(cfg, key: str) -> bool:
    try:
        return hasattr(cfg, key)
    except Exception:  # noqa: BLE001 - a per-layer attribute refuses global access
        return False


def _tiny_config(model_type: str, h: int, drop: tuple[str, ...]):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    d = cls()
    kw = {k: v for k, v in _tiny_kwargs(h).items() if k not in drop and _has(d, k)}
    if isinstance(getattr(d, "pad_token_id", None), int) and d.pad_token_id >= V:
        kw["pad_token_id"] = 0
    lt = getattr(d, "layer_types", None) if _has(d, "layer_types") else None
    if isinstance(lt, (list, tuple)) and len(lt) != L:
        kw["layer_types"] = list(lt[:L])
    for _ in range(8):  # drop what the class will not let us set (a read-only property)
        try:
            return cls(**kw)
        except AttributeError as e:
            m = re.search(r"property '(\w+)'", str(e))
            if not m or m.group(1) not in kw:
                raise
            kw.pop(m.group(1))
    return cls(**kw)


def _not_decoder_only() -> set[str]:
    from transformers.models.auto import modeling_auto as ma

    out = set(ma.MODEL_FOR_MASKED_LM_MAPPING_NAMES) | set(ma.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    return out | set(getattr(ma, "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", {}))


def _model_types() -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


@functools.lru_cache(maxsize=None)
def _skip_reason_static(model_type: str) -> str | None:
    if model_type in _not_decoder_only():
        return f"{model_type} is not decoder-only (an encoder or encoder-decoder family)"
    return None


def build_tiny(model_type: str) -> torch.nn.Module:
    """A tiny random causal LM of ``model_type``, or pytest.skip naming why it cannot be built tiny."""
    import transformers as T

    errors = []
    for h, drop in ((32, ()), (32, ("head_dim",)), (64, ("head_dim", "v_head_dim"))):
        try:
            cfg = _tiny_config(model_type, h, drop)
            if getattr(cfg, "is_encoder_decoder", False):
                pytest.skip(f"{model_type} is not decoder-only (config.is_encoder_decoder)")
            with torch.device("meta"):
                n = sum(p.numel() for p in T.AutoModelForCausalLM.from_config(cfg).parameters())
            if n > MAX_PARAMS:
                errors.append(f"{n / 1e6:.0f}M weights from the default config at hidden {h}")
                continue
            torch.manual_seed(0)
            m = T.AutoModelForCausalLM.from_config(cfg).eval()
            with torch.no_grad():
                m(input_ids=torch.randint(2, V - 1, (1, 4)), use_cache=False)
            return m
        except pytest.skip.Exception:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the generic shrink: try the next recipe
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
    pytest.skip(f"{model_type} cannot be built tiny from its default config: {errors[-1]}")


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def _after_layers_input(model: torch.nn.Module, inputs: dict) -> torch.Tensor | None:
    """What the first module run after the last decoder layer receives (the final norm, or the unembedding)."""
    path, layers = hc.find_layers(model)
    state: dict = {"done": False, "x": None}

    def pre(mod, args, kwargs):
        if state["done"] and state["x"] is None:
            x = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() == 3:
                state["x"] = x.detach().clone()

    def post(mod, args, out):
        state["done"] = True

    handles = [layers[-1].register_forward_hook(post)]
    for name, mod in model.named_modules():
        if name and not name.startswith(path) and not path.startswith(name + "."):
            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for hd in handles:
            hd.remove()
    return state["x"]


# Built, but their residual stream is not one [batch, pos, d] tensor per layer per forward: the test fails there
# (strict xfail, so a model that changes is noticed).
NO_SINGLE_STREAM = {
    "cpmant": "prepends its own prompt positions inside the model: the layers see more positions than the input",
    "deepseek_v4": "a multi-stream residual (hyper-connections): layers pass [batch, pos, streams, d]",
    "hy_v4": "a multi-stream residual (hyper-connections): layers pass [batch, pos, streams, d]",
    "dory": "runs its layers more than once per forward: more hidden states than layers",
    "hrm_text": "runs its layers more than once per forward (recurrent reasoning loops)",
}


@pytest.mark.parametrize("model_type", [pytest.param(t, marks=pytest.mark.xfail(reason=NO_SINGLE_STREAM[t], strict=True))
                                        if t in NO_SINGLE_STREAM else t for t in _model_types()])
def test_residual_stream_found_by_structure(model_type):
    """The hf backend's pass finds resid_pre and resid_post of every layer, and they are the residual stream:
    layer l's input is HF's hidden_states[l], layer l's output hidden_states[l + 1] below the last layer, and the
    last layer's output what the final norm receives. Every other hook kind resolves or names why it cannot, and
    attn_out / mlp_out add up where they resolve (``_sublayer_outputs_add_up``)."""
    reason = _skip_reason_static(model_type)
    if reason:
        pytest.skip(reason)
    m = build_tiny(model_type)
    n = hc.n_layers(m)
    assert n == L, f"found {n} decoder layers at {hc.find_layers(m)[0]}"
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, V - 1, (2, 5), generator=g)  # [batch, pos]
    inputs = {"input_ids": ids, "use_cache": False}
    names = hc.hook_names("all", n, ("hook_resid_pre", "hook_resid_post"))
    _, cache = hc.run_with_cache(m, inputs, names)
    with torch.no_grad():
        hs = m(**inputs, output_hidden_states=True).hidden_states
    assert hs is not None and len(hs) == n + 1
    pre = [cache[f"blocks.{l}.hook_resid_pre"] for l in range(n)]
    post = [cache[f"blocks.{l}.hook_resid_post"] for l in range(n)]
    for l in range(n - 1):
        torch.testing.assert_close(post[l], pre[l + 1])  # the stream runs from one layer to the next
    # HF's hidden_states are each layer's input (most models) or each layer's output (Mamba, RWKV), then the
    # final norm's output
    ours = pre if _close(pre[0], hs[0]) else post
    for l in range(n):
        torch.testing.assert_close(ours[l], hs[l], atol=1e-5, rtol=1e-5)
    last = _after_layers_input(m, inputs)
    assert last is not None, "no module runs after the decoder layers"
    torch.testing.assert_close(cache[f"blocks.{n - 1}.hook_resid_post"], last, atol=1e-5, rtol=1e-5)
    for k in hc.HOOK_KINDS:  # each kind resolves to a module of the model, or says why it does not exist
        try:
            hp = hc.parse_hook_name(m, hc.hook_name(-1, k))
        except hc.HookNameError as e:
            assert "not available" in str(e)
            continue
        m.get_submodule(hp.module_path)
    _sublayer_outputs_add_up(m)


def _sublayer_outputs_add_up(m: torch.nn.Module) -> int:
    """Where a pre-norm layer's attn_out and mlp_out are found (by structure or ARCH_EXCEPTIONS), they are what the
    residual receives: resid_pre + attn_out + mlp_out == resid_post, and resid_pre + attn_out == resid_mid where
    that exists. A layout the rule gets wrong fails here until ARCH_EXCEPTIONS has it. Returns the layers checked."""
    sites = [hc.layer_sites(m, l) for l in range(hc.n_layers(m))]
    kinds = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_mid", "hook_resid_post")
    names = [hc.hook_name(l, k) for l, s in enumerate(sites) for k in kinds if isinstance(s[k], hc.Site)]
    _, c = hc.run_with_cache(m, {"input_ids": torch.randint(2, V - 1, (2, 5)), "use_cache": False}, names)
    checked = 0
    for l, s in enumerate(sites):
        if not all(isinstance(s[k], hc.Site) for k in ("hook_attn_out", "hook_mlp_out", "ln1.hook_normalized")):
            continue
        g = {k: c[hc.hook_name(l, k)] for k in kinds if isinstance(s[k], hc.Site)}
        torch.testing.assert_close(g["hook_resid_pre"] + g["hook_attn_out"] + g["hook_mlp_out"], g["hook_resid_post"],
                                   atol=1e-5, rtol=1e-5)
        if "hook_resid_mid" in g:
            torch.testing.assert_close(g["hook_resid_pre"] + g["hook_attn_out"], g["hook_resid_mid"],
                                       atol=1e-5, rtol=1e-5)
        checked += 1
    return checked
