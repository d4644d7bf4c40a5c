"""Compare two behaviour snapshots (analyses/behaviour_snapshot.sh): the eval summary, the probe table, the
directions, the alpha-curve and the 4-step GRPO adapter. Prints the largest difference of each.

    python analyses/compare_snapshots.py BEFORE AFTER
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def _num(x: str):
    try:
        return float(x)
    except ValueError:
        return x


def table_diff(a: Path, b: Path) -> float:
    """The largest absolute difference between two CSV tables' numeric cells (inf when their shape or text differs)."""
    ra, rb = list(csv.DictReader(open(a))), list(csv.DictReader(open(b)))
    if len(ra) != len(rb) or (ra and ra[0].keys() != rb[0].keys()):
        return float("inf")
    worst = 0.0
    for x, y in zip(ra, rb):
        for k in x:
            u, v = _num(x[k]), _num(y[k])
            if isinstance(u, float) and isinstance(v, float):
                if u != u and v != v:  # both NaN
                    continue
                worst = max(worst, abs(u - v))
            elif u != v:
                return float("inf")
    return worst


def tensors_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    if ta.keys() != tb.keys():
        return float("inf")
    return max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta) if ta else 0.0


def main() -> None:
    A, B = Path(sys.argv[1]), Path(sys.argv[2])
    adapter = lambda d: next(iter(sorted(d.glob("rl/checkpoint-*/adapter_model.safetensors"))))  # noqa: E731
    rows = {
        "eval summary (summary.csv)": table_diff(A / "eval/summary.csv", B / "eval/summary.csv"),
        "probe table": table_diff(A / "probe/probe.csv", B / "probe/probe.csv"),
        "directions": tensors_diff(A / "directions.safetensors", B / "directions.safetensors"),
        "alpha-curve": table_diff(A / "steer/alpha_curve.csv", B / "steer/alpha_curve.csv"),
        "GRPO adapter (4 steps)": tensors_diff(adapter(A), adapter(B)),
    }
    print(json.dumps(rows, indent=1))
    sys.exit(0 if all(v <= 1e-6 for v in rows.values()) else 1)


if __name__ == "__main__":
    main()
