"""``benchmarks/run_all.py --only X`` replaces X's rows of the results table and keeps every other row (a partial
rerun used to overwrite the whole table with its own rows)."""

import csv
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_only_replaces_its_rows_and_keeps_the_rest(tmp_path, monkeypatch):
    mod = _run_all()
    out = tmp_path / "results"
    old = [{"benchmark": "bench_cache", "name": "cache/plain, hf", "ratio": "0.90", "goal": ">= 0.95", "seconds": "1"},
           {"benchmark": "bench_steering", "name": "steered/unsteered", "ratio": "1.02", "goal": "<= 1.03",
            "seconds": "2"}]
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(old[0]))
        w.writeheader()
        w.writerows(old)
    monkeypatch.setattr(mod, "run", lambda name, device: [
        {"benchmark": "bench_cache", "name": "cache/plain, hf", "ratio": 0.97, "goal": ">= 0.95", "seconds": 3}])
    monkeypatch.setattr(mod, "machine", lambda: {"date": "2026-12-01 16:00", "python": "3"})
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--only", "cache", "--out", str(out)])
    mod.main()
    rows = mod.read_rows(out.with_suffix(".csv"))
    assert [(r["benchmark"], float(r["ratio"])) for r in rows] == [("bench_cache", 0.97), ("bench_steering", 1.02)]
    assert rows[0]["date"] == "2026-12-01 16:00" and rows[1]["date"] == ""  # the kept row is not re-dated
    md = out.with_suffix(".md").read_text()
    assert "| bench_steering | steered/unsteered | 1.020 | <= 1.03 | earlier |" in md
    assert "rows measured earlier were kept" in md
