"""Shared fixtures: the official BBQ folder (skipped when absent), our own small BBQ-format fixture,
and a tiny random Qwen2 model with a locally trained tokenizer (no hub)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_BBQ = Path(__file__).parent / "fixtures" / "bbq" / "data"


def official_bbq_dir() -> Path | None:
    """$INTERP_BBQ_DIR, else ../shared/data/bbq/data beside the checkout; None when neither exists."""
    cands = [os.environ.get("INTERP_BBQ_DIR"), ROOT.parent / "shared" / "data" / "bbq" / "data"]
    for c in cands:
        if c and Path(c).is_dir() and any(Path(c).glob("*.jsonl")):
            return Path(c)
        if c and (Path(c) / "data").is_dir():
            return Path(c) / "data"
    return None


@pytest.fixture(scope="session")
def bbq_dir() -> Path:
    d = official_bbq_dir()
    if d is None:
        pytest.skip("official BBQ data not found: set INTERP_BBQ_DIR to a folder of BBQ <Category>.jsonl files")
    return d


@pytest.fixture(scope="session")
def fixture_bbq_dir() -> Path:
    return FIXTURE_BBQ


@pytest.fixture(scope="session")
def fixture_items():
    from interp.data.bbq import load_bbq

    items, _ = load_bbq(FIXTURE_BBQ)
    return items


@pytest.fixture(scope="session")
def tiny_tokenizer(fixture_items):
    from interp.data.prompts import make_prompt
    from interp.organisms.tiny import train_tokenizer

    texts = [make_prompt(it).user_text for it in fixture_items]
    return train_tokenizer(texts * 4, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny random Qwen2ForCausalLM + tokenizer folder, loadable with from_pretrained."""
    from interp.organisms.tiny import build_causal_lm

    d = tmp_path_factory.mktemp("tiny_lm")
    model = build_causal_lm(tiny_tokenizer, seed=0)
    model.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture()
def tiny_lm(tiny_lm_dir):
    """A fresh copy of the tiny model for each test (tests may hook or modify it)."""
    from interp.models.loading import load_model

    return load_model(str(tiny_lm_dir), device="cpu", dtype="float32")
