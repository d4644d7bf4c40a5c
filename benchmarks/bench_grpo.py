"""A GRPO step of ours (``rl.train.build_trainer``: the lambda reward, the checkpoint-metadata and log callbacks)
vs a bare ``trl.GRPOTrainer`` step with a trivial reward, same model, LoRA, GRPOConfig, dataset and generations.

    python benchmarks/bench_grpo.py [--model organism] [--steps 4] [--repeats 4] [--lam 0.5]

Both trainers are built once from fresh copies of the weights; then each runs ``train()`` for ``--steps`` steps,
in ABBA order, ``--repeats`` times, and the best (least) time per step of each is compared, in wall and in process
CPU time (steadier on a shared machine). Per-step times come from a callback (``on_step_begin`` to ``on_step_end``,
generation included), and the whole ``train()`` call is timed too (optimizer set-up and the end-of-train work of
each). Neither prints TRL's per-step dicts (build_trainer removes those callbacks; so does the bare set-up here). Goal: ours within 1.1x the bare step."""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch


def trivial_reward(completions, **kw) -> list[float]:
    """A reward with no work in it that still varies within a group (so the advantages are not all zero): the
    first character's code mod 3."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(ord(t[:1] or " ") % 3) for t in texts]


def step_timer():
    """A TrainerCallback recording each optimizer step's wall time in ``.times`` and process CPU time in ``.cpu``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.cpu: list[float] = []
            self._t0 = self._c0 = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self._t0)
            self.cpu.append(time.process_time() - self._c0)

    return StepTimer()


def main() -> None:
    from common import result

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="organism")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per timed train() call")
    ap.add_argument("--repeats", type=int, default=4, help="train() calls per trainer, ABBA order")
    ap.add_argument("--lam", type=float, default=0.5, help="our reward's lambda (> 0: the penalty is computed)")
    ap.add_argument("--limit", type=int, default=256, help="train items")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import GRPOTrainer

    from interp.models.loading import load_tokenizer, pick_dtype, resolve_model_path
    from rl.data import load_train_items
    from rl.train import TrainConfig, build_trainer

    out = tempfile.mkdtemp(prefix="bench_grpo_")
    items, _ = load_train_items(limit=args.limit)
    # no checkpoint falls inside the timed steps; logging every step is the most our callbacks can cost
    cfg = TrainConfig(model=args.model, out_dir=f"{out}/ours", lam=args.lam, scale_rewards="none",
                      steps=args.steps, save_steps=10**6, logging_steps=1, progress=False, device=args.device,
                      threads=args.threads, resume=False)
    ours, _ = build_trainer(cfg, items)
    a = ours.args
    path = resolve_model_path(args.model)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(cfg.dtype, torch.device(args.device)))
    bare_args = copy.deepcopy(a)  # the same GRPOConfig (re-running its __init__ would refuse the derived fields)
    bare_args.output_dir = f"{out}/bare"
    bare = GRPOTrainer(model=base, reward_funcs=[trivial_reward], args=bare_args, train_dataset=ours.train_dataset,
                       processing_class=load_tokenizer(path),
                       peft_config=LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                              target_modules=cfg.target_modules, task_type="CAUSAL_LM"))
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    bare.remove_callback(PrinterCallback)  # as build_trainer does for ours: no per-step dict on stdout
    bare.remove_callback(ProgressCallback)
    timers = {"ours": step_timer(), "bare": step_timer()}
    trainers = {"ours": ours, "bare": bare}
    for name, tr in trainers.items():
        tr.add_callback(timers[name])
        tr.train()  # warm-up (allocator, first generation)
        timers[name].times.clear()
        timers[name].cpu.clear()
    whole = {"ours": [], "bare": []}
    for rep in range(args.repeats):
        for name in (("ours", "bare") if rep % 2 == 0 else ("bare", "ours")):
            t0 = time.perf_counter()
            trainers[name].train()
            whole[name].append(time.perf_counter() - t0)
    step = {k: min(t.times) for k, t in timers.items()}
    cpu = {k: min(t.cpu) for k, t in timers.items()}
    print(f"{args.model}: batch {a.per_device_train_batch_size}, {a.num_generations} generations, "
          f"max_completion_length {a.max_completion_length}, {args.steps} steps x {args.repeats} repeats, "
          f"threads {args.threads}")
    for k in ("ours", "bare"):
        print(f"{k:5s} best step {step[k]:.3f} s wall, {cpu[k]:.3f} s CPU (median wall "
              f"{sorted(timers[k].times)[len(timers[k].times) // 2]:.3f} s); best train() {min(whole[k]):.3f} s")
    print(f"ratio ours/bare: step wall {step['ours'] / step['bare']:.3f}, step CPU {cpu['ours'] / cpu['bare']:.3f}, "
          f"train() {min(whole['ours']) / min(whole['bare']):.3f}")
    what = f"ours (lambda {args.lam:g}) vs bare TRL GRPOTrainer, {args.model}, {cfg.dtype}"
    result(f"GRPO step wall time, {what}", step["ours"] / step["bare"], "<= 1.10")
    result(f"GRPO step process CPU time, {what}", cpu["ours"] / cpu["bare"], "<= 1.10")
    result(f"GRPO train() of {args.steps} steps, {what}", min(whole["ours"]) / min(whole["bare"]), "<= 1.10")


if __name__ == "__main__":
    main()
