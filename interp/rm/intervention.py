"""Replace selected MLP neurons by constants (their validation medians) while a model scores.

``NeuronIntervention.hook_fns(ref)`` returns ``{"blocks.{l}.mlp.hook_post": fn}`` with ``fn(x) -> x'`` on
``x # [batch, pos, d_mlp]``, so it runs on any backend that takes such a dict (``interp.models.hooks.hooks`` for HF
models, the ``.hooks`` of ``interp.models.backends`` wrappers). ``positions="scored"`` edits only the scored
position, read from ``ref.value`` (a ``[batch]`` index tensor set by the scorer; the last position when
unset); ``"all"`` edits every position.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from interp.errors import InputError
from interp.rm.neurons import NeuronSelection
from interp.rm.scoring import PositionRef
from interp.models.hooks import hook_name

POSITIONS = ("scored", "all")


@dataclass
class NeuronIntervention:
    """Per layer, the neuron indices to overwrite and the values written there."""

    indices: dict[int, list[int]]
    values: dict[int, list[float]]
    positions: str = "scored"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.positions not in POSITIONS:
            raise InputError(f"positions must be one of {POSITIONS}, not {self.positions!r}")
        for l in self.indices:
            if len(self.indices[l]) != len(self.values.get(l, [])):
                raise InputError(f"layer {l}: {len(self.indices[l])} indices but {len(self.values.get(l, []))} values")

    @property
    def n_neurons(self) -> int:
        return sum(len(v) for v in self.indices.values())

    def hook_fns(self, ref: PositionRef | None = None) -> dict:
        """Hook functions by canonical name; each writes the stored values into its neurons."""
        ref = ref if ref is not None else PositionRef()
        fns = {}
        for layer, idx in sorted(self.indices.items()):
            if not idx:
                continue
            fns[hook_name(layer, "mlp.hook_post")] = self._make_fn(layer, idx, self.values[layer], ref)
        return fns

    def _make_fn(self, layer: int, idx: list[int], vals: list[float], ref: PositionRef):
        idx_t = torch.tensor(idx, dtype=torch.long)
        val_t = torch.tensor(vals, dtype=torch.float32)
        positions = self.positions

        def fn(x: torch.Tensor) -> torch.Tensor:  # x: [batch, pos, d_mlp]
            if max(idx) >= x.shape[-1]:
                raise InputError(f"layer {layer}: neuron index {max(idx)} out of range for d_mlp={x.shape[-1]}")
            i = idx_t.to(x.device)
            v = val_t.to(device=x.device, dtype=x.dtype)
            y = x.clone()
            if positions == "all":
                y[..., i] = v
            else:
                b = torch.arange(x.shape[0], device=x.device)
                pos = ref.value.to(x.device) if ref.value is not None else torch.full_like(b, x.shape[1] - 1)
                rows = y[b, pos]  # [batch, d_mlp]
                rows[:, i] = v
                y[b, pos] = rows
            return y

        return fn

    def to_dict(self) -> dict:
        return {"positions": self.positions, "meta": self.meta,
                "layers": {str(l): {"indices": self.indices[l], "values": self.values[l]} for l in sorted(self.indices)}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON (plain numbers; nothing executable)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NeuronIntervention":
        try:
            d = json.loads(Path(path).read_text())
            layers = {int(l): v for l, v in d["layers"].items()}
            return cls(indices={l: [int(i) for i in v["indices"]] for l, v in layers.items()},
                       values={l: [float(x) for x in v["values"]] for l, v in layers.items()},
                       positions=d.get("positions", "scored"), meta=d.get("meta", {}))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
            raise InputError(f"{path} is not an intervention file: {e}") from None


def median_intervention(selection: NeuronSelection, acts: np.ndarray, positions: str = "scored") -> NeuronIntervention:
    """Replace each selected neuron by its median over ``acts # [n, L, d_mlp]`` (validation activations at
    the scored position): the controlled-direct-effect estimate of the method."""
    if acts.ndim != 3 or acts.shape[1:] != (selection.n_layers, selection.d_mlp):
        raise InputError(f"activations {acts.shape} do not match the selection's [n, {selection.n_layers}, "
                         f"{selection.d_mlp}]")
    med = np.median(acts, axis=0)  # [L, d_mlp]
    by_layer = selection.by_layer()
    return NeuronIntervention(
        indices={l: idx for l, idx in by_layer.items()},
        values={l: [float(med[l, i]) for i in idx] for l, idx in by_layer.items()},
        positions=positions,
        meta={"n_validation": int(acts.shape[0]), "fraction": selection.fraction},
    )
