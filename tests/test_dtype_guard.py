"""The bf16 guard (interp.eval.guard): it fails a planted disagreement, and the tiny model and SmolLM2 pass it
on real BBQ dev prompts (a small slice; analyses/dtype_guard.py runs it on 600 items)."""

from __future__ import annotations

import pytest

from interp.eval.guard import MIN_AGREEMENT, dtype_guard, judge


def _records(items, n=100):
    """Planted prediction records of real dev items, with a fixed answer pattern."""
    from interp.eval.score import prediction_record

    return [prediction_record(it, i % 3) for i, it in enumerate(items[:n])]


@pytest.fixture(scope="module")
def dev_items(bbq_dir):
    from interp.data.bbq import load

    return load(split="dev", limit=200, bbq_dir=bbq_dir)


def test_judge_fails_a_planted_disagreement_and_passes_identical_runs(dev_items):
    f32 = _records(dev_items)
    same = judge(f32, [dict(r) for r in f32], n_boot=50)
    assert same.letter_agreement == 1.0 and same.passes
    flipped = [dict(r) for r in f32]
    for r in flipped[:2]:  # 2 of 100 answers change: agreement 0.98 < 0.99
        r["pred"] = (r["pred"] + 1) % 3
    bad = judge(f32, flipped, n_boot=50)
    assert bad.letter_agreement == pytest.approx(0.98) and bad.letter_agreement < MIN_AGREEMENT
    assert not bad.passes


def test_judge_refuses_runs_of_different_items(dev_items):
    f32 = _records(dev_items, 10)
    with pytest.raises(ValueError, match="not of the same items"):
        judge(f32, list(reversed(f32)), n_boot=10)
    with pytest.raises(ValueError, match="non-empty"):
        judge([], [], n_boot=10)


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_models_pass_the_guard_on_dev_prompts(which, request, dev_items):
    model = str(request.getfixturevalue("tiny_lm_dir" if which == "tiny" else "smollm2_dir"))
    n = 24 if which == "tiny" else 8  # bf16 is emulated (slow) on CPUs without it, as on CI's
    res = dtype_guard(model, dev_items[:n], batch_size=8, n_boot=100)
    assert res.n_items == n
    assert res.letter_agreement >= MIN_AGREEMENT, res
    assert res.passes, res.inside_f32_interval
