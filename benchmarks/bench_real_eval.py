"""Eval on real weights: the defaults a user gets against float32 unshared, unsorted eval, side by side in one run.

    python benchmarks/bench_real_eval.py [--model smollm2] [--n 256] [--batch-size 16]

Rows (each a ratio of wall times on the same items, best of --repeats):
- letter mode: the defaults (dtype auto, batches sorted by length) vs float32 in item order (goal >= 2.0x),
  with the letters' agreement (goal >= 0.99) and the padded-token share of each;
- option mode: the defaults (dtype auto, each context once) vs float32 scoring every continuation whole
  (goal >= 3.0x); and context sharing alone, at float32;
- bf16 vs float32 at the same settings (reported).
"""

from __future__ import annotations

import argparse
import time

import torch
from interp.models.backends import as_lm


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    from common import result

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from interp.data.prompts import make_prompt
    from interp.data.split import split_items
    from interp.eval.evaluate import EvalConfig, evaluate_items, length_order, padded_share, render_prompts
    from interp.eval.options import option_scores
    from interp.models.loading import load_model

    items, _ = split_items("dev", limit=args.n)
    auto = load_model(args.model, device="cpu")  # dtype auto: what a user gets
    f32 = load_model(args.model, device="cpu", dtype="float32")
    bs = args.batch_size
    print(f"model={args.model} n={len(items)} batch={bs} auto dtype={auto.model.dtype} "
          f"threads={torch.get_num_threads()}")

    def letters(lm, sort):
        return evaluate_items(as_lm(lm.model, lm.tokenizer), items, EvalConfig(batch_size=bs, sort_by_length=sort,
                                                                       progress=False))

    evaluate_items(as_lm(auto.model, auto.tokenizer), items[:bs], EvalConfig(batch_size=bs, progress=False))  # warm-up
    t_base, base = timed(lambda: letters(f32, False), args.repeats)
    t_fast, fast = timed(lambda: letters(auto, True), args.repeats)
    t_f32_sorted, _ = timed(lambda: letters(f32, True), args.repeats)
    agree = sum(a["pred"] == b["pred"] for a, b in zip(base, fast)) / len(items)
    texts = render_prompts(auto.tokenizer, [make_prompt(it) for it in items])
    lengths = [len(x) for x in auto.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = length_order(auto.tokenizer, texts)
    share_before, share_after = padded_share(lengths, bs), padded_share([lengths[i] for i in order], bs)
    print(f"letters: f32 unsorted {t_base:.1f}s, f32 sorted {t_f32_sorted:.1f}s, defaults {t_fast:.1f}s; "
          f"agreement {agree:.3f}; padded share {share_before:.3f} -> {share_after:.3f}")
    result(f"letter eval, defaults ({auto.model.dtype}, sorted) vs float32 unsorted", t_base / t_fast,
           f">= 2.0x, letters agree {agree:.3f} (>= 0.99)")
    result("letter eval, sorted vs unsorted batches (float32)", t_base / t_f32_sorted,
           f"padded share {share_before:.3f} -> {share_after:.3f}")

    t_obase, obase = timed(lambda: option_scores(f32.model, f32.tokenizer, items, batch_size=3 * bs,
                                                 share_context=False), args.repeats)
    t_oshared32, _ = timed(lambda: option_scores(f32.model, f32.tokenizer, items, batch_size=bs), args.repeats)
    t_ofast, ofast = timed(lambda: option_scores(auto.model, auto.tokenizer, items, batch_size=bs), args.repeats)
    pick = lambda rows: [max(range(3), key=r.__getitem__) for r in rows]  # noqa: E731
    oagree = sum(a == b for a, b in zip(pick(obase), pick(ofast))) / len(items)
    print(f"options: f32 whole {t_obase:.1f}s, f32 shared {t_oshared32:.1f}s, defaults {t_ofast:.1f}s; "
          f"agreement {oagree:.3f}")
    result(f"option eval, defaults ({auto.model.dtype}, shared context) vs float32 whole requests",
           t_obase / t_ofast, f">= 3.0x, answers agree {oagree:.3f}")
    result("option eval, shared context vs whole requests (float32)", t_obase / t_oshared32, "> 1")
    if auto.model.dtype != torch.float32:
        result(f"letter eval, {auto.model.dtype} vs float32 (both sorted)", t_f32_sorted / t_fast, "report")


if __name__ == "__main__":
    main()
