"""Shipped BBQ readers: a LoRA adapter that ships inside the package (``interp/organisms/weights/<name>``,
checksums verified) for a built-in real model, merged into that model once, at
``$INTERP_HOME/models/<name>-<sha16 of its SHA256SUMS>``. The merged folder is a plain causal-LM folder, so
``--model smollm2-bbq`` works on every backend, in GRPO (whose adapters then compare against the reader) and in
the fingerprint rule, as any folder does. How a reader is built: ``interp.organisms.reader``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from interp.data.download import sha256
from interp.errors import InterpError
from interp.models.shipped import SHIPPED_ROOT, SUMS_FILE, verify_checksums

SHIPPED_READERS = {"smollm2-bbq": "smollm2"}  # shipped reader -> the built-in model it was trained on
BASE_RECORD = "interp_base.json"  # the adapter's base weights fingerprint (as rl/train.py writes it)
RECORD_FILE = "reader.json"  # its training record
MERGED_RECORD = "interp_reader.json"  # in the merged folder: which reader, onto which base


class ReaderMergeError(InterpError, ValueError):
    """A shipped reader that is not shipped, fails its checksums, or was trained on other base weights."""


def shipped_reader_dir(name: str) -> Path:
    """The package folder of a shipped reader, its checksums verified."""
    if name not in SHIPPED_READERS:
        raise ReaderMergeError(f"unknown reader {name!r}; shipped: {', '.join(SHIPPED_READERS)}")
    src = SHIPPED_ROOT / name
    verify_checksums(src)
    return src


def _is_merged(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / MERGED_RECORD).is_file() and (p / "config.json").is_file()


def merge_reader(src: str | os.PathLike, out: str | os.PathLike, base_dir: str | os.PathLike) -> Path:
    """Merge the reader adapter at ``src`` into the model at ``base_dir`` (whose weights fingerprint must be the
    one the adapter records) and publish the merged model, its tokenizer, the training record and
    ``interp_reader.json`` at ``out`` (staged, then renamed)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.models.fingerprint import fingerprint
    from interp.paths import staged_dir

    src, base_dir = Path(src), Path(base_dir)
    want = json.loads((src / BASE_RECORD).read_text())["weights_hash"]
    have = fingerprint(base_dir)
    if want != have:
        raise ReaderMergeError(f"reader {src.name} was trained on base weights {want}, but {base_dir} has {have}")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, src).merge_and_unload()
    tok = AutoTokenizer.from_pretrained(base_dir)
    with staged_dir(out, _is_merged, "a merged reader") as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if (src / RECORD_FILE).is_file():
            (tmp / RECORD_FILE).write_text((src / RECORD_FILE).read_text())
        (tmp / MERGED_RECORD).write_text(json.dumps({
            "reader": src.name, "base": str(base_dir), "base_weights_hash": have,
            "adapter_sha256": sha256(src / "adapter_model.safetensors")}, indent=1))
    return Path(out)


def ensure_reader(name: str = "smollm2-bbq") -> Path:
    """The merged folder of a shipped reader, merged on first use (its base installed first if need be;
    concurrent callers wait on a file lock)."""
    from filelock import FileLock

    from interp.models import builtin
    from interp.models.gguf import models_root

    src = shipped_reader_dir(name)
    out = models_root() / f"{name}-{sha256(src / SUMS_FILE)[:16]}"
    if _is_merged(out):
        return out
    base = builtin.ensure(SHIPPED_READERS[name])
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f".{out.name}.lock")):
        if not _is_merged(out):
            merge_reader(src, out, base)
    return out
