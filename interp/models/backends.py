"""Hooked models behind one small interface, over three backends that share TransformerLens hook names.

- ``hf``: plain PyTorch hooks on the Hugging Face modules (``interp.models.hooks``); the fastest.
- ``transformer_lens``: a transformer-lens 4.x ``TransformerBridge`` booted around its own HF object
  (booting rewrites that object's layers in place, so it is never shared with another backend).
- ``nnsight``: an nnsight 0.8 ``TransformersModel`` over its own HF object; canonical names are translated to
  module paths (``model.layers.3`` or, under a PEFT wrapper, ``base_model.model.model.layers.3``). With
  ``remote=True`` the model is not loaded here: traces run on NDIF (needs an API key).

The hf and nnsight backends take module paths from one place, ``interp.models.hooks.parse_hook_name``, which finds
them by the model's structure (``structural_sites``); a hook an architecture lacks (``hook_resid_mid`` on a
parallel-residual layer) is a HookNameError.

Every backend takes the same inputs (a left-padded batch from ``interp.eval.evaluate.encode_batch``) and the same
hook functions ``fn(x) -> x' | None`` on ``# [batch, pos, d]`` tensors, and gives the same activations: the
parity tests compare each with HF ``output_hidden_states``. Explicit ``position_ids`` are passed to all three, so
the bridge and nnsight do not derive their own: the batch's own (``encode_batch(..., model)`` counts them over
each row's real tokens, so a left-padded row matches its unpadded forward, as in HF ``generate``), else
0..pos-1, what a plain HF forward uses; the exception to the latter is OPT, whose HF forward derives positions
from the mask itself (``hooks.positions_from_mask``).

Attention on the bridge: TransformerLens forces eager attention and reimplements it step by step (for its
attention-internal hooks, none of which is a name here). Inside ``cache``/``forward`` the bridge's Llama-style
attention runs HF's own function instead (``hf_attention``: what HF chose at load, usually sdpa), which removes
most of the bridge's cost; ``hooked.bridge`` used directly is left as TransformerLens made it. Real-token
positions agree with HF to float rounding; left-pad positions (fully masked query rows) may differ between
attention kernels and are never stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch

from interp.errors import InputError, InterpError, require_extra
from interp.models import hooks as hook_core
from interp.models.hooks import HookFn, HookName, select_positions
from interp.models.hooks import chain as _chain
from interp.models.protocol import Generation, LanguageModel

BACKENDS = ("hf", "transformer_lens", "nnsight")
Positions = "int | Sequence[int] | torch.Tensor | None"

class RemoteUnavailable(InterpError, RuntimeError):
    """nnsight remote execution was asked for but cannot run (no NDIF API key, or an unsupported option)."""


def with_position_ids(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inputs plus explicit ``position_ids`` 0..pos-1 ``# [batch, pos]`` (the HF default for a plain forward)."""
    out = dict(inputs)
    if "position_ids" not in out:
        ids = out["input_ids"]
        out["position_ids"] = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids).contiguous()
    return out


def adapter_hash(adapter: str | os.PathLike | None) -> str | None:
    """sha256 (16 hex) over an adapter folder's config and weight files; None without an adapter."""
    if not adapter:
        return None
    p = Path(adapter)
    if not p.is_dir():
        return hashlib.sha256(str(adapter).encode()).hexdigest()[:16]  # a hub id (remote): hash the name
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin") and f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Hooked:
    """A causal LM with TransformerLens-named hooks. Subclasses implement ``_run`` for one backend.

    ``model`` is the HF model (a ``PeftModel`` when an adapter is attached); ``hooks()`` edits or observes
    activations for the forward passes run through ``forward``/``cache`` inside the block."""

    model: torch.nn.Module | None
    tokenizer: object
    name: str
    adapter: str | None
    backend: str
    n_layers: int
    d_model: int
    d_mlp: int
    weights_hash: str = ""  # "" until asked for (``provenance``): then read from the model
    adapter_hash: str | None = None
    revision: str | None = None
    explicit_positions: bool = True  # pass position_ids 0..pos-1 (False: the model derives them from the mask)
    _active: list = field(default_factory=list, repr=False)
    _adapter_on: bool = field(default=True, repr=False)

    # ---- public -------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where inputs go (the embedding's device under ``device_map``)."""
        if self.model is None:
            return torch.device("cpu")
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        if self.model is None:
            return torch.float32
        return self.model.get_input_embeddings().weight.dtype

    @property
    def precision(self) -> str:
        """What the model computes in: ``bfloat16-mixed`` (``interp.models.precision``), else its weights' dtype."""
        from interp.models.precision import precision_name

        return precision_name(self.model)

    @property
    def takes_position_ids(self) -> bool:
        """Whether the forward accepts explicit ``position_ids`` (a remote model's mapped decoders do)."""
        from interp.models.answers import takes_position_ids

        return self.model is None or takes_position_ids(self.model)

    def check_names(self, names: Sequence[str]) -> None:
        """Raise HookNameError for an unknown name or a layer out of range."""
        for n in names:
            HookName.parse(n, self.n_layers)

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Mapping[str, HookFn]) -> Iterator["Hooked"]:
        """Edit (fn returns a tensor) or observe (fn returns None) activations by canonical name during
        ``forward``/``cache`` calls inside the block; removed on exit, restoring the logits exactly."""
        self.check_names(list(fwd_hooks))
        self._active.append(dict(fwd_hooks))
        try:
            yield self
        finally:
            self._active.pop()

    def _merged_hooks(self) -> dict[str, list[HookFn]]:
        merged: dict[str, list[HookFn]] = {}
        for layer in self._active:
            for n, fn in layer.items():
                merged.setdefault(n, []).append(fn)
        return merged

    @torch.no_grad()
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``# [batch, pos, vocab]`` with the active hooks applied."""
        return self.cache(inputs, [], None)[0]

    @torch.no_grad()
    def cache(
        self, inputs: Mapping[str, torch.Tensor], names: Sequence[str], positions=None, last_logits: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass: (logits ``# [batch, pos, vocab]``, {name: activation}). Activations are taken
        after the active hooks' edits, at ``positions`` (see ``select_positions``; a function ``(name, x) -> tensor``
        pools instead, ``hooks.record``), detached. ``last_logits``
        computes the unembedding at the last position only (HF ``logits_to_keep=1``): logits ``# [batch, 1, vocab]``,
        for callers that read the answer letter only (the store, the probe pass)."""
        self.check_names(names)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if self.explicit_positions:
            inputs = with_position_ids(inputs)
        if last_logits:
            inputs["logits_to_keep"] = 1
        return self._run(inputs, list(names), positions, self._merged_hooks())

    def set_adapter(self, enabled: bool) -> None:
        """Switch the PEFT adapter on or off (one copy of the weights: base = adapter disabled)."""
        if self.adapter is None:
            if enabled:
                raise InputError(f"{self.name} has no adapter to enable")
            return
        peft_model = self._peft_model()
        if enabled:
            peft_model.base_model.enable_adapter_layers()
        else:
            peft_model.base_model.disable_adapter_layers()
        self._adapter_on = enabled

    @contextlib.contextmanager
    def adapter_enabled(self, enabled: bool) -> Iterator["Hooked"]:
        """Temporarily switch the adapter on/off, restoring the previous state on exit."""
        prev = self._adapter_on
        self.set_adapter(enabled)
        try:
            yield self
        finally:
            self.set_adapter(prev) if self.adapter is not None else None

    @property
    def adapter_on(self) -> bool:
        return self.adapter is not None and self._adapter_on

    def provenance(self) -> dict:
        """What identifies the weights that produced an activation."""
        if not self.weights_hash:
            from interp.models.loading import weights_hash

            self.weights_hash = weights_hash(self.model)
        return dict(model=self.name, revision=self.revision or "", weights_hash=self.weights_hash,
                    adapter=self.adapter or "", adapter_hash=self.adapter_hash or "",
                    adapter_enabled=self.adapter_on, backend=self.backend, model_dtype=self.precision)

    # ---- backend hooks -------------------------------------------------------------------------------
    def _peft_model(self):
        return self.model

    def _run(self, inputs, names, positions, fwd):  # pragma: no cover - abstract
        raise NotImplementedError

    def generate(self, inputs: Mapping[str, torch.Tensor], max_new_tokens: int,
                 pad_token_id: int | None = None) -> Generation:  # pragma: no cover - abstract
        """Greedy decoding by the backend's own ``generate``; the active hooks apply at every step."""
        raise NotImplementedError


class HFHooked(Hooked):
    """Plain torch hooks on the HF modules (``interp.models.hooks``). Hooks are real torch hooks for the duration of
    ``hooks()``, so direct calls such as ``hooked.model.generate(...)`` inside the block see them too."""

    def check_names(self, names: Sequence[str]) -> None:
        """Raise HookNameError for an unknown name, a layer out of range, or a hook the architecture lacks."""
        for n in names:
            hook_core.parse_hook_name(self.model, n)

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Mapping[str, HookFn]) -> Iterator["Hooked"]:
        self.check_names(list(fwd_hooks))
        # a position-wise mark (hooks.positionwise: the shared-prefix pass keeps it) survives the shape check
        wrap = {n: (hook_core.positionwise(_chain([fn])) if hook_core.is_positionwise(fn) else _chain([fn]))
                for n, fn in fwd_hooks.items()}
        with hook_core.hooks(self.model, wrap):
            yield self

    def _run(self, inputs, names, positions, fwd):
        return hook_core.run_with_cache(self.model, inputs, names, positions, edits=fwd)  # logits [batch, pos, vocab]

    @torch.no_grad()
    def generate(self, inputs: Mapping[str, torch.Tensor], max_new_tokens: int,
                 pad_token_id: int | None = None) -> Generation:
        """HF ``generate`` (greedy, KV cache); hooks set with ``hooks()`` are torch hooks, so every step sees them."""
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_scores=True,
                                  return_dict_in_generate=True, pad_token_id=pad_token_id)
        return Generation(out.sequences, tuple(out.scores))


class TLHooked(Hooked):
    """transformer-lens 4.x ``TransformerBridge``; hooks via ``bridge.hooks(fwd_hooks=[(name, fn)])``, held for
    the duration of ``hooks()`` (so ``hooked.bridge.generate(...)`` inside the block sees them too)."""

    bridge: object = None
    hf_attn_implementation: str | None = None  # what HF chose at load ("sdpa", or "eager" where it prefers that)
    attn_targets: tuple = ((), ())  # what hf_attention switches: (attention bridges, HF configs), found once at load
    skip_unhooked: bool = True  # run the HF module itself wherever no hook is set in a pass (``skip_unhooked``)

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Mapping[str, HookFn]) -> Iterator["Hooked"]:
        self.check_names(list(fwd_hooks))
        pairs = [(self._tl_name(n), (lambda f: lambda x, hook: f(x))(_chain([fn]))) for n, fn in fwd_hooks.items()]
        with self.bridge.hooks(fwd_hooks=pairs):
            yield self

    def _tl_name(self, name: str) -> str:
        """The bridge's own name for a canonical one (a negative layer counted from the end)."""
        return str(HookName.parse(name, self.n_layers))

    def _run(self, inputs, names, positions, fwd):
        todo, store = hook_core.cache_hooks(names, positions, fwd)
        pairs = [(self._tl_name(n), (lambda f: lambda x, hook: f(x))(f)) for n, f in todo.items()]
        with self.bridge.hooks(fwd_hooks=pairs), hf_attention(self.attn_targets, self.hf_attn_implementation), \
                skip_unhooked(self.model, self.skip_unhooked):
            kw = {k: v for k, v in inputs.items() if k not in ("input_ids",)}
            logits = self.bridge(inputs["input_ids"], **kw)  # [batch, pos, vocab]
        return logits, store

    @torch.no_grad()
    def generate(self, inputs: Mapping[str, torch.Tensor], max_new_tokens: int,
                 pad_token_id: int | None = None) -> Generation:
        """The bridge's own ``generate`` (greedy, KV cache), positions from the attention mask, inside the hooks held
        by ``hooks()``; as in ``cache``, attention runs HF's own function (``hf_attention``) and unhooked components
        run as plain HF (``skip_unhooked``). (The bridge's eager attention reimplementation, under its KV cache,
        decodes other tokens than HF from the second new token on: docs/results.md.) Finished rows are padded
        with EOS, which decoded replies skip."""
        ids = inputs["input_ids"].to(self.device)
        mask = inputs.get("attention_mask")
        with hf_attention(self.attn_targets, self.hf_attn_implementation), \
                skip_unhooked(self.model, self.skip_unhooked):
            out = self.bridge.generate(ids, attention_mask=None if mask is None else mask.to(self.device),
                                       max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                                       use_past_kv_cache=True, verbose=False, return_type="tokens")
        return Generation(out.sequences, tuple(out.logits))


def _torch_hooked(m: torch.nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


_HOOK_POINTS: "weakref.WeakKeyDictionary[torch.nn.Module, list]" = weakref.WeakKeyDictionary()


def _hooked_subtrees(root: torch.nn.Module) -> set[int]:
    """ids of the modules under ``root`` (itself included) with a TransformerLens HookPoint below them that has a
    hook (TL's hooks are torch hooks on the HookPoint). Each HookPoint's chain of ancestors is found once per model."""
    from transformer_lens.hook_points import HookPoint

    chains = _HOOK_POINTS.get(root)
    if chains is None:
        chains = []

        def walk(m: torch.nn.Module, above: tuple[int, ...]) -> None:
            here = above + (id(m),)
            if isinstance(m, HookPoint):
                chains.append((m, here))
            for c in m._modules.values():
                if c is not None:
                    walk(c, here)

        walk(root, ())
        _HOOK_POINTS[root] = chains
    out: set[int] = set()
    for hp, ids in chains:
        if _torch_hooked(hp):
            out.update(ids)
    return out


@contextlib.contextmanager
def skip_unhooked(hf_model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """For the block, every bridge component of the booted HF model whose subtree has no hook set is replaced, in its
    parent, by the HF module it wraps, so that the pass does none of the bridge's per-component Python work there
    (its hook points, kwargs filtering, re-dispatch): the unhooked parts run as plain HF. A block whose hooks are on
    its input or output only (resid_pre, resid_post) is replaced too, its two hook points fired by torch hooks on
    the HF layer where ``BlockBridge.forward`` fires them. Any other component with a hook set in it stays, and so
    does one carrying its block's capture hooks (hook_mlp_in, the split-qkv fork) inside a block that stays. Call
    inside ``bridge.hooks(...)``, which sets the hooks this looks for; the bridge is put back on exit."""
    if not enabled:
        yield
        return
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent
    from transformer_lens.model_bridge.generalized_components.block import BlockBridge

    swaps: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    handles: list = []
    hooked = _hooked_subtrees(hf_model)

    def ends_only(block: torch.nn.Module) -> bool:
        """A block whose hooks sit on its input and output hook points only (resid_pre, resid_post)."""
        return id(block.original_component) not in hooked and all(
            id(m) not in hooked for n, m in block._modules.items() if n not in ("hook_in", "hook_out"))

    def block_ends(block: torch.nn.Module, orig: torch.nn.Module) -> None:
        """The block's hook_in / hook_out as torch hooks on the HF layer, where BlockBridge.forward fires them."""
        if id(block.hook_in) in hooked:
            def pre(module, args, kwargs, hp=block.hook_in):
                if args and isinstance(args[0], torch.Tensor):
                    return (hp(args[0]),) + tuple(args[1:]), kwargs
                if isinstance(kwargs.get("hidden_states"), torch.Tensor):
                    return args, {**kwargs, "hidden_states": hp(kwargs["hidden_states"])}
                return None
            handles.append(orig.register_forward_pre_hook(pre, with_kwargs=True))
        if id(block.hook_out) in hooked:
            def post(module, args, output, hp=block.hook_out):
                if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                    return (hp(output[0]),) + tuple(output[1:])
                return hp(output) if isinstance(output, torch.Tensor) else None
            handles.append(orig.register_forward_hook(post))

    def visit(parent: torch.nn.Module, free: bool) -> None:
        # free: an ancestor bridge was replaced, so capture hooks found below fire only hook-free hook points
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            orig = child.original_component if isinstance(child, GeneralizedComponent) else None
            if orig is None:
                visit(child, free)
            elif (free or not _torch_hooked(child)) and (
                    id(child) not in hooked or (type(child) is BlockBridge and ends_only(child))):
                parent._modules[name] = orig
                swaps.append((parent, name, child))
                if id(child) in hooked:
                    block_ends(child, orig)
                visit(orig, True)
            else:
                visit(orig, free)

    try:
        visit(hf_model, False)
        yield
    finally:
        for h in handles:
            h.remove()
        for parent, name, child in reversed(swaps):
            parent._modules[name] = child


def attention_targets(bridge, hf_model) -> tuple[list, list]:
    """What ``hf_attention`` switches, found once per loaded model: the bridge's attention components whose
    eager reimplementation we know (exactly ``PositionEmbeddingsAttentionBridge``, the Llama-style one) and,
    when there are any, every HF config that chooses the attention function (other layouts keep theirs)."""
    from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (
        PositionEmbeddingsAttentionBridge)

    patched = [m for m in bridge.modules() if type(m) is PositionEmbeddingsAttentionBridge]
    configs = {id(c): c for m in (hf_model.modules() if patched else ()) for c in [getattr(m, "config", None)]
               if c is not None and hasattr(c, "_attn_implementation")}
    return patched, list(configs.values())


@contextlib.contextmanager
def hf_attention(targets: tuple, implementation: str | None = "sdpa") -> Iterator[None]:
    """For the block, the bridge's attention runs HF's own attention function (``implementation``: what HF chose
    when the model was loaded, usually sdpa; None or "eager" leaves the bridge as it is) instead of its step-by-step
    eager reimplementation. The reimplementation exists to fire the attention-internal hooks (``hook_pattern``,
    ``hook_attn_scores``, ``hook_rot_q``...), and no canonical name here is one of those: every name we hook lives
    on a block's input or output, the MLP or the norms, which fire as before. TransformerLens's own delegating
    forward (``AttentionBridge.forward``: hook_in, HF module, hook_out) is used on the components of
    ``targets`` (``attention_targets``); the parity tests compare every hook and the logits with plain HF.
    Restored on exit, so ``hooked.bridge`` used directly is unchanged."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    patched, configs = targets
    if implementation in (None, "eager") or not patched:  # nothing to gain: the bridge's own math is eager too
        yield
        return
    before = [(c, c._attn_implementation) for c in configs]
    try:
        for m in patched:  # object.__setattr__: a bridge component forwards attribute writes to the HF module
            object.__setattr__(m, "forward", AttentionBridge.forward.__get__(m))
        for c, _ in before:
            c._attn_implementation = implementation
        yield
    finally:
        for m in patched:
            if "forward" in vars(m):
                object.__delattr__(m, "forward")
        for c, v in before:
            c._attn_implementation = v


class NNsightHooked(Hooked):
    """nnsight 0.8 ``TransformersModel``: one trace per forward; names become module paths."""

    nn: object = None
    remote: bool | str = False
    module: torch.nn.Module | None = None  # the module tree hook points are found in (meta weights when remote)

    def point(self, name: str) -> hook_core.HookPoint:
        """Where a canonical name lives in the wrapped model (``interp.models.hooks.parse_hook_name``)."""
        return hook_core.parse_hook_name(self.module if self.module is not None else self.model, name)

    def module_path(self, name: str) -> tuple[str, str]:
        """(module path inside the wrapped model, 'input' | 'output') for a canonical name."""
        hp = self.point(name)
        return hp.module_path, hp.direction

    def check_names(self, names: Sequence[str]) -> None:
        """Raise HookNameError for an unknown name, a layer out of range, or a hook the architecture lacks."""
        for n in names:
            self.point(n)

    def _visit(self, fwd: Mapping[str, Sequence[HookFn]], names: Sequence[str], positions, batch: int,
               saved: dict) -> None:
        """Inside a trace (or one generation step): apply the edits ``fwd`` and save ``names``, visiting the
        sites in forward order."""
        import nnsight

        points = {n: self.point(n) for n in [*fwd, *names]}
        for n in sorted(points, key=lambda n: (points[n].layer, points[n].stage)):  # the order the forward runs
            site = points[n]
            env = self.nn.get(site.module_path)
            raw = env.output if site.direction == "output" else env.input
            x0 = raw[0] if isinstance(raw, tuple) else raw
            # flat sites (OPT's MLP half) see [batch*pos, d]
            x = hook_core.unflatten(x0, (batch, x0.shape[0] // batch)) if site.flat else x0  # [batch, pos, d]
            if site.copy:  # the model adds into this tensor in place later
                x = x.clone()
            y = _chain(fwd[n])(x) if n in fwd else None
            if y is not None:
                back = (y.clone() if site.copy else y).reshape(x0.shape)
                new = (back,) + tuple(raw[1:]) if isinstance(raw, tuple) else back
                if site.direction == "output":
                    env.output = new
                else:
                    env.input = new
            if n in names:
                saved[n] = nnsight.save(hook_core.record((x if y is None else y).detach(), n, positions))

    def _run(self, inputs, names, positions, fwd):
        import nnsight

        saved: dict[str, object] = {}
        first = inputs["input_ids"] if "input_ids" in inputs else inputs["inputs_embeds"]
        inputs = dict(inputs)
        kw = {"remote": self.remote} if self.remote else {}
        if "logits_to_keep" in inputs:  # a model keyword, not an input nnsight batches
            kw["logits_to_keep"] = inputs.pop("logits_to_keep")
        with self.nn.trace(inputs, **kw):
            self._visit(fwd, names, positions, first.shape[0], saved)
            out = self.nn.output
            logits = nnsight.save(out.logits if hasattr(out, "logits") else out[0])
        return logits, {n: saved[n] for n in names}

    @torch.no_grad()
    def generate(self, inputs: Mapping[str, torch.Tensor], max_new_tokens: int,
                 pad_token_id: int | None = None) -> Generation:
        """nnsight's own ``generate`` (HF's, greedy, KV cache) with the active hooks applied at every step
        (``tracer.iter[:]``); the result is saved from a second invoke, which runs after the loop."""
        fwd = self._merged_hooks()
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        kw = {"remote": self.remote} if self.remote else {}
        batch = inputs["input_ids"].shape[0]
        with warnings.catch_warnings():  # the open loop's request for a step past the last one is expected
            warnings.filterwarnings("ignore", message=".*was never reached.*")
            with self.nn.generate(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_token_id,
                                  output_scores=True, return_dict_in_generate=True, **kw) as tracer:
                with tracer.invoke(inputs):
                    if fwd:
                        for _ in tracer.iter[:]:
                            self._visit(fwd, [], None, batch, {})
                with tracer.invoke():
                    out = tracer.result.save()
        return Generation(out.sequences, tuple(out.scores))


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(hf_logging.CRITICAL)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _peft_attach(model, adapter: str, path: str):
    from peft import PeftModel

    from interp.models.loading import check_adapter_base

    check_adapter_base(adapter, path, model)
    return PeftModel.from_pretrained(model, adapter).eval()


def ndif_api_key() -> str | None:
    """The configured NDIF API key ($NDIF_API_KEY or nnsight's config), or None."""
    if os.environ.get("NDIF_API_KEY"):
        return os.environ["NDIF_API_KEY"]
    try:
        from nnsight import CONFIG

        return CONFIG.API.APIKEY or None
    except Exception:  # noqa: BLE001 - nnsight config unreadable: treat as unset
        return None


def hf_handle(model: torch.nn.Module, tokenizer, name: str = "", adapter: str | None = None) -> HFHooked:
    """The hf-backend handle of an HF (or PEFT) module already in memory (a causal LM, or a sequence classifier
    for the RM scorer); the weights hash is read only when provenance is asked for."""
    from interp.models.hooks import _model_config

    cfg = _model_config(model)
    text = getattr(cfg, "get_text_config", lambda: cfg)()
    return HFHooked(model=model, tokenizer=tokenizer, name=name or str(getattr(cfg, "name_or_path", "") or ""),
                    adapter=adapter, backend="hf", n_layers=hook_core.n_layers(model), d_model=text.hidden_size,
                    d_mlp=hook_core.mlp_dim(text), adapter_hash=adapter_hash(adapter),
                    revision=getattr(cfg, "_commit_hash", None), explicit_positions=not hook_core.positions_from_mask(cfg))


def as_lm(obj, tokenizer=None) -> LanguageModel:
    """The model handle for ``obj``, converted once at the API boundary: a handle (``load_hooked``, any backend)
    as it is; a ``LoadedModel``, or a bare HF/PEFT module with its ``tokenizer``, on the hf backend."""
    from interp.models.loading import LoadedModel

    if isinstance(obj, Hooked):
        return obj
    if isinstance(obj, LoadedModel):
        return hf_handle(obj.model, obj.tokenizer, obj.name, obj.adapter)
    if isinstance(obj, torch.nn.Module):
        return hf_handle(obj, tokenizer)
    raise TypeError(f"expected a model handle (interp.load), a LoadedModel or a torch module, not {type(obj).__name__}")


def load_hooked(
    name_or_path: str,
    adapter: str | None = None,
    backend: str = "hf",
    device: str | None = None,
    dtype: str | None = "auto",
    device_map: str | None = None,
    remote: bool | str = False,
) -> Hooked:
    """Load a causal LM (hub id, local folder or 'organism'), optionally with a PEFT adapter (switchable with
    ``set_adapter``), and wrap it with a backend: 'hf', 'transformer_lens' or 'nnsight'.

    ``device_map='auto'`` spreads a model too large for one GPU. ``remote=True`` (nnsight only) runs every
    trace on NDIF instead of loading weights here; it needs an NDIF API key ($NDIF_API_KEY)."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend != "hf":  # an optional extra: named before any weights load
        require_extra(backend)
    if remote:
        if backend != "nnsight":
            raise RemoteUnavailable(f"remote execution is an nnsight feature; use --backend nnsight, not {backend}")
        if remote is True and not ndif_api_key():
            raise RemoteUnavailable(
                "remote=True runs on NDIF and needs an API key: set NDIF_API_KEY (or run "
                "`python -c 'import nnsight; nnsight.CONFIG.set_default_api_key(\"KEY\")'`); "
                "get a key at https://login.ndif.us"
            )
        if remote is True:
            return _load_remote(name_or_path, adapter)
    from interp.models.loading import load_model, resolve_model_path, weights_hash

    path = resolve_model_path(name_or_path)
    lm = load_model(name_or_path, adapter=None, device=device, dtype=dtype, device_map=device_map,
                    mixed_ok=backend != "transformer_lens")
    base = lm.model
    cfg = base.config
    info = dict(tokenizer=lm.tokenizer, name=name_or_path, adapter=adapter, backend=backend,
                n_layers=hook_core.n_layers(base), d_model=cfg.hidden_size,
                d_mlp=hook_core.mlp_dim(cfg), weights_hash=weights_hash(base),
                adapter_hash=adapter_hash(adapter), revision=getattr(cfg, "_commit_hash", None))
    if backend != "transformer_lens":  # the bridge runs its own position handling
        info["explicit_positions"] = not hook_core.positions_from_mask(cfg)
    model = _peft_attach(base, adapter, path) if adapter else base
    model.eval()
    if backend == "hf":
        return HFHooked(model=model, **info)
    if backend == "transformer_lens":
        from transformer_lens.model_bridge import TransformerBridge

        hf = model.base_model.model if adapter else model  # LoRA layers are injected in place: the bridge
        hf_attn = getattr(base.config, "_attn_implementation", None)  # HF's own choice, before the bridge's eager
        bridge = TransformerBridge.boot_transformers(  # wraps them, and disable_adapter_layers still applies
            path, hf_model=hf, tokenizer=lm.tokenizer, dtype=base.dtype,
            device=None if device_map else str(lm.device))
        bridge.eval()
        h = TLHooked(model=model, **info)
        h.bridge = bridge
        h.hf_attn_implementation = hf_attn
        h.attn_targets = attention_targets(bridge, model)
        return h
    from nnsight import TransformersModel

    with _quiet_transformers():  # the pipeline logs that a PeftModel is 'not supported': it works
        nn = TransformersModel(model, tokenizer=lm.tokenizer, task="text-generation")
    lm.tokenizer.padding_side = "left"
    h = NNsightHooked(model=model, **info)
    h.nn = nn
    h.remote = remote  # False, or "local" (serialize and run here: a dry run of the remote path)
    return h


def _load_remote(name: str, adapter: str | None) -> NNsightHooked:
    """An nnsight model whose traces run on NDIF: only the config (meta weights) is loaded here."""
    from nnsight import TransformersModel

    nn = TransformersModel(name, task="text-generation", peft=adapter)
    cfg = nn._module.config
    tok = nn.tokenizer
    tok.padding_side = "left"
    h = NNsightHooked(model=None, tokenizer=tok, name=name, adapter=adapter, backend="nnsight",
                      n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size,
                      d_mlp=hook_core.mlp_dim(cfg), explicit_positions=not hook_core.positions_from_mask(cfg),
                      weights_hash=f"remote:{name}@{getattr(cfg, '_commit_hash', None) or 'main'}",
                      adapter_hash=adapter_hash(adapter), revision=getattr(cfg, "_commit_hash", None))
    h.nn = nn
    h.module = nn._module
    h.remote = True
    return h
