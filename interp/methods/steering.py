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
token). In ``generate`` mode every backend decodes with its own ``generate`` and KV cache inside the hooks, so the
hook also runs on each new token (KV-cache steps of one position); new tokens
lie after every prompt position, so they are always steered: ``from_pos`` is resolved on the prompt's forward
pass (a pass over more than one position starts a new sequence) and later one-token steps continue its count.
"""

from __future__ import annotations

import math

from typing import Mapping, Sequence

import numpy as np
import torch

from interp.errors import InterpError
from interp.models.hooks import HookNameError, hook_name, positionwise
from interp.models.protocol import LanguageModel

UNITS = ("unit", "sigma", "raw")
CURVE_METRICS = ("acc_ambig", "acc_disambig", "abstain_ambig", "abstain_disambig", "s_AMB", "amb_commit_bias",
                 "s_DIS", "unparseable")


class SteeringError(InterpError, ValueError):
    """A direction that does not fit the model (hidden size), or a layer out of range."""


def _as_vector(direction) -> torch.Tensor:
    from interp.methods.directions import Direction

    if isinstance(direction, Direction):
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
        if T > 1 or state["offset"] == 0:  # a new sequence (prompt pass)
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

    return positionwise(fn) if from_pos is None else fn  # every position alike: the shared prefix keeps it


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

    def __init__(self, lm: LanguageModel, hook_name: str, fn):
        self.hook_name = hook_name
        self.fn = fn
        self._cm = lm.hooks({hook_name: fn})
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


def steer(lm: LanguageModel, direction, layer: int, alpha: float, hook: str = "hook_resid_post",
          from_pos: int | None = None, normalize: bool = True) -> SteeringHandle:
    """Add ``alpha * direction`` (unit-normalized unless ``normalize=False``) at ``blocks.{layer}.{hook}``
    until the returned handle is removed (or its ``with`` block ends). ``lm``: a model handle (``interp.load``,
    any backend), or a ``LoadedModel`` or HF/PEFT module (converted by ``interp.models.backends.as_lm``)."""
    from interp.models.backends import as_lm

    lm = as_lm(lm)
    v = _as_vector(direction)
    if not math.isfinite(float(alpha)):
        raise SteeringError(f"alpha must be a finite number, got {alpha}")
    if not 0 <= layer < lm.n_layers:
        raise SteeringError(f"layer {layer} out of range: the model has {lm.n_layers} layers (0..{lm.n_layers - 1})")
    if hook.startswith("hook_resid") and v.shape[0] != lm.d_model:
        raise SteeringError(f"direction has size {v.shape[0]} but the model's hidden size is {lm.d_model}")
    if normalize:
        n = float(v.norm())
        if n == 0:
            raise SteeringError("cannot normalize a zero direction")
        v = v / n
    try:
        name = hook_name(layer, hook)
        return SteeringHandle(lm, name, steering_fn(float(alpha) * v, from_pos))
    except HookNameError as e:
        raise SteeringError(str(e)) from e


def direction_vector(direction, units: str = "unit") -> torch.Tensor:
    """The vector added per unit of alpha for a saved ``Direction`` (see the module doc for ``units``)."""
    if units not in UNITS:
        raise SteeringError(f"units must be one of {UNITS}, not {units!r}")
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
# alpha curves


def alpha_curve(lm: LanguageModel, items, vector, layer: int, alphas: Sequence[float], eval_cfg=None,
                hook: str = "hook_resid_post", from_pos: int | None = None, n_boot: int = 1000, seed: int = 0,
                label: str = "", progress: bool = True) -> list[dict]:
    """Evaluate the items at each alpha with ``alpha * vector`` added (vector used as given, not normalized);
    one row per alpha with every overall metric and its bootstrap interval. ``lm``: a model handle (any
    backend), a LoadedModel or a HF module (converted by ``interp.models.backends.as_lm``)."""
    from tqdm.auto import tqdm

    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize
    from interp.models.backends import as_lm

    lm = as_lm(lm)
    cfg = eval_cfg or EvalConfig(progress=False)
    v = _as_vector(vector)
    rows = []
    for a in tqdm(list(alphas), desc=f"alphas {label}".strip(), disable=not progress):
        with steer(lm, v, layer, a, hook, from_pos, normalize=False):
            recs = evaluate_items(lm, items, cfg)
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
