"""Throughput of `logits` vs `generate` evaluation on the same items, as a ratio measured in one run.

    python benchmarks/bench_eval_modes.py [--model organism-small] [--n 256] [--batch-size 32]

Prints items/s for each mode, the ratio logits/generate, and the letter agreement between modes."""

from __future__ import annotations

import argparse
import time

import torch
from interp.models.backends import as_lm


def main() -> None:
    from common import result

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.models.loading import load_model
    from interp.data.bbq import split_items

    items, _ = split_items("dev", limit=args.n)
    lm = load_model(args.model, device="auto")
    res = {}
    for mode in ("logits", "generate"):
        cfg = EvalConfig(mode=mode, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=False)
        evaluate_items(as_lm(lm.model, lm.tokenizer), items[: args.batch_size], cfg)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            recs = evaluate_items(as_lm(lm.model, lm.tokenizer), items, cfg)
            best = min(best, time.perf_counter() - t0)
        res[mode] = (len(items) / best, recs)
    agree = sum(a["letter"] == b["letter"] for a, b in zip(res["logits"][1], res["generate"][1])) / len(items)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"model={args.model} device={dev} n={len(items)} batch={args.batch_size} threads={torch.get_num_threads()}")
    print(f"logits:   {res['logits'][0]:8.1f} items/s")
    print(f"generate: {res['generate'][0]:8.1f} items/s  (max_new_tokens={args.max_new_tokens})")
    print(f"ratio logits/generate: {res['logits'][0] / res['generate'][0]:.2f}x; letter agreement {agree:.3f}")
    result("logits/generate eval throughput", res["logits"][0] / res["generate"][0], "> 1 (letters agree)")


if __name__ == "__main__":
    main()
