"""TransformerLens-named hook points on plain Hugging Face decoder models, as temporary PyTorch hooks.

This is the backend-free core: it resolves a canonical name such as ``blocks.3.hook_resid_post`` to the
module of a Llama/Qwen2-style HF model (also under a PEFT wrapper) and runs hook functions there. The
transformer-lens and nnsight backends (``interp.backends``) use the same names.

A hook function receives the activation tensor ``# [batch, pos, d]`` and returns None (observe) or a tensor
of the same shape (replace).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import torch

HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]

# canonical per-layer name -> (submodule path inside a decoder layer, "output" | "input")
LAYER_HOOKS: dict[str, tuple[str, str]] = {
    "hook_resid_pre": ("", "input"),
    "hook_resid_mid": ("post_attention_layernorm", "input"),
    "hook_resid_post": ("", "output"),
    "hook_attn_out": ("self_attn", "output"),
    "hook_mlp_out": ("mlp", "output"),
    "mlp.hook_post": ("mlp.down_proj", "input"),
    "ln1.hook_normalized": ("input_layernorm", "output"),
    "ln2.hook_normalized": ("post_attention_layernorm", "output"),
}
_NAME_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


class HookNameError(ValueError):
    """A hook name that is unknown, or a layer out of range."""


@dataclass(frozen=True)
class HookPoint:
    name: str
    layer: int
    kind: str  # key of LAYER_HOOKS
    module_path: str  # full dotted path inside the wrapped model
    direction: str  # "output" or "input"


def find_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The decoder's layer list and its dotted path (``model.layers``, or
    ``base_model.model.model.layers`` under PEFT)."""
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks"):
            if best is None or len(name) < len(best[0]):
                best = (name, mod)
    if best is None:
        raise HookNameError(f"no decoder layer list found in {type(model).__name__}")
    return best


def n_layers(model: torch.nn.Module) -> int:
    return len(find_layers(model)[1])


def layer_hook_name(layer: int, kind: str = "hook_resid_post") -> str:
    return f"blocks.{layer}.{kind}"


def parse_hook_name(model: torch.nn.Module, name: str) -> HookPoint:
    """Resolve a canonical name to its module; a clear error for unknown names or layers out of range."""
    m = _NAME_RE.match(name)
    if not m or m.group(2) not in LAYER_HOOKS:
        raise HookNameError(
            f"unknown hook name {name!r}; expected blocks.<layer>.<one of {', '.join(LAYER_HOOKS)}>"
        )
    layer, kind = int(m.group(1)), m.group(2)
    path, layers = find_layers(model)
    if not 0 <= layer < len(layers):
        raise HookNameError(f"layer {layer} out of range: the model has {len(layers)} layers (0..{len(layers) - 1})")
    sub, direction = LAYER_HOOKS[kind]
    full = f"{path}.{layer}" + (f".{sub}" if sub else "")
    return HookPoint(name=name, layer=layer, kind=kind, module_path=full, direction=direction)


def _wrap_output(fn: HookFn):
    def hook(module, args, output):
        x = output[0] if isinstance(output, tuple) else output
        y = fn(x)
        if y is None:
            return None
        if y.shape != x.shape:
            raise ValueError(f"hook returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
        return (y,) + tuple(output[1:]) if isinstance(output, tuple) else y

    return hook


def _wrap_input(fn: HookFn):
    def hook(module, args, kwargs):
        if args:
            x, rest = args[0], args[1:]
            y = fn(x)
            return None if y is None else ((y,) + tuple(rest), kwargs)
        x = kwargs["hidden_states"]
        y = fn(x)
        if y is None:
            return None
        return args, {**kwargs, "hidden_states": y}

    return hook


@contextlib.contextmanager
def hooks(model: torch.nn.Module, fwd_hooks: Mapping[str, HookFn]) -> Iterator[list]:
    """Attach hook functions by canonical name for the duration of the block; always removed on exit,
    so the model's logits afterwards are exactly the unhooked ones. Yields the torch handles."""
    handles = []
    try:
        for name, fn in fwd_hooks.items():
            hp = parse_hook_name(model, name)
            mod = model.get_submodule(hp.module_path)
            if hp.direction == "output":
                handles.append(mod.register_forward_hook(_wrap_output(fn)))
            else:
                handles.append(mod.register_forward_pre_hook(_wrap_input(fn), with_kwargs=True))
        yield handles
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def run_with_cache(
    model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], names: list[str], positions: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass; returns (logits, {name: activation}). With ``positions`` (a [batch] index tensor)
    only those positions are kept: each activation is ``# [batch, d]``, else ``# [batch, pos, d]``."""
    store: dict[str, torch.Tensor] = {}

    def saver(n):
        def f(x):
            if positions is None:
                store[n] = x.detach()
            else:
                store[n] = x.detach()[torch.arange(x.shape[0], device=x.device), positions.to(x.device)]
            return None

        return f

    with hooks(model, {n: saver(n) for n in names}):
        logits = model(**inputs).logits
    return logits, store
