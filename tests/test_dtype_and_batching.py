"""dtype 'auto' on the CPU (bf16 only where the CPU multiplies it natively and the model is not tiny), and batches
sorted by length (the same records in item order, less padding)."""

from __future__ import annotations

import os

import pytest
import torch

from interp.eval.evaluate import EvalConfig, evaluate_items, length_order, padded_share, render_prompts
from interp.data.prompts import make_prompt
from interp.models import loading
from interp.models.loading import CPU_BF16_MIN_BYTES, cpu_has_native_bf16, pick_dtype
from interp.models.backends import as_lm

CPU = torch.device("cpu")


def _folder(tmp_path, nbytes: int):
    d = tmp_path / f"m{nbytes}"
    d.mkdir()
    with open(d / "model.safetensors", "wb") as fh:  # sparse: takes no disk
        fh.truncate(nbytes)
    return str(d)


def test_auto_is_bf16_only_on_a_native_cpu_for_a_model_that_is_not_tiny(tmp_path, monkeypatch):
    big, tiny = _folder(tmp_path, CPU_BF16_MIN_BYTES), _folder(tmp_path, CPU_BF16_MIN_BYTES - 1)
    monkeypatch.setenv("INTERP_CPU_BF16", "1")
    assert pick_dtype("auto", CPU, big) == torch.bfloat16
    assert pick_dtype("auto", CPU, "Qwen/Qwen2.5-3B-Instruct") == torch.bfloat16  # a hub id: a real model
    assert pick_dtype("auto", CPU, tiny) == torch.float32
    assert pick_dtype("auto", CPU) == torch.float32  # no model named (training, RM scoring): as before
    assert pick_dtype("float32", CPU, big) == torch.float32  # asked for: kept
    monkeypatch.setenv("INTERP_CPU_BF16", "0")
    assert pick_dtype("auto", CPU, big) == torch.float32


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    monkeypatch.delenv("INTERP_CPU_BF16", raising=False)
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_the_shipped_organism_stays_float32(monkeypatch):
    monkeypatch.setenv("INTERP_CPU_BF16", "1")
    lm = loading.load_model("organism", device="cpu")
    assert lm.model.dtype == torch.float32


def test_length_order_and_padded_share(tiny_tokenizer, fixture_items):
    texts = render_prompts(tiny_tokenizer, [make_prompt(it) for it in fixture_items])
    lengths = [len(tiny_tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    order = length_order(lengths)
    assert sorted(order) == list(range(len(texts)))
    assert [lengths[i] for i in order] == sorted(lengths)
    assert padded_share([3, 5, 5, 1], 2) == pytest.approx((2 + 4) / (10 + 10))
    assert padded_share(sorted(lengths), 4) <= padded_share(lengths, 4)


@pytest.mark.parametrize("mode", ["logits", "generate"])
def test_sorted_batches_give_the_same_records_in_item_order(tiny_lm, fixture_items, mode):
    items = fixture_items[:13]
    kw = dict(mode=mode, batch_size=4, progress=False, shuffle_options=True, max_new_tokens=2)
    a = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), items, EvalConfig(sort_by_length=True, **kw))
    b = evaluate_items(as_lm(tiny_lm.model, tiny_lm.tokenizer), items, EvalConfig(sort_by_length=False, **kw))
    assert [r["uid"] for r in a] == [it.uid for it in items]
    for ra, rb in zip(a, b):
        assert ra["pred"] == rb["pred"] and ra["reply"] == rb["reply"]
        assert ra["letter_logits"] == pytest.approx(rb["letter_logits"], abs=1e-4)


def test_a_builtin_model_that_failed_the_guard_stays_float32(tmp_path, monkeypatch):
    """Found by the GGUF sha256 its folder records, not by the folder's name."""
    import json
    import shutil

    from interp.models.builtin import BUILTIN
    from interp.models.gguf import RECORD

    monkeypatch.setenv("INTERP_CPU_BF16", "1")
    failed = next(m for m in BUILTIN.values() if not m.cpu_bf16)
    passed = next(m for m in BUILTIN.values() if m.cpu_bf16)
    for m, want in ((failed, torch.float32), (passed, torch.bfloat16)):
        d = _folder(tmp_path, CPU_BF16_MIN_BYTES)  # one folder name for both: only the record differs
        (tmp_path / f"m{CPU_BF16_MIN_BYTES}" / RECORD).write_text(json.dumps({"gguf_sha256": m.gguf_sha256}))
        assert pick_dtype("auto", CPU, d) == want, m.name
        shutil.rmtree(d)
