"""Letter-mode scoring with the batch's common prompt prefix computed once.

BBQ prompts share a long prefix (the chat template's system text and the instruction). Per batch, the longest
common token prefix runs once (batch 1); its KV cache is repeated for the batch, and each prompt's remainder
follows it right-padded, with positions counted on from the prefix. Every real token therefore sees exactly the
tokens and positions it sees in an unpadded pass, and the last-token logits equal the plain left-padded pass's
(within float rounding). The docs (docs/conventions.md) say when eval takes this path.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

MIN_PREFIX = 8  # a shorter common prefix is not worth a second forward


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """The length of the longest token prefix all ``seqs`` share, kept one short of the shortest (so every row
    has at least one token after it, whose logits are the answer's)."""
    if not seqs:
        return 0
    shortest = min(len(s) for s in seqs)
    n = 0
    first = seqs[0]
    while n < shortest - 1 and all(s[n] == first[n] for s in seqs):
        n += 1
    return n


def has_hooks(model: torch.nn.Module) -> bool:
    """Whether a forward (pre-)hook that may pick positions by index is set on ``model`` or a submodule (one not
    marked ``interp.models.hooks.positionwise``): the split pass would renumber its positions, so eval then takes
    the plain pass. A steering hook over every position is marked, and keeps the shared prefix."""
    from interp.models.hooks import is_positionwise

    return any(not is_positionwise(h) for m in model.modules()
               for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values()))


def can_share_prefix(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face decoder-only LM (or a PEFT model around one), which takes a KV cache,
    with no hook set. (The caller also checks that it takes ``position_ids``.)"""
    from peft import PeftModel
    from transformers import PreTrainedModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    return (isinstance(base, PreTrainedModel) and not base.config.is_encoder_decoder
            and base.config.use_cache is not False and not has_hooks(model))


@torch.no_grad()
def last_logits_shared_prefix(model: torch.nn.Module, seqs: Sequence[Sequence[int]], pad_id: int,
                              min_prefix: int = MIN_PREFIX) -> torch.Tensor | None:
    """Each sequence's last-position logits ``[batch, vocab]``, with the common prefix run once; ``None`` when
    the batch's common prefix is shorter than ``min_prefix`` tokens (the caller then takes the plain pass)."""
    from transformers import DynamicCache

    P = common_prefix_len(seqs)
    if P < min_prefix:
        return None
    device = next(model.parameters()).device
    B = len(seqs)
    warnings.filterwarnings("ignore", message=r".*`past_key_values` is deprecated", category=FutureWarning)
    cache = DynamicCache(config=model.config)
    prefix = torch.tensor([list(seqs[0][:P])], device=device)  # [1, P]
    model(input_ids=prefix, position_ids=torch.arange(P, device=device)[None], past_key_values=cache,
          use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(B)
    rest = [list(s[P:]) for s in seqs]
    S = max(len(r) for r in rest)
    ids = torch.full((B, S), pad_id, dtype=torch.long)  # [batch, suffix_pos], right-padded
    mask = torch.zeros((B, S), dtype=torch.long)
    for b, r in enumerate(rest):
        ids[b, :len(r)] = torch.tensor(r)
        mask[b, :len(r)] = 1
    last = mask.sum(-1) - 1  # [batch] each row's last real suffix position
    keep = torch.unique(last)  # the positions whose logits are needed (sorted), not the whole suffix
    attn = torch.cat([torch.ones((B, P), dtype=torch.long), mask], 1)  # [batch, P + suffix_pos]
    pos = P + torch.arange(S)[None, :].expand(B, S)  # [batch, suffix_pos]
    logits = model(input_ids=ids.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
                   past_key_values=cache, use_cache=True, logits_to_keep=keep.to(device)).logits  # [batch, |keep|, vocab]
    col = torch.searchsorted(keep, last)  # [batch] where each row's last position sits among ``keep``
    return logits[torch.arange(B), col.to(logits.device)]  # [batch, vocab]
