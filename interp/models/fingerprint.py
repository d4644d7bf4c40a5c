"""The weights fingerprint: models are matched by a hash of all their weights, never by name. ``fingerprint`` reads
a model's files; ``attach_fingerprint`` records it on a loaded model; ``weights_hash`` reads it back (or hashes the
tensors in memory)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")
_FP_CACHE: dict[tuple, str] = {}


def _local_model_dir(name_or_path: str) -> Path | None:
    """The local folder of a model: the path itself, or a hub model's snapshot (cached, else downloaded as
    ``from_pretrained`` would; the snapshot folder is named by its commit hash)."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download, try_to_load_from_cache

        hit = try_to_load_from_cache(str(name_or_path), "config.json")
        if isinstance(hit, str):
            return Path(hit).parent
        return Path(snapshot_download(str(name_or_path)))
    except Exception:  # not a repo id, offline, or no such repo
        return None


def fingerprint(name_or_path: str | os.PathLike) -> str:
    """The fingerprint of a model's weights, read from its files: sha256 over every weight file's name and
    streamed sha256 (``*.safetensors``, or the raw bytes of ``.bin`` files, never unpickled), in name order. So any
    change to any tensor changes it, and it can be checked without loading the model. A hub model is read
    from its cached snapshot (whose commit hash names those files). Cached per file size and mtime."""
    d = _local_model_dir(str(name_or_path))
    if d is None:
        raise FileNotFoundError(f"no local files for model {name_or_path!r}: not a folder, and not in the hub cache")
    files = sorted(f for f in d.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES)
                   and not f.name.startswith(("adapter_", "training_", "optimizer", "scheduler", "rng_state")))
    if not files:
        raise FileNotFoundError(f"{d} holds no weight files (*.safetensors or *.bin)")
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _FP_CACHE:
        from interp.data.download import sha256

        h = hashlib.sha256("".join(f"{f.name}\0{sha256(f)}\n" for f in files).encode())
        _FP_CACHE[key] = "sha256:" + h.hexdigest()[:32]
    return _FP_CACHE[key]


def _base_module(model: torch.nn.Module) -> torch.nn.Module:
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def attach_fingerprint(model: torch.nn.Module, name_or_path: str | os.PathLike) -> torch.nn.Module:
    """Record the fingerprint of the files a model was loaded from on the model (``weights_hash`` reads it)."""
    _base_module(model)._interp_fingerprint = fingerprint(name_or_path)
    return model


def weights_hash(model: torch.nn.Module) -> str:
    """The model's weights fingerprint: that of the files it was loaded from (``fingerprint``, attached by
    ``load_model``), else a sha256 of every tensor in memory (LoRA layers left out, values rounded to bfloat16
    so float32 and bfloat16 copies of one model agree)."""
    base = _base_module(model)
    fp = getattr(base, "_interp_fingerprint", None)
    if fp:
        return fp
    h = hashlib.sha256()
    for name, p in sorted(base.state_dict().items()):
        if "lora_" in name:
            continue
        h.update(name.encode() + str(tuple(p.shape)).encode())
        h.update(p.detach().to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
    return "tensors:" + h.hexdigest()[:32]
