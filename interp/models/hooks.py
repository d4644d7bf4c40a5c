"""TransformerLens-named hook points on plain Hugging Face decoder models, as temporary PyTorch hooks.

This is the backend-free core: it resolves a canonical name such as ``blocks.3.hook_resid_post`` to a
module of a HF decoder (also under a PEFT wrapper) and runs hook functions there. The transformer-lens and
nnsight backends (``interp.models.backends``) use the same names; the hf and nnsight backends use the same table.

``ARCH_HOOKS`` is the one per-architecture table: for each layout, where every canonical hook lives inside
one decoder layer (a submodule path, and whether the hook is that module's input or its output). A layout is
picked from ``config.model_type`` (``MODEL_TYPES``, plus the config's parallel-residual / norm-placement
switches), or, for a model type nobody has mapped, from the layer's module tree when it matches a sequential
layout exactly (``_TREE_DETECTABLE``). Semantics follow TransformerLens: ``hook_resid_mid`` does not exist on
parallel-attention layers (GPT-NeoX/Pythia, most Falcons), where attention and MLP both read resid_pre;
asking for it raises ``HookNameError`` instead of returning some other tensor.

As in TransformerLens, ``hook_resid_mid`` is observed at the input of the second norm: an edit there reaches
the MLP branch but not the residual connection that skips the MLP.

A hook function receives the activation tensor ``# [batch, pos, d]`` and returns None (observe) or a tensor
of the same shape (replace).
"""

from __future__ import annotations

import contextlib
import re
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import einops
import torch

HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass(frozen=True)
class Site:
    """Where one canonical hook lives inside a decoder layer."""

    path: str  # submodule path inside the layer; "" is the layer itself
    direction: str  # "input" | "output" of that module
    flat: bool = False  # the module sees tokens flattened to [batch*pos, d] (OPT's MLP half); fns get [batch, pos, d]
    copy: bool = False  # the model adds into this output in place (parallel Falcon's MLP): fns get a copy


def _s(path: str, direction: str, **kw) -> Site:
    return Site(path, direction, **kw)


_PARALLEL_NO_MID = ("{arch} runs attention and MLP in parallel on resid_pre (as TransformerLens' parallel_attn_mlp):"
                    " there is no residual stream between them, so hook_resid_mid does not exist; use hook_resid_pre,"
                    " hook_attn_out or hook_mlp_out")

# Canonical hook -> Site, or a string saying why the hook has no meaning on that layout. Each layout lists its
# hooks in forward-execution order inside a layer (nnsight must visit modules in that order).
ARCH_HOOKS: dict[str, dict[str, Site | str]] = {
    # Llama, Qwen2/3, Mistral, Gemma (1), Phi-3, ...: pre-norm, sequential
    "llama": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("input_layernorm", "output"),
        "hook_attn_out": _s("self_attn", "output"),
        "hook_resid_mid": _s("post_attention_layernorm", "input"),
        "ln2.hook_normalized": _s("post_attention_layernorm", "output"),
        "mlp.hook_post": _s("mlp.down_proj", "input"),
        "hook_mlp_out": _s("mlp", "output"),
        "hook_resid_post": _s("", "output"),
    },
    # Gemma 2/3: sandwich norms; attn_out / mlp_out are what is added to the residual (after the post-norms)
    "gemma2": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("input_layernorm", "output"),
        "hook_attn_out": _s("post_attention_layernorm", "output"),
        "hook_resid_mid": _s("pre_feedforward_layernorm", "input"),
        "ln2.hook_normalized": _s("pre_feedforward_layernorm", "output"),
        "mlp.hook_post": _s("mlp.down_proj", "input"),
        "hook_mlp_out": _s("post_feedforward_layernorm", "output"),
        "hook_resid_post": _s("", "output"),
    },
    # GPT-2 (and GPT-BigCode by tree): transformer.h, Conv1D projections
    "gpt2": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("ln_1", "output"),
        "hook_attn_out": _s("attn", "output"),
        "hook_resid_mid": _s("ln_2", "input"),
        "ln2.hook_normalized": _s("ln_2", "output"),
        "mlp.hook_post": _s("mlp.c_proj", "input"),
        "hook_mlp_out": _s("mlp", "output"),
        "hook_resid_post": _s("", "output"),
    },
    # GPT-NeoX with use_parallel_residual=False
    "gpt_neox": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("input_layernorm", "output"),
        "hook_attn_out": _s("attention", "output"),
        "hook_resid_mid": _s("post_attention_layernorm", "input"),
        "ln2.hook_normalized": _s("post_attention_layernorm", "output"),
        "mlp.hook_post": _s("mlp.dense_4h_to_h", "input"),
        "hook_mlp_out": _s("mlp", "output"),
        "hook_resid_post": _s("", "output"),
    },
    # GPT-NeoX / Pythia default (use_parallel_residual=True): both norms read resid_pre
    "gpt_neox.parallel": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("input_layernorm", "output"),
        "hook_attn_out": _s("attention", "output"),
        "hook_resid_mid": _PARALLEL_NO_MID.format(arch="GPT-NeoX with use_parallel_residual=True (Pythia)"),
        "ln2.hook_normalized": _s("post_attention_layernorm", "output"),
        "mlp.hook_post": _s("mlp.dense_4h_to_h", "input"),
        "hook_mlp_out": _s("mlp", "output"),
        "hook_resid_post": _s("", "output"),
    },
    # OPT, pre-norm (do_layer_norm_before=True: every size but 350m). No mlp module: fc1/act/fc2 sit in the
    # layer, on tokens flattened to [batch*pos, d]; hook_mlp_out is fc2's output.
    "opt": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("self_attn_layer_norm", "output"),
        "hook_attn_out": _s("self_attn", "output"),
        "hook_resid_mid": _s("final_layer_norm", "input", flat=True),
        "ln2.hook_normalized": _s("final_layer_norm", "output", flat=True),
        "mlp.hook_post": _s("fc2", "input", flat=True),
        "hook_mlp_out": _s("fc2", "output", flat=True),
        "hook_resid_post": _s("", "output"),
    },
    # OPT-350m style post-norm (do_layer_norm_before=False)
    "opt.post_norm": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": "post-norm OPT (do_layer_norm_before=False) normalizes after the attention residual "
                               "add, not before attention: there is no ln1.hook_normalized",
        "hook_attn_out": _s("self_attn", "output"),
        "hook_resid_mid": "post-norm OPT (do_layer_norm_before=False) normalizes the stream between attention and "
                          "MLP, so no single tensor is both what the MLP reads and what its residual carries: "
                          "there is no hook_resid_mid",
        "ln2.hook_normalized": "post-norm OPT (do_layer_norm_before=False) normalizes after the MLP residual add: "
                               "there is no ln2.hook_normalized",
        "mlp.hook_post": _s("fc2", "input", flat=True),
        "hook_mlp_out": _s("fc2", "output", flat=True),
        "hook_resid_post": _s("", "output"),
    },
    # Falcon with parallel_attn=False (sequential)
    "falcon": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("input_layernorm", "output"),
        "hook_attn_out": _s("self_attention", "output"),
        "hook_resid_mid": _s("post_attention_layernorm", "input"),
        "ln2.hook_normalized": _s("post_attention_layernorm", "output"),
        "mlp.hook_post": _s("mlp.dense_4h_to_h", "input"),
        "hook_mlp_out": _s("mlp", "output"),
        "hook_resid_post": _s("", "output"),
    },
    # Falcon-7B/40B style: parallel attention, one input_layernorm feeding both branches
    "falcon.parallel": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("input_layernorm", "output"),
        "hook_attn_out": _s("self_attention", "output"),
        "hook_resid_mid": _PARALLEL_NO_MID.format(arch="Falcon with parallel_attn=True"),
        "ln2.hook_normalized": "this Falcon layer has one input_layernorm whose output feeds both attention and "
                               "MLP: there is no separate ln2; use ln1.hook_normalized",
        "mlp.hook_post": _s("mlp.dense_4h_to_h", "input"),
        "hook_mlp_out": _s("mlp", "output", copy=True),
        "hook_resid_post": _s("", "output"),
    },
    # Falcon new_decoder_architecture with two norms (ln_attn, ln_mlp), both computed before attention
    "falcon.parallel_2ln": {
        "hook_resid_pre": _s("", "input"),
        "ln1.hook_normalized": _s("ln_attn", "output"),
        "ln2.hook_normalized": _s("ln_mlp", "output"),
        "hook_attn_out": _s("self_attention", "output"),
        "hook_resid_mid": _PARALLEL_NO_MID.format(arch="Falcon with new_decoder_architecture"),
        "mlp.hook_post": _s("mlp.dense_4h_to_h", "input"),
        "hook_mlp_out": _s("mlp", "output", copy=True),
        "hook_resid_post": _s("", "output"),
    },
}

# The canonical per-layer hook kinds (every layout lists exactly these).
HOOK_KINDS: tuple[str, ...] = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
                               "hook_mlp_out", "mlp.hook_post", "ln1.hook_normalized", "ln2.hook_normalized")


def _layout_of_config(config: object) -> str | None:
    """The ARCH_HOOKS key for a HF config's model_type and layout switches; None for an unmapped type."""
    mt = getattr(config, "model_type", None)
    if mt in ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3"):
        return "llama"
    if mt in ("gemma2", "gemma3_text"):
        return "gemma2"
    if mt == "gpt2":
        return "gpt2"
    if mt == "gpt_neox":
        return "gpt_neox.parallel" if getattr(config, "use_parallel_residual", True) else "gpt_neox"
    if mt == "opt":
        return "opt" if getattr(config, "do_layer_norm_before", True) else "opt.post_norm"
    if mt == "falcon":
        new = bool(getattr(config, "new_decoder_architecture", False))
        if not (new or getattr(config, "parallel_attn", True)):
            return "falcon"
        n_ln = getattr(config, "num_ln_in_parallel_attn", None) or (2 if new else 1)
        return "falcon.parallel_2ln" if new and n_ln == 2 else "falcon.parallel"
    return None


# Sequential layouts recognizable from a layer's children alone (parallel ones need the config's switch).
_TREE_DETECTABLE = ("gemma2", "llama", "gpt2")

# canonical per-layer name -> (submodule path inside a decoder layer, "output" | "input"): the default (Llama)
# layout, kept for callers that only need the list of kinds or the Llama paths.
LAYER_HOOKS: dict[str, tuple[str, str]] = {k: (ARCH_HOOKS["llama"][k].path, ARCH_HOOKS["llama"][k].direction)
                                           for k in HOOK_KINDS}
_NAME_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


class HookNameError(ValueError):
    """A hook name that is unknown, a layer out of range, or a hook the model's architecture lacks."""


@dataclass(frozen=True)
class HookPoint:
    name: str
    layer: int
    kind: str  # one of HOOK_KINDS
    module_path: str  # full dotted path inside the wrapped model
    direction: str  # "output" or "input"
    flat: bool = False  # see Site
    copy: bool = False  # see Site
    layer_path: str = ""  # full dotted path of the decoder layer


_LAYERS_SEEN: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def find_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The decoder's layer list and its dotted path (``model.layers``, ``transformer.h``, ``gpt_neox.layers``,
    ``model.decoder.layers``; under PEFT e.g. ``base_model.model.model.layers``): the shortest-named
    ModuleList called ``layers``, ``h`` or ``blocks``. The path found is remembered per model (hooks are
    attached every batch) and re-searched only if it no longer leads to a ModuleList."""
    seen = _LAYERS_SEEN.get(model)
    if seen is not None:
        try:
            mod = model.get_submodule(seen)
            if isinstance(mod, torch.nn.ModuleList):
                return seen, mod
        except AttributeError:
            pass
    found = _search_layers(model)
    _LAYERS_SEEN[model] = found[0]
    return found


def _search_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks"):
            if best is None or len(name) < len(best[0]):
                best = (name, mod)
    if best is None:
        raise HookNameError(f"no decoder layer list found in {type(model).__name__}")
    return best


def _model_config(model: torch.nn.Module):
    cfg = getattr(model, "config", None)
    get_base = getattr(model, "get_base_model", None)
    if cfg is None and callable(get_base):  # a PeftModel without a forwarded config
        cfg = getattr(get_base(), "config", None)
    return cfg


def _has_path(layer: torch.nn.Module, path: str) -> bool:
    try:
        layer.get_submodule(path)
        return True
    except AttributeError:
        return False


def _norm_children(layer: torch.nn.Module) -> set[str]:
    return {n for n, c in layer.named_children() if "norm" in type(c).__name__.lower()}


def _tree_matches(layer: torch.nn.Module, layout: str) -> bool:
    """Every site path of the layout exists in the layer, and the layer has no norms the layout does not name
    (so e.g. Gemma 2's sandwich norms or OLMo 2's post-norms are not taken for Llama's)."""
    sites = [s for s in ARCH_HOOKS[layout].values() if isinstance(s, Site)]
    if not all(_has_path(layer, s.path) for s in sites if s.path):
        return False
    used = {s.path.split(".")[0] for s in sites if s.path}
    return _norm_children(layer) <= used


def hook_layout(model: torch.nn.Module) -> str:
    """The ``ARCH_HOOKS`` key of a HF decoder (a PeftModel, or a causal-LM or sequence-classification head):
    from ``config.model_type``, else from the decoder layer's module tree; HookNameError naming the layer class
    and its children when neither gives one."""
    cfg = _model_config(model)
    layout = _layout_of_config(cfg) if cfg is not None else None
    if layout is not None:
        return layout
    _, layers = find_layers(model)
    layer = layers[0]
    for cand in _TREE_DETECTABLE:
        if _tree_matches(layer, cand):
            return cand
    children = ", ".join(f"{n} ({type(c).__name__})" for n, c in layer.named_children())
    mt = getattr(cfg, "model_type", None)
    raise HookNameError(
        f"no hook mapping for architecture {mt!r}: decoder layer {type(layer).__name__} has children [{children}], "
        f"which match none of the mapped layouts ({', '.join(ARCH_HOOKS)}); add an entry to interp.models.hooks.ARCH_HOOKS"
    )


def layer_sites(model: torch.nn.Module) -> tuple[str, dict[str, Site | str]]:
    """(layout name, its ``ARCH_HOOKS`` entry) for a model."""
    layout = hook_layout(model)
    return layout, ARCH_HOOKS[layout]


def site_for(sites: Mapping[str, Site | str], kind: str, layout: str = "") -> Site:
    """The Site of a hook kind in a layout; HookNameError with the reason where the hook has no meaning."""
    s = sites.get(kind)
    if s is None:
        raise HookNameError(f"unknown hook name {kind!r}; expected one of {', '.join(HOOK_KINDS)}")
    if isinstance(s, str):
        raise HookNameError(f"{kind} is not available on this architecture ({layout}): {s}")
    return s


def mlp_dim(config: object) -> int:
    """MLP width (``mlp.hook_post``'s last dimension) from a HF config, across naming conventions."""
    for key in ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size"):
        v = getattr(config, key, None)
        if v:
            return int(v)
    return 4 * int(config.hidden_size)  # GPT-2's n_inner=None, Falcon's ffn_hidden_size=None


def positions_from_mask(config: object) -> bool:
    """Whether the HF forward derives position ids from the attention mask (OPT's learned positions count real
    tokens only), so a caller must not pass explicit 0..pos-1 ids to reproduce a plain forward."""
    return getattr(config, "model_type", None) == "opt"


def n_layers(model: torch.nn.Module) -> int:
    return len(find_layers(model)[1])


def layer_hook_name(layer: int, kind: str = "hook_resid_post") -> str:
    return f"blocks.{layer}.{kind}"


def parse_hook_name(model: torch.nn.Module, name: str) -> HookPoint:
    """Resolve a canonical name to its module; a clear error for unknown names, layers out of range, and
    hooks the architecture does not have (``hook_resid_mid`` on a parallel-residual layer)."""
    m = _NAME_RE.match(name)
    if not m or m.group(2) not in HOOK_KINDS:
        raise HookNameError(
            f"unknown hook name {name!r}; expected blocks.<layer>.<one of {', '.join(HOOK_KINDS)}>"
        )
    layer, kind = int(m.group(1)), m.group(2)
    path, layers = find_layers(model)
    if not 0 <= layer < len(layers):
        raise HookNameError(f"layer {layer} out of range: the model has {len(layers)} layers (0..{len(layers) - 1})")
    layout, sites = layer_sites(model)
    try:
        site = site_for(sites, kind, layout)
    except HookNameError as e:
        raise HookNameError(f"{name}: {e}") from None
    if site.path and not _has_path(layers[layer], site.path):
        lay = layers[layer]
        children = ", ".join(f"{n} ({type(c).__name__})" for n, c in lay.named_children())
        raise HookNameError(f"{name}: layout {layout!r} expects {site.path!r} in decoder layer {type(lay).__name__}, "
                            f"whose children are [{children}]; the interp.models.hooks.ARCH_HOOKS entry needs updating")
    lpath = f"{path}.{layer}"
    full = lpath + (f".{site.path}" if site.path else "")
    return HookPoint(name=name, layer=layer, kind=kind, module_path=full, direction=site.direction,
                     flat=site.flat, copy=site.copy, layer_path=lpath)


def unflatten(x: torch.Tensor, batch_pos: tuple[int, int] | None) -> torch.Tensor:
    """``# [batch*pos, d]`` -> ``# [batch, pos, d]`` (a view) when ``batch_pos`` matches; else x unchanged."""
    if batch_pos is not None and x.dim() == 2 and x.shape[0] == batch_pos[0] * batch_pos[1]:
        return einops.rearrange(x, "(batch pos) d -> batch pos d", batch=batch_pos[0])
    return x


def _hook_fn_adapter(fn: HookFn, hp: HookPoint, batch_pos: dict | None):
    """Wrap fn for a site's quirks: flat sites see ``# [batch, pos, d]`` and give the model back its 2-D layout;
    copy sites hand fn a copy. Returns g(x) -> tensor for the model, or None to leave x untouched."""
    if not hp.flat and not hp.copy:
        return fn

    def g(x):
        orig = x
        if hp.flat:
            x = unflatten(x, batch_pos.get(hp.layer_path) if batch_pos is not None else None)
        if hp.copy:
            x = x.clone()
        y = fn(x)
        if y is not None and y.shape != x.shape:
            raise ValueError(f"hook returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
        out = x if y is None else y
        if hp.copy:  # the model's in-place add must not reach what fn kept
            out = out.clone()
        # always hand back the tensor fn saw (or its copy), so gradients reach it (retain_grad in fn)
        return out.reshape(orig.shape) if out.shape != orig.shape else out

    return g


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


def _stamp_batch_pos(store: dict, key: str):
    """Pre-hook on a decoder layer recording its input's (batch, pos), for its flat sites."""

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs.get("hidden_states")
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            store[key] = (x.shape[0], x.shape[1])
        return None

    return hook


@contextlib.contextmanager
def hooks(model: torch.nn.Module, fwd_hooks: Mapping[str, HookFn]) -> Iterator[list]:
    """Attach hook functions by canonical name for the duration of the block; always removed on exit,
    so the model's logits afterwards are exactly the unhooked ones. Yields the torch handles."""
    handles = []
    batch_pos: dict[str, tuple[int, int]] = {}
    stamped: set[str] = set()
    try:
        for name, fn in fwd_hooks.items():
            hp = parse_hook_name(model, name)
            if hp.flat and hp.layer_path not in stamped:
                stamped.add(hp.layer_path)
                handles.append(model.get_submodule(hp.layer_path).register_forward_pre_hook(
                    _stamp_batch_pos(batch_pos, hp.layer_path), with_kwargs=True))
            mod = model.get_submodule(hp.module_path)
            g = _hook_fn_adapter(fn, hp, batch_pos)
            if hp.direction == "output":
                handles.append(mod.register_forward_hook(_wrap_output(g)))
            else:
                handles.append(mod.register_forward_pre_hook(_wrap_input(g), with_kwargs=True))
        yield handles
    finally:
        for h in handles:
            h.remove()


def chain(fns: Sequence[HookFn]) -> HookFn:
    """Apply several hook functions in order; each sees the previous one's output (None: unchanged)."""

    def f(x):
        changed = False
        for fn in fns:
            y = fn(x)
            if y is not None:
                if y.shape != x.shape:
                    raise ValueError(f"hook returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
                x, changed = y, True
        return x if changed else None

    return f


def select_positions(x: torch.Tensor, positions) -> torch.Tensor:
    """Pick positions from ``# [batch, pos, d]``: None keeps all; an int (e.g. -1, the last prompt token under
    left padding) or a ``[batch]`` index tensor gives ``# [batch, d]``; a list of ints gives ``# [batch, k, d]``."""
    if positions is None:
        return x
    if isinstance(positions, int):
        return x[:, positions]
    if isinstance(positions, torch.Tensor):
        idx = positions.to(x.device)
        if idx.ndim == 1:
            return x[torch.arange(x.shape[0], device=x.device), idx]
        return x[torch.arange(x.shape[0], device=x.device)[:, None], idx]
    return x[:, list(positions)]


Reduce = Callable[[str, torch.Tensor], torch.Tensor]


def record(x: torch.Tensor, name: str, positions) -> torch.Tensor:
    """What a caching pass keeps of activation ``x # [batch, pos, d]``: ``positions(name, x)`` when it is a
    function (a pooling, e.g. a masked mean), else ``select_positions(x, positions)``."""
    if callable(positions) and not isinstance(positions, torch.Tensor):
        return positions(name, x)
    return select_positions(x, positions)


def edit_then_save(fns: Sequence[HookFn], name: str | None, positions, store: dict,
                   reduce: Reduce | None = None) -> HookFn:
    """One hook: apply the edits ``fns`` in order, then record the result under ``name`` (None: record
    nothing), at ``positions`` (``record``) or as ``reduce(name, x)`` (e.g. a masked mean)."""
    chained = chain(fns) if fns else None

    def f(x):
        y = chained(x) if chained else None
        if name is not None:
            x_ = (x if y is None else y).detach()
            store[name] = reduce(name, x_) if reduce is not None else record(x_, name, positions)
        return y

    return f


@torch.no_grad()
def run_with_cache(
    model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], names: Sequence[str], positions=None,
    edits: Mapping[str, Sequence[HookFn]] | None = None, reduce: Reduce | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The one activation pass on a HF module (the hf backend, the probe pass and the RM scorer use it): one
    forward with the ``edits`` (name -> hook functions, applied in order) and the activations of ``names``
    taken after them, at ``positions`` (``select_positions``: a ``[batch]`` index tensor gives ``# [batch, d]``,
    None ``# [batch, pos, d]``) or pooled by ``reduce``. Returns (the model output's ``logits``, {name: tensor})."""
    todo, store = cache_hooks(names, positions, edits, reduce)
    with hooks(model, todo):
        logits = model(**inputs).logits
    return logits, store


def cache_hooks(names: Sequence[str], positions=None, edits: Mapping[str, Sequence[HookFn]] | None = None,
                reduce: Reduce | None = None) -> tuple[dict[str, HookFn], dict[str, torch.Tensor]]:
    """The hooks of one caching pass, by name (each applies its ``edits``, then records it if it is in
    ``names``), and the dict they fill: what ``run_with_cache`` attaches, and the transformer_lens backend too."""
    edits = edits or {}
    store: dict[str, torch.Tensor] = {}
    todo = {n: edit_then_save(list(edits.get(n, [])), n if n in names else None, positions, store, reduce)
            for n in [*edits, *(n for n in names if n not in edits)]}
    return todo, store
