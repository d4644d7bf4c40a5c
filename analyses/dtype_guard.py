"""The bf16 guard: does a model answer the same in bfloat16 as in float32 on the CPU?

    python analyses/dtype_guard.py --model smollm2 [--limit N] --out results/guard_smollm2.json

Evaluates the template-disjoint dev split (letters by logits, the toolkit's defaults; or --mode options) once in
float32 and once in --candidate (mixed bf16, what auto gives on a bf16 CPU, or pure bfloat16), side by side in one
process, and reports:
- the share of items whose letter agrees (the guard wants >= 0.99);
- for each summary metric, whether the bf16 value lies inside float32's bootstrap interval (templates resampled);
- the wall time of each pass (their ratio is the bf16 speed-up on this machine).
The float32 pass is also the model's zero-shot result (docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

def run(model: str, limit: int | None, batch_size: int, n_boot: int, mode: str, candidate: str) -> dict:
    from dataclasses import asdict

    from interp.data.bbq import load
    from interp.eval.guard import dtype_guard

    items = load(split="dev", limit=limit)
    res = dtype_guard(model, items, batch_size=batch_size, n_boot=n_boot, mode=mode, progress=True,
                      candidate=candidate)
    out = {"model": model, "mode": mode, "batch_size": batch_size, "date": time.strftime("%Y-%m-%d"), **asdict(res)}
    out.update({f"seconds_{k}": v for k, v in res.seconds.items()}, passes=res.passes,
               speedup=round(res.seconds["float32"] / res.seconds[candidate], 3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--limit", type=int, default=None, help="a seeded subset of dev (default: all of it)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--mode", default="logits", choices=["logits", "options", "options_norm"])
    ap.add_argument("--candidate", default="bfloat16-mixed", choices=["bfloat16-mixed", "bfloat16"],
                    help="the bf16 precision judged against float32 (auto gives bfloat16-mixed on a bf16 CPU)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    res = run(args.model, args.limit, args.batch_size, args.n_boot, args.mode, args.candidate)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("model", "n_items", "letter_agreement", "inside_f32_interval", "speedup",
                                          "passes", "seconds_float32", f"seconds_{args.candidate}")}, indent=1))


if __name__ == "__main__":
    main()
