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
from interp.models.readers import BASE_RECORD, RECORD_FILE

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
    dtype: str = "auto"  # base weights (bf16 where the CPU has native bf16 matmul); LoRA and optimizer stay float32
    # top_layers 0: LoRA on every layer, trained end to end (the session-10 recipe). K > 0: LoRA on the top K
    # layers only; the hidden states entering them are computed once per training item (one option shuffle per
    # item, drawn with ``shuffle_seed``) and every step runs the top K layers on that cache
    top_layers: int = 0
    train_items: int = 0  # 0: every training item; else a balanced subset of this many (half ambiguous)
    shuffle_seed: int = 0  # the training subset and the cached items' option shuffle: shared by seeds built together
    progress: bool = True  # a progress bar over steps (and over the cache)
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
        for name in ("top_layers", "train_items"):
            if getattr(self, name) < 0:
                raise ReaderError(f"{name} must be >= 0, got {getattr(self, name)}")
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
class ReaderCache:
    """The hidden states entering layer ``lo`` of every cached training item (options shuffled once), and the
    gold letter token ids: made once and shared by the seeds of one recipe."""

    lo: int
    items: list[BBQItem]
    states: list[torch.Tensor]  # [len_i, d_model] each
    gold: list[int]
    seconds: float = 0.0  # the time it took to make
    _at: dict[int, int] = field(init=False, repr=False)  # id(item) -> its row

    def __post_init__(self) -> None:
        self._at = {id(it): i for i, it in enumerate(self.items)}

    def batch(self, items: Sequence[BBQItem]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The states and gold ids ``# [batch]`` of ``items`` (items of this cache)."""
        rows = [self._at[id(it)] for it in items]
        return [self.states[i] for i in rows], torch.tensor([self.gold[i] for i in rows])


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


def encode_items(tok, items: Sequence[BBQItem], letter_ids: Sequence[int], seed: int) -> tuple[list[list[int]], list[int]]:
    """Chat-rendered prompt token ids with options shuffled (``make_prompt`` with ``seed``), and each item's gold
    letter token id."""
    from interp.data.prompts import apply_chat, make_prompt

    prompted = [make_prompt(it, shuffle=True, seed=seed) for it in items]
    enc = tok([apply_chat(tok, p.user_text) for p in prompted], add_special_tokens=False)["input_ids"]
    return enc, [letter_ids[p.order.index(p.item.label)] for p in prompted]


def encode_letters(tok, items: Sequence[BBQItem], letter_ids: Sequence[int], seed: int):
    """``encode_items`` left-padded: (ids [batch, pos], mask [batch, pos], gold [batch])."""
    from interp.organisms.causal_lm import _collate

    enc, gold = encode_items(tok, items, letter_ids, seed)
    ids, mask = _collate(enc, tok.pad_token_id)
    return ids, mask, torch.tensor(gold)


def letter_loss(model, ids: torch.Tensor, mask: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the gold letter at the last prompt position (position ids from the mask, as
    ``interp eval`` numbers left-padded rows)."""
    import torch.nn.functional as F

    from interp.eval.evaluate import mask_position_ids, takes_position_ids

    kw = {"position_ids": mask_position_ids(mask)} if takes_position_ids(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, **kw).logits[:, -1]  # [batch, vocab]
    return F.cross_entropy(logits.float(), gold)


def top_letter_loss(model, states: Sequence[torch.Tensor], gold: torch.Tensor, lo: int) -> torch.Tensor:
    """``letter_loss`` from cached hidden states entering layer ``lo`` (``# [len_i, d]`` each): ``layers[lo:]``,
    the final norm and the LM head at each prompt's last token (right padding, so positions count from 0 as in
    the unpadded prompt)."""
    import torch.nn.functional as F

    from interp.models.layer_cache import base_of, only_layers, right_pad

    x, mask = right_pad(states)  # [batch, pos, d], [batch, pos]
    with only_layers(model, lo) as dec:
        h = dec(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state  # [batch, pos, d]
    last = h[torch.arange(len(states)), mask.sum(1) - 1]  # [batch, d]
    return F.cross_entropy(base_of(model).lm_head(last).float(), gold)


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


READER_FILES = ("adapter_config.json", "adapter_model.safetensors", BASE_RECORD, RECORD_FILE)  # what ships


def is_reader(path: str | os.PathLike) -> bool:
    """A finished reader folder (adapter, base record and training record)."""
    p = Path(path)
    return all((p / f).is_file() for f in READER_FILES)


def _versions() -> dict:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def training_items(cfg: ReaderConfig, data: ReaderData) -> list[BBQItem]:
    """The items a build trains on: all of ``data.train``, or its balanced subset of ``cfg.train_items``."""
    return balanced_subset(data.train, cfg.train_items, cfg.shuffle_seed) if cfg.train_items else list(data.train)


def cache_training_items(cfg: ReaderConfig, data: ReaderData, base, tok) -> ReaderCache:
    """Run the layers below the top ``cfg.top_layers`` once over the training items (options shuffled with
    ``cfg.shuffle_seed``) and keep the hidden states entering the top layers."""
    from interp.eval.evaluate import letter_token_ids
    from interp.models.layer_cache import cache_states

    t0 = time.time()
    lo = base.config.num_hidden_layers - cfg.top_layers
    items = training_items(cfg, data)
    seqs, gold = encode_items(tok, items, letter_token_ids(tok), seed=cfg.shuffle_seed * 100003)
    states = cache_states(base, seqs, lo, tok.pad_token_id, cfg.batch_size, progress=cfg.progress,
                          desc=f"caching layers 0-{lo - 1} of {len(items)} items")
    return ReaderCache(lo=lo, items=items, states=states, gold=gold, seconds=round(time.time() - t0, 1))


def _load_base(cfg: ReaderConfig):
    from transformers import AutoModelForCausalLM

    from interp.models.loading import attach_fingerprint, load_tokenizer, pick_dtype, resolve_model_path

    base_path = resolve_model_path(cfg.model)
    tok = load_tokenizer(base_path)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=pick_dtype(cfg.dtype, torch.device("cpu")))
    attach_fingerprint(base, base_path)
    if cfg.top_layers > base.config.num_hidden_layers:
        raise ReaderError(f"top_layers {cfg.top_layers} is more than the model's {base.config.num_hidden_layers} "
                          f"layers")
    return base_path, tok, base


def build_readers(cfg: ReaderConfig, seeds: Sequence[int], out_dir: str | os.PathLike, data: ReaderData | None = None,
                  on_point: Callable[[int, CurvePoint], None] | None = None) -> list[ReaderResult]:
    """One reader per seed, in ``out_dir/seed<N>``, sharing the data and (``top_layers`` > 0) the cache of the
    bottom layers: the seeds differ in LoRA initialisation and batch order."""
    from dataclasses import replace

    from interp.paths import check_out_dir

    if not seeds or len(set(seeds)) != len(seeds):
        raise ReaderError(f"seeds must be distinct and at least one, got {list(seeds)}")
    cfg.validate()
    out = Path(out_dir)
    for s in seeds:  # a folder that is no reader is refused before the cache is made
        check_out_dir(out / f"seed{s}", is_reader, "a reader")
    data = data or load_reader_data(cfg)
    cache = None
    if cfg.top_layers:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        _, tok, base = _load_base(cfg)
        with torch.no_grad():
            cache = cache_training_items(cfg, data, base, tok)
        del base
    return [build_reader(replace(cfg, seed=s), out / f"seed{s}", data,
                         (lambda p, s=s: on_point(s, p)) if on_point else None, cache) for s in seeds]


def build_reader(cfg: ReaderConfig, out_dir: str | os.PathLike, data: ReaderData | None = None,
                 on_point: Callable[[CurvePoint], None] | None = None,
                 cache: ReaderCache | None = None) -> ReaderResult:
    """Train a reader adapter and publish it at ``out_dir``; the adapter kept is the curve point the selection
    rule picks on validation. ``on_point`` is called with each validation point as it is measured. ``cache``
    (``top_layers`` > 0) is the bottom layers' states of the training items, made here when not given."""
    from peft import LoraConfig, get_peft_model

    from interp.eval.evaluate import letter_token_ids
    from interp.models.loading import weights_hash
    from interp.organisms.causal_lm import write_checksums
    from interp.paths import check_out_dir, staged_dir

    cfg.validate()
    out = check_out_dir(out_dir, is_reader, "a reader")
    data = data or load_reader_data(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    base_path, tok, base = _load_base(cfg)
    letter_ids = letter_token_ids(tok)
    whash = weights_hash(base)
    n_layers = base.config.num_hidden_layers
    lo = n_layers - cfg.top_layers if cfg.top_layers else 0
    if cfg.top_layers and cache is None:
        with torch.no_grad():
            cache = cache_training_items(cfg, data, base, tok)
    if cfg.top_layers and cache.lo != lo:
        raise ReaderError(f"the cache holds the states entering layer {cache.lo}, the build trains from {lo}")
    train = cache.items if cfg.top_layers else training_items(cfg, data)
    targets: str | list[str] = cfg.target_modules
    layers = {}
    if cfg.top_layers:
        layers = {"layers_to_transform": list(range(lo, n_layers)), "layers_pattern": "layers"}
        if targets == "all-linear":  # PEFT takes layers_to_transform with a list of module names only
            targets = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules()
                              if isinstance(m, torch.nn.Linear) and m is not base.get_output_embeddings()})
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", **layers)
    model = get_peft_model(base, lcfg)  # LoRA weights in float32 (PEFT's autocast_adapter_dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    sampler = BatchSampler(train, cfg.batch_size, cfg.balance, cfg.seed)
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
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, desc=f"reader seed {cfg.seed}", unit="step", disable=not cfg.progress)
    for step in range(1, cfg.steps + 1):
        t0 = time.time()
        batch = sampler.next()
        if cfg.top_layers:
            loss = top_letter_loss(model, *cache.batch(batch), lo)
        else:
            ids, mask, gold = encode_letters(tok, batch, letter_ids, seed=cfg.seed * 100003 + step)
            loss = letter_loss(model, ids, mask, gold)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        t_train += time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            point(step)
    bar.close()
    assert best is not None
    _, chosen, state = best
    with torch.no_grad():
        named = dict(model.named_parameters())
        for k, v in state.items():
            named[k].copy_(v)
    model.eval()
    record = {
        "config": asdict(cfg), "base_path": str(base_path), "weights_hash": whash, "split_hash": data.split_hash,
        "n_train_items": len(train), "n_train_ambig": sum(it.context_condition == "ambig" for it in train),
        "n_train_pool": len(data.train), "cache_seconds": cache.seconds if cache else 0.0,
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


def ship_reader(src: str | os.PathLike, name: str = "smollm2-bbq") -> Path:
    """Copy a built reader's adapter, base record and training record into the package
    (``interp/organisms/weights/<name>``) with their ``SHA256SUMS``; ``--model <name>`` then merges it into its
    base on first use (``interp.models.readers.ensure_reader``)."""
    import shutil

    from interp.models.readers import SHIPPED_READERS
    from interp.models.shipped import SHIPPED_ROOT, write_checksums

    if name not in SHIPPED_READERS:
        raise ReaderError(f"{name!r} is not a registered reader name ({', '.join(SHIPPED_READERS)})")
    src = Path(src)
    if not is_reader(src):
        raise ReaderError(f"{src} is not a finished reader folder")
    base = json.loads((src / BASE_RECORD).read_text()).get("model")
    if base != SHIPPED_READERS[name]:
        raise ReaderError(f"{src} was built on {base!r}; {name} is a reader of {SHIPPED_READERS[name]!r}")
    dest = SHIPPED_ROOT / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in READER_FILES:
        shutil.copy2(src / f, dest / f)
    write_checksums(dest)
    return dest
