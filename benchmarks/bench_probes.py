"""Full probe sweep (``probe_sweep``: folds, label sets, scikit-learn fits, bootstrap, rows) vs the bare
scikit-learn fits it runs (StandardScaler + LogisticRegression per label set, layer and fold), same folds.

    python benchmarks/bench_probes.py [--layers 24] [--n 2000] [--d 256] [--store PATH]
    python benchmarks/bench_probes.py --model smollm2 --n 400 [--acts /tmp/acts.npz]

Synthetic data by default: ``--layers`` layers of ``[n, d]`` Gaussian activations, with a label signal planted
along one direction in the later half of the layers and template offsets everywhere; or a real activation
store (``--store``, labels from its predictions); or a real model's last-token ``hook_resid_post`` on ``--n``
dev items collected here in float32 (``--model``; ``--acts`` keeps them in an .npz for the next run), with the
stereotype label, or the abstention label when fewer than 100 items commit (``--target``). The two arms are
timed in ABBA order over ``--seeds`` fold seeds and compared by their totals: the sweep's own work (labels,
folds, bootstrap) should cost little beside the fits.

Session 10 removed the hand-written batched torch solver this benchmark used to time against scikit-learn
(docs/results.md has the last measurement, made with this script at commit b1c18d8)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from interp.models.hooks import hook_name


def synthetic(L: int, n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.array([f"T:{i % 60}" for i in range(n)])
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(L, n, d)).astype(np.float32)
    v = rng.normal(size=d)
    v /= np.linalg.norm(v)
    for l in range(L // 2, L):
        X[l] += (0.3 + 0.05 * (l - L // 2)) * np.outer(2 * y - 1, v).astype(np.float32)
    X += rng.normal(size=(60, d)).astype(np.float32)[np.arange(n) % 60][None]
    return {hook_name(l): X[l] for l in range(L)}, y, groups


def model_activations(model: str, n: int, target: str, cache: str | None):
    """Last-token resid_post of every layer on ``n`` dev items, float32, and (labels, groups) for ``target``."""
    import os

    import interp
    from interp.methods.probes import abstain_labels, stereotype_labels, template_groups

    if cache and os.path.isfile(cache):
        z = np.load(cache, allow_pickle=False)
        acts = {k: z[k] for k in z.files if k.startswith("blocks.")}
        recs = [dict(pred=None if p < 0 else int(p), biased_loc=None if b < 0 else int(b), unknown_loc=int(u),
                     context_condition="", category=g.split(":")[0], question_index=g.split(":", 1)[1])
                for p, b, u, g in zip(z["pred"], z["biased"], z["unknown"], z["groups"])]  # condition "all"
    else:
        lm = interp.load(model, dtype="float32", device="cpu")
        a = interp.collect(lm, interp.bbq.load("dev", limit=n), layers="all", progress=False)
        acts, recs = a.acts, a.records
        if cache:
            np.savez(cache, **acts, pred=np.array([-1 if r["pred"] is None else r["pred"] for r in recs]),
                     biased=np.array([-1 if r.get("biased_loc") is None else r["biased_loc"] for r in recs]),
                     unknown=np.array([r["unknown_loc"] for r in recs]),
                     groups=template_groups(recs))
    idx, y = stereotype_labels(recs)
    if target == "abstain" or (target == "auto" and len(idx) < 100):
        idx, y = abstain_labels(recs)
        target = "abstain"
    print(f"{model}: {len(recs)} items, label {target if target != 'auto' else 'stereotype'}: {len(idx)} labelled, "
          f"{int(y.sum())} positive")
    return {k: v[idx] for k, v in acts.items()}, y, template_groups(recs)[idx]


def main() -> None:
    from common import result

    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--store", default=None)
    ap.add_argument("--model", default=None, help="collect a real model's activations (e.g. smollm2)")
    ap.add_argument("--acts", default=None, help="with --model: an .npz of the collected activations, reused")
    ap.add_argument("--target", default="auto", choices=["auto", "stereotype", "abstain"])
    ap.add_argument("--n-shuffles", type=int, default=1)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None, help="accepted for run_all.py; scikit-learn fits on the CPU")
    ap.add_argument("--seeds", type=int, default=4, help="fold seeds timed (ABBA order over seeds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from interp.methods.probes import (ProbeConfig, cv_decision_sklearn, group_folds, probe_sweep, stereotype_labels,
                                       Activations, template_groups)

    if args.model:
        acts, y, groups = model_activations(args.model, args.n, args.target, args.acts)
    elif args.store:
        got = Activations.from_store(args.store)
        acts, recs = got.acts, got.records
        idx, y = stereotype_labels(recs)
        groups = template_groups(recs)[idx]
        acts = {k: v[idx] for k, v in acts.items()}
    else:
        acts, y, groups = synthetic(args.layers, args.n, args.d)
    L, (n, d) = len(acts), next(iter(acts.values())).shape
    print(f"{L} layers x [{n}, {d}], 5 grouped folds, 1 + {args.n_shuffles} label sets, C={args.C}, "
          f"threads {args.threads}")
    X = np.stack([np.asarray(a, dtype=np.float32) for a in acts.values()])  # [L, n, d]

    def sweep(seed: int) -> None:
        probe_sweep(acts, y, groups, ProbeConfig(n_shuffles=args.n_shuffles, C=args.C, seed=seed))

    def bare(seed: int) -> None:  # the same label sets and folds as probe_sweep builds
        rng = np.random.default_rng(seed + 1)
        Y = np.stack([y] + [rng.permutation(y) for _ in range(args.n_shuffles)])
        cv_decision_sklearn(X, Y, group_folds(groups, 5, seed), args.C)

    times = {"sweep": 0.0, "bare": 0.0}
    for seed in range(args.seeds):
        for arm in (("sweep", "bare") if seed % 2 == 0 else ("bare", "sweep")):
            t0 = time.perf_counter()
            (sweep if arm == "sweep" else bare)(seed)
            times[arm] += time.perf_counter() - t0
    ratio = times["sweep"] / times["bare"]
    print(f"over {args.seeds} fold seeds: sweep {times['sweep']:.2f} s, bare scikit-learn fits {times['bare']:.2f} s, "
          f"ratio {ratio:.3f}")
    result("probe sweep / its bare scikit-learn fits (total over fold seeds)", ratio, "<= 1.10")


if __name__ == "__main__":
    main()
