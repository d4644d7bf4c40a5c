"""Throughput of `interp cache` (cache_split) vs a plain HF forward with output_hidden_states=True, per backend,
and peak RSS of cache_split for 1x and 4x the items (separate processes). Goals: ratio >= 0.9x, RSS flat.

    python benchmarks/bench_cache.py --model random-organism --n 64 --batch-size 16
    python benchmarks/bench_cache.py --model random-0.5B --n 16 --batch-size 8 --rss-n 8
    python benchmarks/bench_cache.py --model organism            # the shipped organism (the default)
    python benchmarks/bench_cache.py --model random-3B --dtype bfloat16 --device cuda --n 256 --batch-size 32

``random-*`` models are random weights of a real config (no hub): ``random-organism`` the organism's
architecture (interp.organisms.causal_lm.TrainConfig), ``random-0.5B`` / ``random-3B`` Qwen2.5-0.5B / Qwen2.5-3B-Instruct
(interp.organisms.tiny.qwen2_config), with a tokenizer trained on the prompts. Both sides of each ratio use the same
items, batch size, tokenization and model copy, and are timed alternately (best of --repeats). The cache side
includes everything `interp cache` does per batch: activations of every layer's resid_post at the last prompt
token, letter logits, predictions, HDF5 writes (float16, the store's default compression: none) and flushes.
Both sides unembed the last position only (HF ``logits_to_keep=1``), the one position the store keeps.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# what the timings read: wall time by default; --clock cpu reads this process's CPU time (all its threads, the
# store's writer included), which other jobs on a shared machine disturb less
CLOCK = time.perf_counter


def load_items(n: int):
    """BBQ dev items from $INTERP_BBQ_DIR (or ../shared), else the test fixture, cycled up to n."""
    from interp.data.bbq import load_bbq

    root = Path(__file__).resolve().parent.parent
    for d in (os.environ.get("INTERP_BBQ_DIR"), root.parent / "shared/data/bbq/data"):
        if d and Path(d).is_dir():
            from interp.data.bbq import split_items

            items, _ = split_items("dev", str(d), limit=n)
            return items
    items, _ = load_bbq(root / "tests/fixtures/bbq/data")
    return (items * (n // len(items) + 1))[:n]


def materialize(model: str, dtype: str, folder: Path) -> str:
    """A loadable folder for a random-weights model (saved once); other names pass through."""
    if not model.startswith("random-"):
        return model
    if (folder / "config.json").exists():
        return str(folder)
    from transformers import Qwen2ForCausalLM

    from interp.models.loading import pick_dtype
    from interp.data.prompts import make_prompt
    from interp.organisms.tiny import build_causal_lm, qwen2_config, train_tokenizer

    tok = train_tokenizer([make_prompt(it).user_text for it in load_items(400)], vocab_size=2048)
    kind = model[len("random-"):]
    torch.manual_seed(0)
    if kind == "organism":
        from interp.organisms.causal_lm import TrainConfig

        c = TrainConfig()
        m = build_causal_lm(tok, seed=0, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                            num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
                            num_key_value_heads=c.num_kv_heads)
    else:
        cfg = qwen2_config({"0.5B": "0.5B", "3B": "3B-Instruct"}[kind])
        cfg.pad_token_id, cfg.eos_token_id, cfg.bos_token_id = tok.pad_token_id, tok.eos_token_id, None
        torch_dtype = pick_dtype(dtype, torch.device("cpu"))
        with torch.device("cpu"):
            m = Qwen2ForCausalLM._from_config(cfg, dtype=torch_dtype)
    folder.mkdir(parents=True, exist_ok=True)
    m.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def encoded_batches(tok, items, batch_size: int, device):
    """Prompt -> tokens for each batch, as the cache makes them (timed inside both sides' loops)."""
    from interp.eval.evaluate import encode_batch, render_prompts
    from interp.data.prompts import make_prompt

    for i in range(0, len(items), batch_size):
        yield encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in items[i:i + batch_size]]), device)


def plain_forward(model, tok, items, batch_size: int) -> float:
    """Seconds for prompt -> tokens -> HF forward(output_hidden_states=True, logits_to_keep=1) -> last-token
    states and logits on CPU: the same outputs the store keeps, by the plainest route."""
    t0 = CLOCK()
    with torch.no_grad():
        for enc in encoded_batches(tok, items, batch_size, model.get_input_embeddings().weight.device):
            out = model(**enc, output_hidden_states=True, logits_to_keep=1)
            hs = torch.stack([h[:, -1] for h in out.hidden_states[1:]], 1)  # [batch, layers, d]
            hs.float().cpu().numpy()
            out.logits[:, -1].float().cpu()
    return CLOCK() - t0


def bridge_forward(h, items, batch_size: int) -> float:
    """Seconds for the same work as ``plain_forward`` through the TransformerBridge, by the cache's own call with
    no hook attached: the bridge's cost alone, so the cache's gap splits into bridge and hooks."""
    h.skip_unhooked = False  # the bridge's own forward: with no hook set, skip_unhooked would run plain HF
    t0 = CLOCK()
    with torch.no_grad():
        for enc in encoded_batches(h.tokenizer, items, batch_size, h.device):
            h.cache(enc, [], last_logits=True)[0][:, -1].float().cpu()  # logits [batch, 1, vocab]
    h.skip_unhooked = True
    return CLOCK() - t0


def current_rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_cache(hooked, items, batch_size: int, out: Path, on_batch=None, compression: str | None = "gzip") -> float:
    from interp.store.activations import cache_split
    from interp.models.hooks import hook_names

    names = hook_names("all", hooked.n_layers)
    t0 = CLOCK()
    cache_split(hooked, items, out, names, batch_size=batch_size, dtype="float16", overwrite=True, progress=False,
                on_batch=on_batch, compression=compression)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return CLOCK() - t0


def rss_child(args) -> None:
    """Run cache_split on n items in this process and print peak RSS (MiB) as JSON."""
    from interp.models.backends import load_hooked

    items = load_items(args.n)
    h = load_hooked(args.path, backend=args.backends, device=args.device, dtype=args.dtype)
    before = current_rss_mib()
    during = [before]
    with tempfile.TemporaryDirectory() as d:
        secs = run_cache(h, items, args.batch_size, Path(d) / "rss.h5", on_batch=lambda k: during.append(current_rss_mib()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(n=args.n, peak_mib=peak, after_load_mib=before, max_during_cache_mib=max(during),
                          seconds=secs)))


def main() -> None:
    from common import result

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism", help="a model name or folder, or random-organism / random-0.5B / random-3B")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--backends", default="hf,transformer_lens,nnsight")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-n", type=int, default=None, help="items for the 1x RSS run (default --n); 4x too")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compression", default="none",
                    help="comma-separated store compressions to time: none (the store's default), gzip, lzf")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="time by wall clock or by process CPU time (steadier on a loaded machine)")
    ap.add_argument("--workdir", default=None, help="where random weights are saved (default a temp folder)")
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    clock = ", process CPU time" if args.clock == "cpu" else ""

    from interp.models.backends import load_hooked

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_cache_"))
    path = materialize(args.model, args.dtype, work / args.model)
    items = load_items(args.n)
    dev = "cuda" if torch.cuda.is_available() and args.device in ("auto", "cuda") else "cpu"
    print(f"model={args.model} device={dev} dtype={args.dtype} n={len(items)} batch={args.batch_size} "
          f"threads={torch.get_num_threads()} clock={args.clock}")
    for backend in args.backends.split(","):
        h = load_hooked(path, backend=backend, device=args.device, dtype=args.dtype)
        plain_model = h.model
        dt = h.precision  # what --dtype resolved to on this backend (auto: float32 on the bridge)
        if backend == "transformer_lens":  # the bridge rewrote its HF object: time plain HF on a fresh copy, at
            plain_model = load_hooked(path, backend="hf", device=args.device, dtype=dt).model  # the bridge's dtype
        run_cache(h, items, args.batch_size, work / "warm.h5", compression=None)  # warm-up: one full pass of
        plain_forward(plain_model, h.tokenizer, items, args.batch_size)  # each (allocator, tokenizer caches)
        comps = [None if c == "none" else c for c in args.compression.split(",")]
        tp, tc, size = float("inf"), {c: float("inf") for c in comps}, {}
        t_kept = float("inf")  # transformer_lens: the cache with every bridge component run (skip_unhooked off)
        for _ in range(args.repeats):
            tp = min(tp, plain_forward(plain_model, h.tokenizer, items, args.batch_size))
            for c in comps:
                tc[c] = min(tc[c], run_cache(h, items, args.batch_size, work / "bench.h5", compression=c))
                size[c] = (work / "bench.h5").stat().st_size
            if backend == "transformer_lens":
                h.skip_unhooked = False
                t_kept = min(t_kept, run_cache(h, items, args.batch_size, work / "bench.h5", compression=None))
                h.skip_unhooked = True
        for c in comps:
            print(f"{backend:17s} plain {len(items) / tp:8.1f} items/s   cache[{c or 'none':4s}] "
                  f"{len(items) / tc[c]:8.1f} items/s   ratio cache/plain {tp / tc[c]:.2f}x"
                  f"   file {size[c] / 2**20:.1f} MiB")
            result(f"cache/plain throughput, {backend}, {dt}, compression {c or 'none'}{clock}", tp / tc[c], ">= 0.95")
        if backend == "transformer_lens":  # before session 10: every bridge component ran in the cache pass
            print(f"{'':17s} cache, all bridge components run {len(items) / t_kept:8.1f} items/s   ratio "
                  f"{tp / t_kept:.2f}x (skip_unhooked off)")
            result(f"cache/plain throughput, transformer_lens, {dt}, all bridge components run (before){clock}", tp / t_kept,
                   "(the same cache with skip_unhooked off)")
        if backend == "transformer_lens":  # where its gap is: the bridge's own forward, with no hook at all
            tb = min(bridge_forward(h, items, args.batch_size) for _ in range(args.repeats))
            print(f"{'':17s} bridge forward, no hooks {len(items) / tb:8.1f} items/s   ratio bridge/plain {tp / tb:.2f}x")
            result(f"bridge forward (no hooks)/plain HF throughput, transformer_lens, {dt}{clock}", tp / tb,
                   "(explains the cache gap)")
        del h, plain_model
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    n1 = args.rss_n or args.n
    rows = []
    for n in (n1, 4 * n1):
        cmd = [sys.executable, __file__, "--rss-child", "--path", path, "--n", str(n), "--backends", "hf",
               "--batch-size", str(args.batch_size), "--device", args.device, "--dtype", args.dtype]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    a, b = rows
    print(f"peak RSS (hf backend, whole process): {a['n']} items {a['peak_mib']:.0f} MiB, {b['n']} items "
          f"{b['peak_mib']:.0f} MiB (x{b['peak_mib'] / a['peak_mib']:.3f})")
    result(f"peak RSS, 4x the items vs 1x (hf cache, {args.dtype})", b["peak_mib"] / a["peak_mib"], "~1.0 (flat)")
    print(f"max RSS sampled after each batch: {a['max_during_cache_mib']:.0f} MiB vs {b['max_during_cache_mib']:.0f} "
          f"MiB (x{b['max_during_cache_mib'] / a['max_during_cache_mib']:.3f}; RSS after load {a['after_load_mib']:.0f}"
          f" / {b['after_load_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
