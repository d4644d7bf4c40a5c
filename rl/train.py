"""GRPO training of a LoRA adapter on BBQ with TRL's ``GRPOTrainer`` (no hand-written GRPO loop).

Every ``save_steps`` steps (and at the last step) the trainer writes ``<out_dir>/checkpoint-<step>/``: the
adapter (``adapter_config.json`` + ``adapter_model.safetensors``, loadable with ``PeftModel.from_pretrained``),
the tokenizer, the optimizer/scheduler/RNG state TRL needs to resume, and, from our callback,
``run_config.json`` (this run's settings) and ``interp_base.json`` (the base weights hash that
``interp.models.loading.check_adapter_base`` checks). ``run_config.json`` is written last, so a checkpoint without it
was cut off mid-save and is ignored on resume.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

from interp.errors import InputError, require_extra

CHECKPOINT_PREFIX = "checkpoint-"
RUN_CONFIG = "run_config.json"
BASE_RECORD = "interp_base.json"
TRAIN_LOG = "train_log.jsonl"
# settings that must match to resume a run in the same folder
RESUME_KEYS = ("model", "lam", "lambda_on", "lr", "beta", "temperature", "num_generations", "batch_size",
               "grad_accum", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "loss_type", "seed",
               "lr_scheduler", "scale_rewards", "max_completion_length", "max_prompt_length", "shuffle_options",
               # the data (when read from the split rather than passed in)
               "split_file", "dev_frac", "split_seed", "categories", "limit")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class TrainConfig:
    """One GRPO run. Defaults are the seed's: LoRA r=16, alpha=32 on all linear layers; lr 5e-6; KL beta 0.04;
    temperature 1.3; 8 generations per prompt; 500 steps; a constant learning rate, so the adapter at step k
    does not depend on the total number of steps."""

    model: str = "organism"
    out_dir: str = "runs/rl/lam0"
    lam: float = 0.0
    lambda_on: str = "ambig"
    lr: float = 5e-6
    steps: int = 500
    beta: float = 0.04
    temperature: float = 1.3
    num_generations: int = 8
    batch_size: int = 8  # completions per optimizer micro-step (prompts per step = batch_size / num_generations)
    grad_accum: int = 1
    max_completion_length: int = 4
    max_prompt_length: int | None = None
    loss_type: str = "grpo"
    # TRL's reward scaling before the advantage: "group" (TRL's default) divides by each group's reward std,
    # which makes a constant penalty invisible in a group with only two outcomes; "none" as in Dr. GRPO
    scale_rewards: str = "group"
    lr_scheduler: str = "constant"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    save_steps: int = 100
    logging_steps: int = 10
    seed: int = 0
    shuffle_options: bool = False
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None
    gradient_checkpointing: bool = False
    report_to: str = "none"
    progress: bool = True
    resume: bool = True  # continue from the last complete checkpoint in out_dir
    # data (ignored when items are passed to train())
    bbq_dir: str | None = None
    templates_dir: str | None = None
    split_file: str | None = None
    dev_frac: float = 0.2
    split_seed: int = 0
    categories: list[str] | None = None
    limit: int | None = None
    extra: dict = field(default_factory=dict)  # passed to GRPOConfig as is

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        from rl.rewards import LAMBDA_ON

        import math

        for name in ("lr", "lam", "beta", "temperature", "lora_dropout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"{name} must be a finite number, got {v!r}")
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if self.lam < 0:
            raise InputError(f"lambda must be >= 0, got {self.lam}")
        if self.temperature <= 0:
            raise InputError(f"temperature must be > 0 (sampling), got {self.temperature}")
        if self.beta < 0:
            raise InputError(f"beta must be >= 0, got {self.beta}")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        for name in ("lora_r", "lora_alpha", "grad_accum", "batch_size", "max_completion_length", "logging_steps"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lambda_on not in LAMBDA_ON:
            raise InputError(f"lambda_on must be one of {LAMBDA_ON}, got {self.lambda_on!r}")
        if self.num_generations < 2:
            raise InputError(f"GRPO needs num_generations >= 2, got {self.num_generations}")
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise InputError(
                f"the generation batch (batch_size {self.batch_size} x grad_accum {self.grad_accum}) must be "
                f"divisible by num_generations ({self.num_generations})"
            )
        if self.scale_rewards not in SCALE_REWARDS:
            raise InputError(f"scale_rewards must be one of {SCALE_REWARDS}, got {self.scale_rewards!r}")
        if self.save_steps < 1:
            raise InputError(f"save_steps must be >= 1, got {self.save_steps}")
        from transformers import SchedulerType

        schedulers = [s.value for s in SchedulerType]
        if self.lr_scheduler not in schedulers:
            raise InputError(f"lr_scheduler must be one of {schedulers}, got {self.lr_scheduler!r}")
        losses = trl_loss_types()
        if losses and self.loss_type not in losses:
            raise InputError(f"loss_type must be one of {losses}, got {self.loss_type!r}")


# TrainConfig fields TRL's GRPOConfig spells differently; every other TrainConfig field that GRPOConfig also
# declares (beta, temperature, num_generations, loss_type, scale_rewards, save_steps, seed, ...) passes by name
GRPO_NAMES = {"lr": "learning_rate", "lr_scheduler": "lr_scheduler_type", "steps": "max_steps",
              "batch_size": "per_device_train_batch_size", "grad_accum": "gradient_accumulation_steps"}


def grpo_config(cfg: TrainConfig, on_cpu: bool, bf16: bool):
    """TRL's ``GRPOConfig`` for a run: the TrainConfig fields GRPOConfig declares (renamed by ``GRPO_NAMES``),
    this toolkit's fixed trainer settings, then ``cfg.extra`` as is."""
    import dataclasses

    from trl import GRPOConfig

    trl_names = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    ours = dataclasses.asdict(cfg)
    shared = {GRPO_NAMES.get(k, k): v for k, v in ours.items() if GRPO_NAMES.get(k, k) in trl_names}
    fixed = dict(output_dir=str(Path(cfg.out_dir)), data_seed=cfg.seed, save_strategy="steps", save_total_limit=None,
                 use_cpu=on_cpu, bf16=bf16, fp16=False, disable_tqdm=not cfg.progress, disable_dropout=True,
                 remove_unused_columns=False, dataloader_num_workers=0)
    return GRPOConfig(**{**shared, **fixed, **cfg.extra})


def trl_loss_types() -> list[str]:
    """The loss types the installed TRL's GRPOConfig accepts (read from its field help; [] if it cannot say)."""
    import dataclasses
    import re

    require_extra("trl")
    from trl import GRPOConfig

    helps = [f.metadata.get("help", "") for f in dataclasses.fields(GRPOConfig) if f.name == "loss_type"]
    m = re.search(r"Supported values are (.*?)\.", helps[0] if helps else "")
    return re.findall(r"'(\w+)'", m.group(1)) if m else []


def check_target_modules(model, target_modules: str) -> None:
    """Refuse LoRA target module names that match no module of ``model`` ('all-linear' always matches): PEFT
    would raise only once training is set up."""
    if target_modules == "all-linear":
        return
    wanted = [t.strip() for t in str(target_modules).split(",") if t.strip()]
    names = [name for name, _ in model.named_modules() if name]
    # PEFT's rule for a list of names: the module's full name, or a dotted suffix of it
    missing = [t for t in wanted if not any(n == t or n.endswith("." + t) for n in names)]
    if missing or not wanted:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise InputError(f"target_modules {missing or target_modules!r} match no module of {model.config._name_or_path}"
                         f"; its linear modules are {linear}, or use 'all-linear'")


# ----------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step number of a ``checkpoint-<step>`` folder."""
    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX) or not name[len(CHECKPOINT_PREFIX):].isdigit():
        raise InputError(f"{path} is not a checkpoint-<step> folder")
    return int(name[len(CHECKPOINT_PREFIX):])


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """A checkpoint with its adapter, trainer state and (written last) run config."""
    p = Path(path)
    return all((p / f).exists() for f in ("adapter_config.json", "adapter_model.safetensors",
                                          "trainer_state.json", RUN_CONFIG))


def list_checkpoints(out_dir: str | os.PathLike, complete_only: bool = True) -> list[Path]:
    """Checkpoint folders of a run, by step."""
    d = Path(out_dir)
    if not d.is_dir():
        return []
    cks = [p for p in d.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    if complete_only:
        cks = [p for p in cks if is_complete_checkpoint(p)]
    return sorted(cks, key=checkpoint_step)


def read_run_config(path: str | os.PathLike) -> dict:
    """The run_config.json of a checkpoint (or run) folder."""
    f = Path(path) / RUN_CONFIG
    if not f.exists():
        raise FileNotFoundError(f"{path} has no {RUN_CONFIG} (not an rl checkpoint, or cut off while saving)")
    return json.loads(f.read_text())


def _versions() -> dict:
    import peft
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "peft": peft.__version__}


def items_hash(items) -> str:
    """A hash of the training items (their ids, in order): what a resumed run must train on again."""
    import hashlib

    return hashlib.sha256("\n".join(it.uid for it in items).encode()).hexdigest()[:16]


def _check_resume(cfg: TrainConfig, out_dir: Path, items=None) -> None:
    """Refuse to resume a run whose saved settings, base weights (by fingerprint, read from the files without
    loading the model) or training items differ from these."""
    from interp.models.loading import fingerprint, resolve_model_path

    f = out_dir / RUN_CONFIG
    if not f.exists():
        return
    try:
        saved = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{f} is not valid JSON ({e}); it was cut off while saving: use another --out or "
                         f"--no-resume") from None
    old = saved.get("config", {})
    what = [f"{k}: saved {old[k]!r} vs now {getattr(cfg, k)!r}" for k in RESUME_KEYS
            if k in old and old[k] != getattr(cfg, k)]
    if saved.get("weights_hash"):
        now = fingerprint(resolve_model_path(cfg.model))
        if now != saved["weights_hash"]:
            what.append(f"base weights: saved {saved['weights_hash']} vs now {now}")
    if items is not None and saved.get("items_hash") and saved["items_hash"] != items_hash(items):
        what.append(f"training items: saved {saved.get('n_train_items')} items ({saved['items_hash']}) vs now "
                    f"{len(items)} ({items_hash(items)})")
    if what:
        raise InputError(f"{out_dir} holds a run with other settings ({'; '.join(what)}); use another --out or "
                         f"--no-resume")


def _make_callbacks(cfg: TrainConfig, out_dir: Path, meta: dict):
    from transformers import TrainerCallback

    class CheckpointMeta(TrainerCallback):
        """Write run_config.json and interp_base.json into each checkpoint; append logs to train_log.jsonl; report
        each step's completions to ``interp.meter``."""

        def on_save(self, args, state, control, **kw):
            ck = out_dir / f"{CHECKPOINT_PREFIX}{state.global_step}"
            if ck.is_dir():
                # PEFT writes target_modules from a set, in a different order each run: sort it, so identical
                # trainings give identical adapter folders (and hashes)
                ac = ck / "adapter_config.json"
                if ac.exists():
                    acfg = json.loads(ac.read_text())
                    if isinstance(acfg.get("target_modules"), list):
                        acfg["target_modules"] = sorted(acfg["target_modules"])
                        ac.write_text(json.dumps(acfg, indent=2, sort_keys=True))
                (ck / BASE_RECORD).write_text(json.dumps(
                    {"base": meta["base_path"], "model": cfg.model, "weights_hash": meta["weights_hash"]}, indent=1))
                rc = {**meta, "step": state.global_step, "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}
                tmp = ck / (RUN_CONFIG + ".tmp")
                tmp.write_text(json.dumps(rc, indent=1))
                tmp.replace(ck / RUN_CONFIG)

        def on_step_end(self, args, state, control, **kw):
            from interp import meter

            meter.advance(meter.GRPO_COMPLETION, args.per_device_train_batch_size * args.gradient_accumulation_steps)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                with open(out_dir / TRAIN_LOG, "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return [CheckpointMeta()]


def _resolve_device(device: str):
    from interp.models.loading import pick_device

    return pick_device(device)


def build_trainer(cfg: TrainConfig, items=None):
    """The configured ``GRPOTrainer`` (LoRA via ``peft_config``) and the run metadata saved with checkpoints."""
    require_extra("trl")
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import GRPOTrainer

    from interp.models.loading import attach_fingerprint, load_tokenizer, pick_dtype, resolve_model_path, weights_hash
    from rl.data import build_dataset, load_train_items
    from rl.rewards import make_reward

    cfg.validate()
    import warnings

    # deprecation notices from inside transformers/TRL that a user of this toolkit cannot act on
    for msg in (".*is_gradient_checkpointing.*", ".*gradient_checkpointing.*is deprecated.*"):
        warnings.filterwarnings("ignore", message=msg, category=FutureWarning)
    if cfg.lam > 0 and cfg.scale_rewards == "group":
        warnings.warn(
            f"lambda {cfg.lam} with scale_rewards='group': group-standardized advantages are unchanged by the "
            "penalty in every group whose rewards take only two values (e.g. Unknown vs the biased letter), so it "
            "reaches few updates (logged as lambda_active); --scale-rewards batch or none lets it act everywhere",
            stacklevel=2)
    out_dir = Path(cfg.out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    split_hash = None
    if items is None:
        items, split = load_train_items(cfg.bbq_dir, cfg.split_file, cfg.dev_frac, cfg.split_seed, cfg.categories,
                                        cfg.limit, cfg.templates_dir)
        split_hash = split.hash
    dev = _resolve_device(cfg.device)
    base_path = resolve_model_path(cfg.model)
    tok = load_tokenizer(base_path)
    model = attach_fingerprint(AutoModelForCausalLM.from_pretrained(base_path, dtype=pick_dtype(cfg.dtype, dev)),
                               base_path)
    whash = weights_hash(model)  # of the plain base, before LoRA layers are injected
    check_target_modules(model, cfg.target_modules)
    conversational = bool(getattr(tok, "chat_template", None))
    dataset = build_dataset(items, conversational=conversational, shuffle=cfg.shuffle_options, seed=cfg.seed)

    on_cpu = dev.type == "cpu"
    bf16 = (not on_cpu) and torch.cuda.is_available() and torch.cuda.is_bf16_supported() and cfg.dtype != "float32"
    args = grpo_config(cfg, on_cpu=on_cpu, bf16=bf16)
    peft_config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules if cfg.target_modules == "all-linear" else
        [t.strip() for t in cfg.target_modules.split(",") if t.strip()],
        task_type="CAUSAL_LM",
    )
    meta = {
        "config": {k: v for k, v in asdict(cfg).items()},
        "base_path": str(base_path),
        "weights_hash": whash,
        "split_hash": split_hash,
        "n_train_items": len(items),
        "items_hash": items_hash(items),
        "n_train_ambig": sum(it.context_condition == "ambig" for it in items),
        "device": str(dev),
        "versions": _versions(),
    }
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[make_reward(cfg.lam, cfg.lambda_on, cfg.scale_rewards)],
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=_make_callbacks(cfg, out_dir, meta),
    )
    # one updating line (or silence) instead of TRL's raw per-step dicts; the logs still go to train_log.jsonl
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if cfg.progress:
        trainer.add_callback(OneLineProgress(f"GRPO lam={cfg.lam:g} lr={cfg.lr:g}"))
    return trainer, meta


# the logged values shown on the progress line, under short names
PROGRESS_KEYS = {"reward": "reward", "kl": "kl", "lambda_active": "lam_active", "loss": "loss"}


def _progress_callback_class():
    from transformers import TrainerCallback

    class _OneLineProgress(TrainerCallback):
        """A tqdm bar over steps whose postfix shows the latest reward, KL, loss and lambda_active."""

        def __init__(self, desc: str):
            self.desc, self.bar = desc, None

        def on_train_begin(self, args, state, control, **kw):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step",
                            dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            if self.bar is None or not logs:
                return
            shown = {}
            for k, v in logs.items():
                short = next((s for key, s in PROGRESS_KEYS.items() if k == key or k.endswith("/" + key)), None)
                if short and isinstance(v, (int, float)):
                    shown[short] = f"{v:.3g}"
            if shown:
                self.bar.set_postfix(shown, refresh=False)

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return _OneLineProgress


def OneLineProgress(desc: str):
    """The one-line GRPO progress display (a transformers TrainerCallback)."""
    return _progress_callback_class()(desc)


def _drop_incomplete(out_dir: Path) -> list[Path]:
    """Move aside checkpoint folders cut off mid-save, so TRL resumes from the last complete one."""
    moved = []
    for p in list_checkpoints(out_dir, complete_only=False):
        if not is_complete_checkpoint(p):
            dest = p.with_name(f"incomplete-{p.name}-{int(time.time())}")
            shutil.move(str(p), dest)
            moved.append(dest)
    return moved


def train_config(cfg: TrainConfig, items=None) -> list[Path]:
    """Run (or resume) one GRPO run; return its complete checkpoint folders by step."""
    out_dir = Path(cfg.out_dir)
    cfg.validate()  # before anything is written
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file, not a run folder; choose another --out")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _train_in(cfg, out_dir, items)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise


def _train_in(cfg: TrainConfig, out_dir: Path, items) -> list[Path]:
    from interp.tables import write_text_atomic

    resume = cfg.resume
    if resume:
        if items is None and (out_dir / RUN_CONFIG).exists():
            from rl.data import load_train_items

            items, _ = load_train_items(cfg.bbq_dir, cfg.split_file, cfg.dev_frac, cfg.split_seed, cfg.categories,
                                        cfg.limit, cfg.templates_dir)
        _check_resume(cfg, out_dir, items)
        _drop_incomplete(out_dir)
    elif list_checkpoints(out_dir, complete_only=False):
        raise FileExistsError(f"{out_dir} already has checkpoints; resume, or choose an empty --out")
    done = list_checkpoints(out_dir)
    if done and checkpoint_step(done[-1]) >= cfg.steps:
        return [p for p in done if checkpoint_step(p) <= cfg.steps]
    trainer, meta = build_trainer(cfg, items)
    write_text_atomic(out_dir / RUN_CONFIG, json.dumps(meta, indent=1))  # a kill never leaves half of it
    t0 = time.time()
    from transformers.trainer_utils import get_last_checkpoint

    # the newest checkpoint-<step> folder (transformers' own rule); cut-off ones were moved aside above
    last = get_last_checkpoint(str(out_dir)) if resume else None
    trainer.train(resume_from_checkpoint=last)
    minutes = (time.time() - t0) / 60
    with open(out_dir / TRAIN_LOG, "a") as fh:
        fh.write(json.dumps({"event": "finished", "step": trainer.state.global_step,
                             "minutes": round(minutes, 3)}) + "\n")
    return [p for p in list_checkpoints(out_dir) if checkpoint_step(p) <= cfg.steps]


def train(
    model: str,
    out_dir: str | os.PathLike,
    lam: float = 0.0,
    lr: float = 5e-6,
    steps: int = 500,
    items: Sequence | None = None,
    **kw,
) -> list[Path]:
    """Train (or resume) a GRPO LoRA adapter; return the checkpoint folders, each loadable with
    ``PeftModel.from_pretrained``. ``items`` overrides the train split; other keywords are TrainConfig fields."""
    names = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(kw) - names)
    if bad:
        raise TypeError(f"unknown training option(s) {bad}; known: {sorted(names)}")
    cfg = TrainConfig(model=model, out_dir=str(out_dir), lam=lam, lr=lr, steps=steps, **kw)
    return train_config(cfg, items)


def run_minutes(out_dir: str | os.PathLike) -> float | None:
    """Training minutes recorded in a run's train_log.jsonl (summed over resumed segments)."""
    f = Path(out_dir) / TRAIN_LOG
    if not f.exists():
        return None
    total = 0.0
    for line in f.read_text().splitlines():
        d = json.loads(line)
        if d.get("event") == "finished":
            total += d["minutes"]
    return total if total > 0 else None

