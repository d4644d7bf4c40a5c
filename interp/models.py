"""Load a Hugging Face causal LM (by hub name, local path, or the built-in organism) with an optional
PEFT adapter. Remote code is never trusted unless asked for."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

ORGANISM_NAMES = ("organism", "organism-small")


@dataclass
class LoadedModel:
    """A model ready for evaluation, with what is needed to cite it."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    adapter: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """'auto' means bf16 on a GPU that supports it, else float32."""
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(table)} or 'auto'")
    return table[dtype]


def resolve_model_path(name: str) -> str:
    """'organism' / 'organism-small' resolve to the built-in organism (built on first use); other names
    pass through to ``from_pretrained`` (a hub id such as Qwen/Qwen2.5-3B-Instruct, or a local folder)."""
    if name in ORGANISM_NAMES:
        from interp.organism import ensure_organism

        return str(ensure_organism(small=name == "organism-small"))
    return name


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tok.padding_side = "left"  # the answer is decided at the last prompt position
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def check_adapter_base(adapter: str | os.PathLike, model_path: str, model: torch.nn.Module | None = None) -> None:
    """Refuse an adapter trained for another base: compare its recorded base name and, when the model is
    given, its target modules' shapes. Raises ValueError naming both."""
    cfg_file = Path(adapter) / "adapter_config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")
    cfg = json.loads(cfg_file.read_text())
    base = cfg.get("base_model_name_or_path")
    rec = Path(adapter) / "interp_base.json"
    if rec.exists():
        want = json.loads(rec.read_text()).get("weights_hash")
        if model is not None and want and want != weights_hash(model):
            raise ValueError(
                f"adapter {adapter} was trained on a base with weights hash {want}, "
                f"but {model_path} has {weights_hash(model)}"
            )
    elif base and model_path and Path(str(base)).name != Path(str(model_path)).name:
        raise ValueError(f"adapter {adapter} was trained for base {base!r}, not {model_path!r}")


def weights_hash(model: torch.nn.Module, n_tensors: int = 8) -> str:
    """A cheap content hash of a model's weights (names, shapes and the first tensors' bytes).

    Values are rounded to bfloat16 first, so the same checkpoint loaded in float32 or bfloat16 hashes alike."""
    h = hashlib.sha256()
    for i, (name, p) in enumerate(sorted(model.state_dict().items())):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        if i < n_tensors and "lora" not in name:
            h.update(p.detach().flatten()[:4096].to(torch.bfloat16).float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_model(
    name: str,
    adapter: str | None = None,
    device: str | None = None,
    dtype: str | None = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer; attach a PEFT adapter when given (switchable with
    ``model.disable_adapter()``). ``device_map='auto'`` spreads a model too large for one GPU."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    tok = load_tokenizer(path, trust_remote_code)
    kw = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code)
    if device_map:
        kw["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(path, **kw)
    if not device_map:
        model = model.to(dev)
    if adapter:
        from peft import PeftModel

        check_adapter_base(adapter, path, model)
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return LoadedModel(model=model, tokenizer=tok, name=name, adapter=adapter)
