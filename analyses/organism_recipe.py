"""Organism recipe sweep: build variants of the small organism over seeds, in parallel processes, and measure
whether the planted lean is learned (train templates) and transfers (template-disjoint dev).

    python analyses/organism_recipe.py --variant base --variant p1:p=1.0 --variant qd:question_dropout=0.3 \\
        --seeds 0,1,2 --jobs 2 --out runs/organism_recipe.jsonl

A variant is ``name[:key=value,...]`` (a list of words is joined by ``+``); keys are fields of ``interp.organisms.causal_lm.TrainConfig`` or ``Plant``
(applied to the small variant's defaults, or the full one's with ``--full``). Each finished build appends one
JSON line: the dev metrics from plant.json, the metrics on ``--n-train`` train-template items, and the dev
target-pick rate among ambiguous commits by question polarity (a lean that reads polarity picks the target
group on negative questions and the other group on non-negative ones)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields, replace
from pathlib import Path
from interp.models.backends import as_lm


def parse_variant(spec: str) -> tuple[str, dict, dict]:
    """'name:k=v,k=v' -> (name, TrainConfig overrides, Plant overrides), values parsed as JSON when possible."""
    from interp.organisms.causal_lm import Plant, TrainConfig

    name, _, rest = spec.partition(":")
    cfg_keys = {f.name for f in fields(TrainConfig)}
    plant_keys = {f.name for f in fields(Plant)}
    cfg, plant = {}, {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        try:
            val = json.loads(v)
        except json.JSONDecodeError:  # a bare word, or a list of words joined by '+' (commas split the variant)
            val = v.split("+") if "+" in v else v
        if k in cfg_keys:
            cfg[k] = val
        elif k in plant_keys:
            plant[k] = val
        else:
            raise SystemExit(f"variant {name!r}: {k!r} is neither a TrainConfig nor a Plant field")
    return name, cfg, plant


def target_pick(records) -> dict:
    """Among ambiguous items answered with a group (not Unknown): share picking the bias target, by polarity."""
    out = {}
    for pol in ("neg", "nonneg"):
        rs = [r for r in records if r["context_condition"] == "ambig" and r["question_polarity"] == pol
              and r["target_loc"] is not None and r["pred"] is not None and r["pred"] != r["unknown_loc"]]
        n = len(rs)
        rate = round(sum(r["pred"] == r["target_loc"] for r in rs) / n, 3) if n else None
        n_items = sum(r["context_condition"] == "ambig" and r["question_polarity"] == pol and r["target_loc"] is not None
                      for r in records)
        out[pol] = {"n_items": n_items, "n_commit": n, "n_target": sum(r["pred"] == r["target_loc"] for r in rs),
                    "target_rate": rate}
    return out


def run_one(name: str, cfg_over: dict, plant_over: dict, seed: int, full: bool, n_train: int, threads: int,
            workdir: str) -> dict:
    import torch

    from interp.organisms.causal_lm import FULL_CONFIG, SMALL_CONFIG, Plant, build_organism

    torch.set_num_threads(threads)
    cfg = replace(FULL_CONFIG if full else SMALL_CONFIG, threads=threads, **cfg_over)
    plant = replace(Plant(), **plant_over)
    out = Path(workdir) / f"{name}-s{seed}"
    t0 = time.time()
    build_organism(out, seed=seed, small=not full, config=cfg, plant=plant, progress=False)
    build_s = time.time() - t0
    return {"variant": name, "seed": seed, "full": full, "config": cfg_over, "plant": plant_over,
            "build_s": round(build_s, 1), "threads": threads, "torch": torch.__version__,
            **measure_dir(out, n_train)}


KEEP = ("acc_ambig", "acc_disambig", "abstain_disambig", "amb_commit_bias", "s_AMB", "n_committed_ambig")


def _pick(row: dict) -> dict:
    return {k: v for k, v in row.items() if any(k.startswith(p) for p in KEEP)}


def measure_dir(path: Path, n_train: int = 800) -> dict:
    """Metrics of a built organism: dev (as recorded in plant.json), ``n_train`` train-template items, and the
    target-pick rates on both, on the organism's categories of the split it was built on."""
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize
    from interp.models.loading import load_model
    from interp.organisms.causal_lm import _subset
    from interp.data.bbq import split_items

    rec = json.loads((Path(path) / "plant.json").read_text())
    lm = load_model(str(path), device="cpu", dtype="float32")
    cats = rec["split"]["categories"]
    train, split = split_items("train", categories=cats)
    dev, _ = split_items("dev", categories=cats)
    assert split.hash == rec["split"]["hash"], "not the split the organism was built on"
    ev = EvalConfig(batch_size=64, progress=False)
    tr_recs = evaluate_items(as_lm(lm.model, lm.tokenizer), _subset(train, n_train, 1234), ev)
    dev_recs = evaluate_items(as_lm(lm.model, lm.tokenizer), dev, ev)
    return {"dev": _pick(rec["dev_metrics"]), "dev_remeasured": _pick(summarize(dev_recs, n_boot=1000)[0]),
            "train_templates": _pick(summarize(tr_recs, n_boot=1000)[0]),
            "dev_target_pick": target_pick(dev_recs), "train_target_pick": target_pick(tr_recs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", action="append", default=[], help="name[:key=value,...] (repeatable)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--full", action="store_true", help="vary the full organism instead of the small one")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per build")
    ap.add_argument("--n-train", type=int, default=800, help="train-template items measured")
    ap.add_argument("--out", default="runs/organism_recipe.jsonl")
    ap.add_argument("--workdir", default=None, help="where the builds go (default a temp folder)")
    ap.add_argument("--measure", default=None, help="only measure this built organism folder, print JSON")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure_dir(Path(args.measure), args.n_train), indent=1))
        return
    variants = [parse_variant(v) for v in (args.variant or ["base"])]
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.workdir or tempfile.mkdtemp(prefix="organism_recipe_")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = [(n, c, p, s) for n, c, p in variants for s in seeds]
    print(f"{len(jobs)} builds, {args.jobs} at a time, {args.threads} thread(s) each -> {out}", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        futs = {ex.submit(run_one, n, c, p, s, args.full, args.n_train, args.threads, work): (n, s)
                for n, c, p, s in jobs}
        for f in as_completed(futs):
            n, s = futs[f]
            try:
                row = f.result()
            except Exception as e:  # keep the other builds going; say which failed
                print(f"{n} seed {s}: FAILED {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                continue
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            d, t = row["dev"], row["train_templates"]
            print(f"{n:>10} s{s}  train bias {t['amb_commit_bias']:.3f}  dev bias {d['amb_commit_bias']:.3f} "
                  f"[{d['amb_commit_bias_lo']:.3f}, {d['amb_commit_bias_hi']:.3f}]  dev acc_ambig "
                  f"{d['acc_ambig']:.3f} acc_dis {d['acc_disambig']:.3f}  pick {row['dev_target_pick']}  "
                  f"{row['build_s']:.0f}s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
