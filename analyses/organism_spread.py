"""The organism seed spread: each built organism folder re-measured on its template-disjoint dev split, with
intervals by template (whole templates resampled) and by item, against the recipe's targets (docs/organism.md).

    python analyses/organism_spread.py /tmp/org/small-s0 /tmp/org/small-s1 ... --out docs/organism_spread.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

TARGETS = {  # metric -> (test, text)
    "acc_disambig": (lambda m: m["acc_disambig"] >= 0.70, ">= 0.70"),
    "acc_ambig": (lambda m: 0.40 <= m["acc_ambig"] <= 0.80, "in [0.40, 0.80]"),
    "abstain_disambig": (lambda m: m["abstain_disambig"] <= 0.10, "<= 0.10"),
    "amb_commit_bias": (lambda m: m["amb_commit_bias"] >= 0.20 and m["amb_commit_bias_lo"] > 0, ">= 0.20, lo > 0"),
    "s_AMB": (lambda m: m["s_AMB_lo"] > 0, "lo > 0"),
}


def measure(path: str | Path, n_boot: int = 1000) -> dict:
    """The dev metrics of one organism folder, by template and by item."""
    from interp.data.split import split_items
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize
    from interp.models.loading import load_model
    from interp.organisms.causal_lm import load_plant

    rec = load_plant(path)
    lm = load_model(str(path), device="cpu", dtype="float32")
    dev, _ = split_items("dev", categories=rec["split"]["categories"])
    recs = evaluate_items(lm.model, lm.tokenizer, dev, EvalConfig(batch_size=64, progress=False))
    by_t = summarize(recs, n_boot=n_boot, by_category=False, cluster="template")[0]
    by_i = summarize(recs, n_boot=n_boot, by_category=False)[0]
    return {"path": str(path), "variant": rec["variant"], "seed": rec["seed"], "p": rec["plant"]["p"],
            "build_seconds": rec.get("build_seconds"), "template": by_t, "item": by_i}


def table(rows: list[dict]) -> str:
    ms = list(TARGETS)
    head = "| variant | seed | p | " + " | ".join(ms) + " | targets met | build s |"
    lines = [head, "|" + "---|" * (len(ms) + 5)]
    for r in rows:
        m = r["template"]
        cells = [f"{m[k]:.3f} [{m[f'{k}_lo']:.3f}, {m[f'{k}_hi']:.3f}]" for k in ms]
        met = [k for k, (ok, _) in TARGETS.items() if ok(m)]
        lines.append(f"| {r['variant']} | {r['seed']} | {r['p']} | " + " | ".join(cells)
                     + f" | {len(met)}/{len(ms)} ({', '.join(k for k in ms if k not in met) or 'all'} missed) |"
                       .replace("(all missed)", "(none missed)") + f" {r['build_seconds']} |")
    lines.append("")
    lines.append("Targets: " + "; ".join(f"{k} {t}" for k, (_, t) in TARGETS.items())
                 + ". Intervals: 95%, whole dev templates resampled.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="Write the markdown table here too.")
    a = ap.parse_args()
    rows = [measure(f, a.n_boot) for f in a.folders]
    md = table(rows)
    print(md)
    if a.out:
        a.out.write_text(md + "\n")


if __name__ == "__main__":
    main()
