"""The one answer pass: prompt -> encode -> forward (or greedy generate) -> letter logits, with the activations at
the requested hooks when asked, one batch at a time.

``text_batches`` runs any list of texts through a ``LanguageModel`` and yields, per batch, the encoded inputs, the
logits and the activations (the RM scorer reads rewards from it). ``answer_batches`` puts BBQ prompts through it and
yields the prompts, the A/B/C letter logits, the replies (generate mode) and the activations;
``interp.eval.evaluate.evaluate_items``, ``interp.methods.probes.collect`` and the activation-store writer
(``interp.store.activations``) consume it.

Prompts are left-padded, so position -1 is every row's last prompt token, where the answer letter is decided.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch

from interp.data.bbq import BBQItem
from interp.data.prompts import LETTERS, Prompted, apply_chat, make_prompt
from interp.errors import InputError
from interp.models.protocol import LanguageModel


def letter_token_ids(tokenizer) -> list[int]:
    """Token ids of 'A', 'B', 'C' as the first token of a reply. Each must be a single token."""
    ids = []
    for L in LETTERS:
        t = tokenizer.encode(L, add_special_tokens=False)
        if len(t) != 1:
            raise InputError(f"letter {L!r} is {len(t)} tokens for this tokenizer; logits mode needs one")
        ids.append(t[0])
    return ids


def render_prompts(tokenizer, prompted: Sequence[Prompted]) -> list[str]:
    """Each prompt's text through the tokenizer's chat template (plain text for a base model without one)."""
    return [apply_chat(tokenizer, p.user_text) for p in prompted]


def mask_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens ``# [batch, pos]``: 0..n-1 on each row's n real tokens, 0 on left
    padding (the rule HF ``generate`` uses), so a padded row sits at the positions of its unpadded forward."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def takes_position_ids(module: torch.nn.Module) -> bool:
    """Whether a HF or PEFT module's forward accepts ``position_ids``."""
    get_base = getattr(module, "get_base_model", None)
    base = get_base() if callable(get_base) else module  # PeftModel.forward only forwards **kwargs
    return "position_ids" in inspect.signature(base.forward).parameters


_warned_lengths: set[tuple[int, int]] = set()


def _warn_if_too_long(n_tokens: int, lm: LanguageModel | None) -> None:
    """Warn once per (length, limit) when prompts exceed the model's positions (results past it are garbage)."""
    cfg = getattr(lm.model, "config", None) if lm is not None else None
    limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if limit and n_tokens > limit and (n_tokens, limit) not in _warned_lengths:
        _warned_lengths.add((n_tokens, limit))
        warnings.warn(f"a prompt has {n_tokens} tokens but the model has {limit} positions: its answers and "
                      f"activations are not meaningful (use a model with a longer context)", stacklevel=3)


def encode_batch(tokenizer, texts: Sequence[str], device, lm: LanguageModel | None = None) -> dict[str, torch.Tensor]:
    """Left-padded batch; templates already carry special tokens, so none are added. With ``lm`` (one that
    takes them), also ``position_ids`` from the mask (``mask_position_ids``): a plain forward numbers the left
    padding too, which shifts every real token of a padded row on models with learned absolute positions
    (GPT-2), so answers and activations would depend on the other prompts in the batch."""
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    _warn_if_too_long(enc["input_ids"].shape[1], lm)
    out = {k: v.to(device) for k, v in enc.items()}
    if lm is not None and "attention_mask" in out and lm.takes_position_ids:
        out["position_ids"] = mask_position_ids(out["attention_mask"])
    return out


def batches(seq: Sequence, size: int) -> Iterable[Sequence]:
    """Consecutive slices of ``seq`` of ``size`` (the last may be shorter)."""
    for i in range(0, len(seq), size):
        yield seq[i: i + size]


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices of prompts from shortest to longest in tokens (stable), so a batch pads to near its own length."""
    return sorted(range(len(lengths)), key=lengths.__getitem__)


# ----------------------------------------------------------------------------------------------
# the pass


@dataclass
class TextBatch:
    """One batch of ``text_batches``: which texts (indices into the input), their encoding, the logits and the
    activations (``{name: # [batch, (n_pos,) d]}``, detached, on the model's device)."""

    index: list[int]
    inputs: dict[str, torch.Tensor]
    logits: torch.Tensor  # [batch, pos or 1, vocab] (or [batch, n_labels] for a sequence classifier)
    acts: dict[str, torch.Tensor] = field(default_factory=dict)


Encode = Callable[[Sequence[str]], Mapping[str, torch.Tensor]]


@torch.no_grad()
def text_batches(lm: LanguageModel, texts: Sequence[str], batch_size: int, names: Sequence[str] = (),
                 positions=None, order: Sequence[int] | None = None, encode: Encode | None = None,
                 before: Callable[[list[int], Mapping[str, torch.Tensor]], None] | None = None,
                 last_logits: bool = False) -> Iterator[TextBatch]:
    """One forward pass per batch of ``texts`` (taken in ``order``, default as given) through ``lm.cache``.

    ``encode`` turns a batch's texts into inputs (default: ``encode_batch``, left-padded, with mask positions);
    ``positions`` picks the activations' positions (``interp.models.hooks.select_positions``) or pools them
    (a function ``(name, x) -> tensor``, ``interp.models.hooks.record``); ``before(index, inputs)`` runs just
    before each forward (to aim hook functions and poolings at the batch); ``last_logits`` computes the
    unembedding at the last position only."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = list(names)
    tok = lm.tokenizer
    encode = encode or (lambda ts: encode_batch(tok, ts, lm.device, lm))
    order = list(range(len(texts))) if order is None else list(order)
    for idx in batches(order, batch_size):
        idx = list(idx)
        enc = dict(encode([texts[i] for i in idx]))
        if before is not None:
            before(idx, enc)
        logits, acts = lm.cache(enc, names, positions, last_logits=last_logits)
        yield TextBatch(idx, enc, logits, acts)


@dataclass
class AnswerBatch:
    """One batch of ``answer_batches``: the items' indices and prompts, the A/B/C letter logits of the answer
    position ``# [batch, 3]`` (float32, CPU), the replies (generate mode, else None) and the activations."""

    index: list[int]
    prompted: list[Prompted]
    letter_logits: torch.Tensor
    replies: list[str | None]
    acts: dict[str, torch.Tensor] = field(default_factory=dict)

    def letters(self) -> list[str]:
        """The argmax letter of each row."""
        return [LETTERS[int(i)] for i in self.letter_logits.argmax(-1)]


def _check_offsets(positions, enc: Mapping[str, torch.Tensor]) -> None:
    """Negative offsets from the prompt end must lie inside every row's prompt."""
    offs = [positions] if isinstance(positions, int) else list(positions)
    shortest = int(enc["attention_mask"].sum(1).min()) if "attention_mask" in enc else enc["input_ids"].shape[1]
    if offs and max(-p for p in offs) > shortest:
        raise InputError(f"position {min(offs)} is before the start of a {shortest}-token prompt")


@torch.no_grad()
def answer_batches(lm: LanguageModel, items: Sequence[BBQItem], batch_size: int = 16, names: Sequence[str] = (),
                   positions: int | Sequence[int] = -1, mode: str = "logits", shuffle_options: bool = False,
                   seed: int = 0, sort_by_length: bool = False, max_new_tokens: int = 4,
                   last_logits: Callable[[list[list[int]]], torch.Tensor | None] | None = None
                   ) -> Iterator[AnswerBatch]:
    """BBQ items through ``lm``, one batch at a time: each item's prompt (``make_prompt``), the letter logits at
    the answer position and, in ``logits`` mode, the activations of ``names`` at ``positions`` (negative offsets
    from the prompt end: -1 is the last prompt token; a list gives ``# [batch, n_pos, d]``). ``generate``
    mode decodes greedily with ``lm.generate`` (hooks apply at every step) and reads the letter logits at the
    first new position. ``sort_by_length`` batches prompts of similar length (indices say where each row goes).
    ``last_logits(token_ids)``, in logits mode without activations, may compute a batch's last-position logits
    ``# [batch, vocab]`` another way (``interp.eval.prefix``: the common prompt prefix once), or return None for
    the plain pass. Each prompt is tokenized once for both."""
    if mode not in ("logits", "generate"):
        raise ValueError(f"the answer pass runs in logits or generate mode, not {mode!r}")
    if mode == "generate" and names:
        raise ValueError("activations are read in logits mode only")
    tok = lm.tokenizer
    if tok.padding_side != "left":
        tok.padding_side = "left"
    letter_ids = letter_token_ids(tok)
    prompted = [make_prompt(it, shuffle_options, seed) for it in items]
    texts = render_prompts(tok, prompted)
    fast = last_logits if mode == "logits" and not names else None
    token_ids = tok(texts, add_special_tokens=False)["input_ids"] if (sort_by_length or fast) else None
    order = length_order([len(t) for t in token_ids]) if sort_by_length else None
    if token_ids:
        _warn_if_too_long(max(len(t) for t in token_ids), lm)  # the fast path skips encode_batch
    if mode == "logits":
        def check(idx, enc):
            if names:
                _check_offsets(positions, enc)

        for idx in batches(order if order is not None else list(range(len(texts))), batch_size):
            idx = list(idx)
            logits = fast([token_ids[i] for i in idx]) if fast is not None else None  # [batch, vocab] or None
            if logits is None:
                (b,) = text_batches(lm, [texts[i] for i in idx], len(idx), names, positions if names else None,
                                    before=check, last_logits=True)
                logits, acts = b.logits[:, -1], b.acts
            else:
                acts = {}
            ll = logits[:, letter_ids].float().cpu()  # [batch, 3]
            yield AnswerBatch(idx, [prompted[i] for i in idx], ll, [None] * len(idx), acts)
        return
    for idx in batches(order if order is not None else list(range(len(texts))), batch_size):
        idx = list(idx)
        enc = encode_batch(tok, [texts[i] for i in idx], lm.device, lm)
        gen = lm.generate(enc, max_new_tokens, pad_token_id=tok.pad_token_id)
        ll = gen.scores[0][:, letter_ids].float().cpu()  # [batch, 3] first generated position
        replies = tok.batch_decode(gen.sequences[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        yield AnswerBatch(idx, [prompted[i] for i in idx], ll, list(replies))
