"""What every benchmark shares: one machine-readable RESULT line per ratio, which ``run_all.py`` collects."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def result(name: str, ratio: float, goal: str) -> None:
    """Print ``RESULT {"benchmark", "name", "ratio", "goal"}`` (the benchmark is the running script)."""
    print("RESULT " + json.dumps({"benchmark": Path(sys.argv[0]).stem, "name": name, "ratio": round(float(ratio), 4),
                                  "goal": goal}), flush=True)
