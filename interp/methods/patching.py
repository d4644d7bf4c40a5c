"""Activation patching and attribution patching on clean/corrupted prompt pairs, through the toolkit's hooks.

Exact patching runs the corrupted prompt with one activation replaced by the clean run's, for every cell
(hook, layer, position role), and measures how far the answer moves towards the clean one. The cells of one pair
run as rows of one batch (each row patches its own cell), so a pair costs one clean forward, one corrupted
forward and ``ceil(cells / batch_size)`` batched forwards. As in TransformerLens's ``patching`` module the patch
replaces the activation in place and the hook names are TransformerLens's (``blocks.{l}.hook_resid_pre``); the
hooks are the backend's own (``Hooked.hooks``), so every backend patches the same way.

The metric. For the pair's two letters (a = the clean answer's, b = the corrupted answer's; both prompts show each
answer under the same letter), ``m = logit[a] - logit[b]`` at the final position. A cell's effect over the pairs
that have its role is ``(mean m_patched - mean m_corrupted) / (mean m_clean - mean m_corrupted)``: 0 is the
corrupted run, 1 the clean run. The raw means are kept in the table, and every pair's raw values in ``.raw``.

Positions are roles (``interp.data.pairs.ROLES``). A role's tokens in the two prompts are matched from the
role's end: when the role has k tokens in one prompt and k' in the other, the last min(k, k') of each are patched
(all of them when the counts agree, as for the names, question and options of an evidence pair). A role missing
from either prompt (the evidence sentence of an ambiguous context) is not patched for that pair, and ``n`` counts
the pairs that have it.

Attribution patching approximates every cell at once from one forward and one backward pass of the corrupted
prompt: ``m_patched - m_corrupted ~ sum over the cell's tokens of (clean - corrupted activation) . dm/d(activation)``
(the first-order term; Nanda's attribution patching). It needs gradients, so it runs on the hf and
transformer_lens backends.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from interp.data.pairs import ROLES, Pair
from interp.errors import InterpError
from interp.models.hooks import hook_name

HOOKS = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
METRICS = ("logit_diff",)
# metric(logits at the final position # [batch, vocab], (letter a token id, letter b token id)) -> # [batch]
Metric = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


class PatchingError(InterpError, ValueError):
    """Bad patching input: an unknown hook, role or metric, no pairs, or a backend that cannot run the method."""


@dataclass
class PreparedPair:
    """One pair as token ids: the positions of each role in both prompts (matched from the role's end, equal
    lengths) and the token ids of the two letters that matter."""

    uid: str
    template: tuple[str, str]
    clean_ids: torch.Tensor  # [pos_clean]
    corrupted_ids: torch.Tensor  # [pos_corrupted]
    roles: dict[str, tuple[list[int], list[int]]]  # role -> (clean positions, corrupted positions)
    letter_ids: tuple[int, int]


# ----------------------------------------------------------------------------------------------
# preparing pairs


def token_roles(tokenizer, text: str, user_text: str, spans: Mapping[str, Sequence[tuple[int, int]]]) -> tuple[
        list[int], dict[str, list[int]]]:
    """(token ids of ``text``, role -> token positions). ``spans`` are character spans in ``user_text``, which
    ``text`` (the rendered chat prompt) holds once. A token belongs to the role whose span holds its first
    non-space character; ``suffix`` is every token after the options but the last, ``final`` the last token."""
    if not getattr(tokenizer, "is_fast", False):
        raise PatchingError(f"position roles need token offsets, which only a fast tokenizer gives; "
                            f"{type(tokenizer).__name__} is not one (load the model's tokenizer with use_fast=True)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    base = text.index(user_text)
    out: dict[str, list[int]] = {r: [] for r in ROLES}
    opt_end = max((b for _, b in spans.get("options", [])), default=len(user_text)) + base
    last = len(ids) - 1
    for t, (s, e) in enumerate(offsets):
        if t == last:
            out["final"].append(t)
            continue
        piece = text[s:e]
        c = s + (len(piece) - len(piece.lstrip())) if piece.strip() else s
        for role, ss in spans.items():
            if any(a + base <= c < b + base for a, b in ss):
                out[role].append(t)
                break
        else:
            if s >= opt_end:
                out["suffix"].append(t)
    return list(ids), out


def prepare_pairs(tokenizer, pairs: Sequence[Pair], roles: Sequence[str] = ROLES) -> list[PreparedPair]:
    """Tokenize both prompts of every pair (through the chat template, as evaluation does) and align their roles."""
    from interp.data.prompts import apply_chat
    from interp.eval.evaluate import letter_token_ids

    letters = letter_token_ids(tokenizer)
    out = []
    for p in pairs:
        (pc, pk), (sc, sk) = p.prompts(), p.role_spans()
        ic, rc = token_roles(tokenizer, apply_chat(tokenizer, pc.user_text), pc.user_text, sc)
        ik, rk = token_roles(tokenizer, apply_chat(tokenizer, pk.user_text), pk.user_text, sk)
        aligned = {}
        for r in roles:
            n = min(len(rc[r]), len(rk[r]))
            if n:
                aligned[r] = (rc[r][-n:], rk[r][-n:])
        out.append(PreparedPair(p.uid, p.template, torch.tensor(ic), torch.tensor(ik), aligned,
                                (letters[p.letters[0]], letters[p.letters[1]])))
    return out


# ----------------------------------------------------------------------------------------------
# metric and forward passes


def logit_diff(logits: torch.Tensor, letter_ids: tuple[int, int]) -> torch.Tensor:
    """``logit[a] - logit[b]`` per row of ``# [batch, vocab]`` final-position logits."""
    return logits[:, letter_ids[0]].float() - logits[:, letter_ids[1]].float()


def resolve_metric(metric: str | Metric) -> tuple[str, Metric]:
    """(name, function) of a metric given by name (``METRICS``) or as a function."""
    if callable(metric):
        return getattr(metric, "__name__", "custom"), metric
    if metric == "logit_diff":
        return metric, logit_diff
    raise PatchingError(f"metric must be one of {', '.join(METRICS)} or a function, not {metric!r}")


def _inputs(ids: torch.Tensor, rows: int = 1) -> dict[str, torch.Tensor]:
    x = ids[None].expand(rows, -1).contiguous()
    return {"input_ids": x, "attention_mask": torch.ones_like(x)}


def _last_logits(lm, ids: torch.Tensor, rows: int = 1, names: Sequence[str] = ()):
    logits, acts = lm.cache(_inputs(ids, rows), list(names), None, last_logits=True)
    return logits[:, -1], acts  # [rows, vocab], {name: [rows, pos, d]}


def _cells(layers: Sequence[int], hooks: Sequence[str], roles: Sequence[str]) -> list[tuple[str, int, str]]:
    return [(h, l, r) for h in hooks for l in layers for r in roles]


def _patch_fn(rows: torch.Tensor, kpos: torch.Tensor, values: torch.Tensor):
    """A hook writing ``values # [k, d]`` at (rows[i], kpos[i]) of ``# [batch, pos, d]``."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[rows.to(x.device), kpos.to(x.device)] = values.to(device=x.device, dtype=x.dtype)
        return y

    return fn


def exact_rows(lm, prepared: Sequence[PreparedPair], layers: Sequence[int], hooks: Sequence[str],
               roles: Sequence[str], metric: Metric, batch_size: int = 64, progress: bool = False) -> list[dict]:
    """Per pair and cell: the metric of the clean, corrupted and patched runs (one row each)."""
    from tqdm.auto import tqdm

    names = sorted({hook_name(l, h) for h, l, _ in _cells(layers, hooks, roles)})
    out = []
    for pp in tqdm(prepared, desc="patching", disable=not progress, unit="pair"):
        lc, acts = _last_logits(lm, pp.clean_ids, 1, names)
        lk, _ = _last_logits(lm, pp.corrupted_ids)
        m_clean, m_corr = float(metric(lc, pp.letter_ids)[0]), float(metric(lk, pp.letter_ids)[0])
        cells = [c for c in _cells(layers, hooks, roles) if c[2] in pp.roles]
        for start in range(0, len(cells), batch_size):
            chunk = cells[start:start + batch_size]
            per_name: dict[str, list[tuple[int, list[int], list[int]]]] = {}
            for row, (h, l, r) in enumerate(chunk):
                cpos, kpos = pp.roles[r]
                per_name.setdefault(hook_name(l, h), []).append((row, kpos, cpos))
            fns = {}
            for name, entries in per_name.items():
                rows = torch.tensor([row for row, kp, _ in entries for _ in kp])
                kp = torch.tensor([k for _, kps, _ in entries for k in kps])
                cp = torch.tensor([c for _, _, cps in entries for c in cps])
                fns[name] = _patch_fn(rows, kp, acts[name][0, cp.to(acts[name].device)])
            with lm.hooks(fns):
                lp, _ = _last_logits(lm, pp.corrupted_ids, len(chunk))
            vals = metric(lp, pp.letter_ids).tolist()
            for (h, l, r), v in zip(chunk, vals):
                out.append(dict(pair=pp.uid, template=":".join(pp.template), layer=l, hook=h, role=r,
                                position=ROLES.index(r) if r in ROLES else -1, patched=float(v), clean=m_clean,
                                corrupted=m_corr))
    return out


def _grad_logits(lm, ids: torch.Tensor, fwd: Mapping[str, Callable]) -> torch.Tensor:
    """Final-position logits ``# [1, vocab]`` of one prompt with gradients on, the hooks ``fwd`` attached."""
    from interp.models.backends import hf_attention, with_position_ids

    inputs = {k: v.to(lm.device) for k, v in _inputs(ids).items()}
    if getattr(lm, "explicit_positions", True):
        inputs = with_position_ids(inputs)
    with torch.enable_grad(), lm.hooks(fwd):
        if lm.backend == "hf":
            return lm.model(**inputs, logits_to_keep=1).logits[:, -1]
        if lm.backend == "transformer_lens":
            with hf_attention(lm.attn_targets, lm.hf_attn_implementation):
                kw = {k: v for k, v in inputs.items() if k != "input_ids"}
                return lm.bridge(inputs["input_ids"], **kw)[:, -1]
    raise PatchingError(f"attribution patching needs gradients, which the {lm.backend} backend does not give here: "
                        f"use backend 'hf' or 'transformer_lens'")


def attribution_rows(lm, prepared: Sequence[PreparedPair], layers: Sequence[int], hooks: Sequence[str],
                     roles: Sequence[str], metric: Metric, progress: bool = False) -> list[dict]:
    """Per pair and cell: the first-order estimate of the patched metric (``corrupted + (clean - corrupted
    activation) . gradient``), from one clean forward and one corrupted forward and backward per pair."""
    from tqdm.auto import tqdm

    names = sorted({hook_name(l, h) for h, l, _ in _cells(layers, hooks, roles)})
    out = []
    for pp in tqdm(prepared, desc="attribution", disable=not progress, unit="pair"):
        lc, clean = _last_logits(lm, pp.clean_ids, 1, names)
        store: dict[str, torch.Tensor] = {}

        def keeper(name):
            def f(x):
                if not x.requires_grad:  # frozen weights (a PEFT base) upstream: start the graph here
                    x = x.detach().requires_grad_(True)
                    store[name] = x
                    return x
                store[name] = x
                return None

            return f

        lk = _grad_logits(lm, pp.corrupted_ids, {n: keeper(n) for n in names})
        m = metric(lk, pp.letter_ids)
        grads = dict(zip(names, torch.autograd.grad(m.sum(), [store[n] for n in names], allow_unused=True)))
        m_clean, m_corr = float(metric(lc, pp.letter_ids)[0]), float(m.detach()[0])
        for h, l, r in _cells(layers, hooks, roles):
            if r not in pp.roles:
                continue
            n = hook_name(l, h)
            cpos, kpos = pp.roles[r]
            g = grads[n]
            if g is None:
                est = 0.0
            else:
                corr = store[n].detach()[0, kpos].float()
                delta = clean[n][0, cpos].to(corr.device).float() - corr
                est = float((delta * g[0, kpos].float()).sum())
            out.append(dict(pair=pp.uid, template=":".join(pp.template), layer=l, hook=h, role=r,
                            position=ROLES.index(r) if r in ROLES else -1, patched=m_corr + est, clean=m_clean,
                            corrupted=m_corr))
    return out


# ----------------------------------------------------------------------------------------------
# results


def summarize_rows(rows: Sequence[dict], layers: Sequence[int], hooks: Sequence[str],
                   roles: Sequence[str]) -> list[dict]:
    """One row per cell of the full grid: mean clean / corrupted / patched metric over the pairs with the role,
    the normalized effect (NaN when no pair has the role or the clean and corrupted means agree) and n."""
    acc: dict[tuple, list[dict]] = {}
    for r in rows:
        acc.setdefault((r["hook"], r["layer"], r["role"]), []).append(r)
    out = []
    for h, l, role in _cells(layers, hooks, roles):
        rs = acc.get((h, l, role), [])
        n = len(rs)
        mc = float(np.mean([r["clean"] for r in rs])) if n else math.nan
        mk = float(np.mean([r["corrupted"] for r in rs])) if n else math.nan
        mp = float(np.mean([r["patched"] for r in rs])) if n else math.nan
        den = mc - mk
        eff = (mp - mk) / den if n and den != 0 else math.nan
        out.append(dict(layer=l, hook=h, position=ROLES.index(role) if role in ROLES else -1, role=role,
                        effect=eff, n=n, patched=mp, clean=mc, corrupted=mk))
    return out


@dataclass
class PatchResult:
    """An activation-patching grid: ``.table`` (one row per (layer, hook, role) cell: ``layer, hook, position,
    role, effect, n`` and the raw metric means ``patched, clean, corrupted``), ``.raw`` (every pair's values),
    ``.plot()`` (layer x position heatmaps, one per hook). ``attribution`` holds the attribution-patching grid on
    the same pairs when it was run, and ``attribution_r`` its Pearson r with the exact grid."""

    rows: list[dict]
    layers: list[int]
    hooks: list[str]
    roles: list[str]
    method: str = "exact"
    metric: str = "logit_diff"
    kind: str = ""
    n_pairs: int = 0
    seconds: float = 0.0
    attribution: "PatchResult | None" = None
    meta: dict = field(default_factory=dict)

    @property
    def cells(self) -> list[dict]:
        """The table's rows as dicts (``summarize_rows`` of the per-pair rows)."""
        return summarize_rows(self.rows, self.layers, self.hooks, self.roles)

    @property
    def table(self):
        """One row per cell: layer, hook, position, role, effect, n, and the raw means patched, clean, corrupted."""
        import pandas as pd

        return pd.DataFrame(self.cells, columns=["layer", "hook", "position", "role", "effect", "n", "patched",
                                                 "clean", "corrupted"])

    @property
    def raw(self):
        """Every pair's values per cell: pair, template, layer, hook, role, position, patched, clean, corrupted."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def grid(self, hook: str) -> np.ndarray:
        """Effects of one hook as ``# [layer, role]`` (rows in ``layers`` order, columns in ``roles`` order)."""
        t = self.table
        t = t[t.hook == hook]
        g = np.full((len(self.layers), len(self.roles)), np.nan)
        for r in t.itertuples():
            g[self.layers.index(r.layer), self.roles.index(r.role)] = r.effect
        return g

    @property
    def attribution_r(self) -> float:
        """Pearson r between the attribution and exact effects over the cells both define (NaN without both)."""
        if self.attribution is None:
            return math.nan
        return pearson(self.table.effect.to_numpy(), self.attribution.table.effect.to_numpy())

    def plot(self, path: str | os.PathLike | None = None, title: str | None = None) -> Path:
        """Layer x position heatmaps (one panel per hook; a second row for attribution patching when run),
        diverging around 0 with 1 = the clean run; saved to ``path`` (a temporary file when None)."""
        from interp.figures import draw_to

        return draw_to(lambda p: plot_patching(self, p, title), path)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the positions where both arrays are finite (NaN when fewer than 3 or no variance)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return math.nan
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def plot_patching(result: PatchResult, path, title: str | None = None) -> Path:
    """The heatmaps of ``PatchResult.plot``."""
    import matplotlib.pyplot as plt

    from interp.figures import save_figure

    results = [result] + ([result.attribution] if result.attribution is not None else [])
    nh = len(result.hooks)
    fig, axes = plt.subplots(len(results), nh + 1, figsize=(3.2 + 0.45 * len(result.roles) * nh,
                                                            1.0 + (0.9 + 0.35 * len(result.layers)) * len(results)),
                             squeeze=False, gridspec_kw={"width_ratios": [1] * nh + [0.04]})
    im = None
    for i, res in enumerate(results):
        for j, h in enumerate(result.hooks):
            ax = axes[i, j]
            g = res.grid(h)
            im = ax.imshow(g, cmap="RdBu", vmin=-1, vmax=1, aspect="auto", origin="lower")
            ax.set_xticks(range(len(res.roles)), res.roles, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(res.layers)), [str(l) for l in res.layers], fontsize=7)
            for (y, x), v in np.ndenumerate(g):
                if np.isfinite(v):
                    ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=5.5,
                            color="white" if abs(v) > 0.6 else "black")
            ax.set_title(f"{h} ({res.method})", fontsize=8)
            if j == 0:
                ax.set_ylabel("layer")
    for i in range(1, len(results)):
        axes[i, nh].axis("off")
    if im is not None:
        fig.colorbar(im, cax=axes[0, nh], label="effect (0 corrupted, 1 clean)")
    r = result.attribution_r
    sub = f"; attribution vs exact r = {r:.3f}" if np.isfinite(r) else ""
    fig.suptitle(title or f"activation patching, {result.kind} pairs (n={result.n_pairs}){sub}", fontsize=9)
    return save_figure(fig, path)


def run_patching(lm, pairs: Sequence[Pair] | Sequence[PreparedPair], hooks: Sequence[str] = HOOKS,
                 positions: Sequence[str] | str = "all", metric: str | Metric = "logit_diff",
                 layers: str | int | Sequence[int] = "all", attribution: bool = True, batch_size: int = 64,
                 progress: bool = False) -> PatchResult:
    """Exact activation patching (and, with ``attribution``, attribution patching) of ``pairs`` on ``lm`` (a
    ``Hooked`` model of any backend; attribution needs hf or transformer_lens), over ``hooks`` x ``layers`` x
    ``positions`` (role names, 'all' for ``ROLES``)."""
    import time

    from interp.layers import resolve_layers

    if not len(pairs):
        raise PatchingError("no pairs to patch")
    hooks = list(hooks)
    bad = [h for h in hooks if h not in HOOKS]
    if bad or not hooks:
        raise PatchingError(f"hooks must be among {', '.join(HOOKS)}, not {bad or hooks}")
    if isinstance(positions, str):
        positions = list(ROLES) if positions == "all" else [p.strip() for p in positions.split(",") if p.strip()]
    roles = list(positions)
    prepared_given = isinstance(pairs[0], PreparedPair)
    if not prepared_given:
        badr = [r for r in roles if r not in ROLES]
        if badr or not roles:
            raise PatchingError(f"positions must be among {', '.join(ROLES)}, not {badr or roles}")
    if batch_size < 1:
        raise PatchingError(f"batch_size must be >= 1, got {batch_size}")
    mname, mfn = resolve_metric(metric)
    ls = resolve_layers(layers, lm.n_layers)
    prepared = list(pairs) if prepared_given else prepare_pairs(lm.tokenizer, pairs, roles)
    kinds = sorted({p.kind for p in pairs}) if not prepared_given else []
    t0 = time.perf_counter()
    rows = exact_rows(lm, prepared, ls, hooks, roles, mfn, batch_size, progress)
    secs = time.perf_counter() - t0
    res = PatchResult(rows, ls, hooks, roles, "exact", mname, "+".join(kinds), len(prepared), secs)
    if attribution:
        t0 = time.perf_counter()
        arows = attribution_rows(lm, prepared, ls, hooks, roles, mfn, progress)
        res.attribution = PatchResult(arows, ls, hooks, roles, "attribution", mname, res.kind, len(prepared),
                                      time.perf_counter() - t0)
    return res


def write_result(result: PatchResult, out_dir: str | os.PathLike, figure: str | os.PathLike | None = None,
                 title: str | None = None) -> dict[str, Path]:
    """Write ``patching.csv`` (one row per cell, with the attribution effect when run), ``patching_raw.csv``
    (every pair's values), ``patching.json`` (settings, timings, attribution r, ``result.meta``) and the heatmap
    (``figure``, default ``patching.png`` in ``out_dir``). Returns {name: path}."""
    import json

    od = Path(out_dir)
    od.mkdir(parents=True, exist_ok=True)
    table = result.table
    if result.attribution is not None:
        table["attribution"] = result.attribution.table["effect"].to_numpy()
    table.to_csv(od / "patching.csv", index=False)
    result.raw.to_csv(od / "patching_raw.csv", index=False)
    fig = result.plot(Path(figure) if figure else od / "patching.png", title=title)
    r = result.attribution_r
    meta = dict(result.meta, pairs=result.kind, n_pairs=result.n_pairs, hooks=result.hooks, positions=result.roles,
                layers=result.layers, metric=result.metric, exact_seconds=round(result.seconds, 2),
                attribution_seconds=None if result.attribution is None else round(result.attribution.seconds, 2),
                attribution_r=None if not math.isfinite(r) else round(r, 4))
    (od / "patching.json").write_text(json.dumps(meta, indent=1))
    return {"csv": od / "patching.csv", "raw": od / "patching_raw.csv", "json": od / "patching.json", "fig": fig}


def layer_differences(a: PatchResult, b: PatchResult, threshold: float = 0.1) -> list[dict]:
    """Per (hook, layer): the role where two grids of the same cells differ most (``b - a``), both effects there,
    whether |difference| exceeds ``threshold`` (e.g. base vs adapter on the same pairs), and each grid's
    clean - corrupted gap there (an effect over a small gap is mostly noise)."""
    ta, tb = a.table, b.table
    if list(zip(ta.hook, ta.layer, ta.role)) != list(zip(tb.hook, tb.layer, tb.role)):
        raise PatchingError("the two grids do not have the same cells")
    d = (tb.effect - ta.effect).to_numpy()
    out = []
    for (h, l), idx in ta.groupby(["hook", "layer"], sort=False).groups.items():
        idx = [i for i in idx if np.isfinite(d[i])]
        if not idx:
            continue
        i = max(idx, key=lambda j: abs(d[j]))
        out.append(dict(hook=h, layer=int(l), role=ta.role[i], effect_a=float(ta.effect[i]),
                        effect_b=float(tb.effect[i]), difference=float(d[i]), differs=bool(abs(d[i]) > threshold),
                        gap_a=float(ta.clean[i] - ta.corrupted[i]), gap_b=float(tb.clean[i] - tb.corrupted[i])))
    return out
