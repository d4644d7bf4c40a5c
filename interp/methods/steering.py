"""Activation steering: add alpha times a direction at one layer, as a removable, context-managed hook.

Alpha units. ``steer`` unit-normalizes the direction by default (``normalize=True``), so alpha is the L2 norm
of the vector added to the residual, in the model's own residual units; it is NOT scaled by the residual norm.
``direction_vector(d, units)`` gives the per-unit-alpha vector for the CLI's ``--units``:

- ``unit``: the unit direction (alpha = added norm);
- ``sigma``: the unit direction times the standard deviation of the items' projections on it (recorded when
  the direction was built), so alpha counts "standard deviations along the direction", comparable across
  layers and models;
- ``raw``: the difference of means itself (alpha = 1 moves the anti-congruent class mean onto the congruent one).

Positions. ``from_pos=None`` adds at every position. An integer adds from that position on, counted in the
padded batch (with left padding, negative values pick the same token in every row: -1 is the last prompt
token). In ``generate`` mode the hook also runs on each new token (KV-cache steps of one position); new tokens
lie after every prompt position, so they are always steered: ``from_pos`` is resolved on the prompt's forward
pass (a pass over more than one position starts a new sequence) and later one-token steps continue its count.
"""

from __future__ import annotations

import math

import contextlib
import contextvars
from types import SimpleNamespace
from typing import Mapping, Sequence

import numpy as np
import torch

from interp.models.hooks import HookNameError, layer_hook_name

UNITS = ("unit", "sigma", "raw")
CURVE_METRICS = ("acc_ambig", "acc_disambig", "abstain_ambig", "abstain_disambig", "s_AMB", "amb_commit_bias",
                 "s_DIS", "unparseable")


# prompt length during HookedLM.generate (full recompute each step, so positions restart at 0 every pass)
_PROMPT_LEN: contextvars.ContextVar[int | None] = contextvars.ContextVar("steering_prompt_len", default=None)


class SteeringError(ValueError):
    """A direction that does not fit the model (hidden size), or a layer out of range."""


def _hf_module(obj) -> torch.nn.Module | None:
    """The HF (or PEFT) module behind obj, or None when obj is a backend wrapper with its own ``.hooks``."""
    if isinstance(obj, torch.nn.Module) and not hasattr(obj, "run_with_hooks"):
        return obj
    if hasattr(obj, "hooks") and callable(obj.hooks) and not isinstance(obj, torch.nn.Module):
        return None
    inner = getattr(obj, "model", None)
    if isinstance(inner, torch.nn.Module) and not hasattr(inner, "run_with_hooks"):
        return inner
    return None


def _model_dims(obj) -> tuple[int | None, int | None]:
    """(n_layers, d_model) of a HF model or a backend wrapper, None where unknown."""
    mod = _hf_module(obj)
    if mod is not None:
        from interp.models.hooks import n_layers

        cfg = getattr(mod, "config", None)
        cfg = getattr(cfg, "get_text_config", lambda: cfg)() if cfg is not None else None
        return n_layers(mod), getattr(cfg, "hidden_size", None)
    for src in (obj, getattr(obj, "cfg", None), getattr(obj, "model", None)):
        if src is None:
            continue
        L = getattr(src, "n_layers", None)
        d = getattr(src, "d_model", None)
        if isinstance(L, int) or isinstance(d, int):
            return (L if isinstance(L, int) else None), (d if isinstance(d, int) else None)
    return None, None


def _as_vector(direction) -> torch.Tensor:
    if hasattr(direction, "vector"):  # interp.methods.directions.Direction
        direction = direction.vector
    v = torch.as_tensor(np.asarray(direction) if not isinstance(direction, torch.Tensor) else direction)
    if v.ndim != 1:
        raise SteeringError(f"direction must be a vector [d_model], got shape {tuple(v.shape)}")
    v = v.detach().float().cpu()
    if not bool(torch.isfinite(v).all()):
        raise SteeringError(f"direction has {int((~torch.isfinite(v)).sum())} NaN or inf value(s); refusing to steer")
    return v


def steering_fn(vector: torch.Tensor, from_pos: int | None = None):
    """The hook function ``x # [batch, pos, d] -> x + mask * vector`` (see the module doc for positions)."""
    vec = vector.detach().float()
    cast: dict[tuple, torch.Tensor] = {}
    state = {"offset": 0, "start": 0}

    def fn(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != vec.shape[0]:
            raise SteeringError(f"direction has size {vec.shape[0]} but the activation has size {x.shape[-1]}")
        key = (x.device, x.dtype)
        v = cast.get(key)
        if v is None:
            v = cast[key] = vec.to(device=x.device, dtype=x.dtype)
        if from_pos is None:
            return x + v
        T = x.shape[1]
        plen = _PROMPT_LEN.get()
        if plen is not None:  # recompute-style decoding (HookedLM.generate): every pass starts at 0
            state["offset"], state["start"] = 0, (from_pos if from_pos >= 0 else plen + from_pos)
        elif T > 1 or state["offset"] == 0:  # a new sequence (prompt pass)
            state["offset"] = 0
            state["start"] = from_pos if from_pos >= 0 else T + from_pos
        if T > 1 and state["start"] >= state["offset"] + T and not state.get("warned"):
            import warnings

            state["warned"] = True
            warnings.warn(f"from_pos {from_pos} is past the end of the {T}-position prompt batch: no prompt position "
                          "is steered (only generated tokens past it would be)", stacklevel=2)
        pos = torch.arange(state["offset"], state["offset"] + T, device=x.device)
        state["offset"] += T
        mask = (pos >= state["start"]).to(x.dtype)[None, :, None]  # [1, pos, 1]
        return x + mask * v

    return fn


def projection_fn(basis: torch.Tensor):
    """The hook function ``x # [batch, pos, d] -> x - (x U^T) U`` that removes the span of the orthonormal rows
    of ``basis # [k, d]`` from an activation at every position (directional ablation)."""
    U = basis.detach().float()
    if U.ndim != 2:
        raise SteeringError(f"projection basis must be [k, d], got shape {tuple(U.shape)}")
    cast: dict[tuple, torch.Tensor] = {}

    def fn(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != U.shape[-1]:
            raise SteeringError(f"projection basis has size {U.shape[-1]} but the activation has size {x.shape[-1]}")
        key = (x.device, x.dtype)
        u = cast.get(key)
        if u is None:
            u = cast[key] = U.to(device=x.device, dtype=x.dtype)
        return x - (x @ u.T) @ u

    return fn


class SteeringHandle:
    """An attached steering hook: a context manager, and removable with ``.remove()`` (idempotent)."""

    def __init__(self, target, hook_name: str, fn):
        self.hook_name = hook_name
        self.fn = fn
        mod = _hf_module(target)
        if mod is not None:
            from interp.models.hooks import hooks as hf_hooks

            self._cm = hf_hooks(mod, {hook_name: fn})
        elif hasattr(target, "hooks"):
            self._cm = target.hooks({hook_name: fn})
        else:
            raise TypeError(f"cannot steer a {type(target).__name__}: need a torch model or an object with .hooks()")
        self._cm.__enter__()
        self.active = True

    def remove(self) -> None:
        if self.active:
            self.active = False
            self._cm.__exit__(None, None, None)

    def __enter__(self) -> "SteeringHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def steer(model_or_hooked, direction, layer: int, alpha: float, hook: str = "hook_resid_post",
          from_pos: int | None = None, normalize: bool = True) -> SteeringHandle:
    """Add ``alpha * direction`` (unit-normalized unless ``normalize=False``) at ``blocks.{layer}.{hook}``
    until the returned handle is removed (or its ``with`` block ends). Works on a HF/PEFT model, a
    ``LoadedModel``, or a backend object with ``.hooks({name: fn})``."""
    v = _as_vector(direction)
    if not math.isfinite(float(alpha)):
        raise SteeringError(f"alpha must be a finite number, got {alpha}")
    L, d = _model_dims(model_or_hooked)
    if L is not None and not 0 <= layer < L:
        raise SteeringError(f"layer {layer} out of range: the model has {L} layers (0..{L - 1})")
    if layer < 0:
        raise SteeringError(f"layer {layer} out of range (negative)")
    if d is not None and hook.startswith("hook_resid") and v.shape[0] != d:
        raise SteeringError(f"direction has size {v.shape[0]} but the model's hidden size is {d}")
    if normalize:
        n = float(v.norm())
        if n == 0:
            raise SteeringError("cannot normalize a zero direction")
        v = v / n
    name = layer_hook_name(layer, hook)
    try:
        return SteeringHandle(model_or_hooked, name, steering_fn(float(alpha) * v, from_pos))
    except HookNameError as e:
        raise SteeringError(str(e)) from e


def direction_vector(direction, units: str = "unit") -> torch.Tensor:
    """The vector added per unit of alpha for a saved ``Direction`` (see the module doc for ``units``)."""
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, not {units!r}")
    if units == "raw":
        return direction.vector.float()
    u = direction.unit
    if units == "unit":
        return u
    sd = direction.meta.get("proj_std")
    if not sd:
        raise SteeringError(f"direction {direction.name} at {direction.hook} has no proj_std for sigma units")
    return u * float(sd)


# ----------------------------------------------------------------------------------------------
# evaluating through a backend object


class HookedLM(torch.nn.Module):
    """Makes a backend object (``interp.models.backends.Hooked``) look like a HF causal LM to ``evaluate_items``:
    ``forward`` runs ``hooked.forward`` (so hooks set with ``hooked.hooks`` apply, e.g. ``steer(hooked, ...)``)
    and ``generate`` is greedy decoding by full recomputation (no KV cache): slower than HF generate; as there,
    positions are counted over each row's real tokens (``interp.eval.evaluate.mask_position_ids``)."""

    def __init__(self, hooked, eos_token_id: int | None = None):
        super().__init__()
        self.hooked = hooked
        tok = hooked.tokenizer
        self.eos_token_id = eos_token_id if eos_token_id is not None else getattr(tok, "eos_token_id", None)
        self._anchor = torch.nn.Parameter(torch.zeros(1, device=hooked.device), requires_grad=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, **_):
        inputs = {"input_ids": input_ids}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        if position_ids is not None:
            inputs["position_ids"] = position_ids
        return SimpleNamespace(logits=self.hooked.forward(inputs))  # [batch, pos, vocab]

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, max_new_tokens: int = 4,
                 pad_token_id: int | None = None, **_):
        from interp.eval.evaluate import mask_position_ids

        ids = input_ids
        mask = attention_mask if attention_mask is not None else torch.ones_like(ids)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        pad = pad_token_id if pad_token_id is not None else (self.eos_token_id or 0)
        scores = []
        token = _PROMPT_LEN.set(input_ids.shape[1])
        try:
            for _ in range(max_new_tokens):
                logits = self.forward(ids, mask, mask_position_ids(mask)).logits[:, -1, :]  # [batch, vocab]
                scores.append(logits)
                nxt = logits.argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                if self.eos_token_id is not None:
                    done = done | (nxt == self.eos_token_id)
                ids = torch.cat([ids, nxt[:, None]], 1)
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                if bool(done.all()):
                    break
        finally:
            _PROMPT_LEN.reset(token)
        return SimpleNamespace(sequences=ids, scores=tuple(scores))


def eval_model(obj):
    """(model, tokenizer) for ``evaluate_items``: a LoadedModel's HF model, a ``HookedLM`` around a backend
    object (hooks set on it apply), or a HF model as given (tokenizer None)."""
    if isinstance(obj, torch.nn.Module):
        return obj, None
    if hasattr(obj, "hooks") and hasattr(obj, "backend"):
        return HookedLM(obj), obj.tokenizer
    return obj.model, obj.tokenizer


# ----------------------------------------------------------------------------------------------
# alpha curves


def alpha_curve(model_or_hooked, items, vector, layer: int, alphas: Sequence[float], eval_cfg=None,
                hook: str = "hook_resid_post", from_pos: int | None = None, n_boot: int = 1000, seed: int = 0,
                tokenizer=None, label: str = "", progress: bool = True) -> list[dict]:
    """Evaluate the items at each alpha with ``alpha * vector`` added (vector used as given, not normalized);
    one row per alpha with every overall metric and its bootstrap interval. ``model_or_hooked``: a
    LoadedModel, a backend object (``load_hooked``, any backend) or a HF model (then pass ``tokenizer``)."""
    from tqdm.auto import tqdm

    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize

    model, tok = eval_model(model_or_hooked)
    tok = tokenizer or tok
    if tok is None:
        raise ValueError("pass tokenizer= with a bare model")
    cfg = eval_cfg or EvalConfig(progress=False)
    v = _as_vector(vector)
    rows = []
    for a in tqdm(list(alphas), desc=f"alphas {label}".strip(), disable=not progress):
        with steer(model_or_hooked, v, layer, a, hook, from_pos, normalize=False):
            recs = evaluate_items(model, tok, items, cfg)
        m = summarize(recs, n_boot=n_boot, seed=seed, by_category=False)[0]
        row = {"direction": label, "layer": layer, "hook": hook, "alpha": float(a), "mode": cfg.mode,
               "vector_norm": float(v.norm())}
        row.update({k: m[k] for k in ("n", "n_ambig", "n_disambig", "n_committed_ambig")})
        for k in CURVE_METRICS:
            row.update({k: m[k], f"{k}_lo": m[f"{k}_lo"], f"{k}_hi": m[f"{k}_hi"]})
        row["coverage_term"] = 1.0 - m["acc_ambig"]  # s_AMB = coverage_term * amb_commit_bias
        rows.append(row)
    return rows


def plot_alpha_curves(curves: Mapping[str, Sequence[Mapping]], path, title: str | None = None):
    """Four panels vs alpha (accuracies, abstain rates, s_AMB, amb_commit_bias), one line per direction."""
    from interp.figures import band_plot, new_axes, save_figure

    fig, axes = new_axes(ncols=4, width=4.2)
    panels = [("acc_ambig", "acc_disambig"), ("abstain_ambig", "abstain_disambig"), ("s_AMB",), ("amb_commit_bias",)]
    for ax, metrics in zip(axes, panels):
        for c, (label, rows) in enumerate(curves.items()):
            x = [r["alpha"] for r in rows]
            for m, ls in zip(metrics, ("-", "--")):
                band_plot(ax, x, [r[m] for r in rows], [r[f"{m}_lo"] for r in rows], [r[f"{m}_hi"] for r in rows],
                          label=f"{label} {m}" if len(metrics) > 1 else label, ls=ls, color=f"C{c}")
        ax.set_xlabel("alpha")
        ax.set_ylabel(" / ".join(metrics))
        ax.axvline(0, color="black", lw=0.5)
        if metrics[0] in ("s_AMB", "amb_commit_bias"):
            ax.axhline(0, color="black", lw=0.5)
        ax.legend(fontsize=6)
    fig.suptitle(title or "steering alpha curve")
    return save_figure(fig, path)


def plot_frontier(curves: Mapping[str, Sequence[Mapping]], path, title: str | None = None):
    """The s_AMB frontier: coverage term (1 - acc_ambig) vs conditional term (amb_commit_bias), one path per
    direction across alphas, with iso-s_AMB curves (s_AMB is their product)."""
    from interp.figures import annotate_points, new_axes, save_figure

    fig, ax = new_axes(width=5.5, height=4.5)
    xs = [r["coverage_term"] for rows in curves.values() for r in rows]
    xmax = max(1e-3, max(xs)) * 1.1
    grid = np.linspace(xmax / 200, xmax, 200)
    for s in (-0.2, -0.1, -0.05, 0.05, 0.1, 0.2):
        y = s / grid
        ok = np.abs(y) <= 1
        ax.plot(grid[ok], y[ok], color="lightgray", lw=0.8)
        if ok.any():
            ax.annotate(f"s_AMB={s:+.2f}", (grid[ok][-1], y[ok][-1]), fontsize=6, color="gray")
    for label, rows in curves.items():
        x = [r["coverage_term"] for r in rows]
        y = [r["amb_commit_bias"] for r in rows]
        ax.plot(x, y, marker="o", ms=4, label=label)
        annotate_points(ax, x, y, [f"{r['alpha']:g}" for r in rows])
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("coverage term: 1 - acc_ambig")
    ax.set_ylabel("conditional term: amb_commit_bias")
    ax.set_title(title or "s_AMB frontier across alphas (labels: alpha)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
