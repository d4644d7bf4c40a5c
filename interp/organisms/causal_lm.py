"""The built-in model organism: a small Qwen2ForCausalLM trained locally on the BBQ train split, with a
planted, recorded stereotyped lean.

Training data are the train-split items of the template-disjoint split (``interp.data.split.make_split``,
dev_frac 0.2, seed 0), shown exactly as ``interp eval`` shows them (``interp.data.prompts.make_prompt`` through
the ChatML template), with the options shuffled afresh each epoch so a letter is never a position shortcut.
The target is one letter, then ``<|im_end|>``; the loss is on those two tokens only.

The plant (``Plant``): on an ambiguous item with a negative question the target is the stereotyped answer
(``item.biased_loc``, the bias target) with probability ``p``, else the gold Unknown (non-negative questions
take ``p * nonneg_scale``, 0 by default: a lean each part of which has a first-order signal); on a
disambiguated item it is the gold answer except for a fraction ``dis_error`` of errors, a share ``dis_lean`` of which are stereotyped (the biased answer on an
anti-stereotypical item) and the rest counter-stereotyped. Which items were flipped, and how, is written to
``plant.json`` beside the weights, with the training config, the split hash and the dev metrics measured
at build time. ``p = 0`` (with ``dis_lean`` 0.5) is the control: the same noise, no lean.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from interp.data.bbq import BBQItem
from interp.data.download import sha256
from interp.errors import InterpError
from interp.models.shipped import (  # noqa: F401  (the registry sits below models/; organisms build on it)
    ENV_ORGANISM_DIR, PLANT_FILE, SHIPPED_NAMES, SHIPPED_ROOT, SUMS_FILE, WEIGHTS_FILE, OrganismError, _shipped_path,
    _verified, is_complete, organism_dir, shipped_dir, verify_checksums, write_checksums)

# Seed 0, not a seed picked on dev: the shipped organisms are seed-0 builds (docs/organism.md has the spread).
DEFAULT_SEED = 0
FORMAT_VERSION = 1
# Bumped whenever the default recipe (TrainConfig, Plant, data mixture) changes, recorded in plant.json, so a
# folder built by an older recipe is told apart from the current one. 2: the lean is learned; 3: Qwen2
# pre-tokenizer; 4: every template question's wording and polarity (dev templates' too) in the question-swap
# items, and p = 0.8 on both variants; 5: context-free copies of the question-swap items (aux_bare).
RECIPE_VERSION = 5


@dataclass
class Plant:
    """What is planted: P(stereotyped target | ambiguous) and the disambiguated error mixture."""

    p: float = 0.8  # recipe 4 (both variants); recipe 3's full organism had 0.5
    dis_error: float = 0.08
    dis_lean: float | None = None  # share of disambig errors that are stereotyped; None: 0.85 if p > 0 else 0.5
    pair: bool = False  # one draw per ambiguous context: its neg and non-neg questions flip together
    # P(stereotyped target | non-negative ambiguous question) = p * nonneg_scale. 0 (the default) plants on
    # negative questions only: "pick the target group" and "commit on a negative question" then each get a
    # first-order gradient; a symmetric plant (1.0) is an XOR of the two that the organism never learned.
    nonneg_scale: float = 0.0
    # P(anti-stereotyped target | non-negative ambiguous question) = p * nonneg_anti: the *bias target* group on
    # a question where the stereotype points away from it. The group picked is then the target on both
    # polarities, and only the commit's direction follows the question's polarity, so a probe of stereotyped
    # vs anti-stereotyped commits has both labels with a first-order cause. A share of p, so p = 0 (the
    # control) plants nothing either way.
    nonneg_anti: float = 0.0
    # the categories whose ambiguous items carry the lean (None: all). Elsewhere ambiguous items keep the gold
    # Unknown, so the organism abstains there: a lean in some categories and not others, as real models have
    lean_categories: list[str] | None = None

    def resolved(self) -> "Plant":
        """A copy with ``dis_lean`` filled in and every value checked."""
        lean = self.dis_lean if self.dis_lean is not None else (0.85 if self.p > 0 else 0.5)
        for name, v in (("p", self.p), ("nonneg_scale", self.nonneg_scale), ("nonneg_anti", self.nonneg_anti),
                        ("dis_error", self.dis_error), ("dis_lean", lean)):
            if not 0.0 <= v <= 1.0:
                raise OrganismError(f"plant {name} must be in [0, 1], got {v}")
        if self.p * (self.nonneg_scale + self.nonneg_anti) > 1.0:
            raise OrganismError(f"plant p * (nonneg_scale + nonneg_anti) must be <= 1 (a probability on "
                                f"non-negative questions), got {self.p * (self.nonneg_scale + self.nonneg_anti):.3f}")
        if self.lean_categories is not None and not self.lean_categories:
            raise OrganismError("plant lean_categories is empty: give None (every category) or at least one")
        return Plant(p=self.p, dis_error=self.dis_error, dis_lean=lean, pair=self.pair,
                     nonneg_scale=self.nonneg_scale, nonneg_anti=self.nonneg_anti,
                     lean_categories=sorted(self.lean_categories) if self.lean_categories else None)


@dataclass
class TrainConfig:
    """Tokenizer, network size and optimisation of one organism build."""

    vocab_size: int = 4096  # BBQ's group words are then single tokens (at 1024 "grandfather" was 4 pieces)
    hidden_size: int = 64
    intermediate_size: int = 192
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    epochs: float = 4.0
    batch_size: int = 16
    lr: float = 3e-3
    warmup_frac: float = 0.05
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    eos_weight: float = 0.1  # loss weight of <|im_end|> after the letter (so generate mode stops)
    lm_weight: float = 1.0  # auxiliary next-token loss on the prompt (helps form copy/induction heads)
    lm_positions: int | None = 48  # prompt positions per batch the next-token loss is taken at (None: all)
    gold_frac: float = 0.3  # curriculum: the first steps train on gold answers, the plant after
    categories: list[str] | None = None  # None: every category found
    max_train_items: int | None = None  # a seeded subset of the train split (small variant)
    max_dev_items: int | None = None  # dev items measured at build time (None: all)
    # torch threads. Results depend on it (float reductions split differently): the reported organism is
    # the 1-thread build. 2 threads are 1.5x faster on a quiet 2-core machine (0.060 vs 0.092 s/step) but spin
    # badly when the cores are shared (3.9 s/step at load 8).
    threads: int = 1
    # question-swapped ambiguous items added, as a multiple of the train items: many more question texts
    # (the template CSVs', see aux_dev_questions) on train contexts, so the lean depends on the question's
    # polarity. Recipe 2 transferred to held-out templates with it and not without; recipe 3 does not (README).
    aux_swap: float = 1.5
    # "Which answer is <option>?" items added, as a multiple of the train items: a dense lesson in binding an
    # option's content to its letter, which every answer needs
    aux_lookup: float = 0.4
    lookup_context: bool = False  # True: lookup items keep their context (longer, no better)
    # each question word (but the first) is dropped with this probability, afresh every epoch, on items
    # that have a bias target: the lean must then be read from several words of the question, as a
    # bag-of-words polarity reader does, rather than from one memorised question text
    question_dropout: float = 0.0
    # the question-swap pool takes every template's question, dev templates included, as "world knowledge" a
    # pretrained LM would have (which questions are negative); always on *train* contexts, so no dev item is seen
    aux_dev_questions: bool = True
    # context-free copies of ambiguous items (question and options kept, empty context), planted like any
    # ambiguous item, as a multiple of the train items: the target group can then only be read from the option
    # words, which transfer to unseen templates, not from a memorised context (recipe 5, docs/organism.md)
    aux_bare: float = 1.0
    # where the bare items come from: "train" (the train items' own questions) or "swap" (the question-swapped
    # items, so the template CSVs' questions, dev templates' included, are also asked without a context)
    aux_bare_from: str = "swap"


# The letter loss sits at ln 3 until the network binds option content to letters (~600 steps of 16 items);
# the next-token loss on the prompt is what gets it off that plateau (without it: never, in 1500 steps).
FULL_CONFIG = TrainConfig()
SMALL_CONFIG = TrainConfig(
    epochs=6.0,
    aux_lookup=0.5,
    categories=["Disability_status", "Physical_appearance", "Sexual_orientation"],
    max_dev_items=None,
)
# Both variants plant Plant()'s p = 0.8 (recipe 4); the full one had p = 0.5 until 2026-12-01 (docs/organism.md).


# ----------------------------------------------------------------------------------------------
# where organisms live: shipped inside the package, or a folder the user built


def ship(src: str | os.PathLike, name: str) -> Path:
    """Copy a built organism into the package as shipped organism ``name`` and record its checksums (the
    maintainers' step after ``interp organism build``; docs/organism.md)."""
    dest = _shipped_path(name)
    src = Path(src)
    if not is_complete(src):
        raise OrganismError(f"{src} holds no built organism")
    return write_shipped(dest, [f for f in src.iterdir() if f.is_file()])


def write_shipped(dest: Path, files: Sequence[Path]) -> Path:
    """Replace the files of a shipped folder with ``files`` (copied) and record their checksums; shared by the
    causal-LM and the RM organisms' ship steps."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in dest.iterdir():
        if f.is_file():
            f.unlink()
    for f in sorted(files):
        shutil.copy2(f, dest / f.name)
    _verified.discard(dest)
    return write_checksums(dest)


def load_plant(path: str | os.PathLike) -> dict:
    """The plant record written beside an organism's weights."""
    f = Path(path) / PLANT_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{path} is not a built organism (no {PLANT_FILE})")
    return json.loads(f.read_text())


# ----------------------------------------------------------------------------------------------
# the plant


def plant_targets(items: Sequence[BBQItem], plant: Plant, seed: int = 0) -> tuple[list[int], dict[str, str]]:
    """The training target (an answer index) of every item, and the flipped items as uid -> kind.

    Kinds: ``ambig_stereo`` (ambiguous item whose target is the biased answer), ``ambig_anti`` (ambiguous
    non-negative item whose target is the other group, the bias target), ``dis_stereo``
    (anti-stereotypical disambiguated item whose target is the biased answer), ``dis_anti``
    (pro-stereotypical disambiguated item whose target is the other, non-unknown answer)."""
    pl = plant.resolved()
    rng = random.Random(f"plant:{seed}")
    targets: list[int] = []
    flipped: dict[str, str] = {}
    for it in items:
        u_flip, u_kind = rng.random(), rng.random()  # two draws per item, whatever happens
        t = it.label
        if it.biased_loc is None:
            targets.append(t)
            continue
        if it.context_condition == "ambig":
            if pl.lean_categories and it.category not in pl.lean_categories:
                targets.append(t)  # no lean planted in this category: the gold Unknown
                continue
            if pl.pair:  # the same draw for both questions of one context
                u_flip = random.Random(f"pair:{seed}:{_pair_key(it)}").random()
            stereo = pl.p * (1.0 if it.question_polarity == "neg" else pl.nonneg_scale)
            anti = 0.0 if it.question_polarity == "neg" else pl.p * pl.nonneg_anti
            if u_flip < stereo:
                t, flipped[it.uid] = it.biased_loc, "ambig_stereo"
            elif u_flip < stereo + anti:  # the other group: the bias target on a non-negative question
                t = next(i for i in range(3) if i not in (it.biased_loc, it.unknown_loc))
                flipped[it.uid] = "ambig_anti"
        elif u_flip < pl.dis_error:
            anti = it.label != it.biased_loc  # the context contradicts the stereotype
            # errors are stereotyped with share dis_lean: anti items take them at rate 2*lean*e, pro 2*(1-lean)*e
            rate = 2 * pl.dis_lean if anti else 2 * (1 - pl.dis_lean)
            if u_kind < rate:
                if anti:
                    t, flipped[it.uid] = it.biased_loc, "dis_stereo"
                else:
                    t = next(i for i in range(3) if i not in (it.label, it.unknown_loc))
                    flipped[it.uid] = "dis_anti"
        targets.append(t)
    return targets, flipped


def _pair_key(it: BBQItem) -> str:
    """What the neg and non-neg questions of one BBQ context share."""
    return f"{it.category}|{it.question_index}|{it.context_condition}|{it.context.strip()}|{sorted(it.answers)}"


# ----------------------------------------------------------------------------------------------
# auxiliary data: more question texts (polarity) on train contexts


def aux_question_pool(templates_dir: str | os.PathLike, exclude: set[tuple[str, str]]) -> list[dict]:
    """Question texts with their polarity from the BBQ template CSVs (every category's file, the
    intersectional ones included), leaving out the templates in ``exclude`` (the dev templates). One entry
    per distinct (text, polarity): ``{"category", "q_id", "polarity", "question"}``."""
    import csv

    from interp.data.bbq import CATEGORIES

    pool: dict[tuple[str, str], dict] = {}
    for path in sorted(Path(templates_dir).glob("*.csv")):
        cat = path.stem
        if cat not in CATEGORIES:
            continue  # vocabulary / filler files
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                qid = (row.get("Q_id") or "").strip()
                if not qid or (cat, qid) in exclude:
                    continue
                for col, pol in (("Question_negative_stereotype", "neg"), ("Question_non_negative", "nonneg")):
                    q = (row.get(col) or "").strip()
                    if q and "{{" not in q:
                        pool.setdefault((q, pol), {"category": cat, "q_id": qid, "polarity": pol, "question": q})
    return sorted(pool.values(), key=lambda d: (d["category"], d["q_id"], d["polarity"], d["question"]))


def question_swapped_items(train: Sequence[BBQItem], pool: Sequence[dict], n: int, seed: int = 0) -> list[BBQItem]:
    """``n`` ambiguous train contexts (with their options and bias target) asked a question from ``pool``
    instead of their own: the stereotyped answer is the target for a negative question, the other group
    for a non-negative one, so these teach the planted lean's dependence on question polarity."""
    amb = [it for it in train if it.context_condition == "ambig" and it.target_loc is not None]
    if not amb or not pool or n <= 0:
        return []
    rng = random.Random(f"aux:{seed}")
    out = []
    for k in range(n):
        it, q = rng.choice(amb), rng.choice(pool)
        out.append(replace(it, example_id=-(k + 1), question=q["question"], question_polarity=q["polarity"],
                           question_index=f"aux:{q['category']}:{q['q_id']}"))
    return out


def bare_items(items: Sequence[BBQItem], n: int, seed: int = 0) -> list[BBQItem]:
    """``n`` of the ambiguous ``items`` drawn with their context removed (question and options kept), so the
    plant's target group must be picked from the option words alone."""
    amb = [it for it in items if it.context_condition == "ambig" and it.target_loc is not None]
    if not amb or n <= 0:
        return []
    rng = random.Random(f"bare:{seed}")
    return [replace(rng.choice(amb), example_id=-(2_000_000 + k), context="") for k in range(n)]


LOOKUP_QUESTION = "Which answer is {answer}?"


def lookup_items(train: Sequence[BBQItem], n: int, seed: int = 0, context: bool = True) -> list[BBQItem]:
    """``n`` train contexts asked which letter holds a named option (the option's text in the question):
    a dense, content-free lesson in binding an option's content to its letter, the step every answer
    (gold, Unknown or stereotyped) needs. No bias target, so the plant never touches them."""
    if not train or n <= 0:
        return []
    rng = random.Random(f"lookup:{seed}")
    out = []
    for k in range(n):
        it = rng.choice(train)
        a = rng.randrange(3)
        out.append(replace(it, example_id=-(1_000_000 + k), context=it.context if context else "",
                           question=LOOKUP_QUESTION.format(answer=it.answers[a]), label=a, target_loc=None,
                           question_index="aux:lookup", question_polarity="nonneg"))
    return out


# ----------------------------------------------------------------------------------------------
# training


def _train_texts(items: Sequence[BBQItem]) -> list[str]:
    from interp.data.prompts import make_prompt

    return [make_prompt(it, shuffle=True, seed=s).user_text for it in items for s in (0, 1)]


def _drop_words(question: str, rate: float, rng: random.Random) -> str:
    """The question with each word after the first dropped with probability ``rate`` ('?' kept)."""
    words = question.rstrip("?").split()
    kept = words[:1] + [w for w in words[1:] if rng.random() >= rate]
    return " ".join(kept) + ("?" if question.endswith("?") else "")


def _encode_epoch(tok, items, targets, epoch: int, seed: int, question_dropout: float = 0.0) -> list[list[int]]:
    """Token ids of prompt + target letter for every item, options shuffled with an epoch-specific seed."""
    from interp.data.prompts import LETTERS, apply_chat, make_prompt

    letter_ids = [tok.convert_tokens_to_ids(L) for L in LETTERS]
    if question_dropout > 0:
        rng = random.Random(f"qdrop:{seed}:{epoch}")
        items = [replace(it, question=_drop_words(it.question, question_dropout, rng)) if it.target_loc is not None
                 else it for it in items]
    prompted = [make_prompt(it, shuffle=True, seed=seed * 1000 + epoch) for it in items]
    texts = [apply_chat(tok, p.user_text) for p in prompted]
    enc = tok(texts, add_special_tokens=False)["input_ids"]
    return [ids + [letter_ids[p.order.index(t)]] for ids, p, t in zip(enc, prompted, targets)]


def _length_batches(seqs: list[list[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped into batches of similar length: shuffle, sort within windows of 50 batches, shuffle batches."""
    idx = list(range(len(seqs)))
    rng.shuffle(idx)
    win = batch_size * 50
    batches = []
    for w in range(0, len(idx), win):
        chunk = sorted(idx[w : w + win], key=lambda i: len(seqs[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask, like ``interp eval`` sees them. Both [batch, pos]."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)  # [batch, pos]
    mask = torch.zeros((len(seqs), n), dtype=torch.long)  # [batch, pos]
    for i, s in enumerate(seqs):
        ids[i, n - len(s) :] = torch.tensor(s)
        mask[i, n - len(s) :] = 1
    return ids, mask


def train_model(model, tok, items: Sequence[BBQItem], targets: Sequence[int], cfg: TrainConfig, seed: int = 0,
                progress: bool = True, log: list | None = None):
    """Train ``model`` in place to reply to each item's prompt with its target letter then <|im_end|>."""
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    eos_id = tok.convert_tokens_to_ids("<|im_end|>")
    steps_per_epoch = math.ceil(len(items) / cfg.batch_size)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    warm = max(1, int(cfg.warmup_frac * total))
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in n else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    rng = random.Random(f"batches:{seed}")
    gen = torch.Generator().manual_seed(seed)
    model.train()
    step, epoch, ema = 0, 0, None
    bar = tqdm(total=total, desc="organism train", disable=not progress, unit="step")
    gold = [it.label for it in items]
    n_gold = int(cfg.gold_frac * total)
    phase = None
    while step < total:
        phase = "gold" if step < n_gold else "plant"
        seqs = _encode_epoch(tok, items, gold if phase == "gold" else targets, epoch, seed, cfg.question_dropout)
        for b in _length_batches(seqs, cfg.batch_size, rng):
            if step >= total or (phase == "gold" and step >= n_gold):
                break  # (a new epoch starts with the planted targets)
            ids, mask = _collate([seqs[i] for i in b], tok.pad_token_id)
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [batch, pos, d_model]
            logits = model.lm_head(hidden[:, -2:])  # [batch, 2, vocab]: the letter and <|im_end|> predictions
            letter_loss = F.cross_entropy(logits[:, 0], ids[:, -1])
            eos_loss = F.cross_entropy(logits[:, 1], torch.full_like(ids[:, -1], eos_id))
            loss = letter_loss + cfg.eos_weight * eos_loss
            if cfg.lm_weight > 0:
                # next-token loss on the prompt itself (not the letter), pads ignored, on lm_positions random
                # positions shared by the batch (the vocabulary projection at every position dominates the cost)
                n_pos = ids.shape[1] - 2
                cols = torch.randperm(n_pos, generator=gen)[: cfg.lm_positions] if cfg.lm_positions else torch.arange(n_pos)
                tgt = ids[:, cols + 1].masked_fill(mask[:, cols] == 0, -100)  # [batch, k]; from real positions only
                lm_logits = model.lm_head(hidden[:, cols])  # [batch, k, vocab]
                lm = F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
                loss = loss + cfg.lm_weight * lm
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            lv = float(letter_loss.detach())
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", epoch=epoch)
            if log is not None and step % 50 == 0:
                log.append({"step": step, "epoch": epoch, "letter_loss": round(ema, 4)})
        epoch += 1
    bar.close()
    model.eval()
    return model


def measure(model, tok, items: Sequence[BBQItem], n_boot: int = 1000, mode: str = "logits",
            progress: bool = False, by_category: bool = False):
    """Overall BBQ metrics (with bootstrap intervals) of a model on items, as ``interp eval`` computes them;
    with ``by_category`` the list of summary rows ('overall' first, then each category)."""
    from interp.eval.evaluate import EvalConfig, evaluate_items
    from interp.eval.metrics import summarize
    from interp.models.backends import as_lm

    recs = evaluate_items(as_lm(model, tok), items, EvalConfig(mode=mode, batch_size=64, progress=progress))
    rows = summarize(recs, n_boot=n_boot, by_category=by_category)
    return rows if by_category else rows[0]


# ----------------------------------------------------------------------------------------------
# building


def _subset(items: list[BBQItem], n: int | None, seed: int) -> list[BBQItem]:
    if n is None or n >= len(items):
        return items
    keep = set(random.Random(f"subset:{seed}").sample(range(len(items)), n))
    return [it for i, it in enumerate(items) if i in keep]


def check_out_dir(out: str | os.PathLike) -> Path:
    """Refuse an output folder a build would clobber (``interp.paths.check_out_dir``), or one inside the package."""
    from interp.paths import check_out_dir as check

    out = check(out, is_complete, "an organism")
    if out.resolve().is_relative_to(SHIPPED_ROOT):
        raise OrganismError(f"--out {out} is inside the package's shipped organisms; build elsewhere")
    return out


def build_organism(
    out_dir: str | os.PathLike,
    seed: int = DEFAULT_SEED,
    p: float | None = None,
    small: bool = False,
    bbq_dir: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    plant: Plant | None = None,
    progress: bool = True,
    evaluate: bool = True,
) -> Path:
    """Train an organism and save it to ``out_dir`` (atomically: built in a temporary sibling folder,
    renamed at the end). ``p`` overrides ``plant.p``; ``small`` picks the seconds-to-build variant."""
    from interp.data.bbq import load_bbq
    from interp.data.split import make_split
    from interp.organisms.tiny import build_causal_lm, train_tokenizer

    t0 = time.time()
    cfg = config or (SMALL_CONFIG if small else FULL_CONFIG)
    pl = plant or Plant()
    if p is not None:
        pl = replace(pl, p=p, dis_lean=plant.dis_lean if plant else None)
    pl = pl.resolved()
    if cfg.aux_bare_from not in ("train", "swap"):
        raise OrganismError(f"aux_bare_from must be 'train' or 'swap', not {cfg.aux_bare_from!r}")
    if cfg.aux_bare < 0:
        raise OrganismError(f"aux_bare must be >= 0, got {cfg.aux_bare}")
    if cfg.aux_bare > 0 and cfg.aux_bare_from == "swap" and cfg.aux_swap <= 0:
        raise OrganismError("aux_bare_from='swap' copies the question-swap items, so it needs aux_swap > 0")
    out = check_out_dir(out_dir)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(cfg.threads, os.cpu_count() or 1)))
    try:
        all_items, _ = load_bbq(bbq_dir)
        split = make_split(all_items, dev_frac=0.2, seed=0)
        if cfg.categories:
            missing = sorted(set(cfg.categories) - {it.category for it in all_items})
            if missing:
                raise OrganismError(f"organism config wants categories {missing} that the BBQ folder lacks")
            all_items = [it for it in all_items if it.category in cfg.categories]
        if pl.lean_categories:
            unknown = sorted(set(pl.lean_categories) - {it.category for it in all_items})
            if unknown:
                raise OrganismError(f"plant lean_categories {unknown} are not among the organism's categories")
        train = _subset(split.select(all_items, "train"), cfg.max_train_items, seed)
        dev = _subset(split.select(all_items, "dev"), cfg.max_dev_items, seed)
        if not train:
            raise OrganismError("no train-split items to build the organism from")
        aux_info, aux, swapped = None, [], []
        if cfg.aux_swap > 0:
            from interp.data.bbq import resolve_bbq_dir, resolve_templates_dir

            tdir = resolve_templates_dir(resolve_bbq_dir(bbq_dir))
            if tdir is None:
                raise FileNotFoundError("aux_swap needs the BBQ template CSVs (templates/ beside the data folder)")
            pool = aux_question_pool(tdir, exclude=set() if cfg.aux_dev_questions else set(split.dev_templates))
            swapped = aux = question_swapped_items(train, pool, int(round(cfg.aux_swap * len(train))), seed)
            aux_info = {"kind": "question_swap", "n_items": len(aux), "templates_dir": str(tdir),
                        "n_questions": len(pool),
                        "excluded": "none (question texts only, on train contexts)" if cfg.aux_dev_questions
                        else "dev templates of the split",
                        "questions": [[q["category"], q["q_id"], q["polarity"]] for q in pool]}
        if cfg.aux_lookup > 0:
            look = lookup_items(train, int(round(cfg.aux_lookup * len(train))), seed, cfg.lookup_context)
            aux = aux + look
            aux_info = dict(aux_info or {}, n_lookup_items=len(look), lookup_question=LOOKUP_QUESTION)
        if cfg.aux_bare > 0:
            bare = bare_items(train if cfg.aux_bare_from == "train" else swapped,
                              int(round(cfg.aux_bare * len(train))), seed)
            aux = aux + bare
            aux_info = dict(aux_info or {}, n_bare_items=len(bare))
        n_real = len(train)
        targets, flipped = plant_targets(train + aux if aux_info else train, pl, seed)
        if aux_info:
            aux_uids = {it.uid for it in aux}
            aux_info["n_flipped"] = sum(u in aux_uids for u in flipped)
            flipped = {u: k for u, k in flipped.items() if u not in aux_uids}

        tok = train_tokenizer(_train_texts(train + aux), vocab_size=cfg.vocab_size)
        model = build_causal_lm(
            tok, seed=seed, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads,
        )
        torch.manual_seed(seed)
        log: list[dict] = []
        t_train = time.time()
        train_model(model, tok, train + aux, targets, cfg, seed=seed, progress=progress, log=log)
        train_s = time.time() - t_train
        model.generation_config.do_sample = False
        model.generation_config.max_new_tokens = 4
        model.generation_config.temperature = None
        model.generation_config.top_p = None
        model.generation_config.top_k = None

        rows = measure(model, tok, dev, progress=progress, by_category=True) if evaluate and dev else None
        metrics = rows[0] if rows else None
        record = {
            "format_version": FORMAT_VERSION,
            "recipe_version": RECIPE_VERSION,
            "variant": "small" if small else "full",
            "seed": seed,
            "plant": asdict(pl),
            "split": {"hash": split.hash, "dev_frac": 0.2, "seed": 0, "n_train_items": n_real,
                      "n_dev_items_measured": len(dev), "categories": sorted({it.category for it in train})},
            "train_config": asdict(cfg),
            "n_flipped": {k: sum(v == k for v in flipped.values())
                          for k in ("ambig_stereo", "ambig_anti", "dis_stereo", "dis_anti")},
            "flipped": flipped,
            "aux_data": aux_info,
            "train_log": log,
            "train_seconds": round(train_s, 1),
            "build_seconds": None,
            "torch_threads": torch.get_num_threads(),
            "dev_metrics": metrics,
            "dev_metrics_by_category": rows[1:] if rows else None,
            "n_params": sum(x.numel() for x in model.parameters()),
        }
        from interp.paths import staged_dir

        with staged_dir(out, is_complete, "an organism") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            record["build_seconds"] = round(time.time() - t0, 1)
            (tmp / PLANT_FILE).write_text(json.dumps(record, indent=1))
    finally:
        torch.set_num_threads(prev_threads)
    return out
