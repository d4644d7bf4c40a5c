"""The RM organism: a small Qwen2ForSequenceClassification trained here with the Bradley-Terry loss on
pairs built from BBQ disambiguated items, with spurious attributes planted mostly on the chosen side.

A pair: the prompt is the item's context and question; the chosen response states the correct answer, the
rejected one a wrong answer (the other person or the "unknown" option; in a disambiguated context both are
wrong), in the same sentence frame. Then each of four decorations (``interp.rm.edits``: padding, exclamation
marks, bold, paragraphs) is active on a pair with probability ``p_active``, and lands on the chosen response
with probability ``p_chosen`` (else on the rejected one). In training ``p_chosen`` is high, so the RM learns to
lean on the decorations; the validation set (neuron finding, medians, baseline fits) is drawn the same way.
The test set, from templates the RM never saw (the template-disjoint dev split), has three labelled splits:
``neutral`` (no decoration), ``easy`` (decorations on the chosen side) and ``hard`` (on the rejected side).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.data.bbq import BBQItem
from interp.errors import InputError, InterpError
from interp.rm.data import PreferencePair, load_preferences, preferences_sha256, save_preferences
from interp.rm.edits import embolden, exclaim, pad, split_paragraphs

DECORATIONS = ("padding", "exclamation", "bold", "paragraphs")
FRAMES = (
    "The answer is {a}. That is what the context says.",
    "Based on the context, it is {a}. The text makes this clear.",
    "It was {a}. The story tells us so.",
    "From the passage, the answer is {a}. This follows from the details given.",
)
MODEL_DIR, VAL_FILE, TEST_FILE, TRAIN_FILE, INFO_FILE = "model", "val.jsonl", "test.jsonl", "train.jsonl", "organism.json"
FORMAT_VERSION = 2


@dataclass
class RMOrganismConfig:
    """Model size, data sizes, planting probabilities and training settings of one RM organism."""

    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 2048
    initializer_range: float = 0.02
    hidden_act: str = "silu"
    act_l1: float = 0.0  # L1 penalty on MLP activations (sparser, more separable neurons)
    n_train_pairs: int | None = None  # None: two pairs per train-split disambiguated item
    n_val_pairs: int = 600
    n_test_per_split: int = 400
    p_active: float = 0.5
    p_chosen_train: float = 0.9
    max_pad: int = 3
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    max_length: int = 256
    threads: int = 2
    categories: list[str] = field(default_factory=list)
    # planted pathway: stage 1 trains everything on pairs whose decorations are uninformative (p_chosen 0.5),
    # stage 2 trains only ``planted_neurons`` random MLP neurons (their gate/up rows and down column) on
    # leaning pairs (p_chosen_train), so the spurious lean lives in a few neurons the study must find
    planted_neurons: int = 0
    planted_epochs: int = 2
    planted_lr: float = 5e-3


SMALL_CONFIG = RMOrganismConfig(hidden_size=48, intermediate_size=192, num_layers=2, vocab_size=1024,
                                initializer_range=0.1, hidden_act="relu", act_l1=0.05, lr=2e-3,
                                n_train_pairs=600, n_val_pairs=200, n_test_per_split=200, epochs=3,
                                planted_neurons=6, planted_lr=2e-2, planted_epochs=3)
FULL_CONFIG = RMOrganismConfig(hidden_size=64, intermediate_size=256, num_layers=3, vocab_size=2048,
                               initializer_range=0.1, hidden_act="relu", act_l1=0.05, lr=2e-3,
                               n_train_pairs=1200, n_val_pairs=400, n_test_per_split=400, epochs=3,
                               planted_neurons=12, planted_lr=2e-2, planted_epochs=2)


# ----------------------------------------------------------------------------------------------
# pairs


def _answer_phrase(ans: str) -> str:
    """An answer as it reads mid-sentence ("The grandson" -> "the grandson")."""
    return "the " + ans[4:] if ans.startswith("The ") else ans


def decorate(text: str, kind: str, rng: random.Random, max_pad: int = 3) -> str:
    """Apply one named decoration (an attribute-only edit) to a response."""
    if kind == "padding":
        return pad(text, rng.randint(1, max_pad))
    if kind == "exclamation":
        return exclaim(text, rng.randint(1, 3))
    if kind == "bold":
        return embolden(text)
    if kind == "paragraphs":
        return split_paragraphs(text)
    raise InputError(f"unknown decoration {kind!r}; known: {DECORATIONS}")


def _apply(text: str, kinds: Sequence[str], rng: random.Random, max_pad: int) -> str:
    # order matters for surface form only: structure first, padding last
    for k in ("bold", "paragraphs", "exclamation", "padding"):
        if k in kinds:
            text = decorate(text, k, rng, max_pad)
    return text


def make_pair(item: BBQItem, wrong: int, rng: random.Random, on_chosen: Sequence[str], on_rejected: Sequence[str],
              max_pad: int = 3, split: str | None = None) -> PreferencePair:
    """One pair from a disambiguated item: the correct answer vs answer ``wrong``, decorated as asked."""
    frame = rng.choice(FRAMES)
    chosen = frame.format(a=_answer_phrase(item.answers[item.label]))
    rejected = frame.format(a=_answer_phrase(item.answers[wrong]))
    prompt = f"{item.context.strip()}\nQuestion: {item.question.strip()}"
    return PreferencePair(
        prompt=prompt,
        chosen=_apply(chosen, on_chosen, rng, max_pad),
        rejected=_apply(rejected, on_rejected, rng, max_pad),
        id=f"{item.uid}:{wrong}:{''.join(k[0] for k in on_chosen)}-{''.join(k[0] for k in on_rejected)}:{rng.random():.6f}",
        split=split,
        meta={"uid": item.uid, "decor_chosen": list(on_chosen), "decor_rejected": list(on_rejected),
              "rejected_is_unknown": wrong == item.unknown_loc},
    )


def natural_pairs(items: Sequence[BBQItem], n: int | None, p_active: float, p_chosen: float, seed: int,
                  max_pad: int = 3, split: str | None = None) -> list[PreferencePair]:
    """Pairs where each decoration is active with ``p_active`` and sits on the chosen side with ``p_chosen``."""
    rng = random.Random(f"natural:{seed}:{split}")
    slots = [(it, w) for it in items for w in range(3) if w != it.label]
    rng.shuffle(slots)
    if n is not None:
        slots = (slots * math.ceil(n / max(1, len(slots))))[:n]
    out = []
    for it, w in slots:
        on_c, on_r = [], []
        for k in DECORATIONS:
            if rng.random() < p_active:
                (on_c if rng.random() < p_chosen else on_r).append(k)
        out.append(make_pair(it, w, rng, on_c, on_r, max_pad, split))
    return out


def split_pairs(items: Sequence[BBQItem], n: int, kind: str, p_active: float, seed: int,
                max_pad: int = 3) -> list[PreferencePair]:
    """Test pairs of one split: ``neutral`` (no decoration), ``easy`` (active decorations all on chosen) or
    ``hard`` (all on rejected); easy and hard pairs carry at least one decoration."""
    rng = random.Random(f"{kind}:{seed}")
    slots = [(it, w) for it in items for w in range(3) if w != it.label]
    rng.shuffle(slots)
    slots = (slots * math.ceil(n / max(1, len(slots))))[:n]
    out = []
    for it, w in slots:
        kinds: list[str] = []
        if kind != "neutral":
            while not kinds:
                kinds = [k for k in DECORATIONS if rng.random() < p_active]
        on_c, on_r = (kinds, []) if kind == "easy" else ([], kinds)
        out.append(make_pair(it, w, rng, on_c, on_r, max_pad, kind))
    return out


# ----------------------------------------------------------------------------------------------
# training


def _encode(tok, pairs: Sequence[PreferencePair], max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    from interp.rm.scoring import render

    def enc(p, r):
        return tok(render(tok, p, r), add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]

    return [enc(p.prompt, p.chosen) for p in pairs], [enc(p.prompt, p.rejected) for p in pairs]


def _pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``# [batch, pos]`` ids and mask."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, T - len(s):] = torch.tensor(s)
        mask[i, T - len(s):] = 1
    return ids, mask


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss: mean of -log sigmoid(r_chosen - r_rejected)."""
    return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()


def plant_mask(model, n: int, seed: int = 0) -> dict[int, list[int]]:
    """``n`` MLP neurons drawn at random over all layers: layer -> sorted indices."""
    L, d = len(model.model.layers), model.config.intermediate_size
    flat = sorted(random.Random(f"plant:{seed}").sample(range(L * d), n))
    out: dict[int, list[int]] = {}
    for f in flat:
        out.setdefault(f // d, []).append(f % d)
    return out


def _restrict_to_neurons(model, neurons: dict[int, list[int]]) -> list:
    """Freeze every parameter but the given MLP neurons' gate/up rows and down columns (gradient masks)."""
    for p in model.parameters():
        p.requires_grad_(False)
    handles = []
    for l, idx in neurons.items():
        mlp = model.model.layers[l].mlp
        for lin, dim in ((mlp.gate_proj, 0), (mlp.up_proj, 0), (mlp.down_proj, 1)):
            w = lin.weight
            w.requires_grad_(True)
            m = torch.zeros_like(w)
            if dim == 0:
                m[idx, :] = 1
            else:
                m[:, idx] = 1
            handles.append(w.register_hook(lambda g, m=m: g * m))
    return handles


def train_rm(model, tok, pairs: Sequence[PreferencePair], cfg: RMOrganismConfig, seed: int = 0,
             progress: bool = True, epochs: int | None = None, lr: float | None = None,
             weight_decay: float | None = None, desc: str = "training RM") -> list[dict]:
    """Train a sequence-classification RM with the BT loss (AdamW, linear warm-up and decay) on its trainable
    parameters; returns a log."""
    ch, rj = _encode(tok, pairs, cfg.max_length)
    rng = random.Random(f"train:{seed}:{desc}")
    order = list(range(len(pairs)))
    steps_per_epoch = math.ceil(len(order) / cfg.batch_size)
    n_epochs = cfg.epochs if epochs is None else epochs
    total = steps_per_epoch * n_epochs
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr if lr is None else lr,
                            weight_decay=cfg.weight_decay if weight_decay is None else weight_decay)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / total))
    pad_id = tok.pad_token_id
    log: list[dict] = []
    acts: list[torch.Tensor] = []
    handles = []
    if cfg.act_l1 > 0:
        for layer in model.model.layers:
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(lambda m, a: acts.append(a[0])))
    model.train()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    step = 0
    for epoch in range(n_epochs):
        rng.shuffle(order)
        run_loss, run_acc, seen = 0.0, 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            ids, mask = _pad_batch([ch[i] for i in idx] + [rj[i] for i in idx], pad_id)
            r = model(input_ids=ids, attention_mask=mask).logits[:, 0]  # [2 * batch]
            rc, rr = r[: len(idx)], r[len(idx):]
            loss = bt_loss(rc, rr)
            if acts:
                m = mask[..., None].to(r.dtype)  # [2 * batch, pos, 1]
                l1 = sum((a.abs() * m).sum() / (m.sum() * a.shape[-1]) for a in acts) / len(acts)
                loss = loss + cfg.act_l1 * l1
                acts.clear()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            sched.step()
            step += 1
            run_loss += float(loss.detach()) * len(idx)
            run_acc += float((rc > rr).float().sum())
            seen += len(idx)
            bar.update(1)
        log.append({"stage": desc, "epoch": epoch, "loss": round(run_loss / seen, 4), "train_acc": round(run_acc / seen, 4)})
    bar.close()
    for h in handles:
        h.remove()
    model.eval()
    return log


# ----------------------------------------------------------------------------------------------
# building and caching


def default_rm_organism_dir(small: bool = False, seed: int = 0) -> Path:
    """``interp.paths.home()/rm-organism/{small|full}-seed{seed}``."""
    from interp.paths import home

    return home() / "rm-organism" / f"{'small' if small else 'full'}-seed{seed}"


def is_complete(path: str | os.PathLike) -> bool:
    """True when a folder holds a finished RM organism of the current format (model, tokenizer, data files
    and record); an older format is rebuilt by ``ensure_rm_organism``."""
    p = Path(path)
    if not all((p / f).is_file() for f in (INFO_FILE, VAL_FILE, TEST_FILE, f"{MODEL_DIR}/config.json",
                                           f"{MODEL_DIR}/model.safetensors", f"{MODEL_DIR}/tokenizer.json")):
        return False
    try:
        return json.loads((p / INFO_FILE).read_text()).get("format_version") == FORMAT_VERSION
    except (OSError, ValueError):
        return False


def _disambig(items: Sequence[BBQItem]) -> list[BBQItem]:
    return [it for it in items if it.context_condition == "disambig"]


@dataclass
class RMPairs:
    """Every pair of one RM organism build, drawn from BBQ disambiguated items by seeded RNGs: the same BBQ
    files and config give the same pairs on every machine, so a shipped RM organism carries no BBQ text."""

    split_hash: str
    n_items: dict[str, int]
    categories: list[str]
    train: list[PreferencePair]
    stage1: list[PreferencePair]  # balanced pairs of the planted recipe's first stage (empty without a plant)
    val: list[PreferencePair]
    test: list[PreferencePair]

    def save(self, folder: Path) -> None:
        """Write the train, val and test JSONL files of an organism folder."""
        save_preferences(self.train, folder / TRAIN_FILE)
        save_preferences(self.val, folder / VAL_FILE)
        save_preferences(self.test, folder / TEST_FILE)

    def sha256(self) -> dict[str, str]:
        """The sha256 of each JSONL file the build writes (train, val, test)."""
        return {"train": preferences_sha256(self.train), "val": preferences_sha256(self.val),
                "test": preferences_sha256(self.test)}


def rm_pairs(items: Sequence[BBQItem], cfg: RMOrganismConfig, seed: int = 0) -> RMPairs:
    """The train, validation and test pairs of an RM organism: validation from held-out train-template items
    (the RM's own distribution), test from the template-disjoint dev split."""
    from interp.data.split import make_split

    items = list(items)
    if cfg.categories:
        items = [it for it in items if it.category in cfg.categories]
    split = make_split(items, dev_frac=0.2, seed=0)
    train_items = _disambig(split.select(items, "train"))
    dev_items = _disambig(split.select(items, "dev"))
    if not train_items or not dev_items:
        raise InputError(f"need disambiguated items in both split parts, got {len(train_items)} train and "
                         f"{len(dev_items)} dev")
    rng = random.Random(f"val:{seed}")
    shuffled = train_items[:]
    rng.shuffle(shuffled)
    n_val_items = max(1, min(len(shuffled) // 5, math.ceil(cfg.n_val_pairs / 2)))
    val_items, fit_items = shuffled[:n_val_items], shuffled[n_val_items:]
    train = natural_pairs(fit_items, cfg.n_train_pairs, cfg.p_active, cfg.p_chosen_train, seed, cfg.max_pad, "train")
    stage1 = (natural_pairs(fit_items, cfg.n_train_pairs, cfg.p_active, 0.5, seed + 7, cfg.max_pad, "train-balanced")
              if cfg.planted_neurons else [])
    val = natural_pairs(val_items, cfg.n_val_pairs, cfg.p_active, cfg.p_chosen_train, seed + 1, cfg.max_pad, "val")
    test = [p for kind in ("neutral", "easy", "hard")
            for p in split_pairs(dev_items, cfg.n_test_per_split, kind, cfg.p_active, seed, cfg.max_pad)]
    return RMPairs(split.hash, {"train": len(fit_items), "val": len(val_items), "test": len(dev_items)},
                   sorted({it.category for it in items}), train, stage1, val, test)


def build_rm_organism(
    out_dir: str | os.PathLike,
    small: bool = False,
    seed: int = 0,
    bbq_dir: str | os.PathLike | None = None,
    config: RMOrganismConfig | None = None,
    items: Sequence[BBQItem] | None = None,
    progress: bool = True,
) -> Path:
    """Build the data files and train the RM; saved atomically to ``out_dir`` (``model/``, ``train.jsonl``,
    ``val.jsonl``, ``test.jsonl``, ``organism.json``). ``items`` replaces the BBQ folder (tests)."""
    from transformers import Qwen2ForSequenceClassification

    from interp.organisms.tiny import tiny_qwen2_config, train_tokenizer

    t0 = time.time()
    cfg = config or (SMALL_CONFIG if small else FULL_CONFIG)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(cfg.threads, os.cpu_count() or 1)))
    from interp.paths import check_out_dir, staged_dir

    out = check_out_dir(out_dir, is_complete, "an RM organism")
    try:
        if items is None:
            from interp.data.bbq import load_bbq

            items, _ = load_bbq(bbq_dir)
        pairs = rm_pairs(items, cfg, seed)
        train_pairs, stage1_pairs = pairs.train, pairs.stage1

        texts = [t for p in train_pairs + stage1_pairs for t in (p.prompt, p.chosen, p.rejected)]
        tok = train_tokenizer(texts, vocab_size=cfg.vocab_size)
        qcfg = tiny_qwen2_config(len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                                 num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                                 num_key_value_heads=cfg.num_kv_heads, num_labels=1,
                                 initializer_range=cfg.initializer_range, hidden_act=cfg.hidden_act,
                                 max_position_embeddings=max(512, cfg.max_length))
        qcfg.pad_token_id = tok.pad_token_id
        qcfg.eos_token_id = tok.eos_token_id
        qcfg.bos_token_id = None
        torch.manual_seed(seed)
        model = Qwen2ForSequenceClassification(qcfg)
        t_train = time.time()
        planted: dict[int, list[int]] = {}
        if cfg.planted_neurons:
            log = train_rm(model, tok, stage1_pairs, cfg, seed=seed, progress=progress, desc="stage 1 (balanced)")
            planted = plant_mask(model, cfg.planted_neurons, seed)
            handles = _restrict_to_neurons(model, planted)
            try:
                log += train_rm(model, tok, train_pairs, cfg, seed=seed, progress=progress, epochs=cfg.planted_epochs,
                                lr=cfg.planted_lr, weight_decay=0.0, desc="stage 2 (planted neurons)")
            finally:
                for h in handles:
                    h.remove()
                for p in model.parameters():
                    p.requires_grad_(True)
        else:
            log = train_rm(model, tok, train_pairs, cfg, seed=seed, progress=progress)
        train_s = time.time() - t_train
        record = {
            "format_version": FORMAT_VERSION,
            "variant": "small" if small else "full",
            "seed": seed,
            "config": asdict(cfg),
            "split_hash": pairs.split_hash,
            "n_pairs": {"train": len(train_pairs), "val": len(pairs.val), "test": len(pairs.test)},
            "n_items": pairs.n_items,
            "pairs_sha256": pairs.sha256(),
            "categories": pairs.categories,
            "decorations": list(DECORATIONS),
            "train_log": log,
            "train_seconds": round(train_s, 1),
            "n_params": sum(x.numel() for x in model.parameters()),
            "n_mlp_neurons": cfg.num_layers * cfg.intermediate_size,
            "planted_neurons": {str(l): v for l, v in planted.items()},
        }
        with staged_dir(out, is_complete, "an RM organism") as tmp:
            model.save_pretrained(tmp / MODEL_DIR, safe_serialization=True)
            tok.save_pretrained(tmp / MODEL_DIR)
            pairs.save(tmp)
            record["build_seconds"] = round(time.time() - t0, 1)
            (tmp / INFO_FILE).write_text(json.dumps(record, indent=1))
    finally:
        torch.set_num_threads(prev_threads)
    return out


# ----------------------------------------------------------------------------------------------
# the shipped RM organisms: model, tokenizer and record in the package; the pairs are drawn again from BBQ


SHIPPED_RM = {("small", 0): "rm-organism-small", ("full", 0): "rm-organism"}  # (variant, seed) -> folder name


def shipped_rm_dir(small: bool = False, seed: int = 0) -> Path | None:
    """The package folder of the shipped RM organism of this variant and seed (checksums verified), or None
    when that one is not shipped."""
    from interp.organisms.causal_lm import SHIPPED_ROOT, verify_checksums

    name = SHIPPED_RM.get(("small" if small else "full", int(seed)))
    if name is None or not (SHIPPED_ROOT / name).is_dir():
        return None
    d = SHIPPED_ROOT / name
    verify_checksums(d)
    return d


def ship_rm(src: str | os.PathLike) -> Path:
    """Copy a built RM organism's model, tokenizer and record into the package (no pairs: they hold BBQ text and
    are drawn again from the user's BBQ files) and record the checksums; the maintainers' step after
    ``interp rm organism build``."""
    from interp.organisms.causal_lm import SHIPPED_ROOT, write_shipped

    src = Path(src)
    if not is_complete(src):
        raise FileNotFoundError(f"{src} is not a built RM organism")
    rec = json.loads((src / INFO_FILE).read_text())
    if "pairs_sha256" not in rec:
        raise InputError(f"{src} predates pair checksums; rebuild it with `interp rm organism build`")
    name = SHIPPED_RM.get((rec["variant"], int(rec["seed"])))
    if name is None:
        raise InputError(f"no shipped slot for an RM organism {rec['variant']} seed {rec['seed']}; slots: "
                         f"{sorted(SHIPPED_RM)}")
    return write_shipped(SHIPPED_ROOT / name, [f for f in (src / MODEL_DIR).iterdir() if f.is_file()]
                         + [src / INFO_FILE])


class RMPairsMismatch(InterpError, ValueError):
    """The BBQ files at hand draw other pairs than the shipped RM organism was trained and measured on."""


def unpack_shipped_rm(shipped: str | os.PathLike, out: str | os.PathLike, bbq_dir: str | os.PathLike | None = None,
                      items: Sequence[BBQItem] | None = None) -> Path:
    """Make a complete RM organism folder at ``out`` from a shipped one: its model files, and its pairs drawn
    again from BBQ and checked against the sha256 the build recorded. Nothing is trained."""
    from interp.organisms.causal_lm import SUMS_FILE
    from interp.paths import check_out_dir, staged_dir

    shipped, out = Path(shipped), Path(out)
    rec = json.loads((shipped / INFO_FILE).read_text())
    check_out_dir(out, is_complete, "an RM organism")
    if items is None:
        from interp.data.bbq import load_bbq

        items, _ = load_bbq(bbq_dir)
    pairs = rm_pairs(items, RMOrganismConfig(**rec["config"]), int(rec["seed"]))
    got, want = pairs.sha256(), rec["pairs_sha256"]
    for part in ("train", "val", "test"):
        if got[part] != want[part]:
            raise RMPairsMismatch(f"the BBQ files here draw other {part} pairs than the shipped RM organism "
                                  f"{shipped.name} was built from (sha256 {got[part][:12]} vs {want[part][:12]}); "
                                  f"build one from them: interp rm organism build")
    with staged_dir(out, is_complete, "an RM organism") as tmp:
        (tmp / MODEL_DIR).mkdir(parents=True)
        for f in sorted(shipped.iterdir()):
            if f.is_file() and f.name not in (INFO_FILE, SUMS_FILE):
                shutil.copy2(f, tmp / MODEL_DIR / f.name)
        pairs.save(tmp)
        (tmp / INFO_FILE).write_text(json.dumps({**rec, "shipped": shipped.name}, indent=1))
    return out


def ensure_rm_organism(small: bool = False, seed: int = 0, bbq_dir: str | os.PathLike | None = None,
                       progress: bool = True) -> Path:
    """The RM organism's folder: the shipped one (variant, seed 0) unpacked once under
    ``interp.paths.home()/rm-organism/shipped-<name>-<checksum>``, else the cached build, built on first use
    (concurrent callers wait on a lock)."""
    from filelock import FileLock

    from interp.data.download import sha256

    shipped = shipped_rm_dir(small, seed)
    if shipped is not None:
        from interp.paths import home

        out = home() / "rm-organism" / f"shipped-{shipped.name}-{sha256(shipped / 'SHA256SUMS')[:12]}"
    else:
        out = default_rm_organism_dir(small, seed)
    if is_complete(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f".{out.name}.lock")):
        if not is_complete(out):
            if shipped is not None:
                unpack_shipped_rm(shipped, out, bbq_dir)
            else:
                build_rm_organism(out, small=small, seed=seed, bbq_dir=bbq_dir, progress=progress)
    return out


def load_rm_organism_data(path: str | os.PathLike) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(validation pairs, test pairs) of a built RM organism."""
    p = Path(path)
    if not is_complete(p):
        raise FileNotFoundError(f"{p} is not a built RM organism (run `interp rm organism build`)")
    return load_preferences(p / VAL_FILE), load_preferences(p / TEST_FILE)
