"""The activation store: contents equal a direct forward, predictions equal `interp eval`, resume after a
crash gives the same file, foreign/corrupt files are refused by name, torchrun shards form one view."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from interp.store.activations import (ActivationStore, CorruptStoreError, ForeignStoreError, IncompleteStoreError,
                                cache_split, stores_equal)
from interp.models.backends import load_hooked
from interp.models.hooks import hook_names
from interp.eval.evaluate import encode_batch, render_prompts
from interp.data.prompts import make_prompt
from interp.models.backends import as_lm

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["hook_resid_post", "mlp.hook_post"]


@pytest.fixture(scope="module")
def hooked(tiny_lm_dir):
    return load_hooked(str(tiny_lm_dir), backend="hf", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def names(hooked):
    return hook_names("all", hooked.n_layers, KINDS)


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, hooked, fixture_items, names):
    """An uninterrupted float32 run over all 64 fixture items, batches of 8."""
    p = tmp_path_factory.mktemp("acts") / "ref.h5"
    return cache_split(hooked, fixture_items, p, names, batch_size=8, dtype="float32", split_hash="abc",
                       progress=False)


class Crash(Exception):
    pass


def test_contents_match_direct_forward_and_eval(reference_store, hooked, fixture_items, names):
    from interp.eval.evaluate import EvalConfig, evaluate_items

    with ActivationStore(reference_store) as s:
        assert s.complete and s.n_items == 64 and s.names == names
        acts = s.layer("blocks.1.hook_resid_post")
        assert acts.shape == (64, hooked.d_model) and acts.dtype == np.float32
        assert s.layer("blocks.0.mlp.hook_post").shape == (64, hooked.d_mlp)
        # rows 20..27 straight from the model, at the last prompt token
        tok = hooked.tokenizer
        enc = encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in fixture_items[16:24]]), "cpu")
        _, direct = hooked.cache(enc, names, -1)
        for n in names:
            np.testing.assert_allclose(s.items(slice(16, 24))[n], direct[n].numpy(), atol=1e-6)
        picked = s.items([40, 3])  # any order
        np.testing.assert_array_equal(picked[names[0]], s.layer(names[0])[[40, 3]])
        layers, stacked = s.stack("hook_resid_post")
        assert layers == [0, 1] and stacked.shape == (64, 2, hooked.d_model)
        meta = s.meta
        assert list(meta.uid) == [it.uid for it in fixture_items]
        meta = meta.iloc[:16]  # the same batches as `interp eval` with batch size 8
        recs = evaluate_items(as_lm(hooked.model, tok), fixture_items[:16], EvalConfig(batch_size=8, progress=False))
        assert list(meta.pred) == [r["pred"] for r in recs]
        np.testing.assert_allclose(meta[["logit_A", "logit_B", "logit_C"]].to_numpy(),
                                   np.array([r["letter_logits"] for r in recs]), atol=1e-4)
        assert list(meta.gold_letter) == [r["gold_letter"] for r in recs]
        assert list(meta.target_letter) == [r["target_letter"] or "" for r in recs]
        assert set(meta.context_condition) == {"ambig", "disambig"}
        for k in ("model", "weights_hash", "adapter_hash", "split_hash", "prompt_template", "toolkit_version",
                  "dtype", "positions"):
            assert k in s.attrs
        assert s.attrs["split_hash"] == "abc" and s.attrs["weights_hash"] == hooked.weights_hash
    with h5py.File(reference_store) as f:  # chunked by batch, uncompressed by default
        ds = f["acts/blocks.0.hook_resid_post"]
        assert ds.chunks == (8, hooked.d_model) and ds.compression is None


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compressed_store_holds_the_same_data(tmp_path, hooked, fixture_items, names, reference_store, compression):
    """The writer thread and the HDF5 filters change the file, not its contents."""
    p = cache_split(hooked, fixture_items, tmp_path / "c.h5", names, batch_size=8, dtype="float32",
                    split_hash="abc", progress=False, compression=compression)
    with h5py.File(p) as f, h5py.File(reference_store) as ref:
        assert f["acts/blocks.0.hook_resid_post"].compression == compression
        for n in names:
            np.testing.assert_array_equal(f[f"acts/{n}"][()], ref[f"acts/{n}"][()])
        np.testing.assert_array_equal(f["meta/pred"][()], ref["meta/pred"][()])


def test_float16_and_several_positions(tmp_path, hooked, fixture_items, names):
    p = cache_split(hooked, fixture_items[:10], tmp_path / "p.h5", names[:2], positions="-1,-3", batch_size=4,
                    dtype="float16", progress=False)
    tok = hooked.tokenizer
    enc = encode_batch(tok, render_prompts(tok, [make_prompt(it) for it in fixture_items[:4]]), "cpu")
    _, direct = hooked.cache(enc, names[:2], [-1, -3])
    with ActivationStore(p) as s:
        a = s.layer(names[0])
        assert a.shape == (10, 2, hooked.d_model) and a.dtype == np.float16
        np.testing.assert_allclose(a[:4].astype(np.float32), direct[names[0]].numpy(), rtol=2e-3, atol=2e-3)


def test_resume_after_simulated_crash_equals_uninterrupted(tmp_path, reference_store, hooked, fixture_items, names):
    out = tmp_path / "crash.h5"

    def boom(k):
        if k == 3:
            raise Crash()

    with pytest.raises(Crash):
        cache_split(hooked, fixture_items, out, names, batch_size=8, dtype="float32", split_hash="abc",
                    progress=False, on_batch=boom)
    with pytest.raises(IncompleteStoreError, match="24/64"):
        ActivationStore(out)
    with ActivationStore(out, allow_partial=True) as s:
        assert s.layer(names[0]).shape[0] == 24
    seen = []
    cache_split(hooked, fixture_items, out, names, batch_size=8, dtype="float32", split_hash="abc", progress=False,
                on_batch=seen.append)
    assert seen == [4, 5, 6, 7, 8]  # continued after the last complete batch
    assert stores_equal(reference_store, out) == []
    seen.clear()
    cache_split(hooked, fixture_items, out, names, batch_size=8, dtype="float32", split_hash="abc", progress=False,
                on_batch=seen.append)
    assert seen == []  # a finished store is left as is


def test_kill_9_then_rerun(tmp_path, tiny_lm_dir, reference_store, hooked, fixture_items, names):
    """A real crash: SIGKILL the writer while it runs, rerun the same call, get the uninterrupted file."""
    out = tmp_path / "killed.h5"
    script = textwrap.dedent(f"""
        import sys, time, torch
        torch.set_num_threads({torch.get_num_threads()})  # as here: bit-identical floats
        from interp.store.activations import cache_split
        from interp.models.backends import load_hooked
        from interp.data.bbq import load_bbq
        items, _ = load_bbq({str(ROOT / 'tests/fixtures/bbq/data')!r})
        h = load_hooked({str(tiny_lm_dir)!r}, backend="hf", device="cpu", dtype="float32")
        def tick(k):
            print(k, flush=True)
            time.sleep(0.2)
        cache_split(h, items, {str(out)!r}, {names!r}, batch_size=8, dtype="float32", split_hash="abc",
                    progress=False, on_batch=tick)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=ROOT)
    for line in proc.stdout:
        if line.strip() == "3":
            break
    proc.kill()
    proc.wait()
    with ActivationStore(out, allow_partial=True) as s:
        assert not s.complete and 24 <= s.n_items < 64
    cache_split(hooked, fixture_items, out, names, batch_size=8, dtype="float32", split_hash="abc", progress=False)
    assert stores_equal(reference_store, out) == []


def test_foreign_and_corrupt_files_are_refused(tmp_path, reference_store, hooked, fixture_items, names, tiny_lm_dir):
    out = tmp_path / "x.h5"
    shutil.copy(reference_store, out)
    with pytest.raises(ForeignStoreError, match=r"x\.h5.*names"):
        cache_split(hooked, fixture_items, out, names[:1], batch_size=8, dtype="float32", split_hash="abc",
                    progress=False)
    with pytest.raises(ForeignStoreError, match="split_hash"):
        cache_split(hooked, fixture_items, out, names, batch_size=8, dtype="float32", split_hash="other",
                    progress=False)
    other_model = load_hooked(str(tiny_lm_dir), backend="hf", device="cpu", dtype="float32")
    with torch.no_grad():
        other_model.model.model.embed_tokens.weight.add_(1.0)
    other_model.weights_hash = "deadbeef"  # as a different checkpoint would report
    with pytest.raises(ForeignStoreError, match="weights_hash"):
        cache_split(other_model, fixture_items, out, names, batch_size=8, dtype="float32", split_hash="abc",
                    progress=False)
    # not a store at all
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ForeignStoreError, match="plain.h5.*not an interp activation store"):
        cache_split(hooked, fixture_items[:8], plain, names, batch_size=8, progress=False)
    # truncated: named, left untouched, replaced only with overwrite
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(Path(reference_store).read_bytes()[:4000])
    with pytest.raises(CorruptStoreError, match="trunc.h5.*truncated"):
        cache_split(hooked, fixture_items, trunc, names, batch_size=8, dtype="float32", progress=False)
    with pytest.raises(CorruptStoreError, match="trunc.h5"):
        ActivationStore(trunc)
    assert trunc.stat().st_size == 4000
    cache_split(hooked, fixture_items[:8], trunc, names, batch_size=8, overwrite=True, progress=False)
    with ActivationStore(trunc) as s:
        assert s.n_items == 8


def test_cli_writes_and_refuses(tmp_path, tiny_lm_dir, fixture_bbq_dir):
    from click.testing import CliRunner

    from interp.cli import main

    out = tmp_path / "cli.h5"
    args = ["cache", "--model", str(tiny_lm_dir), "--bbq-dir", str(fixture_bbq_dir), "--split", "all",
            "--device", "cpu", "--dtype", "float32", "--batch-size", "16", "--layers", "-1", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    with ActivationStore(out) as s:
        assert s.names == ["blocks.1.hook_resid_post"] and s.n_items == 64
    r = CliRunner().invoke(main, args[:-4] + ["--layers", "0", "--out", str(out)])
    assert r.exit_code != 0 and "cli.h5" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_give_one_virtual_file(tmp_path, tiny_lm_dir, fixture_bbq_dir):
    """2 gloo ranks each write a shard; the virtual view equals a single-process run (read from another cwd)."""
    from click.testing import CliRunner

    from interp.cli import main

    common = ["cache", "--model", str(tiny_lm_dir), "--bbq-dir", str(fixture_bbq_dir), "--split", "all",
              "--device", "cpu", "--dtype", "float32", "--batch-size", "8", "--hooks", ",".join(KINDS),
              "--store-dtype", "float32"]
    single = tmp_path / "single.h5"
    r = CliRunner().invoke(main, common + ["--out", str(single)])
    assert r.exit_code == 0, r.output
    multi = tmp_path / "multi" / "view.h5"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    res = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "interp.cli", *common,
                          "--out", str(multi)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p.name for p in multi.parent.iterdir()} == {"view.h5", "view.shard0-of-2.h5", "view.shard1-of-2.h5"}
    with h5py.File(multi) as f:
        assert f["acts/blocks.0.hook_resid_post"].is_virtual
    # rows of a shard lost under its complete flag: the rerun verifies the shards and recomputes them
    shard1 = multi.parent / "view.shard1-of-2.h5"
    with h5py.File(shard1, "r+") as f:
        assert f.attrs["complete"]
        f["acts/blocks.1.hook_resid_post"][20:] = np.nan
    res = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "interp.cli", *common,
                          "--out", str(multi)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "view.shard1-of-2.h5'] do not verify" in res.stderr and "recomputing from item 16" in res.stderr
    moved = tmp_path / "elsewhere"
    shutil.move(str(multi.parent), moved)  # relative shard paths: the folder can move
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        # rank processes run 1 thread, this one may run more: float rounding may differ, nothing else
        assert stores_equal(single, moved / "view.h5", atol=1e-5) == []
        with ActivationStore(moved / "view.h5") as s:
            assert s.n_items == 64 and s.attrs["world_size"] == 2
    finally:
        os.chdir(cwd)


def test_probe_and_directions_refuse_another_models_store(tmp_path, tiny_lm_dir, fixture_bbq_dir):
    """A store is matched to --model by the weights fingerprint: the same store is read for its own model and
    refused, with a named error, for a model whose last layer differs; -1 selects the stored last layer."""
    import shutil

    from click.testing import CliRunner
    from safetensors.torch import load_file, save_file

    from interp.cli import main

    store = tmp_path / "s.h5"
    data = ["--bbq-dir", str(fixture_bbq_dir), "--split", "all", "--device", "cpu", "--dtype", "float32"]
    # shuffled options: the random model's favourite letter then lands on every answer kind
    r = CliRunner().invoke(main, ["cache", "--model", str(tiny_lm_dir), *data, "--shuffle-options", "--out",
                                  str(store)])
    assert r.exit_code == 0, r.output
    other = tmp_path / "other"
    shutil.copytree(tiny_lm_dir, other)
    sd = load_file(str(other / "model.safetensors"))
    last = sorted(k for k in sd if ".layers." in k)[-1]
    save_file({**sd, last: sd[last] + 1e-3}, str(other / "model.safetensors"), metadata={"format": "pt"})
    for cmd in (["probe", "--n-boot", "20", "--target", "abstain"], ["directions", "--out", str(tmp_path / "d.st")]):
        ok = CliRunner().invoke(main, [*cmd, "--model", str(tiny_lm_dir), *data, "--store", str(store),
                                       "--layers", "-1"])
        assert ok.exit_code == 0, ok.output
        bad = CliRunner().invoke(main, [*cmd, "--model", str(other), *data, "--store", str(store)])
        assert bad.exit_code == 1 and "ForeignStoreError" in bad.output and "Traceback" not in bad.output, bad.output
