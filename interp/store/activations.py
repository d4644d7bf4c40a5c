"""The activation store: activations at chosen prompt positions, per hook and layer, in one HDF5 file.

Layout of a store (``cache_split`` writes it, ``ActivationStore`` reads it)::

    acts/blocks.{l}.{hook}   [n_items, d] (one position) or [n_items, n_pos, d]; chunked by batch, compressed
    meta/<column>            per-item: uid, example_id, category, context_condition, question_polarity, label
                             (gold index), gold/target/biased/unknown letters and indices, option order, and
                             from the same forward pass: pred, pred_letter, letter_logits [n_items, 3]
    complete_batches         scalar counter, written (and flushed) after each batch's data is flushed
    batch_crc                [n_batches] CRC-32 of each batch's rows as computed (all datasets), -1 until written
    attrs                    format, fingerprint (JSON; checked on resume), provenance, complete

Streaming: items are prompted and run one batch at a time and written straight to disk, so memory does not
grow with the number of items; readers slice single datasets. Crash safety: the file is created under a
temporary name and renamed once its layout is flushed; after each batch the data are flushed before the
counter, so a killed run resumes after its last complete batch and finishes with the same contents as an
uninterrupted run. The ``complete`` flag is honest: it is set only after every dataset is flushed, the file
synced, reopened and every batch read back equal to its checksum; a write error (a full disk, a read-only
folder) is a ``StoreWriteError`` and leaves the flag unset. On resume the batches the counter (or the flag)
claims are verified the same way, and the first one that did not reach the disk is recomputed. A file that
HDF5 cannot open (truncated, corrupt) or whose fingerprint differs (another model, adapter, split, hooks...) is
named in an error and never overwritten unless ``overwrite=True``; one open in another process is named as such.

Under ``torchrun`` each rank writes a contiguous shard (``<name>.shard{r}-of-{w}.h5``) and rank 0 writes the
requested path as an HDF5 virtual-dataset view over the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from interp.data.bbq import BBQItem
from interp.models.protocol import LanguageModel
from interp.errors import InputError, InterpError

FORMAT = "interp-activations/1"
STORE_DTYPES = {"float16": np.float16, "fp16": np.float16, "float32": np.float32, "fp32": np.float32}
_STR_COLS = ("uid", "category", "question_index", "context_condition", "question_polarity", "gold_letter",
             "target_letter", "biased_letter", "unknown_letter")
_INT_COLS = ("example_id", "label", "target_loc", "biased_loc", "unknown_loc")
_BOOKKEEPING = ("complete_batches", "batch_crc")  # per-batch progress and checksums, not per-item data


class StoreError(InterpError, RuntimeError):
    """Base class of activation-store problems."""


class CorruptStoreError(StoreError):
    """A file that HDF5 cannot open: truncated or corrupt."""


class ForeignStoreError(StoreError):
    """A readable file that is not this run's store (not a store at all, or another model/split/hooks)."""


class IncompleteStoreError(StoreError):
    """A store whose run has not finished."""


class StoreWriteError(StoreError):
    """The store could not be written (a full disk, a read-only folder, an I/O error); never marked complete."""


class StoreLockedError(StoreError):
    """The store is open for writing in another process (HDF5's file lock)."""


# ---- helpers ---------------------------------------------------------------------------------------


def parse_positions(positions: str | int | Sequence[int]) -> list[int]:
    """'last' -> [-1]; '-1,-2' or [-1, -2] -> offsets from the end of the prompt (negative ints)."""
    if isinstance(positions, int):
        out = [positions]
    elif isinstance(positions, str):
        out = []
        for p in positions.split(","):
            p = p.strip()
            out.append(-1 if p == "last" else int(p))
    else:
        out = [int(p) for p in positions]
    if not out or any(p >= 0 for p in out) or len(set(out)) != len(out):
        raise InputError(f"positions must be 'last' or distinct negative offsets from the prompt end, got {positions!r}")
    return out


def items_hash(items: Sequence[BBQItem]) -> str:
    return hashlib.sha256("\n".join(it.uid for it in items).encode()).hexdigest()[:16]


def prompt_template_text(tokenizer) -> str:
    """The prompt wording and chat template that produced the activations (for provenance)."""
    from interp.data.prompts import INSTRUCTION, PROMPT_TEMPLATE

    return json.dumps({"instruction": INSTRUCTION, "template": PROMPT_TEMPLATE,
                       "chat_template": getattr(tokenizer, "chat_template", None) or ""})


def default_store_path(model: str, adapter: str | None, part: str, positions: str = "last") -> Path:
    """``<activations dir>/<model>[__<adapter>]/<split>-<positions>.h5`` (names reduced to safe slugs)."""
    from interp.paths import default_activations_dir

    def slug(s: str) -> str:
        s = Path(str(s).rstrip("/")).name if os.path.sep in str(s) else str(s)
        return "".join(c if c.isalnum() or c in "-._" else "_" for c in s)

    folder = slug(model) + (f"__{slug(adapter)}" if adapter else "")
    pos = "last" if positions in ("last", "-1") else slug(str(positions).replace(",", "_"))
    return default_activations_dir() / folder / f"{part}-{pos}.h5"


def shard_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) item ranges, one per rank."""
    cuts = [round(i * n / world) for i in range(world + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(world)]


def shard_path(path: Path, rank: int, world: int) -> Path:
    return path.with_name(f"{path.stem}.shard{rank}-of-{world}{path.suffix}")


def _static_meta(items: Sequence[BBQItem], shuffle: bool, seed: int) -> dict[str, np.ndarray]:
    from interp.data.prompts import make_prompt

    cols: dict[str, list] = {c: [] for c in _STR_COLS + _INT_COLS + ("order",)}
    for it in items:
        p = make_prompt(it, shuffle, seed)
        row = dict(uid=it.uid, category=it.category, question_index=str(it.question_index),
                   context_condition=it.context_condition, question_polarity=it.question_polarity,
                   gold_letter=p.gold_letter, target_letter=p.target_letter or "",
                   biased_letter=p.biased_letter or "", unknown_letter=p.unknown_letter or "",
                   example_id=it.example_id, label=it.label,
                   target_loc=-1 if it.target_loc is None else it.target_loc,
                   biased_loc=-1 if it.biased_loc is None else it.biased_loc, unknown_loc=it.unknown_loc,
                   order=list(p.order))
        for k, v in row.items():
            cols[k].append(v)
    out = {}
    for c in _STR_COLS:
        enc = [s.encode("utf-8") for s in cols[c]]
        width = max([len(s) for s in enc] + [1])
        out[c] = np.array(enc, dtype=f"S{width}")  # fixed width: identical dtype in every shard
    for c in _INT_COLS:
        out[c] = np.array(cols[c], dtype=np.int64)
    out["order"] = np.array(cols["order"], dtype=np.int8).reshape(-1, 3)
    return out


# ---- writing ---------------------------------------------------------------------------------------


def _fingerprint(hooked, items, names, positions, dtype, batch_size, split_hash, shuffle, seed, tokenizer) -> dict:
    pv = hooked.provenance()
    return dict(
        format=FORMAT, model=pv["model"], revision=pv["revision"], weights_hash=pv["weights_hash"],
        adapter=pv["adapter"], adapter_hash=pv["adapter_hash"], adapter_enabled=pv["adapter_enabled"],
        backend=pv["backend"], model_dtype=pv["model_dtype"], names=list(names), positions=list(positions),
        dtype=dtype, batch_size=int(batch_size), split_hash=split_hash or "", items_hash=items_hash(items),
        n_items=len(items), shuffle_options=bool(shuffle), seed=int(seed),
        prompt_template_hash=hashlib.sha256(prompt_template_text(tokenizer).encode()).hexdigest()[:16],
    )


def _provenance(hooked, tokenizer, split_hash) -> dict:
    import transformers

    from interp.version import __version__

    pv = hooked.provenance()
    return dict(pv, toolkit_version=__version__, torch_version=torch.__version__,
                transformers_version=transformers.__version__, split_file_hash=split_hash or "",
                prompt_template=prompt_template_text(tokenizer), device=str(hooked.device),
                n_layers=int(hooked.n_layers),
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def _open_existing(path: Path):
    import h5py

    try:
        return h5py.File(path, "r+")
    except OSError as e:
        _raise_if_locked(path, e)
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
            raise StoreWriteError(f"{path} cannot be opened for writing ({e}); it was left untouched.") from e
        raise CorruptStoreError(
            f"{path} exists but HDF5 cannot open it (truncated or corrupt: {e}); it was left untouched. "
            f"Rerun with --overwrite (overwrite=True) to replace it."
        ) from e


def _raise_if_locked(path: Path, e: OSError) -> None:
    """A file HDF5 refuses because another process holds its lock is in use, not corrupt."""
    if "unable to lock file" in str(e).lower():
        raise StoreLockedError(f"{path} is open in another process (HDF5 file lock: {e}); wait for that run to "
                               "finish or stop it, then rerun.") from e


def check_fingerprint(f, want: dict, path: Path) -> None:
    """Refuse a file that is not a store, or a store of another run, naming the path and the differences."""
    if f.attrs.get("format") != FORMAT or "fingerprint" not in f.attrs:
        raise ForeignStoreError(f"{path} is not an interp activation store (format {f.attrs.get('format')!r}); "
                                "refusing to touch it. Choose another --out or pass --overwrite.")
    have = json.loads(f.attrs["fingerprint"])
    diff = {k: (have.get(k), want.get(k)) for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)}
    if diff:
        lines = "; ".join(f"{k}: file has {a!r}, this run {b!r}" for k, (a, b) in list(diff.items())[:6])
        raise ForeignStoreError(f"{path} holds activations of another run ({lines}); refusing to mix them. "
                                "Choose another --out or pass --overwrite.")


def _create(path: Path, fp: dict, prov: dict, static: dict, names, n_layers_d: dict, n_pos: int, dtype,
            batch_size: int, compression: str | None) -> None:
    """Create the file's layout under a temporary name, sync, then rename: a file at ``path`` always has one."""
    import h5py

    tmp = path.with_name(path.name + ".creating")
    n = fp["n_items"]
    comp = dict(compression=compression, shuffle=True) if compression else {}
    if compression == "gzip":
        comp["compression_opts"] = 4
    rows = max(1, min(batch_size, n))
    # the layout is built in memory and written with one plain write: a full disk fails that write cleanly
    # (HDF5 itself can crash when its own writes fail while objects are being closed)
    with h5py.File(tmp.name, "w", driver="core", backing_store=False) as f:
        f.attrs["format"] = FORMAT
        f.attrs["fingerprint"] = json.dumps(fp, sort_keys=True)
        f.attrs["provenance"] = json.dumps(prov, sort_keys=True)
        f.attrs["complete"] = False
        for name in names:
            d = n_layers_d[name]
            shape = (n, d) if n_pos == 1 else (n, n_pos, d)
            chunks = (rows, d) if n_pos == 1 else (rows, n_pos, d)
            f.create_dataset(f"acts/{name}", shape=shape, dtype=dtype, chunks=chunks if n else None,
                             fillvalue=np.nan, **(comp if n else {}))
        for c, v in static.items():
            f.create_dataset(f"meta/{c}", data=v)
        f.create_dataset("meta/pred", shape=(n,), dtype=np.int64, fillvalue=-1)
        f.create_dataset("meta/pred_letter", shape=(n,), dtype="S1", fillvalue=b"")
        f.create_dataset("meta/letter_logits", shape=(n, 3), dtype=np.float32, fillvalue=np.nan)
        f.create_dataset("complete_batches", data=np.int64(0))
        f.create_dataset("batch_crc", shape=(-(-n // rows),), dtype=np.int64, fillvalue=-1)
        f.flush()
        image = f.id.get_file_image()
    with open(tmp, "wb") as fh:
        fh.write(image)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _to_host(acts: dict[str, torch.Tensor], names, np_dtype) -> list[np.ndarray]:
    """The activations of ``names`` as host arrays of the store's dtype, in one device-to-host copy (one sync
    instead of one per hook: on a GPU the per-hook copies cost more than the forward pass)."""
    if not names:
        return []
    tdt = torch.float16 if np_dtype == np.float16 else torch.float32
    flat = torch.cat([acts[n].reshape(acts[n].shape[0], -1).to(tdt) for n in names], 1).cpu().numpy()  # [batch, sum]
    out, at = [], 0
    for n in names:
        k = int(np.prod(acts[n].shape[1:]))
        out.append(flat[:, at:at + k].reshape(acts[n].shape))
        at += k
    return out


def _write_store(hooked, items, path: Path, names, positions, dtype, batch_size, split_hash, shuffle, seed,
                 compression, overwrite, progress, on_batch, fp_extra=None, desc="cache", static=None) -> Path:
    """Write (or resume) one store file for ``items`` (``static``: their precomputed static metadata)."""
    import h5py
    from tqdm.auto import tqdm

    from interp.models.answers import answer_batches

    tok = hooked.tokenizer
    tok.padding_side = "left"  # the last prompt token is at position -1 in every row
    fp = _fingerprint(hooked, items, names, positions, dtype, batch_size, split_hash, shuffle, seed, tok)
    fp.update(fp_extra or {})
    creating = path.with_name(path.name + ".creating")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            path.unlink(missing_ok=True)
        if creating.exists():
            creating.unlink()  # a creation killed before its rename
        if not path.exists():
            d_of = {n: (hooked.d_mlp if n.endswith("mlp.hook_post") else hooked.d_model) for n in names}
            _create(path, fp, _provenance(hooked, tok, split_hash),
                    static if static is not None else _static_meta(items, shuffle, seed), names, d_of,
                    len(positions), STORE_DTYPES[dtype], batch_size, compression)
    except (OSError, RuntimeError) as e:
        if isinstance(e, StoreError):
            raise
        try:
            if creating.exists():
                creating.unlink()
        except OSError:
            pass
        raise StoreWriteError(f"cannot create {path} ({_why(e)}); nothing was written.") from e
    n = len(items)
    n_batches = (n + batch_size - 1) // batch_size
    pos_idx = positions[0] if len(positions) == 1 else positions
    if not os.access(path, os.W_OK):
        return _reuse_read_only(path, fp, names, n, batch_size)
    f = _open_existing(path)
    ds: dict = {}  # the open datasets, by path in the file
    try:
        check_fingerprint(f, fp, path)
        done, sealed = _resume_point(f, path, names, n, batch_size)
        if sealed:
            f.close()
            return path
        bar = tqdm(total=n, initial=min(n, done * batch_size), desc=desc, unit="item", disable=not progress)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer") as writer:

            # the datasets stay open for the whole run: a chunk that fails to reach the disk then fails f.flush()
            # (HDF5 only prints the error when a dataset is closed with unwritten chunks)
            ds.update({k: f[k] for k in [*(f"acts/{m}" for m in names), "meta/letter_logits", "meta/pred",
                                         "meta/pred_letter", "complete_batches", "batch_crc"] if k in f})

            def commit(b: int, lo: int, hi: int, host: list, ll: np.ndarray, pred: np.ndarray,
                       letters: np.ndarray):
                # runs on the writer thread (h5py releases the GIL in H5Dwrite, compression included), so batch
                # b is written while the main thread runs batch b + 1's forward pass
                for name, a in zip(names, host):
                    ds[f"acts/{name}"][lo:hi] = a
                ds["meta/letter_logits"][lo:hi] = ll
                ds["meta/pred"][lo:hi] = pred
                ds["meta/pred_letter"][lo:hi] = letters
                if "batch_crc" in ds:  # absent in stores written before the checksums
                    ds["batch_crc"][b] = _crc([*host, ll, pred, letters])
                f.flush()  # the batch's data are on disk before the counter says so
                ds["complete_batches"][()] = b + 1
                f.flush()

            pending = None  # (future, batch index, size) of the write in flight: at most one

            def settle():
                nonlocal pending
                if pending is not None:
                    fut, b, size = pending
                    pending = None
                    fut.result()  # a failed write raises here, in the caller's thread
                    bar.update(size)
                    if on_batch is not None:
                        on_batch(b + 1)

            try:
                stream = answer_batches(hooked, items[done * batch_size:], batch_size, names, pos_idx,
                                        shuffle_options=shuffle, seed=seed)
                for b, batch in enumerate(stream, start=done):  # the answer pass: one forward per batch
                    lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                    ll = batch.letter_logits.numpy()  # [batch, 3]
                    host = _to_host(batch.acts, names, STORE_DTYPES[dtype])  # [batch, (n_pos,) d] each
                    pred_letter = batch.letters()
                    pred = np.array([p.answer_of(L) for p, L in zip(batch.prompted, pred_letter)], dtype=np.int64)
                    letters = np.array([s.encode() for s in pred_letter], dtype="S1")
                    settle()  # batch b - 1 is committed before batch b's write starts (batches land in order)
                    pending = (writer.submit(commit, b, lo, hi, host, ll, pred, letters), b, hi - lo)
                settle()
            finally:
                if pending is not None:  # an error upstream: let the write in flight finish, lose nothing written
                    pending[0].exception()
        bar.close()
        f.flush()
        ds.clear()
        f.close()
    except BaseException as e:
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, StoreError):
            _abandon(f, *ds.values())
            raise StoreWriteError(f"writing {path} failed ({_why(e)}); it is not marked complete. Free space (or fix "
                                  "the folder) and rerun the same command: it resumes after the last batch "
                                  "that reached the disk.") from e
        ds.clear()
        f.close()  # an error that is not an I/O error: everything written is flushed and kept
        raise
    _seal(path, names, n, batch_size)
    return path


def _reuse_read_only(path: Path, fp: dict, names: Sequence[str], n: int, batch_size: int) -> Path:
    """A store in a folder (or file) that cannot be written: usable as is when it is this run's, complete and
    verified; anything else is a StoreWriteError (nothing can be finished there)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        _raise_if_locked(path, e)
        raise CorruptStoreError(f"{path} exists but HDF5 cannot open it (truncated or corrupt: {e}); it was left "
                                "untouched.") from e
    with f:
        check_fingerprint(f, fp, path)
        _check_shapes(f, path, names, n, batch_size)
        n_batches = (n + batch_size - 1) // batch_size
        if bool(f.attrs["complete"]) and _first_bad_batch(f, names, n, batch_size, n_batches) is None:
            return path
    raise StoreWriteError(f"{path} is read-only and not a complete, verified store; it cannot be finished there. "
                          "Choose a writable --out.")


def _crc(arrays: Sequence[np.ndarray]) -> int:
    """CRC-32 of the arrays' bytes, in order (a batch's rows as computed, or as read back)."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc


_ABANDONED: list = []  # h5py objects of a file whose writes failed: never closed (see _abandon)


def _abandon(*objs) -> None:
    """Give up on an h5py file whose writes failed (a full disk). HDF5 cannot close such a file: closing it, or
    letting Python collect it, retries the failed writes and crashes the process (a segfault, h5py 3 / HDF5
    1.14). So its objects are kept alive and the process ends at exit with status 1 before HDF5's cleanup,
    after the named error has been printed. The file on disk is left as the failed run left it, unmarked."""
    import atexit

    if not _ABANDONED:
        atexit.register(_exit_before_hdf5_cleanup)
    _ABANDONED.extend(objs)


def _exit_before_hdf5_cleanup() -> None:
    """At exit after an abandoned file: flush the streams and end with status 1 before HDF5's own cleanup."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - nothing more to say on a closed stream
            pass
    os._exit(1)


def _why(e: BaseException) -> str:
    """An HDF5 I/O error in one line: '[Errno 28] No space left on device' when HDF5 names the errno."""
    import re

    m = re.search(r"errno = (\d+), error message = '([^']*)'", str(e))
    return f"[Errno {m.group(1)}] {m.group(2)}" if m else " ".join(str(e).split())


def _first_bad_batch(f, names: Sequence[str], n: int, batch_size: int, upto: int) -> int | None:
    """The first of batches [0, upto) whose rows on disk differ from what was computed (its checksum), or, in a
    store without checksums, that holds an unwritten row (a fill value where the model's outputs were finite)."""
    crcs = f["batch_crc"][()] if "batch_crc" in f else None
    for b in range(upto):
        lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
        acts = [f[f"acts/{name}"][lo:hi] for name in names]
        ll, pred = f["meta/letter_logits"][lo:hi], f["meta/pred"][lo:hi]
        if crcs is not None:
            if int(crcs[b]) != _crc([*acts, ll, pred, f["meta/pred_letter"][lo:hi]]):
                return b
            continue
        finite = np.isfinite(ll).all(1)
        unwritten = pred < 0
        for a in acts:
            unwritten |= finite & np.isnan(a.reshape(len(a), -1)).all(1)
        if unwritten.any():
            return b
    return None


def _check_shapes(f, path: Path, names: Sequence[str], n: int, batch_size: int) -> None:
    """Every dataset has one row per item (the fingerprint's count); else the file is refused by name."""
    wrong = [k for k in [*(f"acts/{m}" for m in names), *(f"meta/{c}" for c in f["meta"])]
             if k not in f or f[k].shape[0] != n]
    if "batch_crc" in f and f["batch_crc"].shape[0] != (n + batch_size - 1) // batch_size:
        wrong.append("batch_crc")
    if wrong:
        raise CorruptStoreError(f"{path} does not hold {n} rows in {', '.join(wrong[:4])}; it was left untouched. "
                                "Rerun with --overwrite (overwrite=True) to replace it.")


def _resume_point(f, path: Path, names: Sequence[str], n: int, batch_size: int) -> tuple[int, bool]:
    """(first batch to compute, whether the store is complete and verified). The batches the counter or the
    ``complete`` flag claim are read back and checked; the first that did not reach the disk, and all after
    it, are computed again (a warning names them)."""
    import warnings

    _check_shapes(f, path, names, n, batch_size)
    n_batches = (n + batch_size - 1) // batch_size
    complete = bool(f.attrs["complete"])
    claimed = n_batches if complete else min(n_batches, int(f["complete_batches"][()]))
    bad = _first_bad_batch(f, names, n, batch_size, claimed)
    if bad is None:
        return claimed, complete
    warnings.warn(f"{path} {'was marked complete but ' if complete else ''}holds rows that did not reach the disk "
                  f"(batch {bad} of {n_batches}, items {bad * batch_size}-{min(n, (bad + 1) * batch_size) - 1}); "
                  f"recomputing from item {bad * batch_size}", stacklevel=3)
    f.attrs["complete"] = False
    f["complete_batches"][()] = bad
    f.flush()
    return bad, False


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal(path: Path, names: Sequence[str], n: int, batch_size: int) -> None:
    """Mark a written store complete, honestly: sync it, reopen it, read every batch back against its checksum,
    and only then set the flag (and sync again). A batch that did not reach the disk is a StoreWriteError and
    the counter is moved back to it, so a rerun recomputes it."""
    import h5py

    try:
        _fsync(path)
        with h5py.File(path, "r") as f:
            _check_shapes(f, path, names, n, batch_size)
            counted = int(f["complete_batches"][()])
            bad = _first_bad_batch(f, names, n, batch_size, counted)
        n_batches = (n + batch_size - 1) // batch_size
        if bad is None and counted < n_batches:
            bad = counted
        if bad is not None:
            try:
                with h5py.File(path, "r+") as f:
                    f["complete_batches"][()] = min(counted, bad)
            except Exception:  # noqa: BLE001 - the resume check finds the bad batch anyway
                pass
            raise StoreWriteError(f"{path}: batch {bad} of {n_batches} (items from {bad * batch_size}) did not "
                                  "reach the disk as written (a full disk?); it is not marked complete. Free space "
                                  "and rerun the same command: it recomputes from there.")
        with h5py.File(path, "r+") as f:
            f.attrs["complete"] = True
            f.flush()
        _fsync(path)
    except (OSError, RuntimeError) as e:
        if isinstance(e, StoreError):
            raise
        raise StoreWriteError(f"finishing {path} failed ({_why(e)}); it is not marked complete. Free space and rerun "
                              "the same command.") from e


def _shard_verifies(path: Path) -> bool:
    """Whether a shard file is complete and every batch reads back equal to its checksum."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            fp = json.loads(f.attrs["fingerprint"])
            names, n, bs = fp["names"], fp["n_items"], fp["batch_size"]
            _check_shapes(f, path, names, n, bs)
            return bool(f.attrs["complete"]) and _first_bad_batch(f, names, n, bs, -(-n // bs)) is None
    except (OSError, KeyError, ValueError, StoreError):
        return False


def _write_virtual(path: Path, shards: list[Path], bounds: list[tuple[int, int]], fp: dict, prov: dict) -> None:
    """One file presenting the shards' datasets as whole datasets (h5py virtual datasets, relative paths)."""
    import h5py

    tmp = path.with_name(path.name + ".creating")
    n = bounds[-1][1]
    with h5py.File(shards[0], "r") as s0, h5py.File(tmp, "w") as f:
        dsets: list[str] = []
        s0.visititems(lambda k, v: dsets.append(k) if isinstance(v, h5py.Dataset) and k not in _BOOKKEEPING else None)
        for name in dsets:
            src = s0[name]
            layout = h5py.VirtualLayout(shape=(n,) + src.shape[1:], dtype=src.dtype)
            for sp, (lo, hi) in zip(shards, bounds):
                if hi > lo:
                    layout[lo:hi] = h5py.VirtualSource("./" + sp.name, name, shape=(hi - lo,) + src.shape[1:])
            fill = src.fillvalue if src.dtype.kind in "fiu" else None
            f.create_virtual_dataset(name, layout, fillvalue=fill)
        f.attrs["format"] = FORMAT
        f.attrs["fingerprint"] = json.dumps(fp, sort_keys=True)
        f.attrs["provenance"] = json.dumps(prov, sort_keys=True)
        f.attrs["shards"] = json.dumps([sp.name for sp in shards])
        f.attrs["complete"] = True
    os.replace(tmp, path)


def cache_split(
    hooked: LanguageModel,
    items: Sequence[BBQItem],
    out_path: str | os.PathLike,
    names: Sequence[str],
    positions: str | Sequence[int] = "last",
    dtype: str = "float16",
    batch_size: int = 16,
    split_hash: str | None = None,
    shuffle_options: bool = False,
    seed: int = 0,
    compression: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> Path:
    """Run ``items`` through ``hooked`` in batches and store activations of ``names`` at ``positions``
    (offsets from the prompt end; 'last' is where the answer letter is decided), the letter logits and the
    prediction, with provenance. Resumes a killed run of the same command; refuses foreign or corrupt files.
    Under an initialised ``torch.distributed`` group each rank writes a shard and rank 0 the virtual view.
    ``on_batch(k)`` is called after batch k is committed (tests use it to simulate a crash)."""
    if dtype not in STORE_DTYPES:
        raise InputError(f"store dtype must be one of {sorted(STORE_DTYPES)}, not {dtype!r}")
    dtype = "float16" if STORE_DTYPES[dtype] is np.float16 else "float32"
    if batch_size < 1:
        raise InputError("batch_size must be >= 1")
    if compression not in (None, "gzip", "lzf"):
        raise InputError(f"compression must be gzip, lzf or None, not {compression!r}")
    pos = parse_positions(positions)
    names = list(dict.fromkeys(names))
    hooked.check_names(names)
    path = Path(out_path)
    dist = torch.distributed
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1:
        return _write_store(hooked, items, path, names, pos, dtype, batch_size, split_hash, shuffle_options, seed,
                            compression, overwrite, progress, on_batch)
    return _cache_distributed(hooked, items, path, names, pos, dtype, batch_size, split_hash, shuffle_options,
                              seed, compression, overwrite, progress, on_batch)


def _cache_distributed(hooked, items, path, names, pos, dtype, batch_size, split_hash, shuffle, seed,
                       compression, overwrite, progress, on_batch) -> Path:
    dist = torch.distributed
    rank, world = dist.get_rank(), dist.get_world_size()
    fp = _fingerprint(hooked, items, names, pos, dtype, batch_size, split_hash, shuffle, seed, hooked.tokenizer)
    fp["world_size"] = world
    # rank 0 decides about an existing view; everyone learns the decision (or the error)
    decision = [None]
    if rank == 0:
        try:
            if overwrite:
                path.unlink(missing_ok=True)
            if path.exists():
                import h5py

                try:
                    f = h5py.File(path, "r")
                except OSError as e:
                    raise CorruptStoreError(f"{path} exists but HDF5 cannot open it (truncated or corrupt: {e}); "
                                            "rerun with --overwrite to replace it.") from e
                with f:
                    check_fingerprint(f, fp, path)
                    shards = [path.parent / s for s in json.loads(f.attrs.get("shards", "[]"))]
                bad = [sp.name for sp in shards if not _shard_verifies(sp)]
                if bad:  # the view is derived: drop it, let the ranks verify and finish their shards
                    import warnings

                    warnings.warn(f"{path}: shard(s) {bad} do not verify; recomputing what did not reach the disk",
                                  stacklevel=2)
                    path.unlink()
                    decision = ["run"]
                else:
                    decision = ["done"]
            else:
                decision = ["run"]
        except StoreError as e:
            decision = [f"{type(e).__name__}: {e}"]
    dist.broadcast_object_list(decision, src=0)
    if decision[0] == "done":
        return path
    if decision[0] != "run":
        raise StoreError(decision[0])
    bounds = shard_bounds(len(items), world)
    lo, hi = bounds[rank]
    shards = [shard_path(path, r, world) for r in range(world)]
    extra = dict(world_size=world, shard=rank, shard_start=lo, shard_stop=hi)
    static = {k: v[lo:hi] for k, v in _static_meta(items, shuffle, seed).items()}  # string widths of all items
    err = None
    try:
        _write_store(hooked, items[lo:hi], shards[rank], names, pos, dtype, batch_size, split_hash, shuffle, seed,
                     compression, overwrite, progress and rank == 0, on_batch, fp_extra=extra,
                     desc=f"cache rank {rank}", static=static)
    except Exception as e:  # noqa: BLE001 - reported to every rank below, then re-raised here
        err = e
    errors = [None] * world
    dist.all_gather_object(errors, None if err is None else f"rank {rank}: {type(err).__name__}: {err}")
    if err is not None:
        raise err
    if any(errors):
        raise StoreError("; ".join(e for e in errors if e))
    if rank == 0:
        _write_virtual(path, shards, bounds, fp, _provenance(hooked, hooked.tokenizer, split_hash))
    dist.barrier()
    return path


# ---- reading ---------------------------------------------------------------------------------------


class ActivationStore:
    """Read a store without loading it whole: ``.layer(name)`` reads one dataset, ``.items(sel)`` a slice of
    items across datasets, ``.meta`` the per-item table, ``.attrs`` the fingerprint and provenance."""

    def __init__(self, path: str | os.PathLike, allow_partial: bool = False):
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no activation store at {self.path}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            _raise_if_locked(self.path, e)
            raise CorruptStoreError(f"{self.path} cannot be opened by HDF5 (truncated or corrupt: {e})") from e
        if self._f.attrs.get("format") != FORMAT:
            self._f.close()
            raise ForeignStoreError(f"{self.path} is not an interp activation store")
        self.fingerprint = json.loads(self._f.attrs["fingerprint"])
        self.attrs = {**json.loads(self._f.attrs["provenance"]), **self.fingerprint}
        self.complete = bool(self._f.attrs["complete"])
        n = self.fingerprint["n_items"]
        if self.complete:
            self.n_complete = n
        elif "complete_batches" in self._f:
            self.n_complete = min(n, int(self._f["complete_batches"][()]) * self.fingerprint["batch_size"])
        else:
            self.n_complete = 0
        if not self.complete and not allow_partial:
            self._f.close()
            raise IncompleteStoreError(
                f"{self.path} is incomplete ({self.n_complete}/{n} items written); rerun the same cache command to "
                "finish it, or open with allow_partial=True to read the finished rows")

    # context manager
    def __enter__(self) -> "ActivationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    @property
    def names(self) -> list[str]:
        return list(self.fingerprint["names"])

    @property
    def n_items(self) -> int:
        return self.n_complete

    def layer(self, name: str) -> np.ndarray:
        """All (finished) items' activations for one hook name: ``[n_items, d]`` or ``[n_items, n_pos, d]``."""
        if name not in self.fingerprint["names"]:
            raise KeyError(f"{name!r} is not in {self.path}; it holds {', '.join(self.names)}")
        return self._f[f"acts/{name}"][: self.n_complete]

    def stack(self, hook: str = "hook_resid_post") -> tuple[list[int], np.ndarray]:
        """(layers, ``[n_items, n_layers, d]``) for one hook kind across the stored layers."""
        from interp.models.hooks import HookName

        parsed = [h for h in map(HookName.parse, self.names) if h.kind == hook]
        if not parsed:
            raise KeyError(f"no {hook} activations in {self.path}")
        names, layers = [str(h) for h in parsed], [h.layer for h in parsed]
        return layers, np.stack([self.layer(n) for n in names], axis=1)

    def items(self, sel: slice | Sequence[int] | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
        """{name: activations of the selected items} for every stored name (reads only those rows)."""
        if isinstance(sel, slice):
            sel = slice(*sel.indices(self.n_complete))
        else:
            sel = np.asarray(sel)
            order = np.argsort(sel)
            if np.any(sel >= self.n_complete):
                raise IndexError(f"item index out of range (store has {self.n_complete} items)")
            inv = np.empty_like(order)
            inv[order] = np.arange(len(order))
            srt = sel[order]
            return {n: self._f[f"acts/{n}"][srt][inv] for n in self.names}  # h5py needs increasing indices
        return {n: self._f[f"acts/{n}"][sel] for n in self.names}

    @property
    def meta(self):
        """Per-item table (pandas DataFrame): ids, category, condition, polarity, gold/target letters, the
        model's prediction and its A/B/C letter logits."""
        import pandas as pd

        n = self.n_complete
        cols = {}
        for k, ds in self._f["meta"].items():
            v = ds[:n]
            if v.dtype.kind == "S":
                cols[k] = [s.decode("utf-8") for s in v]
            elif v.ndim == 2 and k == "letter_logits":
                for j, L in enumerate("ABC"):
                    cols[f"logit_{L}"] = v[:, j]
            elif v.ndim == 2:
                cols[k] = [tuple(r) for r in v.tolist()]
            else:
                cols[k] = v
        df = pd.DataFrame(cols)
        first = [c for c in ("uid", "example_id", "category", "context_condition", "question_polarity", "label",
                             "gold_letter", "target_letter", "pred", "pred_letter") if c in df]
        return df[first + [c for c in df.columns if c not in first]]

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.path)!r}, {self.n_complete} items, {len(self.names)} datasets)"


def stores_equal(a: str | os.PathLike, b: str | os.PathLike, atol: float = 0.0) -> list[str]:
    """Differences between two stores' contents: every dataset, and the fingerprint (the world size, the
    progress counter, the batch checksums and provenance such as the creation time are ignored). Empty when equal.
    ``atol``
    allows float rounding (e.g. between runs with different thread counts); 0 means bit-identical."""
    import h5py

    def fp(f):
        return {k: v for k, v in json.loads(f.attrs["fingerprint"]).items() if k != "world_size"}

    def dsets(f):
        out: list[str] = []
        f.visititems(lambda k, v: out.append(k) if isinstance(v, h5py.Dataset) and k not in _BOOKKEEPING else None)
        return out

    diffs = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        if fp(fa) != fp(fb):
            diffs.append("fingerprint")
        if bool(fa.attrs["complete"]) != bool(fb.attrs["complete"]):
            diffs.append("complete")
        names, other = dsets(fa), dsets(fb)
        if sorted(names) != sorted(other):
            diffs.append(f"datasets differ: {sorted(set(names) ^ set(other))}")
        for k in names:
            if k in fb:
                x, y = fa[k][()], fb[k][()]
                if x.shape != y.shape or x.dtype != y.dtype:
                    diffs.append(k)
                elif x.dtype.kind == "f" and atol > 0:
                    if not np.allclose(x, y, atol=atol, rtol=0, equal_nan=True):
                        diffs.append(k)
                elif not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                    diffs.append(k)
    return diffs
