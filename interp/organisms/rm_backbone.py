"""A Bradley-Terry reward model on a pretrained backbone (SmolLM2-135M-Instruct): LoRA on the top K decoder
layers plus a fresh score head, trained on the RM organism's pairs (``interp.organisms.rm.rm_pairs``: the same
BBQ-derived pairs, planted decorations and rates).

Cheap on a CPU: the frozen bottom ``L - K`` layers run once per training sequence (no grad, right padding, so
positions equal the unpadded ones); their output, the input of layer ``L - K`` (float32, trimmed to the real
tokens), is cached, and training runs only ``layers[L-K:]``, the final norm and the score head on the cached
states, reading the last real token: the token ``interp.rm.scoring.score`` reads on the merged model
(the rendered chat text ends with ``<|im_end|>\\n``, so the rightmost non-pad token is that ``\\n``).

K and the learning rate are chosen on validation pairs (``choose_recipe``: lowest validation BT loss), never
on test. The shipped result is the LoRA weights and the score head (``adapter.safetensors``,
``score.safetensors``) with ``manifest.json`` (sha256 of each file, the backbone's weights fingerprint, the
recipe, the pair checksums); ``ensure_backbone_rm`` merges them onto the installed backbone once, into
``$INTERP_HOME/models/rm-smollm2-<sha16>``, an ordinary ``AutoModelForSequenceClassification`` folder.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from interp.data.download import first_mismatch, sha256
from interp.errors import InterpError
from interp.models.layer_cache import advance_states, base_of, cache_states, decoder_of, only_layers, right_pad
from interp.organisms.rm import RMOrganismConfig, _encode, bt_loss, rm_pairs

ADAPTER_FILE, HEAD_FILE, MANIFEST_FILE = "adapter.safetensors", "score.safetensors", "manifest.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SHIPPED_BACKBONE_RMS = {"rm-smollm2": "smollm2"}  # shipped name -> built-in backbone
FORMAT_VERSION = 1


class BackboneRMError(InterpError, ValueError):
    """A backbone RM folder that is incomplete, tampered with, or made for another backbone."""


@dataclass
class BackboneRMConfig:
    """Pairs (as the RM organism draws them), the recipe grid and the training settings of a backbone RM."""

    backbone: str = "smollm2"
    n_train_pairs: int = 256
    n_val_pairs: int = 80
    n_test_per_split: int = 200
    p_active: float = 0.5
    p_chosen_train: float = 0.9
    max_pad: int = 3
    grid_k: tuple[int, ...] = (2, 4)
    grid_lr: tuple[float, ...] = (3e-4, 1e-3)
    epochs: int = 2
    batch_size: int = 16
    lora_r: int = 16
    lora_alpha: int = 32
    weight_decay: float = 0.0
    max_length: int = 1024
    threads: int = 2
    categories: list[str] = field(default_factory=list)

    def pairs_config(self) -> RMOrganismConfig:
        """The RM organism config that draws this build's pairs (single stage: no planted neurons)."""
        return RMOrganismConfig(n_train_pairs=self.n_train_pairs, n_val_pairs=self.n_val_pairs,
                                n_test_per_split=self.n_test_per_split, p_active=self.p_active,
                                p_chosen_train=self.p_chosen_train, max_pad=self.max_pad,
                                max_length=self.max_length, categories=list(self.categories), planted_neurons=0)


# ----------------------------------------------------------------------------------------------
# the model and its cached path


def load_backbone(folder: str | os.PathLike, seed: int = 0):
    """(LlamaForSequenceClassification float32 with one output and a seeded fresh score head, tokenizer)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


def _head(model) -> torch.nn.Module:
    return base_of(model).score


def top_rewards(model, states: Sequence[torch.Tensor], lo: int) -> torch.Tensor:
    """Rewards ``# [batch]`` from hidden states entering layer ``lo``: ``layers[lo:]``, the final norm and the
    score head at each sequence's last real token (gradients flow when enabled)."""
    x, mask = right_pad(states)
    with only_layers(model, lo) as dec:
        h = dec(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state  # [batch, T, d]
    last = mask.sum(1) - 1  # [batch]
    return _head(model)(h[torch.arange(len(states)), last])[:, 0]


def add_lora(model, k: int, cfg: BackboneRMConfig):
    """LoRA (rank ``cfg.lora_r``, every linear module) on the top ``k`` decoder layers; the score head is
    trained whole; every other weight is frozen. Returns the PEFT model."""
    from peft import LoraConfig, get_peft_model

    L = len(decoder_of(model).layers)
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=list(LORA_TARGETS),
                      layers_to_transform=list(range(L - k, L)), layers_pattern="layers", bias="none")
    pm = get_peft_model(model, lcfg)
    _head(pm).weight.requires_grad_(True)
    return pm


def lora_config_dict(k: int, n_layers: int, cfg: BackboneRMConfig) -> dict:
    """The LoRA settings a manifest records (enough to rebuild the adapter for merging)."""
    return {"r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "target_modules": list(LORA_TARGETS),
            "layers_to_transform": list(range(n_layers - k, n_layers))}


def _trainable_state(pm) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LoRA weights by PEFT's state-dict names, score head) as contiguous float32 CPU tensors."""
    from peft import get_peft_model_state_dict

    lora = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(pm).items()
            if "lora_" in k}
    return lora, {"weight": _head(pm).weight.detach().float().cpu().contiguous()}


@torch.no_grad()
def _eval_pairs(pm, ch: Sequence[torch.Tensor], rj: Sequence[torch.Tensor], lo: int, batch_size: int) -> dict:
    """Mean BT loss and pairwise accuracy (ties one half) of cached pairs."""
    pm.eval()
    rc, rr = [], []
    for s in range(0, len(ch), batch_size):
        rc.append(top_rewards(pm, ch[s:s + batch_size], lo))
        rr.append(top_rewards(pm, rj[s:s + batch_size], lo))
    c, r = torch.cat(rc), torch.cat(rr)
    return {"loss": round(float(bt_loss(c, r)), 4),
            "acc": round(float(((c > r).float() + 0.5 * (c == r).float()).mean()), 4)}


def train_top(pm, ch: Sequence[torch.Tensor], rj: Sequence[torch.Tensor], lo: int, lr: float, cfg: BackboneRMConfig,
              seed: int = 0, val: tuple | None = None, progress: bool = True, desc: str = "training") -> list[dict]:
    """BT training of the trainable parameters on cached pairs (AdamW, linear warm-up and decay); one log row
    per epoch, with the validation loss and accuracy when ``val`` = (chosen states, rejected states)."""
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    spe = math.ceil(len(ch) / cfg.batch_size)
    total = spe * cfg.epochs
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / total))
    rng = random.Random(f"backbone-train:{seed}:{desc}")
    order = list(range(len(ch)))
    log = []
    bar = tqdm(total=total, desc=desc, disable=not progress)
    for epoch in range(cfg.epochs):
        pm.train()
        rng.shuffle(order)
        run_loss, run_acc = 0.0, 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            r = top_rewards(pm, [ch[i] for i in idx] + [rj[i] for i in idx], lo)  # [2 * batch]
            rc, rr = r[: len(idx)], r[len(idx):]
            loss = bt_loss(rc, rr)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            run_loss += float(loss.detach()) * len(idx)
            run_acc += float((rc > rr).float().sum())
            bar.update(1)
        row = {"epoch": epoch, "train_loss": round(run_loss / len(ch), 4), "train_acc": round(run_acc / len(ch), 4)}
        if val is not None:
            v = _eval_pairs(pm, val[0], val[1], lo, cfg.batch_size)
            row.update({"val_loss": v["loss"], "val_acc": v["acc"]})
        log.append(row)
        bar.set_postfix(row)
    bar.close()
    pm.eval()
    return log


def choose_recipe(grid: Sequence[dict]) -> dict:
    """The decision rule (docs/rm.md, fixed before the build): the grid entry with the lowest validation BT
    loss after its last epoch; a tie (within 0.001) goes to the higher validation accuracy, then the smaller
    K, then the smaller learning rate."""
    if not grid:
        raise BackboneRMError("empty recipe grid")
    best = min(r["val_loss"] for r in grid)
    tied = [r for r in grid if r["val_loss"] <= best + 1e-3]
    return sorted(tied, key=lambda r: (-r["val_acc"], r["k"], r["lr"]))[0]


# ----------------------------------------------------------------------------------------------
# the build


def default_backbone_rm_dir(backbone: str = "smollm2", seed: int = 0) -> Path:
    """``interp.paths.home()/rm-backbone/{backbone}-seed{seed}``."""
    from interp.paths import home

    return home() / "rm-backbone" / f"{backbone}-seed{seed}"


def is_built(path: str | os.PathLike) -> bool:
    """True when a folder holds a finished backbone RM (adapter, head and manifest of this format)."""
    p = Path(path)
    if not all((p / f).is_file() for f in (ADAPTER_FILE, HEAD_FILE, MANIFEST_FILE)):
        return False
    try:
        return json.loads((p / MANIFEST_FILE).read_text()).get("format_version") == FORMAT_VERSION
    except (OSError, ValueError):
        return False


def build_backbone_rm(out_dir: str | os.PathLike, cfg: BackboneRMConfig | None = None, seed: int = 0,
                      bbq_dir: str | os.PathLike | None = None, items=None, backbone_dir: str | os.PathLike | None = None,
                      work_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Draw the pairs, cache the frozen bottom layers, train every (K, lr) of the grid on the train pairs,
    keep the one ``choose_recipe`` picks on validation, and write adapter, head and manifest to ``out_dir``
    (staged, then renamed). Finished grid entries are kept in ``work_dir`` (default ``<out>.work``), so a
    killed build resumes from them; it is removed once the build is published."""
    import shutil

    from safetensors.torch import load_file, save_file

    from interp.models.loading import fingerprint, resolve_model_path
    from interp.paths import check_out_dir, staged_dir

    t0 = time.time()
    cfg = cfg or BackboneRMConfig()
    out = check_out_dir(out_dir, is_built, "a backbone RM")
    work = Path(work_dir) if work_dir else out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(cfg.threads, os.cpu_count() or 1)))
    try:
        folder = Path(backbone_dir) if backbone_dir else Path(resolve_model_path(cfg.backbone))
        if items is None:
            from interp.data.bbq import load_bbq

            items, _ = load_bbq(bbq_dir)
        pairs = rm_pairs(items, cfg.pairs_config(), seed)
        model, tok = load_backbone(folder, seed)
        L = len(decoder_of(model).layers)
        if max(cfg.grid_k) > L or min(cfg.grid_k) < 1:
            raise BackboneRMError(f"grid K {cfg.grid_k} outside 1..{L} layers")
        tr_c, tr_r = _encode(tok, pairs.train, cfg.max_length)
        va_c, va_r = _encode(tok, pairs.val, cfg.max_length)
        t_cache = time.time()
        lo_min = L - max(cfg.grid_k)
        cached = cache_states(model, tr_c + tr_r + va_c + va_r, lo_min, tok.pad_token_id, cfg.batch_size, progress)
        caches = {lo_min: cached}
        cache_s = time.time() - t_cache
        n, m = len(tr_c), len(va_c)
        grid: list[dict] = []
        t_train = time.time()
        for k in sorted(cfg.grid_k, reverse=True):
            lo = L - k
            if lo not in caches:
                caches[lo] = advance_states(model, caches[lo_min], lo_min, lo, cfg.batch_size, progress)
            st = caches[lo]
            for lr in cfg.grid_lr:
                tag = f"k{k}-lr{lr:g}"
                done = work / f"{tag}.json"
                if done.is_file():
                    grid.append(json.loads(done.read_text()))
                    continue
                base, _ = load_backbone(folder, seed)
                pm = add_lora(base, k, cfg)
                t1 = time.time()
                log = train_top(pm, st[:n], st[n:2 * n], lo, lr, cfg, seed, val=(st[2 * n:2 * n + m], st[2 * n + m:]),
                                progress=progress, desc=f"K={k} lr={lr:g}")
                lora, head = _trainable_state(pm)
                save_file(lora, str(work / f"{tag}.adapter.safetensors"))
                save_file(head, str(work / f"{tag}.score.safetensors"))
                row = {"k": k, "lr": lr, "tag": tag, "val_loss": log[-1]["val_loss"], "val_acc": log[-1]["val_acc"],
                       "log": log, "seconds": round(time.time() - t1, 1)}
                tmp = done.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(row, indent=1))
                os.replace(tmp, done)  # the entry counts as done only once its weights are written
                grid.append(row)
                del pm, base
        train_s = time.time() - t_train
        best = choose_recipe(grid)
        manifest = {
            "format_version": FORMAT_VERSION,
            "backbone": cfg.backbone,
            "backbone_fingerprint": fingerprint(folder),
            "seed": seed,
            "config": asdict(cfg),
            "n_layers": L,
            "k": best["k"], "lr": best["lr"],
            "lora": lora_config_dict(best["k"], L, cfg),
            "grid": [{k: v for k, v in r.items()} for r in grid],
            "decision_rule": "lowest validation BT loss after the last epoch (ties within 0.001: higher "
                             "validation accuracy, then smaller K, then smaller lr)",
            "split_hash": pairs.split_hash,
            "n_pairs": {"train": len(pairs.train), "val": len(pairs.val), "test": len(pairs.test)},
            "pairs_sha256": pairs.sha256(),
            "cache_seconds": round(cache_s, 1),
            "train_seconds": round(train_s, 1),
        }
        with staged_dir(out, is_built, "a backbone RM") as tmp:
            manifest["build_seconds"] = round(time.time() - t0, 1)
            write_built(tmp, load_file(str(work / f"{best['tag']}.adapter.safetensors")),
                        load_file(str(work / f"{best['tag']}.score.safetensors")), manifest)
        shutil.rmtree(work, ignore_errors=True)
    finally:
        torch.set_num_threads(prev_threads)
    return out


def write_built(folder: str | os.PathLike, lora: dict[str, torch.Tensor], head: dict[str, torch.Tensor],
                manifest: dict) -> Path:
    """Write adapter, head and manifest (with each file's sha256 under ``files``) into a new folder."""
    from safetensors.torch import save_file

    d = Path(folder)
    d.mkdir(parents=True)
    save_file(lora, str(d / ADAPTER_FILE))
    save_file(head, str(d / HEAD_FILE))
    man = {"format_version": FORMAT_VERSION, **manifest,
           "files": {f: sha256(d / f) for f in (ADAPTER_FILE, HEAD_FILE)}}
    (d / MANIFEST_FILE).write_text(json.dumps(man, indent=1))
    return d


# ----------------------------------------------------------------------------------------------
# shipping and unpacking


def shipped_backbone_dir(name: str = "rm-smollm2") -> Path:
    """The package folder of a shipped backbone RM (``interp/organisms/weights/<name>``)."""
    from interp.organisms.causal_lm import SHIPPED_ROOT

    if name not in SHIPPED_BACKBONE_RMS:
        raise BackboneRMError(f"unknown backbone RM {name!r}; shipped: {', '.join(SHIPPED_BACKBONE_RMS)}")
    return SHIPPED_ROOT / name


def verify_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a built or shipped backbone RM, after checking every listed file's sha256; a missing,
    changed or foreign file raises BackboneRMError naming it."""
    d = Path(folder)
    try:
        man = json.loads((d / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as e:
        raise BackboneRMError(f"{d} has no readable {MANIFEST_FILE}: not a backbone RM ({e})") from None
    files = man.get("files") or {}
    if set(files) != {ADAPTER_FILE, HEAD_FILE}:
        raise BackboneRMError(f"{d / MANIFEST_FILE} lists {sorted(files)}, not {ADAPTER_FILE} and {HEAD_FILE}")
    bad = first_mismatch(d, files)
    if bad and bad[1] == "missing":
        raise BackboneRMError(f"backbone RM {d.name}: {bad[0]} is missing")
    if bad:
        raise BackboneRMError(f"backbone RM {d.name}: {bad[0]} does not match its sha256 in {MANIFEST_FILE} "
                              f"(tampered or foreign file; refused)")
    return man


def ship_backbone_rm(src: str | os.PathLike, name: str = "rm-smollm2") -> Path:
    """Copy a built backbone RM (adapter, head, manifest; a few MB) into the package as ``name``."""
    import shutil

    src, dest = Path(src), shipped_backbone_dir(name)
    if not is_built(src):
        raise BackboneRMError(f"{src} is not a built backbone RM (interp rm organism build --backbone ...)")
    man = verify_manifest(src)
    if SHIPPED_BACKBONE_RMS[name] != man["backbone"]:
        raise BackboneRMError(f"{src} is built on {man['backbone']}, not {SHIPPED_BACKBONE_RMS[name]}")
    dest.mkdir(parents=True, exist_ok=True)
    for f in (ADAPTER_FILE, HEAD_FILE, MANIFEST_FILE):
        shutil.copy2(src / f, dest / f)
    return dest


def _is_merged(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file() and (path / MANIFEST_FILE).is_file()


def merge_backbone_rm(src: str | os.PathLike, out: str | os.PathLike, backbone_dir: str | os.PathLike | None = None
                      ) -> Path:
    """Merge a built or shipped backbone RM (checked: file sha256s, backbone fingerprint) onto its backbone and
    write an ordinary sequence-classification folder (weights, tokenizer, the manifest) at ``out`` (staged)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from interp.models.loading import fingerprint, resolve_model_path
    from interp.paths import staged_dir

    src = Path(src)
    man = verify_manifest(src)
    folder = Path(backbone_dir) if backbone_dir else Path(resolve_model_path(man["backbone"]))
    fp = fingerprint(folder)
    if fp != man["backbone_fingerprint"]:
        raise BackboneRMError(f"backbone RM {src.name} was trained on weights {man['backbone_fingerprint']}, but "
                              f"{folder} holds {fp}: a foreign backbone, refused")
    cfg = BackboneRMConfig(**{k: (tuple(v) if k in ("grid_k", "grid_lr") else v) for k, v in man["config"].items()})
    model, tok = load_backbone(folder, int(man["seed"]))
    pm = add_lora(model, int(man["k"]), cfg)
    head = load_file(str(src / HEAD_FILE))
    lora = load_file(str(src / ADAPTER_FILE))
    w = _head(pm).weight
    if set(head) != {"weight"} or tuple(head["weight"].shape) != tuple(w.shape):
        raise BackboneRMError(f"{src / HEAD_FILE} holds {({k: tuple(v.shape) for k, v in head.items()})}, not a "
                              f"score head of shape {tuple(w.shape)}: a foreign head, refused")
    res = set_peft_model_state_dict(pm, lora)
    if getattr(res, "unexpected_keys", None):
        raise BackboneRMError(f"{src / ADAPTER_FILE} has tensors this LoRA does not: {res.unexpected_keys[:3]}")
    with torch.no_grad():
        w.copy_(head["weight"])
    merged = pm.merge_and_unload()
    merged.config.pad_token_id = tok.pad_token_id
    with staged_dir(out, _is_merged, "a merged backbone RM") as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / MANIFEST_FILE).write_text((src / MANIFEST_FILE).read_text())
    return Path(out)


def ensure_backbone_rm(name: str = "rm-smollm2", backbone_dir: str | os.PathLike | None = None) -> Path:
    """The merged folder of a shipped backbone RM: ``$INTERP_HOME/models/<name>-<sha16 of its manifest>``,
    merged once (concurrent callers wait on a file lock); loads with ``load_reward_model``."""
    from filelock import FileLock

    from interp.models.gguf import models_root

    src = shipped_backbone_dir(name)
    if not (src / MANIFEST_FILE).is_file():
        raise BackboneRMError(f"backbone RM {name} is not shipped in this package ({src} has no {MANIFEST_FILE})")
    out = models_root() / f"{name}-{sha256(src / MANIFEST_FILE)[:16]}"
    if _is_merged(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f".{out.name}.lock")):
        if not _is_merged(out):
            merge_backbone_rm(src, out, backbone_dir)
    return out
