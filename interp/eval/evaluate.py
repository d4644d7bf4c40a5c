"""Evaluate a causal LM on BBQ items, in two modes.

- ``logits``: one forward pass; the answer is the argmax over the A/B/C letter logits at the last prompt
  position (where the reply's first token is decided).
- ``generate``: greedy decoding of a few tokens; the answer is the first standalone letter in the reply.
- ``options`` / ``options_norm``: no letters; each answer's text is scored by its log-likelihood after the
  context and question, as lm-eval's BBQ multiple-choice task scores it (``interp.eval.options``), summed or per
  character of the answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from interp.data.bbq import BBQItem
from interp.eval.metrics import format_table, summarize
from interp.eval.prefix import can_share_prefix, last_logits_shared_prefix
from interp.data.prompts import LETTERS, Prompted, apply_chat, make_prompt, parse_letter, prompt_format
from interp.eval.score import prediction_record, write_csv

MODES = ("logits", "generate", "options", "options_norm")
OPTION_MODES = ("options", "options_norm")


def letter_token_ids(tokenizer) -> list[int]:
    """Token ids of 'A', 'B', 'C' as the first token of a reply. Each must be a single token."""
    ids = []
    for L in LETTERS:
        t = tokenizer.encode(L, add_special_tokens=False)
        if len(t) != 1:
            raise ValueError(f"letter {L!r} is {len(t)} tokens for this tokenizer; logits mode needs one")
        ids.append(t[0])
    return ids


def render_prompts(tokenizer, prompted: Sequence[Prompted]) -> list[str]:
    return [apply_chat(tokenizer, p.user_text) for p in prompted]


def mask_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens ``# [batch, pos]``: 0..n-1 on each row's n real tokens, 0 on left
    padding (the rule HF ``generate`` uses), so a padded row sits at the positions of its unpadded forward."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def takes_position_ids(model) -> bool:
    """Whether ``model`` (a HF or PEFT causal LM, a ``HookedLM``, or a backend object) accepts ``position_ids``."""
    import inspect

    if not isinstance(model, torch.nn.Module):  # a backend object (interp.models.backends): mapped decoders do
        model = getattr(model, "model", None)
        if model is None:
            return True
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model  # PeftModel.forward only forwards **kwargs
    return "position_ids" in inspect.signature(base.forward).parameters


_warned_lengths: set[tuple[int, int]] = set()


def _warn_if_too_long(n_tokens: int, model) -> None:
    """Warn once per (length, limit) when prompts exceed the model's positions (results past it are garbage)."""
    cfg = getattr(model, "config", None)
    limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if limit and n_tokens > limit and (n_tokens, limit) not in _warned_lengths:
        import warnings

        _warned_lengths.add((n_tokens, limit))
        warnings.warn(f"a prompt has {n_tokens} tokens but the model has {limit} positions: its answers and "
                      f"activations are not meaningful (use a model with a longer context)", stacklevel=3)


def encode_batch(tokenizer, texts: Sequence[str], device, model=None) -> dict[str, torch.Tensor]:
    """Left-padded batch; templates already carry special tokens, so none are added. With ``model`` (one that
    takes them), also ``position_ids`` from the mask (``mask_position_ids``): a plain forward numbers the left
    padding too, which shifts every real token of a padded row on models with learned absolute positions
    (GPT-2), so answers and activations would depend on the other prompts in the batch."""
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    _warn_if_too_long(enc["input_ids"].shape[1], model)
    out = {k: v.to(device) for k, v in enc.items()}
    if model is not None and "attention_mask" in out and takes_position_ids(model):
        out["position_ids"] = mask_position_ids(out["attention_mask"])
    return out


def _batches(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


@dataclass
class EvalConfig:
    mode: str = "logits"
    batch_size: int = 16
    shuffle_options: bool = False
    seed: int = 0
    max_new_tokens: int = 4
    progress: bool = True
    sort_by_length: bool = True  # batch prompts of similar length (records come back in item order)
    share_prefix: bool = True  # logits mode: each batch's common prompt prefix runs once (interp.eval.prefix)

    def __post_init__(self) -> None:
        """Refuse settings no run can use."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    """Check an output folder before any work, writing nothing: a file there, or a folder (or, for a new one, its
    nearest existing parent) that cannot be written, is a named error (``OutputDirError``)."""
    from interp.paths import OutputDirError

    od = Path(out_dir)
    if od.exists() and not od.is_dir():
        raise OutputDirError(f"--out {od} is a file, not a folder")
    anchor = od
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise OutputDirError(f"--out {od} cannot be made: {anchor} is a file")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise OutputDirError(f"--out {od} cannot be written ({anchor} is read-only)")
    return od


@torch.no_grad()
def evaluate_items(model, tokenizer, items: Sequence[BBQItem], cfg: EvalConfig | None = None) -> list[dict]:
    """Run the model over items and return one prediction record per item (see ``prediction_record``),
    with the letter, the raw reply (generate mode), the three letter logits (both modes) and the prompt format
    ("chat" through the tokenizer's chat template, "plain" for a base model without one)."""
    cfg = cfg or EvalConfig()
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {cfg.mode!r}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if not items:
        raise ValueError("no items to evaluate (the selection is empty: check --split, --categories, --limit)")
    if tokenizer.padding_side != "left":
        tokenizer.padding_side = "left"
    if cfg.mode in OPTION_MODES:
        return _evaluate_options(model, tokenizer, items, cfg)
    device = next(model.parameters()).device
    letter_ids = letter_token_ids(tokenizer)
    fmt = prompt_format(tokenizer)
    prompted = [make_prompt(it, cfg.shuffle_options, cfg.seed) for it in items]
    texts = render_prompts(tokenizer, prompted)
    share = cfg.mode == "logits" and cfg.share_prefix and can_share_prefix(model) and takes_position_ids(model)
    token_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]  # tokenized once: lengths, shared prefix
    order = length_order([len(t) for t in token_ids]) if cfg.sort_by_length else list(range(len(texts)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[dict | None] = [None] * len(prompted)
    bar = tqdm(total=len(prompted), desc=f"eval ({cfg.mode})", disable=not cfg.progress, unit="item")
    for idx in _batches(order, cfg.batch_size):
        chunk = [prompted[i] for i in idx]
        logits = last_logits_shared_prefix(model, [token_ids[i] for i in idx], pad_id) if share else None
        if logits is None:
            enc = encode_batch(tokenizer, [texts[i] for i in idx], device, model)
        if cfg.mode == "logits":
            if logits is None:
                logits = model(**enc, logits_to_keep=1).logits[:, -1, :]  # [batch, vocab]; only the last position
            replies = [None] * len(chunk)
        else:
            gen = model.generate(
                **enc,
                max_new_tokens=cfg.max_new_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tokenizer.pad_token_id,
            )
            logits = gen.scores[0]  # [batch, vocab] first generated position
            new = gen.sequences[:, enc["input_ids"].shape[1] :]
            replies = tokenizer.batch_decode(new, skip_special_tokens=True)
        ll = logits[:, letter_ids].float().cpu()  # [batch, 3]
        for j, p in enumerate(chunk):
            if cfg.mode == "logits":
                letter = LETTERS[int(ll[j].argmax())]
            else:
                letter = parse_letter(replies[j])
            out[idx[j]] = (
                prediction_record(
                    p.item,
                    p.answer_of(letter),
                    letter=letter,
                    reply=replies[j],
                    letter_logits=[round(float(x), 5) for x in ll[j]],
                    gold_letter=p.gold_letter,
                    target_letter=p.target_letter,
                    biased_letter=p.biased_letter,
                    unknown_letter=p.unknown_letter,
                    order=list(p.order),
                    prompt_format=fmt,
                )
            )
        bar.update(len(chunk))
    bar.close()
    return out  # type: ignore[return-value]  # every slot is filled


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices of prompts from shortest to longest in tokens (stable), so a batch pads to near its own length."""
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def padded_share(lengths: Sequence[int], batch_size: int) -> float:
    """The share of a run's token slots that are left padding, for batches taken in the given order."""
    pad = total = 0
    for lo in range(0, len(lengths), batch_size):
        chunk = lengths[lo:lo + batch_size]
        pad += max(chunk) * len(chunk) - sum(chunk)
        total += max(chunk) * len(chunk)
    return pad / total if total else 0.0


def _evaluate_options(model, tokenizer, items: Sequence[BBQItem], cfg: EvalConfig) -> list[dict]:
    """Option mode: one record per item with the three answers' log-likelihoods (``option_loglik``, in answer
    order) and the answer they pick; no letters are shown, so the letter fields are those of answer order."""
    from interp.eval.options import option_scores, pick

    out: list[dict] = []
    bar = tqdm(total=len(items), desc=f"eval ({cfg.mode})", disable=not cfg.progress, unit="item")
    for chunk in _batches(items, cfg.batch_size):
        scores = option_scores(model, tokenizer, chunk, batch_size=cfg.batch_size)
        for it, ll in zip(chunk, scores):
            pred = pick(ll, it.answers, normalize=cfg.mode == "options_norm")
            p = make_prompt(it)  # the identity order: letter j is answer j
            out.append(prediction_record(
                it, pred, letter=LETTERS[pred], reply=None, option_loglik=[round(float(x), 6) for x in ll],
                gold_letter=p.gold_letter, target_letter=p.target_letter, biased_letter=p.biased_letter,
                unknown_letter=p.unknown_letter, order=[0, 1, 2], prompt_format="options"))
        bar.update(len(chunk))
    bar.close()
    return out


def write_results(records: Sequence[dict], out_dir: str | os.PathLike, n_boot: int = 1000, seed: int = 0,
                  meta: dict | None = None, cluster: str = "item") -> list[dict]:
    """Write per-item JSONL, the summary CSV and JSON into ``out_dir``; return the summary rows (intervals
    resample ``cluster`` units: items or templates). The meta records the prompt format ("chat" / "plain") the
    records were made with, when they say so."""
    meta = dict(meta or {})
    fmts = sorted({r["prompt_format"] for r in records if r.get("prompt_format")})
    if fmts and "prompt_format" not in meta:
        meta["prompt_format"] = fmts[0] if len(fmts) == 1 else "mixed"
    from interp.tables import write_text_atomic

    od = prepare_out_dir(out_dir)
    od.mkdir(parents=True, exist_ok=True)
    rows = summarize(records, n_boot=n_boot, seed=seed, cluster=cluster)
    # each file by write-then-rename; summary.json, the record that the run finished, last
    write_text_atomic(od / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write_csv(rows, od / "summary.csv")
    write_text_atomic(od / "summary.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    return rows


def print_summary(rows: Sequence[dict]) -> str:
    cols = ("acc_ambig", "acc_disambig", "abstain_disambig", "s_AMB", "amb_commit_bias", "s_DIS", "unparseable")
    txt = format_table(rows, cols)
    print(txt)
    return txt
