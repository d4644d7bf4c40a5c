"""TransformerLens-named hook points on plain Hugging Face decoder models, as temporary PyTorch hooks.

This is the backend-free core, and the one module that builds and parses hook names: ``HookName`` is the value
type (``HookName.parse('blocks.-1.hook_resid_post', n_layers)``, ``str(HookName(3, 'mlp.hook_post'))``), and
``hook_names`` expands a layer spec (``interp.layers``). It resolves a canonical name such as
``blocks.3.hook_resid_post`` to a module of a HF decoder (also under a PEFT wrapper) and runs hook functions
there. The transformer-lens and nnsight backends (``interp.models.backends``) use the same names; the hf and
nnsight backends use the same hook points.

Hook points are found by structure, not from a table of architectures (``structural_sites``): the decoder's
layer list is its largest ModuleList, wherever the model keeps it; the residual stream is the input and output of
each layer; attn_out and mlp_out are the outputs of the layer's attention and MLP children; mlp.hook_post is the
input of the MLP's down projection; ln1 / ln2 are the layer's two norms and hook_resid_mid the second one's
input. ``ARCH_EXCEPTIONS`` holds only what that rule gets wrong (Gemma 2/3's sandwich norms, OLMo 2's post-norms,
post-norm OPT and GPT-1, Falcon's norm order and in-place add, a residual added inside a module or scaled), each
with a test (tests/test_architectures.py, tests/test_arch_zoo.py); a layer with more than two norms refuses
attn_out / mlp_out rather than guess. Semantics follow TransformerLens: ``hook_resid_mid`` does not
exist on parallel-attention layers (GPT-NeoX/Pythia, most Falcons, GPT-J), where attention and MLP both read
resid_pre; asking for it raises ``HookNameError`` instead of returning some other tensor.

As in TransformerLens, ``hook_resid_mid`` is observed at the input of the second norm: an edit there reaches
the MLP branch but not the residual connection that skips the MLP.

A hook function receives the activation tensor ``# [batch, pos, d]`` and returns None (observe) or a tensor
of the same shape (replace).
"""

from __future__ import annotations

import contextlib
import numbers
import re
import weakref
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Mapping, Sequence

import einops
import torch

from interp.errors import InputError, InterpError
from interp.layers import resolve_layers

HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass(frozen=True)
class Site:
    """Where one canonical hook lives inside a decoder layer."""

    path: str  # submodule path inside the layer; "" is the layer itself
    direction: str  # "input" | "output" of that module
    flat: bool = False  # the module may see tokens flattened to [batch*pos, d] (OPT's MLP half); fns get [batch, pos, d]
    copy: bool = False  # the model adds into this output in place (parallel Falcon's MLP): fns get a copy


# The canonical per-layer hook kinds.
HOOK_KINDS: tuple[str, ...] = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
                               "hook_mlp_out", "mlp.hook_post", "ln1.hook_normalized", "ln2.hook_normalized")
# The order in which a sequential layer computes them (nnsight must visit modules in forward order); an exception
# of ARCH_EXCEPTIONS whose layer runs in another order lists its own.
FORWARD_ORDER: tuple[str, ...] = ("hook_resid_pre", "ln1.hook_normalized", "hook_attn_out", "hook_resid_mid",
                                  "ln2.hook_normalized", "mlp.hook_post", "hook_mlp_out", "hook_resid_post")
_NAME_RE = re.compile(r"^blocks\.(-?\d+)\.(.+)$")


class HookNameError(InterpError, ValueError):
    """A hook name that is unknown, a layer out of range, or a hook the model's architecture lacks."""


@dataclass(frozen=True, order=True)
class HookName:
    """One per-layer hook point by its TransformerLens name, ``blocks.{layer}.{kind}`` (``str()`` gives it).
    A negative layer counts from the end (-1 is the last) until ``resolve`` pins it to a model's depth."""

    layer: int
    kind: str = "hook_resid_post"  # one of HOOK_KINDS

    def __post_init__(self) -> None:
        if isinstance(self.layer, bool) or not isinstance(self.layer, numbers.Integral):
            raise HookNameError(f"a hook's layer must be an integer, not {self.layer!r}")
        object.__setattr__(self, "layer", int(self.layer))  # numpy ints too
        if self.kind not in HOOK_KINDS:
            raise HookNameError(f"unknown hook name 'blocks.{self.layer}.{self.kind}' (kind {self.kind!r}); "
                                f"expected blocks.<layer>.<one of {', '.join(HOOK_KINDS)}>")

    @classmethod
    def parse(cls, name: "str | HookName", n_layers: int | None = None) -> "HookName":
        """The HookName of ``blocks.<layer>.<kind>``, resolved against ``n_layers`` when given; HookNameError
        for anything else."""
        if isinstance(name, HookName):
            hn = name
        else:
            m = _NAME_RE.match(name) if isinstance(name, str) else None
            if not m or m.group(2) not in HOOK_KINDS:
                raise HookNameError(
                    f"unknown hook name {name!r}; expected blocks.<layer>.<one of {', '.join(HOOK_KINDS)}>")
            hn = cls(int(m.group(1)), m.group(2))
        return hn if n_layers is None else hn.resolve(n_layers)

    def resolve(self, n_layers: int) -> "HookName":
        """This name on a model of ``n_layers`` layers (a negative layer counted from the end); HookNameError
        for a layer out of range."""
        k = self.layer + n_layers if self.layer < 0 else self.layer
        if not 0 <= k < n_layers:
            raise HookNameError(f"layer {self.layer} out of range: the model has {n_layers} layers "
                                f"(0..{n_layers - 1})")
        return self if k == self.layer else HookName(k, self.kind)

    def __str__(self) -> str:
        return f"blocks.{self.layer}.{self.kind}"


def hook_name(layer: int, kind: str = "hook_resid_post") -> str:
    """``blocks.{layer}.{kind}``, checked."""
    return str(HookName(layer, kind))


def layer_of(name: str, default: int | None = None) -> int:
    """The layer of a hook name; ``default`` for a string that is not one (None: raise HookNameError)."""
    try:
        return HookName.parse(name).layer
    except HookNameError:
        if default is None:
            raise
        return default


def hook_names(spec, n_layers: int, kinds: Sequence[str] = ("hook_resid_post",),
               available: Sequence[int] | None = None) -> list[str]:
    """``blocks.{l}.{kind}`` for every kind (outer) and every layer (inner) of a layer spec (``interp.layers``:
    'all', an int, '0,3,5', '2-6', a list; negative counts from the end)."""
    ls = resolve_layers(spec, n_layers, available)
    return [hook_name(l, k) for k in kinds for l in ls]


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
    stage: int = 0  # when the layer computes it (the index in its layout's forward order)


_LAYERS_SEEN: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def find_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The decoder's layer list and its dotted path, found by structure wherever the model keeps it
    (``model.layers``, ``transformer.h``, ``gpt_neox.layers``, ``model.decoder.layers``, ``backbone.layers``;
    under PEFT e.g. ``base_model.model.model.layers``): of the ModuleLists not inside another ModuleList (so an
    MoE's expert list is not a candidate), the one holding the most parameters (ties: the shorter path). The path
    found is remembered per model (hooks are attached every batch) and re-searched only if it no longer leads
    to a ModuleList."""
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
    best, best_key = None, None

    def walk(mod: torch.nn.Module, path: str) -> None:
        nonlocal best, best_key
        for name, child in mod.named_children():
            p = f"{path}.{name}" if path else name
            if isinstance(child, torch.nn.ModuleList):
                if len(child):
                    key = (sum(t.numel() for t in child.parameters()), -len(p))
                    if best_key is None or key > best_key:
                        best, best_key = (p, child), key
                continue  # nothing inside a ModuleList is the decoder's layer list
            walk(child, p)

    walk(model, "")
    if best is None:
        raise HookNameError(f"no decoder layer list (a ModuleList) found in {type(model).__name__}")
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


# ---- hook points by structure ------------------------------------------------------------------------------
def _is_norm(mod: torch.nn.Module) -> bool:
    return "norm" in type(mod).__name__.lower()


def _has_params(mod: torch.nn.Module) -> bool:
    return next(mod.parameters(), None) is not None


def _is_attention(name: str, mod: torch.nn.Module) -> bool:
    words = (name + " " + type(mod).__name__).lower()
    return not _is_norm(mod) and _has_params(mod) and ("attn" in words or "attention" in words)


def _is_mlp(name: str, mod: torch.nn.Module) -> bool:
    words = (name + " " + type(mod).__name__).lower()
    return (not _is_norm(mod) and _has_params(mod) and not _is_attention(name, mod)
            and any(w in words for w in ("mlp", "feed_forward", "feedforward", "ffn", "moe", "expert")))


def _out_dim(mod: torch.nn.Module) -> int | None:
    """Output width of a linear-like module (nn.Linear, GPT-2's Conv1D, a PEFT/quantized wrapper), else None."""
    base = getattr(mod, "base_layer", mod)
    for m in (mod, base):
        if isinstance(getattr(m, "out_features", None), int):
            return m.out_features
        if type(m).__name__ == "Conv1D" and isinstance(getattr(m, "nf", None), int):
            return m.nf
    return None


def _down_projections(mod: torch.nn.Module, d_model: int) -> list[str]:
    """Names of ``mod``'s direct linear-like children that write ``d_model`` wide."""
    return [n for n, c in mod.named_children() if _out_dim(c) == d_model]


def _parallel(config: object) -> bool:
    """The config's switch for attention and MLP both reading resid_pre (GPT-NeoX, StableLM, Falcon)."""
    return any(bool(getattr(config, k, False)) for k in ("use_parallel_residual", "parallel_attn",
                                                         "parallel_residual", "new_decoder_architecture"))


_PARALLEL_NO_MID = ("{arch} runs attention and MLP in parallel on resid_pre (as TransformerLens' parallel_attn_mlp):"
                    " there is no residual stream between them, so hook_resid_mid does not exist; use hook_resid_pre,"
                    " hook_attn_out or hook_mlp_out")


def structural_sites(layer: torch.nn.Module, config: object, d_model: int) -> dict[str, Site | str]:
    """Every canonical hook of one decoder layer found from its module tree (kind -> Site, or why it is absent):
    the residual stream is the layer's input and output; attn_out and mlp_out are the outputs of its attention
    and MLP children; mlp.hook_post is the input of the MLP's down projection (its one linear child writing
    ``d_model`` wide; a layer with no MLP child, as OPT's, keeps fc1/fc2 itself). ln1/ln2 are the outputs of
    its two norms in order, hook_resid_mid the second norm's input (sequential pre-norm layers only)."""
    children = [(n, c) for n, c in layer.named_children() if c is not None]
    norms = [n for n, c in children if _is_norm(c)]
    attn = [n for n, c in children if _is_attention(n, c)]
    mlp = [n for n, c in children if _is_mlp(n, c)]
    names = ", ".join(f"{n} ({type(c).__name__})" for n, c in children)
    where = f"decoder layer {type(layer).__name__} with children [{names}]"
    sites: dict[str, Site | str] = {"hook_resid_pre": Site("", "input"), "hook_resid_post": Site("", "output")}
    sites["hook_attn_out"] = (Site(attn[0], "output") if len(attn) == 1 else
                              f"{where} has {len(attn) or 'no'} attention children, so no single hook_attn_out")
    if len(mlp) == 1:
        sites["hook_mlp_out"] = Site(mlp[0], "output")
        down = _down_projections(layer.get_submodule(mlp[0]), d_model)
        sites["mlp.hook_post"] = (Site(f"{mlp[0]}.{down[0]}", "input") if len(down) == 1 else
                                  f"the MLP child {mlp[0]} of {where} has {len(down) or 'no'} linear children "
                                  f"writing {d_model} wide (a mixture of experts?), so no single mlp.hook_post")
    else:
        down = _down_projections(layer, d_model) if not mlp else []
        if len(down) == 1:  # no MLP child: the MLP's layers sit in the decoder layer (OPT, BioGPT, XGLM)
            sites["hook_mlp_out"] = Site(down[0], "output", flat=True)
            sites["mlp.hook_post"] = Site(down[0], "input", flat=True)
        else:
            why = f"{where} has {len(mlp) or 'no'} MLP children, so no single hook_mlp_out / mlp.hook_post"
            sites["hook_mlp_out"] = sites["mlp.hook_post"] = why
    flat = "hook_mlp_out" in sites and isinstance(sites["hook_mlp_out"], Site) and sites["hook_mlp_out"].flat
    if len(norms) == 2:
        sites["ln1.hook_normalized"] = Site(norms[0], "output")
        sites["ln2.hook_normalized"] = Site(norms[1], "output", flat=flat)
        sites["hook_resid_mid"] = (_PARALLEL_NO_MID.format(arch=f"this {type(layer).__name__}") if _parallel(config)
                                   else Site(norms[1], "input", flat=flat))
    elif len(norms) == 1:
        sites["ln1.hook_normalized"] = Site(norms[0], "output")
        sites["ln2.hook_normalized"] = f"{where} has one norm, whose output feeds both attention and MLP: " \
                                       f"there is no separate ln2; use ln1.hook_normalized"
        sites["hook_resid_mid"] = _PARALLEL_NO_MID.format(arch=f"{where}, with one norm,")
    else:
        why = f"{where} has {len(norms) or 'no'} norm children, not the two of a pre-norm layer"
        for k in ("ln1.hook_normalized", "ln2.hook_normalized", "hook_resid_mid"):
            sites[k] = why
        if len(norms) > 2:  # norms after the sublayers too (sandwich): their outputs are not what is added
            for k in ("hook_attn_out", "hook_mlp_out"):
                if isinstance(sites[k], Site):
                    sites[k] = why + f"; the extra norms may normalize the sublayer outputs, so {k} is not " \
                                     f"its child's output (add the layout to ARCH_EXCEPTIONS)"
    return {k: sites[k] for k in FORWARD_ORDER}


# Exceptions the structural rule gets wrong, by config.model_type: a function of the config giving the kinds it
# overrides (kind -> Site, or why the hook has no meaning), in that layout's forward order. Each has a test in
# tests/test_architectures.py.
def _sandwich(config: object) -> dict[str, Site | str]:
    # Gemma 2/3: norms after attention and after the MLP too; attn_out / mlp_out are what is added to the residual
    return {"ln1.hook_normalized": Site("input_layernorm", "output"),
            "hook_attn_out": Site("post_attention_layernorm", "output"),
            "hook_resid_mid": Site("pre_feedforward_layernorm", "input"),
            "ln2.hook_normalized": Site("pre_feedforward_layernorm", "output"),
            "hook_mlp_out": Site("post_feedforward_layernorm", "output")}


def _post_norms(config: object) -> dict[str, Site | str]:
    # OLMo 2 style: no pre-norms; each sublayer's output is normalized before the residual add
    why = ("this layer normalizes each sublayer's output (post-norm, as OLMo 2), not its input: there is no {}")
    return {"ln1.hook_normalized": why.format("ln1.hook_normalized"),
            "hook_attn_out": Site("post_attention_layernorm", "output"),
            "hook_resid_mid": Site("mlp", "input"),
            "ln2.hook_normalized": why.format("ln2.hook_normalized"),
            "hook_mlp_out": Site("post_feedforward_layernorm", "output")}


def _residual_inside(config: object) -> dict[str, Site | str]:
    why = ("BLOOM adds the residual inside its attention and MLP modules, so their outputs are resid_mid and "
           "resid_post, not {}")
    return {"hook_attn_out": why.format("hook_attn_out"), "hook_mlp_out": why.format("hook_mlp_out")}


def _mlp_residual_inside(config: object) -> dict[str, Site | str]:
    return {"hook_mlp_out": "MPT adds the residual inside its MLP module, so its output is resid_post, not "
                            "hook_mlp_out"}


def _scaled_residual(config: object) -> dict[str, Site | str]:
    why = ("this model scales each sublayer's output before the residual add (MiniCPM's scale_depth, MiniMax's "
           "alphas), so the attention / MLP child's output is not {}, what the residual receives")
    return {"hook_attn_out": why.format("hook_attn_out"), "hook_mlp_out": why.format("hook_mlp_out")}


def _gpt1(config: object) -> dict[str, Site | str]:
    why = "GPT-1 is post-norm (ln_1 after the attention add, ln_2 after the MLP add): there is no {}"
    return {k: why.format(k) for k in ("ln1.hook_normalized", "hook_resid_mid", "ln2.hook_normalized")}


def _opt(config: object) -> dict[str, Site | str]:
    if getattr(config, "do_layer_norm_before", True):
        return {}
    # OPT-350m style post-norm (do_layer_norm_before=False)
    return {"ln1.hook_normalized": "post-norm OPT (do_layer_norm_before=False) normalizes after the attention "
                                   "residual add, not before attention: there is no ln1.hook_normalized",
            "hook_resid_mid": "post-norm OPT (do_layer_norm_before=False) normalizes the stream between attention "
                              "and MLP, so no single tensor is both what the MLP reads and what its residual "
                              "carries: there is no hook_resid_mid",
            "ln2.hook_normalized": "post-norm OPT (do_layer_norm_before=False) normalizes after the MLP residual "
                                   "add: there is no ln2.hook_normalized"}


def _falcon(config: object) -> dict[str, Site | str]:
    if not _parallel(config):  # registers post_attention_layernorm before input_layernorm
        return {"ln1.hook_normalized": Site("input_layernorm", "output"),
                "hook_resid_mid": Site("post_attention_layernorm", "input"),
                "ln2.hook_normalized": Site("post_attention_layernorm", "output")}
    out: dict[str, Site | str] = {"hook_mlp_out": Site("mlp", "output", copy=True)}  # mlp_output += attn_output
    if getattr(config, "new_decoder_architecture", False) and (getattr(config, "num_ln_in_parallel_attn", None)
                                                                or 2) == 2:
        # ln_attn and ln_mlp both run before attention
        return {**out, "_order": ("hook_resid_pre", "ln1.hook_normalized", "ln2.hook_normalized", "hook_attn_out",
                                  "hook_resid_mid", "mlp.hook_post", "hook_mlp_out", "hook_resid_post")}
    return out


ARCH_EXCEPTIONS: dict[str, Callable[[object], dict]] = {
    "gemma2": _sandwich, "gemma3_text": _sandwich, "opt": _opt, "falcon": _falcon, "bloom": _residual_inside,
    "olmo2": _post_norms, "olmo3": _post_norms, "flex_olmo": _post_norms, "exaone4": _post_norms,
    "mpt": _mlp_residual_inside, "minicpm3": _scaled_residual, "minimax": _scaled_residual, "openai-gpt": _gpt1,
}

_SITES_SEEN: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, Site | str]]" = weakref.WeakKeyDictionary()


def d_model_of(model: torch.nn.Module) -> int:
    """The residual stream's width: the config's hidden size, else the input embedding's."""
    cfg = _model_config(model)
    for key in ("hidden_size", "n_embd", "d_model"):
        v = getattr(cfg, key, None)
        if isinstance(v, int):
            return v
    return int(model.get_input_embeddings().weight.shape[-1])


def layer_sites(model: torch.nn.Module, layer: int = 0) -> dict[str, Site | str]:
    """Every canonical hook of decoder layer ``layer`` (kind -> Site or why it is absent), in the order the layer
    computes them: by structure (``structural_sites``), with the model type's ``ARCH_EXCEPTIONS`` on top."""
    _, layers = find_layers(model)
    mod = layers[layer]
    sites = _SITES_SEEN.get(mod)
    if sites is None:
        cfg = _model_config(model)
        sites = structural_sites(mod, cfg, d_model_of(model))
        fix = ARCH_EXCEPTIONS.get(getattr(cfg, "model_type", None), lambda c: {})(cfg)
        order = fix.pop("_order", FORWARD_ORDER)
        sites = {k: fix.get(k, sites[k]) for k in order}
        # a submodule may see tokens flattened to [batch*pos, d] (OPT's MLP half, Llama 4's MoE): fns get them
        # unflattened (a no-op where they are not)
        sites = {k: replace(s, flat=True) if isinstance(s, Site) and s.path else s for k, s in sites.items()}
        _SITES_SEEN[mod] = sites
    return sites


def site_for(sites: Mapping[str, Site | str], kind: str) -> Site:
    """The Site of a hook kind; HookNameError with the reason where the hook has no meaning."""
    s = sites.get(kind)
    if s is None:
        raise HookNameError(f"unknown hook name {kind!r}; expected one of {', '.join(HOOK_KINDS)}")
    if isinstance(s, str):
        raise HookNameError(f"{kind} is not available on this architecture: {s}")
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
    """How many decoder layers the model has."""
    return len(find_layers(model)[1])


def parse_hook_name(model: torch.nn.Module, name: "str | HookName") -> HookPoint:
    """Resolve a canonical name (a negative layer counts from the end) to its module; a clear error for unknown
    names, layers out of range, and hooks the architecture does not have (``hook_resid_mid`` on a
    parallel-residual layer)."""
    path, layers = find_layers(model)
    hn = HookName.parse(name, len(layers))
    sites = layer_sites(model, hn.layer)
    try:
        site = site_for(sites, hn.kind)
    except HookNameError as e:
        raise HookNameError(f"{name}: {e}") from None
    lpath = f"{path}.{hn.layer}"
    full = lpath + (f".{site.path}" if site.path else "")
    return HookPoint(name=str(name), layer=hn.layer, kind=hn.kind, module_path=full, direction=site.direction,
                     flat=site.flat, copy=site.copy, layer_path=lpath, stage=list(sites).index(hn.kind))


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
            raise InputError(f"hook returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
        out = x if y is None else y
        if hp.copy:  # the model's in-place add must not reach what fn kept
            out = out.clone()
        # always hand back the tensor fn saw (or its copy), so gradients reach it (retain_grad in fn)
        return out.reshape(orig.shape) if out.shape != orig.shape else out

    return g


def _wrap_output(fn: HookFn):
    def hook(module, args, output):
        seq = isinstance(output, (tuple, list))  # a layer's (hidden, ...) or, as GPT-1's, [hidden, ...]
        x = output[0] if seq else output
        y = fn(x)
        if y is None:
            return None
        if y.shape != x.shape:
            raise InputError(f"hook returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
        return type(output)([y, *output[1:]]) if seq else y

    return hook


def _wrap_input(fn: HookFn):
    def hook(module, args, kwargs):
        if args:
            x, rest = args[0], args[1:]
            y = fn(x)
            return None if y is None else ((y,) + tuple(rest), kwargs)
        key = _input_key(kwargs)
        y = fn(kwargs[key])
        if y is None:
            return None
        return args, {**kwargs, key: y}

    return hook


def _input_key(kwargs: Mapping) -> str:
    """The keyword carrying a module's hidden states when it is called without positional arguments."""
    if "hidden_states" in kwargs:
        return "hidden_states"
    for k, v in kwargs.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return k
    raise HookNameError(f"cannot find the hidden states among the module's keyword inputs {sorted(kwargs)}")


def _stamp_batch_pos(store: dict, key: str):
    """Pre-hook on a decoder layer recording its input's (batch, pos), for its flat sites."""

    def hook(module, args, kwargs):
        x = args[0] if args else next((v for v in (kwargs.get("hidden_states"), *kwargs.values())
                                       if isinstance(v, torch.Tensor)), None)
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            store[key] = (x.shape[0], x.shape[1])
        return None

    return hook


POSITIONWISE = "interp_positionwise"


def positionwise(fn: HookFn) -> HookFn:
    """Mark a hook function as acting on each position alike (never selecting positions by index), so that a
    forward split into a shared prefix and the rest (interp.eval.prefix) gives it the same result."""
    setattr(fn, POSITIONWISE, True)
    return fn


def is_positionwise(hook) -> bool:
    """Whether a hook function (or the torch hook ``hooks`` made of it) carries the ``positionwise`` mark."""
    return bool(getattr(hook, POSITIONWISE, False))


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
                    positionwise(_stamp_batch_pos(batch_pos, hp.layer_path)), with_kwargs=True))
            mod = model.get_submodule(hp.module_path)
            g = _hook_fn_adapter(fn, hp, batch_pos)
            torch_hook = _wrap_output(g) if hp.direction == "output" else _wrap_input(g)
            if is_positionwise(fn):
                positionwise(torch_hook)
            if hp.direction == "output":
                handles.append(mod.register_forward_hook(torch_hook))
            else:
                handles.append(mod.register_forward_pre_hook(torch_hook, with_kwargs=True))
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
                    raise InputError(f"hook returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
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
