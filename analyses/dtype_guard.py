"""The bf16 guard: does a model answer the same in bfloat16 as in float32 on the CPU?

    python analyses/dtype_guard.py --model smollm2 [--limit N] --out results/guard_smollm2.json

Evaluates the template-disjoint dev split (letters by logits, the toolkit's defaults) once in float32 and once
in bfloat16, side by side in one process, and reports:
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
from interp.models.backends import as_lm

METRICS = ("acc_ambig", "acc_disambig", "abstain_disambig", "s_AMB", "amb_commit_bias", "s_DIS")


def run(model: str, limit: int | None, batch_size: int, n_boot: int, mode: str) -> dict:
    from interp.data.bbq import load
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize
    from interp.models.loading import load_model

    items = load(split="dev", limit=limit)
    out: dict = {"model": model, "n_items": len(items), "mode": mode, "batch_size": batch_size,
                 "date": time.strftime("%Y-%m-%d")}
    recs = {}
    for dtype in ("float32", "bfloat16"):
        lm = load_model(model, device="cpu", dtype=dtype)
        t0 = time.perf_counter()
        recs[dtype] = evaluate_items(as_lm(lm.model, lm.tokenizer), items, EvalConfig(mode=mode, batch_size=batch_size))
        out[f"seconds_{dtype}"] = round(time.perf_counter() - t0, 1)
        rows = summarize(recs[dtype], n_boot=n_boot, seed=0, cluster="template")
        out[f"summary_{dtype}"] = next(r for r in rows if r["group"] == "overall")
        del lm
    a, b = recs["float32"], recs["bfloat16"]
    out["letter_agreement"] = sum(x["pred"] == y["pred"] for x, y in zip(a, b)) / len(a)
    f32, bf = out["summary_float32"], out["summary_bfloat16"]
    out["inside_f32_interval"] = {m: bool(f32[f"{m}_lo"] <= bf[m] <= f32[f"{m}_hi"]) for m in METRICS}
    out["speedup"] = round(out["seconds_float32"] / out["seconds_bfloat16"], 3)
    out["passes"] = out["letter_agreement"] >= 0.99 and all(out["inside_f32_interval"].values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--limit", type=int, default=None, help="a seeded subset of dev (default: all of it)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--mode", default="logits", choices=["logits", "options", "options_norm"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    res = run(args.model, args.limit, args.batch_size, args.n_boot, args.mode)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("model", "n_items", "letter_agreement", "inside_f32_interval", "speedup",
                                          "passes", "seconds_float32", "seconds_bfloat16")}, indent=1))


if __name__ == "__main__":
    main()
