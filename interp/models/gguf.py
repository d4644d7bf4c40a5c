"""GGUF files as models: dequantize once, through transformers' GGUF support, into a safetensors folder.

A GGUF file is a quantized checkpoint. Every other part of the toolkit (the three backends, PEFT, the
fingerprint rule) wants a plain Hugging Face folder, so a GGUF file is converted once into
``$INTERP_HOME/models/gguf-<sha256[:16]>`` (float32 weights, the tokenizer and its chat template) and that
folder is the model from then on. The folder is published by rename only when complete, with a record
(``interp_model.json``) of the file it came from.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from interp.errors import InterpError
from interp.paths import home, staged_dir

GGUF_MAGIC = b"GGUF"
RECORD = "interp_model.json"
Progress = Callable[[str], None]


class GGUFError(InterpError, ValueError):
    """A file that is not a GGUF model, or a conversion that failed or had no room."""


def is_gguf(path: str | os.PathLike) -> bool:
    """True for an existing file that starts with the GGUF magic bytes."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(4) == GGUF_MAGIC


def models_root() -> Path:
    """Where converted and installed real models live: ``$INTERP_HOME/models``."""
    return home() / "models"


def has_record(folder: Path) -> bool:
    """A folder this module wrote (a converted model with its record)."""
    return (Path(folder) / RECORD).is_file()


def read_record(folder: str | os.PathLike) -> dict:
    """The conversion record of a converted model folder (empty when it has none or it is unreadable)."""
    try:
        return json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _need_space(where: Path, nbytes: int, what: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if free < nbytes:
        raise GGUFError(f"{what} needs about {nbytes / 2**30:.1f} GiB under {where}, but only "
                        f"{free / 2**30:.1f} GiB is free (set INTERP_HOME elsewhere)")


def convert_gguf(gguf_file: str | os.PathLike, out: str | os.PathLike, record: dict | None = None,
                 progress: Progress | None = None) -> Path:
    """Dequantize ``gguf_file`` into a safetensors model folder at ``out`` (float32, with its tokenizer).

    Written into a hidden sibling and renamed into place only when complete, so a failed or killed conversion
    leaves no folder at ``out``. ``record`` is stored beside the weights as ``interp_model.json``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_file).resolve()
    if not is_gguf(src):
        raise GGUFError(f"{gguf_file} is not a GGUF file (it does not start with the GGUF magic bytes)")
    out = Path(out)
    # float32 weights take up to ~8x the 4-bit file; ask for that much room before starting
    _need_space(out.parent, 8 * src.stat().st_size, f"converting {src.name}")
    if progress:
        progress(f"converting {src.name} ({src.stat().st_size / 1e6:.0f} MB) to a safetensors folder at {out}")
    with staged_dir(out, has_record, "a converted GGUF model") as tmp:
        try:
            tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
            model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        except Exception as e:  # an architecture transformers cannot read from GGUF, a truncated file
            raise GGUFError(f"transformers cannot load {src.name}: {type(e).__name__}: {str(e).splitlines()[0]}") \
                from None
        # the weights are plain float32 tensors now; drop the quantizer record that blocks save_pretrained
        model.hf_quantizer = None
        model.is_quantized = False
        try:
            del model.config.quantization_config
        except AttributeError:  # no quantizer record to drop
            pass
        tmp.mkdir()
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        import gguf
        import transformers

        rec = dict(record or {})
        rec.update(source_file=src.name, architecture=type(model).__name__,
                   n_layers=model.config.num_hidden_layers, d_model=model.config.hidden_size, dtype="float32",
                   converted_with={"transformers": transformers.__version__,
                                   "gguf": getattr(gguf, "__version__", "unknown")})
        (tmp / RECORD).write_text(json.dumps(rec, indent=1) + "\n")
    return out


def gguf_folder(gguf_file: str | os.PathLike, progress: Progress | None = None) -> Path:
    """The converted folder of a GGUF file, converting it on first use (keyed by the file's sha256, so a
    changed file is converted anew and a renamed one is not)."""
    from interp.data.download import sha256

    src = Path(gguf_file).expanduser()
    if not src.is_file():
        raise GGUFError(f"no GGUF file at {gguf_file}")
    if not is_gguf(src):
        raise GGUFError(f"{gguf_file} is not a GGUF file (it does not start with the GGUF magic bytes)")
    from filelock import FileLock

    digest = sha256(src)
    out = models_root() / f"gguf-{digest[:16]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f".{out.name}.lock")):  # one conversion at a time; the others then reuse it
        if has_record(out) and read_record(out).get("gguf_sha256") == digest:
            return out
        return convert_gguf(src, out, record={"gguf_sha256": digest}, progress=progress)
