"""Content-addressed artifacts: hash addressing, idempotence, atomic writes, corruption."""

from __future__ import annotations

import hashlib
import os

import pytest

from cardiotwin.errors import StoreError
from cardiotwin.store import ArtifactStore


def test_bytes_are_stored_under_their_sha256(tmp_path):
    arts = ArtifactStore(tmp_path / "a")
    data = b"mesh content \x00\x01" * 1000
    sha, size = arts.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()  # independent hash
    assert size == len(data)
    path = arts.path(sha)
    assert path == tmp_path / "a" / sha[:2] / sha[2:]
    assert path.read_bytes() == data
    assert arts.read_bytes(sha) == data
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)


def test_put_is_idempotent_and_leaves_no_temp_files(tmp_path):
    arts = ArtifactStore(tmp_path / "a")
    src = tmp_path / "field.h5"
    src.write_bytes(os.urandom(3 * (1 << 20) + 17))  # > one 1 MiB chunk
    sha1, size1 = arts.put_file(src)
    mtime = arts.path(sha1).stat().st_mtime_ns
    sha2, _ = arts.put_file(src)
    sha3, _ = arts.put_bytes(src.read_bytes())
    assert sha1 == sha2 == sha3 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert size1 == src.stat().st_size
    assert arts.path(sha1).stat().st_mtime_ns == mtime  # not rewritten
    files = [p for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert files == [arts.path(sha1)]


def test_corrupted_artifact_raises_and_is_repaired_by_a_new_put(tmp_path):
    arts = ArtifactStore(tmp_path / "a")
    sha, _ = arts.put_bytes(b"original")
    path = arts.path(sha)
    path.chmod(0o644)
    path.write_bytes(b"0riginal")
    with pytest.raises(StoreError, match="corrupted"):
        arts.path(sha)
    with pytest.raises(StoreError, match="corrupted"):
        arts.read_bytes(sha)
    assert arts.put_bytes(b"original")[0] == sha
    assert arts.read_bytes(sha) == b"original"


def test_missing_and_malformed(tmp_path):
    arts = ArtifactStore(tmp_path / "a")
    with pytest.raises(StoreError, match="missing"):
        arts.path("0" * 64)
    with pytest.raises(StoreError, match="SHA-256"):
        arts.path("../../etc/passwd")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    arts = ArtifactStore(tmp_path / "a")

    def failing_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        arts.put_bytes(b"data")
    monkeypatch.undo()
    assert [p for p in (tmp_path / "a").rglob("*") if p.is_file()] == []


def test_store_put_artifact_records_row(store):
    sha = store.put_artifact(b"abc", kind="mesh")
    assert sha == hashlib.sha256(b"abc").hexdigest()
    assert store.put_artifact(b"abc", kind="mesh") == sha
    assert store.artifact_path(sha).read_bytes() == b"abc"
    import sqlite3

    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    rows = con.execute("SELECT sha256, kind, relpath, size FROM artifacts").fetchall()
    con.close()
    assert rows == [(sha, "mesh", f"{sha[:2]}/{sha[2:]}", 3)]
