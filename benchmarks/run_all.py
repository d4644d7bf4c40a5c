"""Run every benchmark with the defaults a user gets and write one table of every ratio, with the machine,
the versions and the date: ``benchmarks/results.md`` and ``benchmarks/results.csv``.

    python benchmarks/run_all.py                 # everything, CPU, ~10 min on 2 cores
    python benchmarks/run_all.py --only cache,steering --device cuda
    python benchmarks/run_all.py --model smollm2   # the real-weights table (~1 h on 2 cores)

Each ratio is measured against a baseline timed in the same run (a plain forward, an unsteered eval, the
scikit-learn probe loop), so the table compares like with like on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (script, arguments beyond the user defaults)
BENCHMARKS = {
    # 1024 items: at 256 one timing is ~0.4 s on 2 cores, and the VM's jitter (+-5 %) swamped the 3-5 % effects
    "cache": ("bench_cache.py", ["--model", "organism", "--n", "1024", "--batch-size", "32", "--repeats", "5",
                                 "--rss-n", "256"]),
    "steering": ("bench_steering.py", ["--model", "organism", "--n", "1024"]),
    "eval_modes": ("bench_eval_modes.py", ["--model", "organism"]),
    "probes": ("bench_probes.py", ["--seeds", "2"]),
    "patching": ("bench_patching.py", ["--model", "organism"]),
    "grpo": ("bench_grpo.py", ["--model", "organism", "--steps", "4", "--repeats", "4"]),
    # real weights: letter and option eval, the defaults against float32 unsorted unshared eval
    "real_eval": ("bench_real_eval.py", ["--model", "smollm2", "--n", "128"]),
}

# --model on a real model: the benchmarks that take it, at sizes a 2-core CPU finishes in minutes (the organism
# sizes above would take hours), with the dtype a user gets (auto: bfloat16 where the CPU has native bf16)
REAL_SIZES = {
    "cache": ["--n", "32", "--batch-size", "16", "--repeats", "2", "--rss-n", "16", "--dtype", "auto"],
    "steering": ["--n", "32", "--batch-size", "16", "--repeats", "3", "--dtype", "auto"],
    "probes": ["--model", "organism", "--n", "400", "--seeds", "2"],
    "grpo": ["--steps", "1", "--repeats", "2", "--limit", "32"],
    "real_eval": ["--n", "64"],
}
ORGANISMS = ("organism", "organism-small", "synthetic")


def with_sizes(name: str, args: list[str], model: str | None) -> list[str]:
    """A benchmark's arguments with the REAL_SIZES flags set (replaced or added) when ``model`` is a real one."""
    if not model or model in ORGANISMS or name not in REAL_SIZES:
        return list(args)
    out, extra = list(args), REAL_SIZES[name]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


def model_of(name: str, model: str | None = None) -> str:
    """The model a benchmark runs on: ``model`` where it takes one, else its own (``synthetic``: none)."""
    args = with_model(with_sizes(name, BENCHMARKS[name][1], model), model)
    return args[args.index("--model") + 1] if "--model" in args else "synthetic"


def default_model(stem: str) -> str:
    """The default model of the benchmark whose script is ``stem`` (rows written before models were recorded)."""
    return next((model_of(n) for n, (script, _) in BENCHMARKS.items() if Path(script).stem == stem), "synthetic")


def with_model(args: list[str], model: str | None) -> list[str]:
    """A benchmark's arguments with its ``--model`` replaced by ``model`` (when given and the benchmark has one)."""
    if not model or "--model" not in args:
        return list(args)
    out = list(args)
    out[out.index("--model") + 1] = model
    return out


def machine() -> dict:
    import torch
    import transformers

    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": __import__("os").cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(name: str, device: str | None, model: str | None = None) -> list[dict]:
    script, extra = BENCHMARKS[name]
    extra = with_model(with_sizes(name, extra, model), model)
    cmd = [sys.executable, str(HERE / script), *extra] + (["--device", device] if device else [])
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if res.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{res.stderr[-3000:]}")
    rows = [json.loads(line[len("RESULT "):]) for line in res.stdout.splitlines() if line.startswith("RESULT ")]
    for r in rows:
        r["seconds"] = round(time.time() - t0, 1)
        r["model"] = model_of(name, model)
    print(res.stdout, end="")
    return rows


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier results CSV (none when absent)."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {list(BENCHMARKS)}")
    ap.add_argument("--device", default=None, help="passed to each benchmark (default: its own)")
    ap.add_argument("--model", default=None,
                    help="run every benchmark that loads a model on this one (e.g. smollm2; default: each its own)")
    ap.add_argument("--out", default=str(HERE / "results"), help="writes OUT.md and OUT.csv")
    a = ap.parse_args()
    if a.only is None:  # a real model runs the benchmarks sized for it; the organism runs them all
        a.only = ",".join(REAL_SIZES if a.model and a.model not in ORGANISMS else BENCHMARKS)
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    info = machine()
    new = [{**r, "date": info["date"]} for n in names for r in run(n, a.device, a.model)]
    out = Path(a.out)
    # --only replaces the rows of the benchmarks it ran and keeps every other row of the table (with its date)
    order = {Path(script).stem: i for i, (script, _) in enumerate(BENCHMARKS.values())}  # a row's "benchmark"
    ran = {(Path(BENCHMARKS[n][0]).stem, model_of(n, a.model)) for n in names}  # (benchmark, model) replaced
    kept = [{**r, "model": r.get("model") or default_model(r["benchmark"])} for r in read_rows(out.with_suffix(".csv"))]
    kept = [r for r in kept if (r["benchmark"], r["model"]) not in ran]
    rows = sorted(kept + new, key=lambda r: order.get(r["benchmark"], len(order)))
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["benchmark", "model", "name", "ratio", "goal", "seconds", "date"],
                           restval="")
        w.writeheader()
        w.writerows(rows)
    md = [f"# Benchmark ratios ({info['date']})", "",
          "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "date") + ".", "",
          "| benchmark | model | ratio | value | goal | measured |", "|---|---|---|---|---|---|"]
    md += [f"| {r['benchmark']} | {r['model']} | {r['name']} | {float(r['ratio']):.3f} | {r['goal']} | "
           f"{r.get('date') or 'earlier'} |" for r in rows]
    md += ["", f"Command: `python benchmarks/run_all.py --only {','.join(names)}"
               + (f" --device {a.device}" if a.device else "") + (f" --model {a.model}" if a.model else "") + "`"
           + (" (rows measured earlier were kept)" if kept else "")]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
