"""Score prompt + response with a one-output sequence-classification reward model, in batches, optionally
with hook functions attached and the MLP neurons at the scored position recorded.

Works on every decoder layout whose MLP output projection ``interp.models.hooks`` finds by structure (Llama/Qwen2,
Gemma 2, GPT-2, GPT-NeoX, OPT, Falcon, GPT-J sequence-classification heads): ``mlp.hook_post`` activations are always ``# [batch, pos, d_mlp]``.

The scored position is Hugging Face's: the rightmost token that is not ``config.pad_token_id`` (so left and
right padding both work; without a pad id, the last position). ``scored_positions`` reproduces it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.errors import InterpError
from interp.models.hooks import hooks as hf_hooks
from interp.models.answers import text_batches
from interp.models.backends import as_lm
from interp.models.hooks import HookFn, hook_name, n_layers, parse_hook_name, select_positions
from interp.models.loading import LoadedModel, pick_device, pick_dtype



class RewardModelError(InterpError, ValueError):
    """A model that is not a one-output reward model, or inputs it cannot score."""


def load_reward_model(path: str, device: str | None = "auto", dtype: str | None = "auto") -> LoadedModel:
    """Load an ``AutoModelForSequenceClassification`` with one output and its tokenizer (no remote code).

    A missing pad token is set to EOS on the tokenizer and copied to ``config.pad_token_id``. A shipped
    backbone RM loads from ``interp.organisms.rm_backbone.ensure_backbone_rm("rm-smollm2")``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer


    dev = pick_device(device)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=pick_dtype(dtype, dev)).to(dev).eval()
    check_reward_model(model)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return LoadedModel(model=model, tokenizer=tok, name=str(path))


def check_reward_model(model: torch.nn.Module) -> None:
    """Raise RewardModelError unless the model has a single scalar output."""
    n = getattr(model.config, "num_labels", None)
    if n != 1:
        raise RewardModelError(f"{type(model).__name__} has num_labels={n}; a reward model needs exactly 1 output")


def render(tokenizer, prompt: str, response: str) -> str:
    """The text the RM scores: a user turn and the assistant's response through the chat template (plain
    ``prompt\\n\\nresponse`` when the tokenizer has none)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
        )
    return f"{prompt}\n\n{response}"


def scored_positions(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Index of the token whose hidden state a HF sequence classifier scores: ``# [batch]``."""
    if pad_token_id is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[-1] - 1, dtype=torch.long, device=input_ids.device)
    non_pad = (input_ids != pad_token_id).to(torch.int32)
    idx = torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32)
    return (idx * non_pad).argmax(-1).long()


@dataclass
class PositionRef:
    """The current batch's scored positions, read by hook functions during a forward pass (None: last)."""

    value: torch.Tensor | None = None


def mlp_hook_names(model: torch.nn.Module, layers: Sequence[int] | None = None) -> list[str]:
    """``blocks.{l}.mlp.hook_post`` for the given layers (default: all): the input of each layer's MLP output
    projection, wherever the architecture keeps it (found by structure in ``interp.models.hooks``: ``mlp.down_proj``,
    ``mlp.c_proj``, ``mlp.dense_4h_to_h``, OPT's ``fc2``). HookNameError, naming the layer's modules, for a layer
    without one (a mixture of experts)."""
    L = n_layers(model)
    names = [hook_name(l, "mlp.hook_post") for l in (range(L) if layers is None else layers)]
    for n in names:
        parse_hook_name(model, n)  # fail before any forward pass
    return names


@dataclass
class ScoreResult:
    """Rewards ``# [n]`` and, when asked, MLP activations at the scored position ``# [n, n_layers, d_mlp]``."""

    rewards: np.ndarray
    mlp: np.ndarray | None = None


@torch.no_grad()
def score(
    model,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 16,
    fwd_hooks: Mapping[str, HookFn] | None = None,
    position_ref: PositionRef | None = None,
    record_mlp: bool | str = False,
    max_length: int | None = None,
    progress: bool = False,
) -> ScoreResult:
    """Reward of each (prompt, response), batched (sorted by length, returned in input order). ``model``: the
    reward model's handle or its HF module (``interp.models.backends.as_lm``).

    ``fwd_hooks`` are attached for every batch; ``position_ref.value`` is set to the batch's scored positions
    before each forward so hook functions can edit just that position. ``record_mlp`` (True or "scored")
    records ``mlp.hook_post`` at the scored position; "mean" records its mean over the non-pad positions;
    "response" its mean over the response's tokens (``response_mask``)."""
    if len(prompts) != len(responses):
        raise RewardModelError(f"{len(prompts)} prompts but {len(responses)} responses")
    lm = as_lm(model, tokenizer)
    check_reward_model(lm.model)
    pad_id = lm.model.config.pad_token_id
    if pad_id is None and batch_size > 1:
        raise RewardModelError("model.config.pad_token_id is None: set it (e.g. to tokenizer.pad_token_id) to batch")
    texts = [render(tokenizer, p, r) for p, r in zip(prompts, responses)]
    order = np.argsort([len(t) for t in texts], kind="stable").tolist()
    rewards = np.zeros(len(texts), dtype=np.float64)
    pool = "scored" if record_mlp is True else (record_mlp or None)
    if pool not in (None, "scored", "mean", "response"):
        raise RewardModelError(f"record_mlp must be False, True, 'scored', 'mean' or 'response', not {record_mlp!r}")
    names = mlp_hook_names(lm.model) if pool else []
    mask_ref: dict[str, torch.Tensor] = {}
    mlp_out: np.ndarray | None = None
    ref = position_ref if position_ref is not None else PositionRef()

    def pooled(name, x):  # x: [batch, pos, d_mlp], after any edit at the same point -> [batch, d_mlp]
        if pool in ("mean", "response"):
            m = mask_ref["mask"].to(x.device, x.dtype)[..., None]  # [batch, pos, 1]
            return ((x * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu()
        return select_positions(x, ref.value).float().cpu()  # the scored position of each row

    def encode(batch_texts):
        enc = tokenizer(list(batch_texts), return_tensors="pt", padding=True, add_special_tokens=False,
                        truncation=max_length is not None, max_length=max_length)
        return {k: v.to(lm.device) for k, v in enc.items()}

    def before(idx, enc):  # aim the hook functions and the pooling at this batch
        ref.value = scored_positions(enc["input_ids"], pad_id)
        mask_ref["mask"] = enc.get("attention_mask", torch.ones_like(enc["input_ids"]))
        if pool == "response":
            mask_ref["mask"] = response_mask(tokenizer, [texts[i] for i in idx], [responses[i] for i in idx],
                                             enc["input_ids"].shape[-1], max_length).to(lm.device)

    # the one pass (interp.models.answers.text_batches), pooled in the hook
    stream = text_batches(lm, texts, batch_size, names, pooled, order=order, encode=encode, before=before)
    with lm.hooks(dict(fwd_hooks or {})):
        for b in tqdm(stream, total=-(-len(texts) // batch_size), desc="scoring", disable=not progress, leave=False):
            idx = b.index
            rewards[idx] = b.logits[:, 0].float().cpu().numpy()  # logits [batch, 1]
            if names:
                acts = torch.stack([b.acts[n] for n in names], dim=1).numpy()  # [batch, n_layers, d_mlp]
                if mlp_out is None:
                    mlp_out = np.zeros((len(texts),) + acts.shape[1:], dtype=np.float32)
                mlp_out[idx] = acts
            ref.value = None
    return ScoreResult(rewards=rewards, mlp=mlp_out)


def response_mask(tokenizer, texts: Sequence[str], responses: Sequence[str], length: int,
                  max_length: int | None = None) -> torch.Tensor:
    """``# [batch, pos]`` 1 on the tokens of each rendered text that belong to its response (from the
    response's last occurrence in the text to the end, end-of-turn tokens included), as the tokenizer pads
    the batch; needs a fast tokenizer (offsets). A response not found in its text marks every token."""
    if not getattr(tokenizer, "is_fast", False):
        raise RewardModelError("response pooling needs a fast tokenizer (token offsets)")
    enc = tokenizer(list(texts), return_tensors="pt", padding="max_length", max_length=length,
                    add_special_tokens=False, return_offsets_mapping=True, truncation=max_length is not None)
    off, att = enc["offset_mapping"], enc["attention_mask"]  # [batch, pos, 2], [batch, pos]
    mask = att.clone()
    for i, (t, r) in enumerate(zip(texts, responses)):
        c0 = t.rfind(r) if r else -1
        if c0 >= 0:
            mask[i] = ((off[i, :, 1] > c0) & (att[i] == 1)).long()
    return mask


@torch.no_grad()
def token_medians(model: torch.nn.Module, tokenizer, prompts: Sequence[str], responses: Sequence[str],
                  neurons: Mapping[int, Sequence[int]], batch_size: int = 16, progress: bool = False
                  ) -> dict[int, list[float]]:
    """Median of each given ``mlp.hook_post`` neuron (layer -> indices) over every non-pad token of the
    rendered (prompt, response) texts: the constant an every-position intervention writes."""
    store: dict[int, list[torch.Tensor]] = {l: [] for l in neurons}
    mask_ref: dict[str, torch.Tensor] = {}

    def saver(layer, idx):
        idx_t = torch.tensor(list(idx), dtype=torch.long)

        def f(x):  # x: [batch, pos, d_mlp]
            keep = mask_ref["mask"].to(x.device).bool()  # [batch, pos]
            store[layer].append(x[keep][:, idx_t.to(x.device)].float().cpu())  # [tokens, k]
            return None

        return f

    device = next(model.parameters()).device
    texts = [render(tokenizer, p, r) for p, r in zip(prompts, responses)]
    fns = {hook_name(l, "mlp.hook_post"): saver(l, idx) for l, idx in neurons.items() if len(idx)}
    with hf_hooks(model, fns):
        for start in tqdm(range(0, len(texts), batch_size), desc="token medians", disable=not progress, leave=False):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            mask_ref["mask"] = enc["attention_mask"]
            model(**enc)
    return {l: torch.cat(v).median(0).values.tolist() if v else [] for l, v in store.items()}


def mlp_attribution(model: torch.nn.Module, tokenizer, prompts: Sequence[str], responses: Sequence[str],
                    batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Each MLP neuron's mean |activation x d reward / d activation| over the non-pad positions of the given
    responses (attribution patching towards zero), normalised to mean 1: ``# [n_layers, d_mlp]``. HF models."""
    names = mlp_hook_names(model)
    store: dict[str, torch.Tensor] = {}

    def keeper(name):
        def f(x):
            x.retain_grad()
            store[name] = x
            return None

        return f

    device = next(model.parameters()).device
    texts = [render(tokenizer, p, r) for p, r in zip(prompts, responses)]
    total: torch.Tensor | None = None
    was_training = model.training
    model.eval()
    with hf_hooks(model, {n: keeper(n) for n in names}):
        for start in tqdm(range(0, len(texts), batch_size), desc="attribution", disable=not progress, leave=False):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            model.zero_grad(set_to_none=True)
            model(**enc).logits[:, 0].sum().backward()
            m = enc["attention_mask"][..., None].float()  # [batch, pos, 1]
            part = torch.stack([((store[n] * store[n].grad).abs().float() * m).sum((0, 1)) for n in names])
            total = part.detach().cpu() if total is None else total + part.detach().cpu()  # [n_layers, d_mlp]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    eff = total.double().numpy()
    return eff / eff.mean() if eff.mean() > 0 else eff
