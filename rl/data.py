"""The GRPO training set: BBQ train-split prompts with the letters the rewards need as extra columns."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from interp.data.bbq import BBQItem
from interp.data.prompts import make_prompt
from interp.errors import InputError

# Columns every row carries besides "prompt"; TRL passes them to reward functions as keyword arguments.
REWARD_COLUMNS = ("gold_letter", "biased_letter", "unknown_letter", "context_condition")


def item_row(item: BBQItem, conversational: bool = True, shuffle: bool = False, seed: int = 0) -> dict:
    """One dataset row: the prompt (a user turn, or the raw text) and the item's gold/biased/unknown letters.

    ``biased_letter`` is "" for items without a bias target (the lambda penalty never applies to them)."""
    p = make_prompt(item, shuffle, seed)
    prompt = [{"role": "user", "content": p.user_text}] if conversational else p.user_text
    return {
        "prompt": prompt,
        "gold_letter": p.gold_letter,
        "biased_letter": p.biased_letter or "",
        "unknown_letter": p.unknown_letter,
        "context_condition": item.context_condition,
        "question_polarity": item.question_polarity,
        "category": item.category,
        "uid": item.uid,
    }


def build_dataset(items: Sequence[BBQItem], conversational: bool = True, shuffle: bool = False, seed: int = 0):
    """A ``datasets.Dataset`` of ``item_row`` rows for ``GRPOTrainer`` (conversational prompts get the
    tokenizer's chat template applied by TRL, exactly as ``interp.data.prompts.apply_chat`` renders them)."""
    from datasets import Dataset

    if not items:
        raise InputError("no items to train on (empty train split? check --categories / --limit)")
    return Dataset.from_list([item_row(it, conversational, shuffle, seed) for it in items])


def load_train_items(
    bbq_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    dev_frac: float = 0.2,
    split_seed: int = 0,
    categories: Iterable[str] | None = None,
    limit: int | None = None,
    templates_dir: str | os.PathLike | None = None,
    part: str = "train",
):
    """Items of the template-disjoint train split (or ``part``) and the split itself."""
    from interp.data.bbq import split_items

    return split_items(part, bbq_dir, split_file, dev_frac, split_seed,
                       list(categories) if categories else None, limit, templates_dir)
