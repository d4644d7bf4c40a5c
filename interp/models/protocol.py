"""The model handle every method takes: one ``typing.Protocol``, after TransformerLens's ``model_protocol.py``.

A ``LanguageModel`` is a causal LM (or, for the RM scorer, a one-output sequence classifier) with
TransformerLens-named hooks: the hf, transformer_lens and nnsight handles of ``interp.models.backends``
(``HFHooked``, ``TLHooked``, ``NNsightHooked``) all satisfy it, and ``interp.models.backends.as_lm`` makes one
from a ``LoadedModel`` or a bare HF/PEFT module at the API boundary. Nothing below the boundary asks what kind
of handle it holds: it calls these methods.
"""

from __future__ import annotations

from typing import Any, ContextManager, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import torch

from interp.models.hooks import HookFn


class Generation(NamedTuple):
    """What ``LanguageModel.generate`` returns: the prompt and new tokens ``# [batch, pos + new]`` and the
    logits of each new position ``# [batch, vocab]`` (greedy decoding: no logits processor)."""

    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...]


@runtime_checkable
class LanguageModel(Protocol):
    """A model handle with canonical hook names (``blocks.{layer}.{kind}``) and one forward, cache and generate."""

    model: torch.nn.Module | None  # the HF (or PEFT) module; None when the weights are remote (NDIF)
    tokenizer: Any
    name: str
    adapter: str | None
    backend: str
    n_layers: int
    d_model: int
    d_mlp: int

    @property
    def device(self) -> torch.device:
        """Where inputs go."""

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype."""

    @property
    def takes_position_ids(self) -> bool:
        """Whether the forward accepts explicit ``position_ids``."""

    @property
    def adapter_on(self) -> bool:
        """Whether a PEFT adapter is attached and enabled."""

    def check_names(self, names: Sequence[str]) -> None:
        """Raise HookNameError for a name this model cannot hook."""

    def hooks(self, fwd_hooks: Mapping[str, HookFn]) -> ContextManager[Any]:
        """Edit or observe activations by name in every forward, cache and generate call inside the block."""

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``# [batch, pos, vocab]`` with the active hooks applied."""

    def cache(self, inputs: Mapping[str, torch.Tensor], names: Sequence[str], positions=None,
              last_logits: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward: (logits, {name: activation at ``positions``}), after the active hooks' edits."""

    def generate(self, inputs: Mapping[str, torch.Tensor], max_new_tokens: int,
                 pad_token_id: int | None = None) -> Generation:
        """Greedy decoding by the backend's own ``generate``, with the active hooks applied at every step."""

    def adapter_enabled(self, enabled: bool) -> ContextManager[Any]:
        """Switch the adapter on or off for the block."""

    def provenance(self) -> dict:
        """What identifies the weights that produced an activation."""
