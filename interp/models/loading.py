"""Load a Hugging Face causal LM (by hub name, local path, or the built-in organism) with an optional
PEFT adapter. Remote code is never trusted unless asked for."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import InterpError
from interp.models.fingerprint import WEIGHT_SUFFIXES, attach_fingerprint, fingerprint, weights_hash  # noqa: F401
from interp.models.shipped import SHIPPED_NAMES as ORGANISM_NAMES
from interp.models.precision import MIXED


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
    """'auto' is cuda when a GPU is visible, else cpu; a device that is not there is refused by name."""
    if device and device != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ModelLoadError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} asked for, but no CUDA GPU is visible (use --device cpu or auto)")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) are "
                                 "visible")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# below this much float32 weight (about 25M parameters), a forward on the CPU is Python overhead, not arithmetic,
# so bf16 would change the numbers and buy no time (docs/models.md)
CPU_BF16_MIN_BYTES = 100 * 2**20
_CPU_BF16: list[bool] = []


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo);
    ``$INTERP_CPU_BF16`` = 1 / 0 overrides. False where the flags cannot be read."""
    env = os.environ.get("INTERP_CPU_BF16")
    if env in ("0", "1"):
        return env == "1"
    if not _CPU_BF16:
        try:
            flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:
            flags = set()
        _CPU_BF16.append(bool(flags & {"avx512_bf16", "amx_bf16"}))
    return _CPU_BF16[0]


def _weight_bytes(path: str | None) -> int | None:
    """Total size of a local model folder's weight files; None for a hub id or an unknown path."""
    if not path or not Path(path).is_dir():
        return None
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES)
               and not f.name.startswith("adapter_"))


def pick_dtype(dtype: str | None, device: torch.device, model_path: str | None = None) -> torch.dtype:
    """'auto' means bf16 on a GPU that supports it; on a CPU, bf16 where it pays: the CPU multiplies bf16
    natively (``cpu_has_native_bf16``), the model is not tiny (a local folder with at least
    ``CPU_BF16_MIN_BYTES`` of weights, or a hub id) and, for a built-in model, it passed the bf16 guard
    (``BuiltinModel.cpu_bf16``); float32 otherwise."""
    if dtype in (None, "auto"):
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and model_path is not None and cpu_has_native_bf16():
            from interp.models.builtin import spec_of_folder

            size = _weight_bytes(model_path)
            known = spec_of_folder(model_path) if size is not None else None
            if (size is None or size >= CPU_BF16_MIN_BYTES) and (known is None or known.cpu_bf16):
                return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, **{m: torch.bfloat16 for m in MIXED_NAMES}}
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of {sorted(table)} or 'auto'")
    return table[dtype]


MIXED_NAMES = (MIXED, "bf16-mixed")


def wants_mixed(dtype: str | None, torch_dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a load computes in mixed bf16 (``interp.models.precision``): asked for by name, or 'auto' chose
    bfloat16 on a CPU (pure bf16 fails the guard there: docs/models.md)."""
    if dtype in MIXED_NAMES:
        return True
    return dtype in (None, "auto") and torch_dtype == torch.bfloat16 and device.type == "cpu"


def resolve_model_path(name: str) -> str:
    """The local folder or hub id behind a model name:

    - 'organism' / 'organism-small' / 'organism-small-control': the shipped organisms (checksums verified;
      ``$INTERP_ORGANISM_DIR`` overrides);
    - a built-in real model ('smollm2', 'qwen2.5-coder-0.5b'): its installed folder, installed on first use;
    - a shipped BBQ reader ('smollm2-bbq'): the reader merged into its base, merged on first use;
    - a ``.gguf`` file: its converted safetensors folder, converted on first use;
    - anything else passes through to ``from_pretrained`` (a hub id such as Qwen/Qwen2.5-3B-Instruct, or a
      local folder)."""
    if name in ORGANISM_NAMES:
        from interp.models.shipped import organism_dir

        return str(organism_dir(name))
    from interp.models import builtin, gguf

    if name in builtin.BUILTIN:
        return str(builtin.ensure(name))
    from interp.models.readers import SHIPPED_READERS, ensure_reader

    if name in SHIPPED_READERS:
        return str(ensure_reader(name))
    if str(name).lower().endswith(".gguf") or gguf.is_gguf(name):
        return str(gguf.gguf_folder(name))
    return name


class ModelLoadError(InterpError, ValueError):
    """A model (or adapter) that is not there, is corrupt, or is not a causal LM."""


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def check_model_path(path: str) -> None:
    """Refuse at once what cannot be a model: a path that does not exist (anything that looks like a path:
    absolute, ./, ../, ~, or more than one '/'), a folder without config.json, or a sequence-classification
    model where a causal LM is wanted."""
    p = Path(path).expanduser()
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1 or p.exists()
    if looks_local and not p.exists():
        raise ModelLoadError(f"no model at {path}: the folder does not exist")
    if p.is_file():
        raise ModelLoadError(f"{path} is a file, not a model: give the folder that holds its config.json, "
                             f"or a .gguf file")
    if p.is_dir():
        cfg = p / "config.json"
        if not cfg.is_file():
            raise ModelLoadError(f"{path} is not a model folder (no config.json)")
        try:
            archs = json.loads(cfg.read_text()).get("architectures") or []
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"{cfg} is not valid JSON ({e})") from None
        if archs and all(a.endswith(("ForSequenceClassification", "ForTokenClassification")) for a in archs):
            raise ModelLoadError(f"{path} is a {archs[0]}, not a causal LM (reward models go to `interp rm`)")


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
    try:
        cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"adapter {adapter}: adapter_config.json is not valid JSON ({e})") from None
    base = cfg.get("base_model_name_or_path")
    rec = Path(adapter) / "interp_base.json"
    want = None
    if rec.exists():
        try:
            want = json.loads(rec.read_text()).get("weights_hash")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ModelLoadError(f"adapter {adapter}: interp_base.json is not a base record (JSON with "
                                 f"weights_hash): {e}") from None
    elif base and model is not None and Path(str(base)).is_dir():
        try:  # a plain PEFT adapter whose base folder is here: match by the weights fingerprint, not the name
            want = fingerprint(base)
        except FileNotFoundError:
            want = None
    have = weights_hash(model) if model is not None and want else None
    if want and (rec.exists() or want.split(":")[0] == have.split(":")[0]):  # comparable fingerprints
        if model is not None and want != have:
            raise ModelLoadError(
                f"adapter {adapter} was trained on a base with weights hash {want}, "
                f"but {model_path} has {have}"
            )
    elif base and model_path and Path(str(base)).name != Path(str(model_path)).name:
        raise ModelLoadError(f"adapter {adapter} was trained for base {base!r}, not {model_path!r}")
    if not any((Path(adapter) / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise ModelLoadError(f"adapter {adapter} has no weights (adapter_model.safetensors or adapter_model.bin); "
                             "the folder is incomplete")


def load_model(
    name: str,
    adapter: str | None = None,
    device: str | None = None,
    dtype: str | None = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    mixed_ok: bool = True,
) -> LoadedModel:
    """Load a causal LM and its tokenizer; attach a PEFT adapter when given (switchable with
    ``model.disable_adapter()``). ``device_map='auto'`` spreads a model too large for one GPU. Where 'auto' picks
    bfloat16 on a CPU the model computes in mixed bf16 (``interp.models.precision``); a caller that cannot run it
    (``mixed_ok=False``: the TransformerLens bridge) gets float32 there instead."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    dev = pick_device(device)
    check_model_path(path)
    torch_dtype = pick_dtype(dtype, dev, path)
    mixed = wants_mixed(dtype, torch_dtype, dev)
    if mixed and dev.type != "cpu":
        raise ModelLoadError(f"--dtype {dtype} is a CPU precision; on {dev} use bfloat16 or auto")
    if mixed and not mixed_ok:
        if dtype in MIXED_NAMES:
            raise ModelLoadError(f"--dtype {dtype} cannot run on the transformer_lens backend (its bridge runs "
                                 "outside the model's forward); use float32 or bfloat16 there")
        mixed, torch_dtype = False, torch.float32
    kw = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code)
    if device_map:
        kw["device_map"] = device_map
    try:
        tok = load_tokenizer(path, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, **kw)
    except Exception as e:  # a corrupt or truncated file, an unknown architecture, no hub access
        raise ModelLoadError(f"cannot load model {name!r} from {path}: {_first_line(e)}") from None
    attach_fingerprint(model, path)
    if not device_map:
        model = model.to(dev)
    if mixed:
        from interp.models.precision import use_mixed_bf16

        use_mixed_bf16(model)
    if adapter:
        from peft import PeftModel

        check_adapter_base(adapter, path, model)
        try:
            model = PeftModel.from_pretrained(model, adapter)
        except Exception as e:  # a corrupt adapter file, or one for other modules
            raise ModelLoadError(f"cannot load adapter {adapter}: {_first_line(e)}") from None
    model.eval()
    return LoadedModel(model=model, tokenizer=tok, name=name, adapter=adapter)
