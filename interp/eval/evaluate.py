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
from typing import Sequence

import torch
from tqdm.auto import tqdm

from interp.data.bbq import BBQItem
from interp.errors import InputError
from interp.eval.metrics import format_table, summarize
from interp.eval.prefix import can_share_prefix, last_logits_shared_prefix
from interp.data.prompts import LETTERS, make_prompt, parse_letter, prompt_format
from interp.eval.score import prediction_record, write_csv
from interp.models.answers import (answer_batches, batches, encode_batch, length_order,  # noqa: F401 - re-exported
                                   letter_token_ids, mask_position_ids, render_prompts, takes_position_ids)
from interp.models.protocol import LanguageModel

MODES = ("logits", "generate", "options", "options_norm")
OPTION_MODES = ("options", "options_norm")


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
            raise InputError(f"mode must be one of {MODES}, not {self.mode!r}")
        if int(self.max_new_tokens) < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if int(self.batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")


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
def evaluate_items(lm: LanguageModel, items: Sequence[BBQItem], cfg: EvalConfig | None = None) -> list[dict]:
    """Run the model over items and return one prediction record per item (see ``prediction_record``),
    with the letter, the raw reply (generate mode), the three letter logits (both modes) and the prompt format
    ("chat" through the tokenizer's chat template, "plain" for a base model without one). Hooks set on ``lm``
    (steering) apply, in generate mode at every step."""
    cfg = cfg or EvalConfig()
    if cfg.mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, not {cfg.mode!r}")
    if cfg.batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if not items:
        raise InputError("no items to evaluate (the selection is empty: check --split, --categories, --limit)")
    tokenizer = lm.tokenizer
    if tokenizer.padding_side != "left":
        tokenizer.padding_side = "left"
    if cfg.mode in OPTION_MODES:
        return _evaluate_options(lm, items, cfg)
    fmt = prompt_format(tokenizer)
    shared = None
    # the shared-prefix pass needs a plain HF decoder with no hook set (a hook may pick positions by index)
    if cfg.mode == "logits" and cfg.share_prefix and lm.backend == "hf" and lm.takes_position_ids \
            and can_share_prefix(lm.model):
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        shared = lambda seqs: last_logits_shared_prefix(lm.model, seqs, pad_id)  # noqa: E731
    out: list[dict | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=f"eval ({cfg.mode})", disable=not cfg.progress, unit="item")
    for b in answer_batches(lm, items, cfg.batch_size, mode=cfg.mode, shuffle_options=cfg.shuffle_options,
                            seed=cfg.seed, sort_by_length=cfg.sort_by_length, max_new_tokens=cfg.max_new_tokens,
                            last_logits=shared):
        letters = b.letters() if cfg.mode == "logits" else [parse_letter(r) for r in b.replies]
        for j, (i, p) in enumerate(zip(b.index, b.prompted)):
            out[i] = prediction_record(
                p.item,
                p.answer_of(letters[j]),
                letter=letters[j],
                reply=b.replies[j],
                letter_logits=[round(float(x), 5) for x in b.letter_logits[j]],
                gold_letter=p.gold_letter,
                target_letter=p.target_letter,
                biased_letter=p.biased_letter,
                unknown_letter=p.unknown_letter,
                order=list(p.order),
                prompt_format=fmt,
            )
        bar.update(len(b.index))
    bar.close()
    return out  # type: ignore[return-value]  # every slot is filled


def padded_share(lengths: Sequence[int], batch_size: int) -> float:
    """The share of a run's token slots that are left padding, for batches taken in the given order."""
    pad = total = 0
    for lo in range(0, len(lengths), batch_size):
        chunk = lengths[lo:lo + batch_size]
        pad += max(chunk) * len(chunk) - sum(chunk)
        total += max(chunk) * len(chunk)
    return pad / total if total else 0.0


def _evaluate_options(lm: LanguageModel, items: Sequence[BBQItem], cfg: EvalConfig) -> list[dict]:
    """Option mode: one record per item with the three answers' log-likelihoods (``option_loglik``, in answer
    order) and the answer they pick; no letters are shown, so the letter fields are those of answer order. The
    HF module scores the texts (with its KV cache over the shared context): hooks of the hf backend apply."""
    from interp.eval.options import option_scores, pick

    out: list[dict] = []
    bar = tqdm(total=len(items), desc=f"eval ({cfg.mode})", disable=not cfg.progress, unit="item")
    for chunk in batches(items, cfg.batch_size):
        scores = option_scores(lm.model, lm.tokenizer, chunk, batch_size=cfg.batch_size)
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
