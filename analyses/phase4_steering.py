"""Phase 4: steer with the stereotype direction and with it orthogonalized against abstention.

    python analyses/phase4_steering.py [--model organism] [--directions results/phase3/directions.safetensors]
        [--layer L (default: Phase 3's best stereotype-probe layer)] [--alphas -8,-4,0,4,8] [--units sigma]

Evaluates the dev split at each alpha for both directions (``interp.methods.steering.alpha_curve``), writes one CSV,
the alpha-curve figure (raw vs orthogonalized) and the s_AMB frontier figure (coverage term 1 - acc_ambig vs
conditional term amb_commit_bias across alphas)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--directions", default="results/phase3/directions.safetensors")
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument("--alphas", default="-8,-4,-2,0,2,4,8")
    ap.add_argument("--units", default="sigma", choices=["sigma", "unit", "raw"])
    ap.add_argument("--split", default="dev")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--categories", default=None)
    ap.add_argument("--mode", default="logits", choices=["logits", "generate"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/phase4")
    ap.add_argument("--figures", default=None)
    args = ap.parse_args()

    from interp.methods.directions import load_directions
    from interp.eval.evaluate import EvalConfig
    from interp.figures import figures_dir
    from interp.models.loading import load_model
    from interp.eval.score import write_csv
    from interp.data.bbq import split_items
    from interp.methods.steering import alpha_curve, direction_vector, plot_alpha_curves, plot_frontier

    out, figs = Path(args.out), figures_dir(args.figures)
    out.mkdir(parents=True, exist_ok=True)
    layer = args.layer
    if layer is None:
        summ = Path(args.directions).with_name("summary.json")
        if not summ.exists():
            raise SystemExit(f"give --layer, or run analyses/phase3_probes.py first (no {summ})")
        layer = json.loads(summ.read_text())["best_stereotype"]["layer"]
        print(f"steering at Phase 3's best stereotype-probe layer {layer}")
    ds = load_directions(args.directions)
    cats = args.categories.split(",") if args.categories else None
    items, split = split_items(args.split, categories=cats, limit=args.limit)
    lm = load_model(args.model, adapter=args.adapter, device=args.device)
    cfg = EvalConfig(mode=args.mode, batch_size=args.batch_size, seed=args.seed, progress=False)
    alphas = [float(a) for a in args.alphas.split(",")]
    curves, rows = {}, []
    for name in ("stereotype", "stereotype_orth"):
        d = ds.get(name, layer=layer)
        curves[name] = alpha_curve(lm, items, direction_vector(d, args.units), layer, alphas, cfg,
                                   n_boot=args.n_boot, seed=args.seed, label=name)
        for r in curves[name]:
            r.update(model=args.model, units=args.units, split=args.split, split_hash=split.hash)
            print(f"{name:16s} alpha {r['alpha']:+6.2f}  acc_ambig {r['acc_ambig']:.3f}  acc_disambig "
                  f"{r['acc_disambig']:.3f}  s_AMB {r['s_AMB']:+.3f}  amb_commit_bias {r['amb_commit_bias']:+.3f}")
        rows += curves[name]
    write_csv(rows, out / "alpha_curves.csv")
    f1 = plot_alpha_curves(curves, figs / f"phase4_alpha_curves_L{layer}.png",
                           title=f"steering at layer {layer}: raw vs orthogonalized stereotype direction "
                                 f"({args.units} units)")
    f2 = plot_frontier(curves, figs / f"phase4_sAMB_frontier_L{layer}.png")
    print(f"wrote {out}/alpha_curves.csv, {f1}, {f2}")


if __name__ == "__main__":
    main()
