"""Run a slice of a decoder's layers: the hidden states entering layer ``lo`` computed once (``cache_states``),
advanced through frozen layers (``advance_states``), and the layers above run on them (``only_layers``). The
cached-bottom training of the backbone RM and of the BBQ reader share it: only the top layers carry gradients,
so the bottom ones run once per sequence instead of once per step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from tqdm.auto import tqdm


def base_of(model) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper (a causal LM or a sequence classifier), or the model itself."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def decoder_of(model) -> torch.nn.Module:
    """The decoder stack (``LlamaModel``) under a causal LM or sequence classifier, PEFT-wrapped or not."""
    return base_of(model).model


@contextlib.contextmanager
def only_layers(model, lo: int, hi: int | None = None, final_norm: bool = True) -> Iterator[torch.nn.Module]:
    """Temporarily make the decoder run only ``layers[lo:hi]`` (and skip the final norm unless
    ``final_norm``); yields the decoder, whose ``inputs_embeds`` are then the hidden states entering ``lo``."""
    dec = decoder_of(model)
    layers, norm = dec.layers, dec.norm
    dec.layers = torch.nn.ModuleList(list(layers)[lo:hi])
    if not final_norm:
        dec.norm = torch.nn.Identity()
    try:
        yield dec
    finally:
        dec.layers, dec.norm = layers, norm


def right_pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``# [batch, pos, d]`` states (zeros past each end) and ``# [batch, pos]`` mask."""
    T = max(s.shape[0] for s in states)
    x = torch.zeros(len(states), T, states[0].shape[-1], dtype=states[0].dtype)
    mask = torch.zeros(len(states), T, dtype=torch.long)
    for i, s in enumerate(states):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return x, mask


@torch.no_grad()
def cache_states(model, seqs: Sequence[Sequence[int]], lo: int, pad_id: int, batch_size: int = 16,
                 progress: bool = True, desc: str = "caching bottom layers") -> list[torch.Tensor]:
    """Run the embeddings and ``layers[:lo]`` once over token sequences (right padding, batched by length)
    and keep the hidden states entering layer ``lo``, float32 and trimmed to the real tokens: ``# [len_i, d]``."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[torch.Tensor | None] = [None] * len(seqs)
    with only_layers(model, 0, lo, final_norm=False) as dec:
        for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress):
            idx = order[s:s + batch_size]
            T = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), T), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), T), dtype=torch.long)
            for j, i in enumerate(idx):
                ids[j, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[j, : len(seqs[i])] = 1
            h = dec(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # [batch, T, d]
            for j, i in enumerate(idx):
                out[i] = h[j, : len(seqs[i])].float().clone()
    return out  # type: ignore[return-value]


@torch.no_grad()
def advance_states(model, states: Sequence[torch.Tensor], lo: int, hi: int, batch_size: int = 16,
                   progress: bool = True) -> list[torch.Tensor]:
    """Hidden states entering ``hi`` from those entering ``lo`` (frozen ``layers[lo:hi]``): the cache of a
    smaller K from that of a larger one."""
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    out: list[torch.Tensor | None] = [None] * len(states)
    with only_layers(model, lo, hi, final_norm=False) as dec:
        for s in tqdm(range(0, len(order), batch_size), desc=f"advancing cache {lo}->{hi}", disable=not progress):
            idx = order[s:s + batch_size]
            x, mask = right_pad([states[i] for i in idx])
            h = dec(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
            for j, i in enumerate(idx):
                out[i] = h[j, : states[i].shape[0]].float().clone()
    return out  # type: ignore[return-value]
