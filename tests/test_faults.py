"""Fault injection, as storage libraries test themselves: a full disk, a read-only folder, SIGKILL and SIGINT at
many points of ``interp cache`` on the shipped organism. In every case the run ends with one named error (or is
killed), the store is never marked complete unless its contents are right, and the next run either finishes to a
store equal to an uninterrupted one or refuses by name."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from interp.store import activations as act
from interp.store.activations import ActivationStore, CorruptStoreError, StoreWriteError, cache_split, stores_equal

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_BBQ = ROOT / "tests" / "fixtures" / "bbq" / "data"
# 64 items in 8 batches of 8; organism-small has 3 layers: 3 activation datasets
CACHE = ["cache", "--model", "organism-small", "--bbq-dir", str(FIXTURE_BBQ), "--split", "all", "--device", "cpu",
         "--dtype", "float32", "--store-dtype", "float32", "--batch-size", "8"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")


def run_cache(out: Path, *extra: str, preexec=None, wrapper: str | None = None,
              wrapper_args: tuple = ()) -> subprocess.CompletedProcess:
    """``interp cache`` on the organism in a fresh process (optionally under a fault-injecting wrapper)."""
    head = [sys.executable, "-c", wrapper, *wrapper_args] if wrapper else [sys.executable, "-m", "interp.cli"]
    return subprocess.run([*head, *CACHE, "--out", str(out), *extra], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), preexec_fn=preexec, timeout=300)


def flag(path: Path) -> bool | None:
    """The store's complete flag; None when the file is absent or HDF5 cannot open it."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs["complete"])
    except (OSError, FileNotFoundError):
        return None


def assert_one_named_error(res: subprocess.CompletedProcess, name: str) -> None:
    assert res.returncode == 1, (res.returncode, res.stderr[-3000:])
    assert f"Error: {name}: " in res.stderr, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]


def rerun_to_the_reference(out: Path, reference: Path) -> None:
    """The next run finishes to the uninterrupted store, or refuses by name (then --overwrite does)."""
    res = run_cache(out)
    if res.returncode != 0:
        assert_one_named_error(res, "CorruptStoreError")
        res = run_cache(out, "--overwrite")
    assert res.returncode == 0, res.stderr[-3000:]
    assert flag(out) is True
    assert stores_equal(reference, out) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the same command."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    res = run_cache(out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _file_size_limit(n: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return pre


@pytest.mark.parametrize("share", [0.0, 0.5, 0.9])
def test_a_full_disk_is_a_named_error_and_never_complete(tmp_path, reference, share):
    """The file cannot grow past a share of the finished store's size: at creation, mid-run, near the end."""
    out = tmp_path / "s.h5"
    limit = max(3_000, int(share * reference.stat().st_size))
    res = run_cache(out, preexec=_file_size_limit(limit))
    assert_one_named_error(res, "StoreWriteError")
    assert "it is not marked complete" in res.stderr or "nothing was written" in res.stderr
    assert flag(out) is not True
    assert not (tmp_path / "s.h5.creating").exists() or flag(tmp_path / "s.h5.creating") is not True
    rerun_to_the_reference(out, reference)


@pytest.fixture()
def tiny_tmpfs(tmp_path, reference):
    """A tmpfs three quarters the size of the finished store (a real ENOSPC), where the tests may mount one."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    size = f"size={max(16, int(0.75 * reference.stat().st_size) // 1024)}k"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_enospc_on_a_tiny_tmpfs_then_resume_after_space_is_freed(tiny_tmpfs, reference):
    """The case of the issue: HDF5 loses chunks silently on ENOSPC; the run must not end 'complete'."""
    out = tiny_tmpfs / "s.h5"
    res = run_cache(out)
    assert_one_named_error(res, "StoreWriteError")
    assert "No space left on device" in res.stderr or "did not reach the disk" in res.stderr
    assert flag(out) is not True
    subprocess.run(["mount", "-o", f"remount,size={4 * reference.stat().st_size // 1024 + 64}k", str(tiny_tmpfs)],
                   check=True)
    rerun_to_the_reference(out, reference)


def test_a_read_only_output_folder_is_a_named_error(readonly_dir):
    res = run_cache(readonly_dir / "s.h5")
    assert_one_named_error(res, "StoreWriteError")
    assert "nothing was written" in res.stderr
    assert list(readonly_dir.iterdir()) == []


# SIGKILL / SIGINT at the k-th write event: every h5py dataset write (8 per batch: 3 activation datasets, logits,
# predictions, letters, checksum, counter; 64 in all) and the write of the complete flag (event 65)
KILLER = textwrap.dedent("""
    import os, signal, sys, h5py
    sig, at = getattr(signal, sys.argv[1]), int(sys.argv[2])
    seen = [0]
    def event():
        seen[0] += 1
        if seen[0] == at:
            os.kill(os.getpid(), sig)
    ds_set, attr_set = h5py.Dataset.__setitem__, h5py.AttributeManager.__setitem__
    def ds_setitem(self, key, value):
        event()
        return ds_set(self, key, value)
    def attr_setitem(self, name, value):
        if name == "complete" and value is True:
            event()
        return attr_set(self, name, value)
    h5py.Dataset.__setitem__, h5py.AttributeManager.__setitem__ = ds_setitem, attr_setitem
    from interp.cli.main import main
    main(sys.argv[3:])
""")


@pytest.mark.parametrize("sig, at", [("SIGKILL", 1), ("SIGKILL", 8), ("SIGKILL", 30),
                                     ("SIGKILL", 65), ("SIGINT", 13), ("SIGINT", 65)])
def test_killed_or_interrupted_cache_resumes_to_the_uninterrupted_store(tmp_path, reference, sig, at):
    out = tmp_path / "s.h5"
    res = run_cache(out, wrapper=KILLER, wrapper_args=(sig, str(at)))
    if sig == "SIGKILL":
        assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    else:
        assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert flag(out) is not True  # killed before the flag: never marked complete
    rerun_to_the_reference(out, reference)


# ---- in-process: the checks behind the flag ---------------------------------------------------------------


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    from interp.models.backends import load_hooked
    from interp.models.hooks import hook_names

    h = load_hooked("organism-small", backend="hf", device="cpu", dtype="float32")
    return h, hook_names(list(range(h.n_layers)), h.n_layers)


@pytest.fixture(scope="module")
def inproc_reference(tmp_path_factory, organism, fixture_items):
    h, names = organism
    out = tmp_path_factory.mktemp("inproc") / "ref.h5"
    return cache_split(h, fixture_items, out, names, batch_size=8, dtype="float32", progress=False)


def _cache(organism, items, out, **kw):
    h, names = organism
    return cache_split(h, items, out, names, batch_size=8, dtype="float32", progress=False, **kw)


@pytest.mark.parametrize("damage", ["nan", "zeros", "logits", "no-checksums-nan"])
def test_a_store_marked_complete_is_verified_before_it_is_trusted(tmp_path, organism, fixture_items,
                                                                 inproc_reference, damage):
    """Rows that never reached the disk under a set flag (what a full disk did before) are found on resume and
    recomputed from the first bad batch, with a warning; the result equals the uninterrupted store."""
    out = tmp_path / "s.h5"
    shutil.copy(inproc_reference, out)
    name = organism[1][1]
    with h5py.File(out, "r+") as f:
        assert f.attrs["complete"]
        if damage == "nan":
            f[f"acts/{name}"][40:64] = np.nan
        elif damage == "zeros":  # finite but wrong: only the checksum sees it
            f[f"acts/{name}"][41] = 0.0
        elif damage == "logits":
            f["meta/letter_logits"][44] = [1.0, 2.0, 3.0]
        else:  # a store written before the checksums: NaN rows are the sign of lost writes
            del f["batch_crc"]
            f[f"acts/{name}"][40:64] = np.nan
    seen = []
    with pytest.warns(UserWarning, match=r"was marked complete but .*batch 5 of 8.*recomputing from item 40"):
        _cache(organism, fixture_items, out, on_batch=seen.append)
    assert seen == [6, 7, 8]
    assert flag(out) is True
    assert stores_equal(inproc_reference, out) == []


def test_a_complete_store_is_left_as_is_when_it_verifies(tmp_path, organism, fixture_items, inproc_reference):
    out = tmp_path / "s.h5"
    shutil.copy(inproc_reference, out)
    before = out.read_bytes()
    seen = []
    _cache(organism, fixture_items, out, on_batch=seen.append)
    assert seen == [] and out.read_bytes() == before


def test_a_store_with_the_wrong_row_count_is_refused_by_name(tmp_path, organism, fixture_items, inproc_reference):
    out = tmp_path / "s.h5"
    shutil.copy(inproc_reference, out)
    name = organism[1][0]
    with h5py.File(out, "r+") as f:
        data = f[f"acts/{name}"][:60]
        del f[f"acts/{name}"]
        f[f"acts/{name}"] = data
    before = out.read_bytes()
    with pytest.raises(CorruptStoreError, match=rf"s\.h5 does not hold 64 rows in acts/{name}"):
        _cache(organism, fixture_items, out)
    assert out.read_bytes() == before


def test_a_write_error_mid_run_is_one_store_write_error_and_no_flag(tmp_path, organism, fixture_items,
                                                                   inproc_reference, monkeypatch):
    """An h5py-level failure (ENOSPC raised by the 20th dataset write) ends the run with StoreWriteError; the
    rerun resumes after the last batch that was committed and ends equal to the uninterrupted store."""
    import atexit

    out = tmp_path / "s.h5"
    real = h5py.Dataset.__setitem__
    calls = [0]

    def failing(self, key, value):
        calls[0] += 1
        if calls[0] >= 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", failing)
    try:
        with pytest.raises(StoreWriteError, match=r"s\.h5 failed \(\[Errno 28\] No space left on device\); it is "
                                                  "not marked complete"):
            _cache(organism, fixture_items, out)
    finally:  # the failure here was injected, the file is healthy: close it rather than end the process at exit
        atexit.unregister(act._exit_before_hdf5_cleanup)
        for obj in act._ABANDONED:
            obj.close() if isinstance(obj, h5py.File) else None
        act._ABANDONED.clear()
    monkeypatch.setattr(h5py.Dataset, "__setitem__", real)
    with ActivationStore(out, allow_partial=True) as s:
        assert not s.complete and s.n_items == 16  # batches 0 and 1 committed; batch 2 failed mid-write
    seen = []
    _cache(organism, fixture_items, out, on_batch=seen.append)
    assert seen == [3, 4, 5, 6, 7, 8]
    assert stores_equal(inproc_reference, out) == []


def test_a_store_open_in_another_process_is_named_locked_not_corrupt(tmp_path, inproc_reference):
    out = tmp_path / "s.h5"
    shutil.copy(inproc_reference, out)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, h5py
        f = h5py.File({str(out)!r}, "r+")
        print("open", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(act.StoreLockedError, match=r"s\.h5 is open in another process"):
            ActivationStore(out)
        with pytest.raises(act.StoreLockedError, match=r"s\.h5 is open in another process"):
            act._open_existing(out)
    finally:
        holder.kill()
        holder.wait()
    with ActivationStore(out) as s:
        assert s.complete


# ---- interp eval: every output file is published by write-then-rename, summary.json last ---------------------

EVAL = ["eval", "--model", "organism-small", "--bbq-dir", str(FIXTURE_BBQ), "--split", "all", "--device", "cpu",
        "--dtype", "float32", "--n-boot", "20"]
EVAL_KILLER = textwrap.dedent("""
    import os, signal, sys, pathlib
    sig, at = getattr(signal, sys.argv[1]), int(sys.argv[2])
    seen = [0]
    real = pathlib.Path.replace
    def replace(self, target):
        seen[0] += 1
        if seen[0] == at:
            os.kill(os.getpid(), sig)
        return real(self, target)
    pathlib.Path.replace = replace
    from interp.cli.main import main
    main(sys.argv[3:])
""")


def run_eval(out: Path, wrapper: str | None = None, wrapper_args: tuple = ()) -> subprocess.CompletedProcess:
    head = [sys.executable, "-c", wrapper, *wrapper_args] if wrapper else [sys.executable, "-m", "interp.cli"]
    return subprocess.run([*head, *EVAL, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=_env(),
                          timeout=300)


def eval_outputs(out: Path) -> dict:
    """What an eval run publishes, without its timing."""
    import json

    got = {n: (out / n).read_bytes() for n in ("predictions.jsonl", "summary.csv", "split.json") if (out / n).exists()}
    if (out / "summary.json").exists():
        s = json.loads((out / "summary.json").read_text())
        s["meta"].pop("seconds")
        got["summary.json"] = s
    return got


@pytest.fixture(scope="module")
def eval_reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("evref") / "ev"
    res = run_eval(out)
    assert res.returncode == 0, res.stderr[-3000:]
    return eval_outputs(out)


@pytest.mark.parametrize("sig, at", [("SIGKILL", 3), ("SIGINT", 2)])
def test_killed_eval_publishes_no_partial_file_and_reruns_to_the_same_outputs(tmp_path, eval_reference, sig, at):
    """Killed at the k-th rename (split.json, predictions.jsonl, summary.csv, summary.json): every file present
    is whole (equal to the uninterrupted run's), summary.json only once the rest is there; the rerun equals it."""
    out = tmp_path / "ev"
    res = run_eval(out, EVAL_KILLER, (sig, str(at)))
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    got = eval_outputs(out)
    assert "summary.json" not in got
    assert all(got[k] == eval_reference[k] for k in got), sorted(got)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")] or sig == "SIGKILL"  # no temp left on SIGINT
    res = run_eval(out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert eval_outputs(out) == eval_reference


@pytest.fixture()
def read_only_copies(tmp_path):
    """read_only_copies({name: source}) -> a folder holding those copies where nothing can be written (file and
    folder modes, or as root a tmpfs remounted read-only)."""
    d = tmp_path / "ro_store"
    d.mkdir()
    mounted = []

    def make(files: dict) -> Path:
        for name, src in files.items():
            shutil.copy(src, d / name)
            (d / name).chmod(0o444)
        d.chmod(0o555)
        if os.access(d / next(iter(files)), os.W_OK):
            if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)],
                                                   capture_output=True).returncode:
                pytest.skip("cannot make a read-only folder here")
            mounted.append(d)
            for name, src in files.items():
                shutil.copy(src, d / name)
            subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        return d

    yield make
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)
    d.chmod(0o755)


def test_a_store_on_a_read_only_folder_is_used_when_complete_and_refused_when_not(tmp_path, organism, fixture_items,
                                                                                 inproc_reference, read_only_copies):
    partial = tmp_path / "partial.h5"
    shutil.copy(inproc_reference, partial)
    with h5py.File(partial, "r+") as f:
        f.attrs["complete"] = False
        f["complete_batches"][()] = 3
    ro = read_only_copies({"done.h5": inproc_reference, "partial.h5": partial})
    seen = []
    assert _cache(organism, fixture_items, ro / "done.h5", on_batch=seen.append) == ro / "done.h5"
    assert seen == []
    with pytest.raises(StoreWriteError, match=r"partial\.h5 is read-only and not a complete, verified store"):
        _cache(organism, fixture_items, ro / "partial.h5")
