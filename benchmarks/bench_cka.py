"""Speed and accuracy of ``interp.methods.compare.linear_cka`` against the textbook formula in the same run.

Baseline: CKA = <HKH, HLH>_F / (||HKH||_F ||HLH||_F) with the n x n centering matrix H (float64), the
formula as written in Kornblith et al. 2019. ``linear_cka`` centers columns once and picks the Gram (n < d)
or the feature-space (n > d) form. Reported per size: both times, the speed-up, and the absolute difference.
A float32 check with a residual-stream-like offset and outlier dimension shows the value stays at 1.

    python benchmarks/bench_cka.py                  # small sizes (2 cores are enough)
    python benchmarks/bench_cka.py --sizes 2000x2048,8000x2048 --threads 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def cka_reference(X: np.ndarray, Y: np.ndarray) -> float:
    """The textbook formula with the explicit centering matrix H."""
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    K = H @ (X @ X.T) @ H
    L = H @ (Y @ Y.T) @ H
    return float((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))


def _time(fn, repeat: int) -> tuple[float, float]:
    best, val = float("inf"), float("nan")
    for _ in range(repeat):
        t = time.perf_counter()
        val = fn()
        best = min(best, time.perf_counter() - t)
    return best, val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="256x64,512x512,1000x256,1000x1024", help="n_items x d, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from threadpoolctl import threadpool_limits

    from interp.methods.compare import linear_cka

    rng = np.random.default_rng(a.seed)
    print(f"{'n':>6} {'d':>6} {'reference_s':>12} {'linear_cka_s':>13} {'speedup':>8} {'abs_diff':>10}")
    with threadpool_limits(limits=a.threads):
        for spec in a.sizes.split(","):
            n, d = (int(x) for x in spec.lower().split("x"))
            X = rng.normal(size=(n, d)).astype(np.float32)
            Y = (0.5 * X + rng.normal(size=(n, d))).astype(np.float32) @ rng.normal(size=(d, d)).astype(np.float32)
            t_ref, v_ref = _time(lambda: cka_reference(X.astype(np.float64), Y.astype(np.float64)), a.repeat)
            t_new, v_new = _time(lambda: linear_cka(X, Y), a.repeat)
            print(f"{n:6d} {d:6d} {t_ref:12.4f} {t_new:13.4f} {t_ref / t_new:8.1f} {abs(v_ref - v_new):10.2e}")
        X = rng.normal(size=(1000, 256)).astype(np.float32)
        X[:, 7] *= 500.0
        X += 2e4
        q, _ = np.linalg.qr(rng.normal(size=(256, 256)))
        Y = ((X - 2e4) @ q).astype(np.float32)
        print(f"float32, offset 2e4, outlier x500, rotated copy: linear_cka = {linear_cka(X, Y):.9f} "
              f"(reference in float64: {cka_reference(X.astype(np.float64), Y.astype(np.float64)):.9f})")


if __name__ == "__main__":
    main()
