"""Phase 3: where is the stereotype lean linearly readable, and how does it relate to abstention?

    python analyses/phase3_probes.py [--model organism] [--limit N] [--out results/phase3] [--figures figures]

1. Activations at the last prompt position, every layer's resid_post, on the train split (the activation store
   of `interp cache` when it exists, else computed in process).
2. Stereotype probe (congruent vs anti-congruent commits) and abstention probe (Unknown vs commit), per layer,
   5-fold CV grouped by template, majority and shuffled-label lines: CSVs + accuracy-by-layer figures.
3. Difference-of-means directions (stereotype, abstention, stereotype orthogonalized against abstention) saved
   as safetensors, with their per-layer cosines: CSV + figure.
Prints the best probe layer, which Phase 4 steers at."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from interp.models.backends import as_lm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--categories", default=None)
    ap.add_argument("--condition", default="all")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--store", default=None, help="activation store (default: interp cache's path, if present)")
    ap.add_argument("--out", default="results/phase3")
    ap.add_argument("--figures", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from interp.store.activations import default_store_path
    from interp.methods.directions import compute_directions, plot_cosines
    from interp.figures import figures_dir
    from interp.methods.probes import (ProbeConfig, abstain_labels, best_layer, collect, plot_probe_accuracy,
                               probe_sweep, resid_hooks, stereotype_labels, Activations, template_groups)
    from interp.eval.score import write_csv
    from interp.data.bbq import split_items

    out, figs = Path(args.out), figures_dir(args.figures)
    out.mkdir(parents=True, exist_ok=True)
    cats = args.categories.split(",") if args.categories else None
    items, split = split_items(args.split, categories=cats, limit=args.limit)
    store = args.store or default_store_path(args.model, args.adapter, args.split)
    if args.store or (Path(store).exists() and args.limit is None and cats is None):
        print(f"activations from {store}")
        got = Activations.from_store(store)
    else:
        from interp.models.loading import load_model

        lm = load_model(args.model, adapter=args.adapter, device=args.device)
        got = collect(as_lm(lm), items, resid_hooks(lm.model), batch_size=args.batch_size)
    acts, recs = got.acts, got.records
    groups = template_groups(recs)
    summary = {"model": args.model, "adapter": args.adapter, "split": args.split, "split_hash": split.hash,
               "n_items": len(recs)}
    for target, fn in (("stereotype", stereotype_labels), ("abstain", abstain_labels)):
        idx, y = fn(recs, args.condition)
        rows = probe_sweep({n: a[idx] for n, a in acts.items()}, y, groups[idx],
                           ProbeConfig(seed=args.seed, progress=True))
        for r in rows:
            r.update(model=args.model, target=target, condition=args.condition)
        write_csv(rows, out / f"probe_{target}.csv")
        plot_probe_accuracy(rows, figs / f"phase3_probe_{target}.png",
                            title=f"{target} probe by layer ({args.model}, {args.split}, n={len(y)})")
        b = best_layer(rows)
        summary[f"best_{target}"] = {k: b[k] for k in ("layer", "acc", "acc_lo", "acc_hi", "majority",
                                                        "shuffled_mean", "n")}
        print(f"{target:10s} best layer {b['layer']}: acc {b['acc']:.3f} [{b['acc_lo']:.3f}, {b['acc_hi']:.3f}] "
              f"vs shuffled {b['shuffled_mean']:.3f}, majority {b['majority']:.3f} (n={b['n']})")
    ds = compute_directions(acts, recs, args.condition,
                            {"model": args.model, "adapter": args.adapter or "", "split": args.split,
                             "split_hash": split.hash, "position": "last prompt token"})
    ds.save(out / "directions.safetensors")
    cos = ds.cosine_rows()
    write_csv(cos, out / "direction_cosines.csv")
    plot_cosines(cos, figs / "phase3_direction_cosines.png", title=f"directions by layer ({args.model})")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}/probe_*.csv, directions.safetensors, direction_cosines.csv, summary.json; figures in {figs}")


if __name__ == "__main__":
    main()
