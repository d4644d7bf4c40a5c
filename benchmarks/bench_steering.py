"""Steering overhead: evaluation with a steering hook (alpha != 0) vs unsteered, same items, same run.
Wall time and process CPU time are both reported (CPU time is less disturbed by other jobs on a shared machine).

    python benchmarks/bench_steering.py [--model organism-small | PATH] [--n 256] [--batch-size 32]
    python benchmarks/bench_steering.py --model random-3B --device cuda --dtype bfloat16 --n 512 --batch-size 32

``random-3B`` (and the other ``random-*`` names of bench_cache.py) are random weights of the real config.

Without --model (or when the organism cannot be built) a random Qwen2 with hidden size 256 and 4 layers is
used on the fixture prompts. Timings are interleaved in ABBA order (unsteered, steered, steered, unsteered,
...) and the best of ``--repeats`` is kept per arm. Goal: overhead <= 3 % in both modes. In generate mode alpha is 1e-6, so both
arms generate the same replies (checked) and the difference is the hook's cost, not a change in reply length."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from interp.models.backends import as_lm
from interp.models.precision import precision_name

ROOT = Path(__file__).resolve().parent.parent


def _model_and_items(args):
    from interp.data.bbq import load_bbq

    if args.model != "synthetic":
        import tempfile

        from bench_cache import materialize

        from interp.models.loading import load_model
        from interp.data.bbq import split_items

        path = materialize(args.model, args.dtype, Path(args.workdir or tempfile.mkdtemp(prefix="bench_steer_")))
        lm = load_model(path, device=args.device, dtype=args.dtype)
        items, _ = split_items("dev", limit=args.n)
        return lm.model, lm.tokenizer, items
    from interp.data.prompts import make_prompt
    from interp.organisms.tiny import build_causal_lm, train_tokenizer

    items, _ = load_bbq(ROOT / "tests" / "fixtures" / "bbq" / "data")
    tok = train_tokenizer([make_prompt(it).user_text for it in items] * 4, vocab_size=400)
    model = build_causal_lm(tok, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                            num_attention_heads=8, num_key_value_heads=4)
    items = (items * (args.n // len(items) + 1))[: args.n]
    return model.to(args.device), tok, items


def main() -> None:
    from common import result

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism",
                    help="a model name or folder, random-0.5B / random-3B, or 'synthetic' (hidden 256, 4 layers)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--workdir", default=None, help="where random-* weights are saved (default a temp folder)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--alpha", type=float, default=4.0, help="steering strength in logits mode")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.methods.steering import steer

    model, tok, items = _model_and_items(args)
    d = model.config.hidden_size
    dt = precision_name(model)  # what --dtype resolved to (bfloat16-mixed, float32...)
    v = torch.randn(d, generator=torch.Generator().manual_seed(0))
    print(f"model hidden {d}, {len(items)} items, batch {args.batch_size}, device {args.device}")
    for mode in ("logits", "generate"):
        cfg = EvalConfig(mode=mode, batch_size=args.batch_size, progress=False, max_new_tokens=4)
        evaluate_items(as_lm(model, tok), items[: args.batch_size], cfg)  # warm-up
        # logits mode runs one forward per batch whatever the steering does; in generate mode a steered model may
        # stop sooner or later, so there alpha is tiny: the same hook work, the same replies (checked), and the
        # time difference is the hook's cost alone
        alpha = args.alpha if mode == "logits" else 1e-6
        if mode == "generate":
            plain = [r["reply"] for r in evaluate_items(as_lm(model, tok), items, cfg)]
            with steer(model, v, args.layer, alpha):
                same = [r["reply"] for r in evaluate_items(as_lm(model, tok), items, cfg)] == plain
            if not same:
                raise SystemExit("the tiny-alpha steered replies differ from the unsteered ones; lower the alpha")
        best = {"unsteered": float("inf"), "steered": float("inf")}
        cpu = {"unsteered": float("inf"), "steered": float("inf")}
        for rep in range(args.repeats):
            # ABBA order: an effect of running first or second does not land on one arm only
            for arm in (("unsteered", "steered") if rep % 2 == 0 else ("steered", "unsteered")):
                t0, c0 = time.perf_counter(), time.process_time()
                if arm == "steered":
                    with steer(model, v, args.layer, alpha):
                        evaluate_items(as_lm(model, tok), items, cfg)
                else:
                    evaluate_items(as_lm(model, tok), items, cfg)
                best[arm] = min(best[arm], time.perf_counter() - t0)
                cpu[arm] = min(cpu[arm], time.process_time() - c0)
        over = best["steered"] / best["unsteered"] - 1
        over_cpu = cpu["steered"] / cpu["unsteered"] - 1
        print(f"{mode:8s} wall: unsteered {best['unsteered']:.3f} s  steered {best['steered']:.3f} s  "
              f"overhead {100 * over:+.2f} %;  process CPU: {cpu['unsteered']:.3f} s vs {cpu['steered']:.3f} s  "
              f"overhead {100 * over_cpu:+.2f} %  ({'ok' if max(over, over_cpu) <= 0.03 else 'ABOVE'} goal <= 3 %)")
        result(f"steered/unsteered eval time, {mode} mode, {dt}", best["steered"] / best["unsteered"], "<= 1.03")
        result(f"steered/unsteered eval process CPU time, {mode} mode, {dt}", cpu["steered"] / cpu["unsteered"], "<= 1.03")


if __name__ == "__main__":
    main()
