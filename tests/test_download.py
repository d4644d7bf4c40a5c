"""The official-data download: pinned files, sha256-checked, atomic, cached; a clear message offline."""

import hashlib
import io
import urllib.error

import pytest

from interp.data import download


def _fake_files(monkeypatch, payloads):
    """Serve payloads by URL suffix and pin their checksums."""
    files = {f"data/X{i}.jsonl": (f"data/X{i}.jsonl", hashlib.sha256(p).hexdigest()) for i, p in enumerate(payloads)}
    monkeypatch.setattr(download, "BBQ_FILES", files)
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        i = int(url.rsplit("X", 1)[1].split(".")[0])
        return io.BytesIO(payloads[i])

    monkeypatch.setattr(download.urllib.request, "urlopen", urlopen)
    return calls


def test_download_verifies_and_caches(monkeypatch, tmp_path):
    calls = _fake_files(monkeypatch, [b'{"a": 1}\n', b'{"b": 2}\n'])
    d = download.download_bbq(tmp_path)
    assert d == tmp_path / "data" and (d / "X0.jsonl").read_bytes() == b'{"a": 1}\n'
    assert len(calls) == 2 and calls[0].startswith(download.BBQ_BASE)
    download.download_bbq(tmp_path)
    assert len(calls) == 2  # cached files that verify are not fetched again


def test_checksum_mismatch_leaves_nothing(monkeypatch, tmp_path):
    _fake_files(monkeypatch, [b"good\n"])
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"tampered\n"))
    with pytest.raises(download.DownloadError, match="checksum mismatch"):
        download.download_bbq(tmp_path)
    assert not (tmp_path / "data" / "X0.jsonl").exists()
    assert not list((tmp_path / "data").glob(".part-*"))


def test_offline_message(monkeypatch, tmp_path):
    _fake_files(monkeypatch, [b"x\n"])

    def boom(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download.urllib.request, "urlopen", boom)
    with pytest.raises(download.DownloadError, match="INTERP_BBQ_DIR"):
        download.download_bbq(tmp_path)


def test_pinned_checksums_match_the_shared_copy(bbq_dir):
    root = bbq_dir.parent
    for local, (_, digest) in download.BBQ_FILES.items():
        assert download.sha256(root / local) == digest, local
