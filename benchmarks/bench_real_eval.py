"""Eval on real weights: the defaults a user gets against float32 unshared, unsorted eval, side by side in one run.

    python benchmarks/bench_real_eval.py [--model smollm2] [--n 256] [--batch-size 16]

Rows (each a ratio of wall times on the same items, best of --repeats):
- letter mode: the defaults (dtype auto, batches sorted by length, the common prompt prefix run once per batch)
  vs float32 unshared in item order (goal >= 2.0x), with the letters' agreement (goal >= 0.99) and the
  padded-token share of each; the shared prefix alone (float32, sorted); and eval (unshared) vs a plain forward
  of the same batches at the same dtype (goal >= 0.95x);
- option mode: the defaults (dtype auto, each context once) vs float32 scoring every continuation whole
  (goal >= 3.0x); and context sharing alone, at float32;
- bf16 vs float32 at the same settings, for mixed bf16 (what auto gives on a bf16 CPU) and pure bf16, with each
  one's letter agreement (reported).
"""

from __future__ import annotations

import argparse
import time

import torch


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
    from interp.data.bbq import split_items
    from interp.models.backends import as_lm
    from interp.eval.evaluate import (EvalConfig, encode_batch, evaluate_items, length_order, padded_share,
                                      render_prompts)
    from interp.eval.options import option_scores
    from interp.models.loading import load_model
    from interp.models.precision import precision_name

    items, _ = split_items("dev", limit=args.n)
    auto = load_model(args.model, device="cpu")  # dtype auto: what a user gets
    f32 = load_model(args.model, device="cpu", dtype="float32")
    bs = args.batch_size
    dt = precision_name(auto.model)  # what auto chose: bfloat16-mixed on a bf16 CPU, else float32
    print(f"model={args.model} n={len(items)} batch={bs} auto dtype={dt} "
          f"threads={torch.get_num_threads()}")

    def letters(lm, sort, share):
        return evaluate_items(as_lm(lm.model, lm.tokenizer), items, EvalConfig(batch_size=bs, sort_by_length=sort,
                                                                       share_prefix=share, progress=False))

    def plain_forward(lm):  # prompt -> tokens -> forward -> last-token logits, the same sorted batches as eval
        texts = render_prompts(lm.tokenizer, [make_prompt(it) for it in items])
        ids = lm.tokenizer(texts, add_special_tokens=False)["input_ids"]
        order = length_order([len(x) for x in ids])
        with torch.no_grad():
            for lo in range(0, len(order), bs):
                enc = encode_batch(lm.tokenizer, [texts[i] for i in order[lo:lo + bs]], "cpu", as_lm(lm))
                lm.model(**enc, logits_to_keep=1).logits[:, -1]  # [batch, vocab]

    evaluate_items(as_lm(auto.model, auto.tokenizer), items[:bs], EvalConfig(batch_size=bs, progress=False))  # warm-up
    t_base, base = timed(lambda: letters(f32, False, False), args.repeats)
    t_fast, fast = timed(lambda: letters(auto, True, True), args.repeats)
    t_f32_sorted, _ = timed(lambda: letters(f32, True, False), args.repeats)
    t_f32_shared, _ = timed(lambda: letters(f32, True, True), args.repeats)
    t_auto_unshared, _ = timed(lambda: letters(auto, True, False), args.repeats)
    t_plain, _ = timed(lambda: plain_forward(auto), args.repeats)
    agree = sum(a["pred"] == b["pred"] for a, b in zip(base, fast)) / len(items)
    texts = render_prompts(auto.tokenizer, [make_prompt(it) for it in items])
    lengths = [len(x) for x in auto.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = length_order(lengths)
    share_before, share_after = padded_share(lengths, bs), padded_share([lengths[i] for i in order], bs)
    print(f"letters: f32 unsorted {t_base:.1f}s, f32 sorted {t_f32_sorted:.1f}s, defaults {t_fast:.1f}s; "
          f"agreement {agree:.3f}; padded share {share_before:.3f} -> {share_after:.3f}")
    result(f"letter eval, defaults ({dt}, sorted, shared prefix) vs float32 unsorted unshared",
           t_base / t_fast,
           f">= 2.0x, letters agree {agree:.3f} (>= 0.99)")
    result("letter eval, sorted vs unsorted batches (float32)", t_base / t_f32_sorted,
           f"padded share {share_before:.3f} -> {share_after:.3f}")
    result("letter eval, shared prefix vs plain pass (float32, sorted)", t_f32_sorted / t_f32_shared, "> 1")
    result(f"letter eval (plain pass) vs a plain forward of the same batches ({dt})",
           t_plain / t_auto_unshared, ">= 0.95")

    t_obase, obase = timed(lambda: option_scores(f32.model, f32.tokenizer, items, batch_size=3 * bs,
                                                 share_context=False), args.repeats)
    t_oshared32, _ = timed(lambda: option_scores(f32.model, f32.tokenizer, items, batch_size=bs), args.repeats)
    t_ofast, ofast = timed(lambda: option_scores(auto.model, auto.tokenizer, items, batch_size=bs), args.repeats)
    pick = lambda rows: [max(range(3), key=r.__getitem__) for r in rows]  # noqa: E731
    oagree = sum(a == b for a, b in zip(pick(obase), pick(ofast))) / len(items)
    print(f"options: f32 whole {t_obase:.1f}s, f32 shared {t_oshared32:.1f}s, defaults {t_ofast:.1f}s; "
          f"agreement {oagree:.3f}")
    result(f"option eval, defaults ({dt}, shared context) vs float32 whole requests",
           t_obase / t_ofast, f">= 3.0x, answers agree {oagree:.3f}")
    result("option eval, shared context vs whole requests (float32)", t_obase / t_oshared32, "> 1")
    # bf16 vs float32 whatever auto chose: on a CPU without native bf16 it shows why auto keeps float32; mixed
    # (auto's choice on a bf16 CPU) and pure bf16 side by side show what the float32 residual and head cost
    for name in ("bfloat16-mixed", "bfloat16"):
        lm = auto if precision_name(auto.model) == name else load_model(args.model, device="cpu", dtype=name)
        t_bf16, recs = timed(lambda: letters(lm, True, True), args.repeats)
        agree16 = sum(a["pred"] == b["pred"] for a, b in zip(base, recs)) / len(items)
        print(f"letters, sorted, shared prefix: float32 {t_f32_shared:.1f}s, {name} {t_bf16:.1f}s, letters agree "
              f"{agree16:.3f} (auto chose {dt})")
        result(f"letter eval, {name} vs float32 (both sorted, shared prefix; auto chose {dt})",
               t_f32_shared / t_bf16, f"report; letters agree {agree16:.3f}")


if __name__ == "__main__":
    main()
