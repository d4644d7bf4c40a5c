"""The second debiasing method beside neurons ("One Bias After Another"): per attribute, a difference-of-means
direction of the residual stream, projected out while the RM scores.

On the validation responses, the residual stream after layer ``l`` (``blocks.{l}.hook_resid_post``) is
averaged over each response's tokens. For each attribute, responses above its median form one class and the
rest the other; the direction is ``interp.methods.directions.diff_of_means`` of the two, taken separately
among chosen and among rejected responses and averaged (so response quality, which travels with the
attributes in the training data, is not what the direction measures). The attribute directions are
orthonormalised together and removed at every position of layer ``l`` (``interp.methods.steering.projection_fn``).
The layer is chosen among a few candidates by the smallest mean |sensitivity| on validation responses, as the
neuron method chooses its k; the test set is never used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from interp.errors import InputError
from interp.models.hooks import hook_name
from interp.rm.data import PreferencePair
from interp.rm.scoring import PositionRef, render, response_mask


@dataclass
class ProjectionIntervention:
    """Remove the span of ``basis # [k, d]`` (orthonormal rows) from the residual stream after ``layer``."""

    layer: int
    basis: torch.Tensor
    attributes: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def hook_name(self) -> str:
        return hook_name(self.layer, "hook_resid_post")

    def hook_fns(self, ref: PositionRef | None = None) -> dict:
        """``{hook name: fn}`` as ``NeuronIntervention.hook_fns`` gives (every position; ``ref`` unused)."""
        from interp.methods.steering import projection_fn

        return {self.hook_name: projection_fn(self.basis)}

    def describe(self) -> dict:
        """What the report records: layer, attributes, rank and the layer-choice curve."""
        return {"layer": self.layer, "attributes": self.attributes, "rank": int(self.basis.shape[0]), **self.meta}


@torch.no_grad()
def resid_response_means(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], layers: Sequence[int],
                         batch_size: int = 16) -> dict[int, np.ndarray]:
    """Each layer's ``hook_resid_post`` averaged over each response's tokens: ``{layer: # [n, d_model]}``."""
    from interp.models.hooks import hooks as hf_hooks

    texts = [render(tokenizer, p, r) for p, r in zip(prompts, responses)]
    out: dict[int, list[np.ndarray]] = {l: [] for l in layers}
    ref: dict[str, torch.Tensor] = {}

    def saver(layer):
        def f(x):  # x: [batch, pos, d_model]
            m = ref["mask"].to(x.device, x.dtype)[..., None]  # [batch, pos, 1]
            out[layer].append(((x * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu().numpy())
            return None

        return f

    device = next(model.parameters()).device
    with hf_hooks(model, {hook_name(l, "hook_resid_post"): saver(l) for l in layers}):
        for s in range(0, len(texts), batch_size):
            enc = tokenizer(texts[s:s + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            ref["mask"] = response_mask(tokenizer, texts[s:s + batch_size], responses[s:s + batch_size],
                                        enc["input_ids"].shape[-1])
            model(**{k: v.to(device) for k, v in enc.items()})
    return {l: np.concatenate(v) for l, v in out.items()}


def attribute_directions(X: np.ndarray, attrs: dict[str, np.ndarray], label: np.ndarray) -> dict[str, np.ndarray]:
    """Per attribute, the mean over label groups of diff-of-means (above vs at-or-below the attribute's
    median) of ``X # [n, d]``; attributes that split no group are left out. ``{name: # [d]}``."""
    from interp.methods.directions import DirectionError, diff_of_means

    out = {}
    for name, a in attrs.items():
        a = np.asarray(a, dtype=np.float64)
        hi = a > np.median(a)
        parts = []
        for g in np.unique(label):
            grp = label == g
            try:
                parts.append(diff_of_means(X[grp], hi[grp], ~hi[grp]))
            except DirectionError:
                continue
        if parts:
            out[name] = np.mean(parts, axis=0)
    return out


def orthonormal_basis(vectors: Sequence[np.ndarray]) -> torch.Tensor:
    """Orthonormal rows spanning ``vectors`` (QR; near-dependent ones dropped): ``# [k, d]``."""
    V = torch.tensor(np.stack(vectors), dtype=torch.float64)  # [k, d]
    q, r = torch.linalg.qr(V.T)  # q: [d, k]
    keep = r.diagonal().abs() > 1e-8 * float(r.diagonal().abs().max())
    return q[:, keep].T.float().contiguous()


def find_projection(model, tokenizer, val_pairs: Sequence[PreferencePair], cfg, sensitivity) -> ProjectionIntervention:
    """Directions on the validation responses at each candidate layer (``cfg.direction_layers``, default
    L/6, L/3, L/2), the layer kept by the smallest ``sensitivity(intervention, prompts, responses)`` (the
    caller's mean |sensitivity|) on ``cfg.n_val_sensitivity`` validation responses."""
    from interp.models.hooks import n_layers
    from interp.rm.attributes import compute_attributes

    prompts = [p.prompt for p in val_pairs] * 2
    responses = [p.chosen for p in val_pairs] + [p.rejected for p in val_pairs]
    label = np.r_[np.ones(len(val_pairs)), np.zeros(len(val_pairs))]
    L = n_layers(model)
    layers = sorted(set(cfg.direction_layers or (max(0, round(L / 6)), L // 3, L // 2)))
    if not all(0 <= l < L for l in layers):
        raise InputError(f"direction layers {layers} outside 0..{L - 1}")
    X = resid_response_means(model, tokenizer, prompts, responses, layers, cfg.batch_size)
    attrs = compute_attributes(responses, prompts, cfg.attributes, tokenizer)
    rng = random.Random(f"choose_layer:{cfg.seed}")
    idx = rng.sample(range(len(responses)), min(cfg.n_val_sensitivity, len(responses)))
    ps, rs = [prompts[i] for i in idx], [responses[i] for i in idx]
    curve, best = [], None
    for l in layers:
        dirs = attribute_directions(X[l], attrs, label)
        if not dirs:
            continue
        iv = ProjectionIntervention(layer=l, basis=orthonormal_basis(list(dirs.values())), attributes=list(dirs))
        m = float(sensitivity(iv, ps, rs))
        curve.append({"layer": l, "val_sensitivity": round(m, 4)})
        if best is None or m < best[0] - 1e-9:
            best = (m, iv)
    if best is None:
        raise InputError("no attribute separates the validation responses: no direction to project out")
    best[1].meta["choose_layer"] = curve
    return best[1]
