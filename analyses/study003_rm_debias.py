"""Study 003: debiasing the RM organism by neuron-level intervention (Shinoda et al., ACL 2026).

Builds (or reuses) the RM organism, finds MLP neurons tracking five spurious attributes on its validation
set (response-mean rule and the scored-position rule), replaces them by their validation medians, and compares with a length penalty and an LWR length
correction on the organism's test splits (neutral / easy / hard) and on attribute-only edits.

    python analyses/study003_rm_debias.py --out results/study003 [--small] [--seed 0]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/study003")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    from interp.pipeline.rm_study import run_rm_study

    s = run_rm_study(args.out, small=args.small, seed=args.seed, device=args.device)
    acc = {m: {k: round(v, 3) for k, v in row.items() if not k.startswith("hard:")} for m, row in s["accuracy"].items()}
    print(json.dumps({"accuracy": acc, "sensitivity": s["sensitivity"], "per_layer": s["per_layer"],
                      "fraction": s["fraction"], "ground_truth": s["ground_truth"],
                      "ground_truth_scored_rule": s.get("ground_truth_scored_rule")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
