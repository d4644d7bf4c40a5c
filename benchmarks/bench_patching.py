"""Activation patching speed: the exact grid (every hook x layer x position role) against the same count of plain
forward rows, batched the same way, on the same pairs; and attribution patching against the exact grid.

    python benchmarks/bench_patching.py [--model organism] [--pairs evidence] [--n 64] [--batch-size 64]

The plain arm runs, per pair, what the exact grid runs without its hooks and activation cache: one clean and one
corrupted forward, then ceil(cells / batch size) forwards of the corrupted prompt repeated over the batch rows.
The arms are timed alternately, best of ``--repeats``. Goal: patched / plain time <= 1.3 (the hooks' copies and
index writes, and the clean run's activation cache, are the only extra work), and 64 pairs on the organism under a
minute on the 2-core CPU."""

from __future__ import annotations

import argparse
import math
import time

import torch


def main() -> None:
    from common import result

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism")
    ap.add_argument("--pairs", default="evidence")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import interp
    from interp.data.pairs import ROLES, build_pairs
    from interp.methods.patching import HOOKS, _last_logits, prepare_pairs, run_patching

    lm = interp.load(args.model, device=args.device, dtype=args.dtype)
    pairs = build_pairs(interp.bbq.load(split=args.split), args.pairs, limit=args.n)
    prepared = prepare_pairs(lm.tokenizer, pairs)

    def plain():
        for pp in prepared:
            _last_logits(lm, pp.clean_ids)
            _last_logits(lm, pp.corrupted_ids)
            cells = len(HOOKS) * lm.n_layers * sum(r in pp.roles for r in ROLES)
            for start in range(0, cells, args.batch_size):
                _last_logits(lm, pp.corrupted_ids, min(args.batch_size, cells - start))

    def exact():
        return run_patching(lm, prepared, positions=list(ROLES), attribution=False, batch_size=args.batch_size)

    def attribution():
        return run_patching(lm, prepared, positions=list(ROLES), attribution=True, batch_size=args.batch_size)

    plain()  # warm-up
    best = {k: [math.inf, math.inf] for k in ("plain", "exact", "attr")}  # [wall, process CPU] seconds

    def timed(key, fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best[key] = [min(best[key][0], time.perf_counter() - w), min(best[key][1], time.process_time() - c)]
        return out

    for _ in range(args.repeats):
        timed("plain", plain)
        res = timed("exact", exact)
        timed("attr", attribution)
    (wp, cp), (we, ce), (wa, ca) = best["plain"], best["exact"], best["attr"]
    wa, ca = max(wa - we, 0.0), max(ca - ce, 0.0)  # the attribution arm also ran the exact grid
    rows = sum(len(HOOKS) * lm.n_layers * len(pp.roles) + 2 for pp in prepared)
    print(f"{args.model}: {len(prepared)} {args.pairs} pairs, {rows} forward rows, batch {args.batch_size}, "
          f"{args.threads} thread(s)")
    print(f"wall: plain forwards {wp:.2f} s, exact grid {we:.2f} s, attribution grid ~{wa:.2f} s")
    print(f"CPU:  plain forwards {cp:.2f} s, exact grid {ce:.2f} s, attribution grid ~{ca:.2f} s")
    result(f"exact patching / plain forwards (CPU time), {args.model}, {len(prepared)} {args.pairs} pairs", ce / cp,
           "<= 1.3")
    result(f"exact patching / plain forwards (wall), {args.model}, {len(prepared)} {args.pairs} pairs", we / wp,
           "<= 1.3")
    result(f"attribution / exact patching CPU time, {args.model}", ca / ce, "(lower is faster)")
    result(f"exact patching wall seconds, {args.model}, {len(prepared)} pairs", we, "< 60")
    assert len(res.rows) > 0


if __name__ == "__main__":
    main()
