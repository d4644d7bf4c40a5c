"""Cost of the activation store's honest ``complete`` flag: reading every batch back against its checksum
(``interp.store.activations._first_bad_batch``, run once at the end of ``interp cache`` and on every resume)
against writing the same store batch by batch as ``cache_split`` does (h5py writes, flush per batch; no forward
pass, so the ratio is an upper bound on the check's share of a real run).

    python benchmarks/bench_store_verify.py                       # 36 layers x 2048 (Qwen2.5-3B), fp16
    python benchmarks/bench_store_verify.py --n 512 --layers 3 --d 64
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import result  # noqa: E402

from interp.store import activations as act  # noqa: E402
from interp.models.hooks import hook_names  # noqa: E402


def main() -> None:
    """Write a synthetic store, time its read-back check, print the ratio check/write."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048, help="items")
    ap.add_argument("--layers", type=int, default=36)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()
    n, bs = a.n, a.batch_size
    names = hook_names("all", a.layers)
    rng = np.random.default_rng(0)
    batches = []
    for b in range(-(-n // bs)):
        rows = min(n, (b + 1) * bs) - b * bs
        batches.append(([rng.standard_normal((rows, a.d)).astype(np.float16) for _ in names],
                        rng.standard_normal((rows, 3)).astype(np.float32), np.zeros(rows, np.int64),
                        np.array([b"A"] * rows)))
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "store.h5"
        t0 = time.perf_counter()
        with h5py.File(p, "w") as f:
            ds = {m: f.create_dataset(f"acts/{m}", shape=(n, a.d), dtype=np.float16, chunks=(bs, a.d)) for m in names}
            ll_ds = f.create_dataset("meta/letter_logits", shape=(n, 3), dtype=np.float32)
            pred_ds = f.create_dataset("meta/pred", shape=(n,), dtype=np.int64)
            let_ds = f.create_dataset("meta/pred_letter", shape=(n,), dtype="S1")
            crc_ds = f.create_dataset("batch_crc", shape=(len(batches),), dtype=np.int64)
            for b, (host, ll, pred, let) in enumerate(batches):
                lo, hi = b * bs, b * bs + len(pred)
                for m, x in zip(names, host):
                    ds[m][lo:hi] = x
                ll_ds[lo:hi], pred_ds[lo:hi], let_ds[lo:hi] = ll, pred, let
                crc_ds[b] = act._crc([*host, ll, pred, let])
                f.flush()
        write_s = time.perf_counter() - t0
        mib = os.path.getsize(p) / 2**20
        t0 = time.perf_counter()
        with h5py.File(p, "r") as f:
            assert act._first_bad_batch(f, names, n, bs, len(batches)) is None
        check_s = time.perf_counter() - t0
    print(f"store {mib:.0f} MiB ({n} items x {a.layers} layers x {a.d}, fp16): write {write_s:.2f} s, "
          f"read-back check {check_s:.2f} s ({mib / check_s:.0f} MiB/s)")
    result(f"read-back check / batch writes ({a.layers}x{a.d}, fp16)", check_s / write_s, "small vs the run")


if __name__ == "__main__":
    main()
