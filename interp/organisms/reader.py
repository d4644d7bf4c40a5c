"""A BBQ reader on a real model: a LoRA adapter trained on the gold letters of the train split (options shuffled,
no planted lean), its recipe chosen on a validation part carved out of the train templates (never on dev).

The loss is the cross-entropy of the gold letter at the answer position (the last prompt position, where
``interp eval`` reads the letter logits). Batches can be balanced between ambiguous and disambiguated items, so
the "always Unknown" shortcut (half the train items have Unknown as gold) does not dominate the gradient.
The folder written is a PEFT adapter (``adapter_model.safetensors``) with ``interp_base.json`` (the base weights
fingerprint ``check_adapter_base`` checks), ``reader.json`` (the training record with its validation learning
curve) and ``SHA256SUMS``; it is built in a staged folder and published by rename.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from interp.data.bbq import BBQItem
from interp.errors import InterpError

RECORD_FILE = "reader.json"
BASE_RECORD = "interp_base.json"  # the name rl/train.py writes and check_adapter_base reads
BALANCES = ("condition", "none")
# the dev targets of issue 26, item 5, applied to validation points by the selection rule (docs/reader.md)
TARGETS = {"acc_disambig_min": 0.65, "abstain_disambig_max": 0.15, "acc_ambig_lo": 0.30, "acc_ambig_hi": 0.90}


class ReaderError(InterpError, ValueError):
    """A reader build asked for with settings or data it cannot use."""


@dataclass
class ReaderConfig:
    """One reader build. LoRA r 16 / alpha 32 on all linear layers; AdamW at a constant ``lr`` after a short
    warmup; ``batch_size`` items a step, half ambiguous and half disambiguated with ``balance="condition"``."""

    model: str = "smollm2"
    seed: int = 0
    steps: int = 200
    lr: float = 2e-4
    batch_size: int = 16
    warmup_steps: int = 10
    balance: str = "condition"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "all-linear"
    grad_clip: float = 1.0
    dtype: str = "bfloat16"  # base weights; the LoRA weights and optimizer state stay float32
    threads: int | None = None
    eval_every: int = 25
    val_frac: float = 0.2  # of the train templates, per category, held out as validation
    val_items: int = 192  # validation items scored at each curve point (half ambiguous, half disambiguated)
    val_seed: int = 0
    # data: the train part of the template-disjoint split (the one `interp eval --split dev` scores the rest of)
    bbq_dir: str | None = None
    templates_dir: str | None = None
    split_file: str | None = None
    dev_frac: float = 0.2
    split_seed: int = 0
    categories: list[str] | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ReaderError naming the first bad setting."""
        if self.balance not in BALANCES:
            raise ReaderError(f"balance must be one of {BALANCES}, not {self.balance!r}")
        for name in ("steps", "batch_size", "eval_every", "val_items", "lora_r"):
            if getattr(self, name) < 1:
                raise ReaderError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ReaderError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 < self.val_frac < 1.0:
            raise ReaderError(f"val_frac must be in (0, 1), got {self.val_frac}")
        if self.balance == "condition" and self.batch_size % 2:
            raise ReaderError(f"balance 'condition' needs an even batch_size, got {self.batch_size}")


@dataclass
class ReaderData:
    """The items of one build: training and validation items from disjoint train templates."""

    train: list[BBQItem]
    val: list[BBQItem]
    train_templates: list[tuple[str, str]]
    val_templates: list[tuple[str, str]]
    dev_templates: list[tuple[str, str]]
    split_hash: str


@dataclass
class CurvePoint:
    """Validation metrics after ``step`` optimizer steps (``items_seen`` training items)."""

    step: int
    items_seen: int
    train_loss: float | None
    acc_ambig: float
    acc_disambig: float
    abstain_disambig: float
    amb_commit_bias: float
    letter_loss: float  # mean cross-entropy of the gold letter among the three letter logits
    score: float
    meets_targets: bool
    seconds: float


@dataclass
class ReaderResult:
    """What a build wrote: the folder, the chosen curve point and the whole curve."""

    out_dir: Path
    chosen: CurvePoint
    curve: list[CurvePoint]
    seconds_per_step: float


def carve_validation(train_items: Sequence[BBQItem], val_frac: float = 0.2, seed: int = 0):
    """Split the train templates again, per category (``make_split``), into training and validation templates;
    return (training items, validation items, the template split)."""
    from interp.data.split import make_split

    vs = make_split(train_items, dev_frac=val_frac, seed=seed)
    return vs.select(train_items, "train"), vs.select(train_items, "dev"), vs


def balanced_subset(items: Sequence[BBQItem], n: int, seed: int = 0) -> list[BBQItem]:
    """A seeded subset of at most ``n`` items, half ambiguous and half disambiguated where both have enough."""
    rng = random.Random(f"val:{seed}")
    amb = [it for it in items if it.context_condition == "ambig"]
    dis = [it for it in items if it.context_condition != "ambig"]
    k_amb = min(len(amb), max(n // 2, n - len(dis)))
    k_dis = min(len(dis), n - k_amb)
    keep = {id(it) for it in rng.sample(amb, k_amb) + rng.sample(dis, k_dis)}
    return [it for it in items if id(it) in keep]


def load_reader_data(cfg: ReaderConfig) -> ReaderData:
    """The train part of the split, carved into training and validation templates (never touching dev)."""
    from interp.data.bbq import split_items

    train, split = split_items("train", cfg.bbq_dir, cfg.split_file, cfg.dev_frac, cfg.split_seed,
                               cfg.categories, None, cfg.templates_dir)
    tr, val, vs = carve_validation(train, cfg.val_frac, cfg.val_seed)
    if not tr or not val:
        raise ReaderError(f"the train split has too few templates to carve a validation part "
                          f"({len(vs.train_templates)} training, {len(vs.dev_templates)} validation)")
    return ReaderData(train=tr, val=balanced_subset(val, cfg.val_items, cfg.val_seed),
                      train_templates=vs.train_templates, val_templates=vs.dev_templates,
                      dev_templates=split.dev_templates, split_hash=split.hash)


class BatchSampler:
    """Batches of training items for each step: uniform, or half ambiguous / half disambiguated
    (``balance="condition"``), each pool drawn without replacement and reshuffled when spent."""

    def __init__(self, items: Sequence[BBQItem], batch_size: int, balance: str = "condition", seed: int = 0):
        self.rng = random.Random(f"batches:{seed}")
        self.batch_size = batch_size
        if balance == "condition":
            amb = [it for it in items if it.context_condition == "ambig"]
            dis = [it for it in items if it.context_condition != "ambig"]
            if not amb or not dis:
                raise ReaderError("balance 'condition' needs both ambiguous and disambiguated training items")
            self.pools = [(amb, batch_size // 2), (dis, batch_size - batch_size // 2)]
        else:
            self.pools = [(list(items), batch_size)]
        self.queues: list[list[BBQItem]] = [[] for _ in self.pools]

    def next(self) -> list[BBQItem]:
        """The next batch."""
        out = []
        for q, (pool, k) in zip(self.queues, self.pools):
            while len(q) < k:
                fresh = list(pool)
                self.rng.shuffle(fresh)
                q.extend(fresh)
            out += [q.pop() for _ in range(k)]
        return out


def encode_letters(tok, items: Sequence[BBQItem], letter_ids: Sequence[int], seed: int):
    """Left-padded chat-rendered prompts with options shuffled (``make_prompt`` with ``seed``), and each item's
    gold letter token id: (ids [batch, pos], mask [batch, pos], gold [batch])."""
    from interp.data.prompts import apply_chat, make_prompt
    from interp.organisms.causal_lm import _collate

    prompted = [make_prompt(it, shuffle=True, seed=seed) for it in items]
    enc = tok([apply_chat(tok, p.user_text) for p in prompted], add_special_tokens=False)["input_ids"]
    ids, mask = _collate(enc, tok.pad_token_id)
    gold = torch.tensor([letter_ids[p.order.index(p.item.label)] for p in prompted])
    return ids, mask, gold


def letter_loss(model, ids: torch.Tensor, mask: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the gold letter at the last prompt position (position ids from the mask, as
    ``interp eval`` numbers left-padded rows)."""
    import torch.nn.functional as F

    from interp.eval.evaluate import mask_position_ids, takes_position_ids

    kw = {"position_ids": mask_position_ids(mask)} if takes_position_ids(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, **kw).logits[:, -1]  # [batch, vocab]
    return F.cross_entropy(logits.float(), gold)


def selection_score(m: dict) -> float:
    """The validation score the selection rule ranks points by (docs/reader.md): acc_disambig, minus the
    amount abstain_disambig exceeds 0.15 and the distance of acc_ambig outside [0.30, 0.90]."""
    t = TARGETS
    over = max(0.0, m["abstain_disambig"] - t["abstain_disambig_max"])
    out = max(0.0, t["acc_ambig_lo"] - m["acc_ambig"]) + max(0.0, m["acc_ambig"] - t["acc_ambig_hi"])
    return float(m["acc_disambig"] - over - out)


def meets_targets(m: dict) -> bool:
    """Whether point estimates meet the item-5 targets (the interval condition is checked on dev only)."""
    t = TARGETS
    return bool(m["acc_disambig"] >= t["acc_disambig_min"] and m["abstain_disambig"] <= t["abstain_disambig_max"]
                and t["acc_ambig_lo"] <= m["acc_ambig"] <= t["acc_ambig_hi"])


def three_way_loss(records: Sequence[dict]) -> float:
    """Mean cross-entropy of the gold letter over the three letter logits of ``evaluate_items`` records."""
    from interp.data.prompts import LETTERS

    ll = torch.tensor([r["letter_logits"] for r in records], dtype=torch.float64)  # [item, 3]
    gold = torch.tensor([LETTERS.index(r["gold_letter"]) for r in records])
    return float(torch.nn.functional.cross_entropy(ll, gold))


def validate(model, tok, items: Sequence[BBQItem], batch_size: int = 16) -> dict:
    """Overall validation metrics (no intervals), scored as ``interp eval`` does (logits, options in order),
    and ``letter_loss`` (``three_way_loss``)."""
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize
    from interp.models.backends import as_lm

    was = model.training
    model.eval()
    recs = evaluate_items(as_lm(model, tok), items, EvalConfig(batch_size=batch_size, progress=False))
    model.train(was)
    return {**summarize(recs, n_boot=0, by_category=False)[0], "letter_loss": three_way_loss(recs)}


def _lora_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def is_reader(path: str | os.PathLike) -> bool:
    """A finished reader folder (adapter, base record and training record)."""
    p = Path(path)
    return all((p / f).is_file() for f in ("adapter_config.json", "adapter_model.safetensors", BASE_RECORD,
                                            RECORD_FILE))


def _versions() -> dict:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def build_reader(cfg: ReaderConfig, out_dir: str | os.PathLike, data: ReaderData | None = None,
                 on_point: Callable[[CurvePoint], None] | None = None) -> ReaderResult:
    """Train a reader adapter and publish it at ``out_dir``; the adapter kept is the curve point the selection
    rule picks on validation. ``on_point`` is called with each validation point as it is measured."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from interp.eval.evaluate import letter_token_ids
    from interp.models.loading import (attach_fingerprint, load_tokenizer, pick_dtype, resolve_model_path,
                                       weights_hash)
    from interp.organisms.causal_lm import write_checksums
    from interp.paths import check_out_dir, staged_dir

    cfg.validate()
    out = check_out_dir(out_dir, is_reader, "a reader")
    data = data or load_reader_data(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    base_path = resolve_model_path(cfg.model)
    tok = load_tokenizer(base_path)
    letter_ids = letter_token_ids(tok)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=pick_dtype(cfg.dtype, torch.device("cpu")))
    attach_fingerprint(base, base_path)
    whash = weights_hash(base)
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, task_type="CAUSAL_LM")
    model = get_peft_model(base, lcfg)  # LoRA weights in float32 (PEFT's autocast_adapter_dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    sampler = BatchSampler(data.train, cfg.batch_size, cfg.balance, cfg.seed)
    curve: list[CurvePoint] = []
    losses: list[float] = []
    best: tuple[float, CurvePoint, dict] | None = None
    t_train = 0.0
    t_start = time.time()

    def point(step: int) -> None:
        nonlocal best
        t0 = time.time()
        m = validate(model, tok, data.val, cfg.batch_size)
        recent = losses[-cfg.eval_every:]
        p = CurvePoint(step=step, items_seen=step * cfg.batch_size,
                       train_loss=round(sum(recent) / len(recent), 4) if recent else None,
                       acc_ambig=round(m["acc_ambig"], 4), acc_disambig=round(m["acc_disambig"], 4),
                       abstain_disambig=round(m["abstain_disambig"], 4),
                       amb_commit_bias=round(m["amb_commit_bias"], 4), letter_loss=round(m["letter_loss"], 4),
                       score=round(selection_score(m), 4),
                       meets_targets=meets_targets(m), seconds=round(time.time() - t0, 1))
        curve.append(p)
        if best is None or p.score > best[0]:  # ties keep the earlier (cheaper) point
            best = (p.score, p, _lora_state(model))
        if on_point is not None:
            on_point(p)

    model.train()
    point(0)
    for step in range(1, cfg.steps + 1):
        t0 = time.time()
        ids, mask, gold = encode_letters(tok, sampler.next(), letter_ids, seed=cfg.seed * 100003 + step)
        loss = letter_loss(model, ids, mask, gold)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        t_train += time.time() - t0
        if step % cfg.eval_every == 0 or step == cfg.steps:
            point(step)
    assert best is not None
    _, chosen, state = best
    with torch.no_grad():
        named = dict(model.named_parameters())
        for k, v in state.items():
            named[k].copy_(v)
    model.eval()
    record = {
        "config": asdict(cfg), "base_path": str(base_path), "weights_hash": whash, "split_hash": data.split_hash,
        "n_train_items": len(data.train), "n_train_ambig": sum(it.context_condition == "ambig" for it in data.train),
        "n_val_items": len(data.val), "train_templates": [list(t) for t in data.train_templates],
        "val_templates": [list(t) for t in data.val_templates], "targets": TARGETS,
        "chosen": asdict(chosen), "curve": [asdict(p) for p in curve], "train_losses": [round(x, 4) for x in losses],
        "seconds_per_step": round(t_train / cfg.steps, 2), "seconds": round(time.time() - t_start, 1),
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S"), "versions": _versions(),
    }
    with staged_dir(out, is_reader, "a reader") as tmp:
        model.save_pretrained(tmp)
        ac = tmp / "adapter_config.json"
        acfg = json.loads(ac.read_text())
        if isinstance(acfg.get("target_modules"), list):  # PEFT writes a set in run-dependent order
            acfg["target_modules"] = sorted(acfg["target_modules"])
        ac.write_text(json.dumps(acfg, indent=2, sort_keys=True))
        (tmp / BASE_RECORD).write_text(json.dumps({"base": str(base_path), "model": cfg.model,
                                                   "weights_hash": whash}, indent=1))
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1))
        write_checksums(tmp)
    return ReaderResult(out_dir=out, chosen=chosen, curve=curve, seconds_per_step=record["seconds_per_step"])


def load_record(path: str | os.PathLike) -> dict:
    """The training record (``reader.json``) of a reader folder."""
    f = Path(path) / RECORD_FILE
    if not f.is_file():
        raise ReaderError(f"{path} is not a reader folder (no {RECORD_FILE})")
    return json.loads(f.read_text())
