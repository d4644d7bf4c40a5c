"""Mixed bf16 on the CPU: bfloat16 weights and matmuls, a float32 residual stream and a float32 unembedding.

Pure bfloat16 rounds the residual stream to 8 mantissa bits after every layer and the logits to steps of 1/8 near
20, which flips enough of SmolLM2's letters and option answers to fail the bf16 guard (docs/results.md, session
13). ``use_mixed_bf16`` keeps the speed of bf16 matmuls and the precision
where it is lost: the model's forward runs under ``torch.autocast("cpu", torch.bfloat16)``, the input embedding's
output is cast to float32 (so every residual add promotes to float32, and hooks see float32 activations), and the
output embedding runs in float32 outside autocast. This is accelerate's recipe for mixed-precision inference (an
autocast-wrapped ``forward``), plus the two float32 ends.
"""

from __future__ import annotations

import functools

import torch

MIXED = "bfloat16-mixed"  # the name of this precision in every output's metadata and for --dtype


def _float32_linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, vocab]
    """``module`` applied in float32 outside autocast, from a float32 copy of its weight kept while it is current."""
    w = module.weight
    key = (w.data_ptr(), w._version)
    cached = getattr(module, "_interp_f32", None)
    if cached is None or cached[0] != key:
        cached = (key, w.detach().float(), None if module.bias is None else module.bias.detach().float())
        object.__setattr__(module, "_interp_f32", cached)
    with torch.autocast("cpu", enabled=False):
        return torch.nn.functional.linear(x.float(), cached[1], cached[2])


def _to_float32(module, args, output):
    return output.float() if isinstance(output, torch.Tensor) else None


def use_mixed_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """Make a bfloat16 causal LM (on the CPU, before any PEFT wrapper) compute in mixed precision (module doc);
    in place, idempotent. Returns ``model``."""
    if is_mixed(model):
        return model
    get_in, get_out = getattr(model, "get_input_embeddings", None), getattr(model, "get_output_embeddings", None)
    emb, head = (get_in(), get_out()) if get_in and get_out else (None, None)
    if emb is None or head is None or not isinstance(head, torch.nn.Linear):
        raise TypeError(f"mixed bf16 needs a causal LM with input and output embeddings, not {type(model).__name__}")
    emb.register_forward_hook(_to_float32)
    head.forward = functools.partial(_float32_linear, head)
    inner = model.forward

    @functools.wraps(inner)  # generate reads the forward's signature through __wrapped__
    def forward(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):  # a fresh context per call: safe when nested
            return inner(*args, **kwargs)

    model.forward = forward
    object.__setattr__(model, "_interp_precision", MIXED)
    return model


def is_mixed(model: torch.nn.Module | None) -> bool:
    """Whether ``model`` (or the HF model under a PEFT wrapper) computes in mixed bf16."""
    if model is None:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "_interp_precision", None) == MIXED


def precision_name(model: torch.nn.Module | None) -> str:
    """What a model computes in, as recorded in outputs: ``bfloat16-mixed``, else its weights' dtype."""
    if model is None:
        return "float32"
    if is_mixed(model):
        return MIXED
    return str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")
