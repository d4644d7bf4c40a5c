"""Compare two record folders: bit-equal or within 1e-6."""
import json, pickle, sys, csv
import numpy as np
sys.path.insert(0, sys.argv[3] if len(sys.argv) > 3 else ".")
A, B = sys.argv[1], sys.argv[2]
bad = []
def cmp_val(a, b, where, tol=1e-6):
    if isinstance(a, dict):
        if set(a) != set(b): bad.append(f"{where}: keys {set(a) ^ set(b)}"); return 0
        return max([cmp_val(a[k], b[k], f"{where}.{k}") for k in a] or [0])
    if isinstance(a, (list, tuple)):
        if len(a) != len(b): bad.append(f"{where}: len {len(a)} vs {len(b)}"); return 0
        return max([cmp_val(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b))] or [0])
    if isinstance(a, np.ndarray) or hasattr(a, "numpy"):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape: bad.append(f"{where}: shape"); return 0
        d = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
        if d > tol: bad.append(f"{where}: max diff {d}")
        return d
    if isinstance(a, float) and isinstance(b, float):
        d = abs(a - b) if not (np.isnan(a) and np.isnan(b)) else 0.0
        if d > tol: bad.append(f"{where}: {a} vs {b}")
        return d
    if a != b: bad.append(f"{where}: {a!r} vs {b!r}")
    return 0.0
def readcsv(p):
    rows = list(csv.DictReader(open(p)))
    out = []
    for r in rows:
        o = {}
        for k, v in r.items():
            try: o[k] = float(v)
            except ValueError: o[k] = v
        out.append(o)
    return out
res = {}
for f in ["eval/summary.csv", "eval_gen/summary.csv", "probe/probe.csv", "directions.cosines.csv", "steer/alpha_curve.csv",
          "steer_gen/alpha_curve.csv", "steer_gen_transformer_lens/alpha_curve.csv", "steer_gen_nnsight/alpha_curve.csv"]:
    drop = {"seconds", "directions_file"}
    a = [{k: v for k, v in r.items() if k not in drop} for r in readcsv(f"{A}/{f}")]
    b = [{k: v for k, v in r.items() if k not in drop} for r in readcsv(f"{B}/{f}")]
    res[f] = cmp_val(a, b, f)
for f in ["eval/predictions.jsonl", "eval_gen/predictions.jsonl"]:
    a = [json.loads(l) for l in open(f"{A}/{f}")]; b = [json.loads(l) for l in open(f"{B}/{f}")]
    res[f] = cmp_val(a, b, f)
from safetensors.numpy import load_file
da, db = load_file(f"{A}/directions.safetensors"), load_file(f"{B}/directions.safetensors")
res["directions.safetensors"] = cmp_val(da, db, "directions")
from safetensors import safe_open
ma = safe_open(f"{A}/directions.safetensors", "np").metadata(); mb = safe_open(f"{B}/directions.safetensors", "np").metadata()
res["directions.meta"] = cmp_val({k: v for k, v in ma.items() if "time" not in k and "created" not in k},
                                 {k: v for k, v in mb.items() if "time" not in k and "created" not in k}, "dirmeta")
from interp.store.activations import stores_equal
diffs = stores_equal(f"{A}/cache.h5", f"{B}/cache.h5")
res["cache.h5 (stores_equal, bit)"] = diffs or 0.0
if diffs: bad.append(f"cache.h5: {diffs}")
pa, pb = pickle.load(open(f"{A}/api.pkl", "rb")), pickle.load(open(f"{B}/api.pkl", "rb"))
for k in pa:
    res[f"api:{k}"] = cmp_val(pa[k], pb[k], f"api.{k}")
for k, v in res.items():
    print(f"{k:45s} max|diff| {v}")
print("DIFFERENCES:" if bad else "ALL EQUAL (within 1e-6)")
for b in bad[:40]: print("  ", b)
