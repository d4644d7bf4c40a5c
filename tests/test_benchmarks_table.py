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
    monkeypatch.setattr(mod, "run", lambda name, device, model=None: [
        {"benchmark": "bench_cache", "name": "cache/plain, hf", "ratio": 0.97, "goal": ">= 0.95", "seconds": 3,
         "model": mod.model_of(name, model)}])
    monkeypatch.setattr(mod, "machine", lambda: {"date": "2026-12-01 16:00", "python": "3"})
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--only", "cache", "--out", str(out)])
    mod.main()
    rows = mod.read_rows(out.with_suffix(".csv"))
    assert [(r["benchmark"], float(r["ratio"])) for r in rows] == [("bench_cache", 0.97), ("bench_steering", 1.02)]
    assert rows[0]["date"] == "2026-12-01 16:00" and rows[1]["date"] == ""  # the kept row is not re-dated
    md = out.with_suffix(".md").read_text()
    assert "| bench_steering | organism | steered/unsteered | 1.020 | <= 1.03 | earlier |" in md
    assert "rows measured earlier were kept" in md


def test_model_reruns_replace_only_that_models_rows(tmp_path, monkeypatch):
    """``--model smollm2`` adds the real-weights rows beside the organism's and replaces only its own."""
    mod = _run_all()
    out = tmp_path / "results"
    monkeypatch.setattr(mod, "machine", lambda: {"date": "2026-12-02 09:00", "python": "3"})

    def fake(name, device, model=None):
        return [{"benchmark": "bench_cache", "name": "cache/plain, hf", "ratio": 0.9 if model else 0.95,
                 "goal": ">= 0.95", "seconds": 1, "model": mod.model_of(name, model)}]

    monkeypatch.setattr(mod, "run", fake)
    for argv in (["--only", "cache"], ["--only", "cache", "--model", "smollm2"], ["--only", "cache", "--model",
                                                                                   "smollm2"]):
        monkeypatch.setattr(sys, "argv", ["run_all.py", *argv, "--out", str(out)])
        mod.main()
    rows = mod.read_rows(out.with_suffix(".csv"))
    assert sorted((r["model"], float(r["ratio"])) for r in rows) == [("organism", 0.95), ("smollm2", 0.9)]
    assert mod.with_model(["--model", "organism", "--n", "8"], "smollm2") == ["--model", "smollm2", "--n", "8"]
    assert mod.model_of("grpo") == "organism" and mod.model_of("real_eval") == "smollm2"
    assert mod.model_of("grpo", "smollm2") == "smollm2"
