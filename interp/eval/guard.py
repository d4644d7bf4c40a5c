"""The bf16 guard: does a model answer the same in bf16 as in float32?

``dtype="auto"`` picks mixed bf16 (``interp.models.precision``) on a CPU with native bf16 matmul only for models
that pass this guard on real BBQ prompts (docs/models.md): letters agree on at least ``MIN_AGREEMENT`` of the
items, and every summary metric of the bf16 pass lies inside float32's bootstrap interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from interp.data.bbq import BBQItem
from interp.errors import InputError
from interp.models.precision import MIXED

MIN_AGREEMENT = 0.99
METRICS = ("acc_ambig", "acc_disambig", "abstain_disambig", "s_AMB", "amb_commit_bias", "s_DIS")


@dataclass
class GuardResult:
    """The guard's verdict: letter agreement, which metrics fell inside float32's interval, and the timings."""

    n_items: int
    letter_agreement: float
    inside_f32_interval: dict[str, bool]
    summary_float32: dict
    summary_bfloat16: dict  # the candidate's (``candidate``: bfloat16-mixed by default, or pure bfloat16)
    seconds: dict[str, float] = field(default_factory=dict)  # by precision: float32 and the candidate
    candidate: str = "bfloat16"

    @property
    def passes(self) -> bool:
        return self.letter_agreement >= MIN_AGREEMENT and all(self.inside_f32_interval.values())


def judge(f32: Sequence[Mapping], bf16: Sequence[Mapping], n_boot: int = 1000, seed: int = 0) -> GuardResult:
    """Compare two runs' prediction records of the same items (float32 first)."""
    from interp.eval.metrics import summarize

    if len(f32) != len(bf16) or not f32:
        raise InputError(f"the guard needs two non-empty runs of the same items, got {len(f32)} and {len(bf16)}")
    key = lambda r: (r["category"], r["example_id"])  # noqa: E731
    if [key(r) for r in f32] != [key(r) for r in bf16]:
        raise InputError("the guard's two runs are not of the same items in the same order")
    agree = sum(a["pred"] == b["pred"] for a, b in zip(f32, bf16)) / len(f32)
    s32 = next(r for r in summarize(f32, n_boot=n_boot, seed=seed, cluster="template") if r["group"] == "overall")
    s16 = next(r for r in summarize(bf16, n_boot=n_boot, seed=seed, cluster="template") if r["group"] == "overall")
    inside = {m: bool(s32[f"{m}_lo"] <= s16[m] <= s32[f"{m}_hi"]) for m in METRICS}
    return GuardResult(len(f32), agree, inside, s32, s16)


def dtype_guard(model: str, items: Sequence[BBQItem], batch_size: int = 16, n_boot: int = 1000,
                mode: str = "logits", progress: bool = False, candidate: str = MIXED) -> GuardResult:
    """Evaluate ``items`` with ``model`` (a name or folder) in float32 and then in ``candidate`` (mixed bf16, what
    'auto' gives on a bf16 CPU, or pure ``bfloat16``) on the CPU, with the toolkit's eval defaults, and judge the
    two runs."""
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.models.backends import as_lm
    from interp.models.loading import load_model

    recs, secs = {}, {}
    for dtype in ("float32", candidate):
        lm = load_model(model, device="cpu", dtype=dtype)
        t0 = time.perf_counter()
        recs[dtype] = evaluate_items(as_lm(lm.model, lm.tokenizer), items,
                                     EvalConfig(mode=mode, batch_size=batch_size, progress=progress))
        secs[dtype] = round(time.perf_counter() - t0, 1)
        del lm
    res = judge(recs["float32"], recs[candidate], n_boot=n_boot)
    res.seconds, res.candidate = secs, candidate
    return res
