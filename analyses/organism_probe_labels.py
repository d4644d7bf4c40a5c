"""What an organism's last-token activations let a linear probe read on dev: the stereotype label under each
condition (ambiguous, all, disambiguated commits) and the question's polarity, among ambiguous commits and
over all ambiguous items. Folds are grouped by template; margins are over the majority rate and the shuffled
control, median over five fold seeds.

    python analyses/organism_probe_labels.py interp/organisms/weights/organism interp/organisms/weights/organism-small
"""

from __future__ import annotations

import argparse

import numpy as np


def probe_labels(path: str, fold_seeds: int = 5, n_boot: int = 200) -> list[dict]:
    """One row per label: its median margin over fold seeds and the first seed's best layer."""
    import interp
    from interp.data.bbq import split_items
    from interp.methods.probes import (ProbeConfig, best_layer, probe_margin, probe_sweep, stereotype_labels,
                                       template_groups)
    from interp.organisms.causal_lm import load_plant

    rec = load_plant(path)
    dev, _ = split_items("dev", categories=rec["split"]["categories"])
    acts = interp.collect(interp.load(path, device="cpu", dtype="float32"), dev, layers="all", batch_size=64,
                          progress=False)
    r, groups = acts.records, template_groups(acts.records)
    commits = stereotype_labels(r, "ambig")[0]  # the stereotype probe's items: ambiguous commits
    ambiguous = np.array([i for i, x in enumerate(r) if x["context_condition"] == "ambig"
                          and x["target_loc"] is not None], dtype=np.int64)

    rows = []
    for cond in ("ambig", "all", "disambig"):
        sweeps = [interp.probe_layers(acts, "stereotype", condition=cond, n_boot=n_boot, seed=k)
                  for k in range(fold_seeds)]
        rows.append(_row(path, f"stereotype, {cond} commits", [s.best_row for s in sweeps]))
    for name, idx in (("polarity, ambiguous commits", commits), ("polarity, all ambiguous items", ambiguous)):
        y = np.array([int(r[i]["question_polarity"] == "neg") for i in idx], dtype=np.int64)
        X = {n: a[idx] for n, a in acts.acts.items()}
        bests = [best_layer(probe_sweep(X, y, groups[idx], ProbeConfig(n_boot=n_boot, seed=k)))
                 for k in range(fold_seeds)]
        rows.append(_row(path, name, bests))
    for row in rows:
        row["margin_median"] = float(np.median([probe_margin(b) for b in row.pop("bests")]))
    return rows


def _row(path: str, label: str, bests: list) -> dict:
    b = bests[0]
    return {"organism": path.rstrip("/").split("/")[-1], "label": label, "n": int(b["n"]), "layer": int(b["layer"]),
            "acc": float(b["acc"]), "majority": float(b["majority"]), "bests": bests}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--fold-seeds", type=int, default=5)
    a = ap.parse_args()
    print("| organism | label | n | median margin | best layer: acc / majority |\n|---|---|---|---|---|")
    for f in a.folders:
        for row in probe_labels(f, a.fold_seeds):
            print(f"| {row['organism']} | {row['label']} | {row['n']} | {row['margin_median']:+.3f} | "
                  f"{row['layer']}: {row['acc']:.3f} / {row['majority']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
