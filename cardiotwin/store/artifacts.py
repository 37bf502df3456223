"""Content-addressed artifact files (meshes, fields, reports) under ``<root>/artifacts``.

A file with SHA-256 ``abcdef…`` lives at ``artifacts/ab/cdef…``. Writes are atomic (a temporary
file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of the directory), so a crash
never leaves a half-written artifact under its final name; writing the same content twice is a
no-op. Reads verify the hash, so a corrupted file raises :class:`~cardiotwin.errors.StoreError`
instead of silently feeding wrong data to a solver.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from cardiotwin.errors import StoreError
from cardiotwin.fileio import atomic_write_bytes
from cardiotwin.fileio import fsync_dir as _fsync_dir

logger = logging.getLogger(__name__)

__all__ = ["ArtifactStore", "atomic_write_bytes", "check_sha256"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def check_sha256(sha: str) -> str:
    """Validate a lower-case hex SHA-256 digest and return it."""
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise StoreError(f"{sha!r} is not a SHA-256 hex digest (64 lower-case hex characters)")
    return sha


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


class ArtifactStore:
    """Content-addressed files below one directory.

    Parameters
    ----------
    root : Path
        Directory holding the artifacts (created if missing), normally ``<store root>/artifacts``.

    Notes
    -----
    Stored files are made read-only (mode 0444) to guard against accidental edits; the hash check
    on read guards against everything else.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def relpath(sha: str) -> str:
        """Path of an artifact relative to the artifact root: ``ab/cdef…``."""
        check_sha256(sha)
        return f"{sha[:2]}/{sha[2:]}"

    def _final(self, sha: str) -> Path:
        return self.root / self.relpath(sha)

    def exists(self, sha: str) -> bool:
        """Whether a file for ``sha`` is present (its content is not checked)."""
        return self._final(sha).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return its SHA-256 and size in bytes. Idempotent."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StoreError(f"artifact content must be bytes, got {type(data).__name__}")
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        final = self._final(sha)
        if not self._intact(final, sha):
            atomic_write_bytes(final, data, mode=0o444)
            logger.debug("stored artifact %s (%d bytes)", sha, len(data))
        return sha, len(data)

    def put_file(self, path: Path) -> tuple[str, int]:
        """Copy the file at ``path`` into the store; return its SHA-256 and size. Idempotent.

        The file is streamed into a temporary file while hashing (one read of the source), so
        large meshes are not loaded into memory.
        """
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"artifact source {path} is not a readable file")
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming.", suffix=".tmp")
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while block := src.read(_CHUNK):
                    h.update(block)
                    out.write(block)
                    size += len(block)
                out.flush()
                os.fsync(out.fileno())
            sha = h.hexdigest()
            final = self._final(sha)
            if self._intact(final, sha):
                Path(tmp).unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
                logger.debug("stored artifact %s (%d bytes)", sha, size)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, size

    def _intact(self, final: Path, sha: str) -> bool:
        if not final.is_file():
            return False
        actual, _ = _hash_file(final)
        if actual != sha:
            logger.warning("artifact %s was corrupted on disk; rewriting it", sha)
            return False
        return True

    def path(self, sha: str, *, verify: bool = True) -> Path:
        """Path of the artifact ``sha``.

        Parameters
        ----------
        sha : str
            SHA-256 hex digest returned by :meth:`put_bytes` / :meth:`put_file`.
        verify : bool
            Re-hash the file and compare (default). Turn off only for files you hash yourself.

        Raises
        ------
        StoreError
            If the artifact is missing or its content no longer matches its hash.
        """
        final = self._final(sha)
        if not final.is_file():
            raise StoreError(
                f"artifact {sha} is missing from {self.root}; it was never stored here or the "
                "artifacts directory was moved without the database"
            )
        if verify:
            actual, _ = _hash_file(final)
            if actual != sha:
                raise StoreError(
                    f"artifact {sha} is corrupted: its content hashes to {actual}; restore "
                    f"{final} from a backup or store the file again"
                )
        return final

    def read_bytes(self, sha: str) -> bytes:
        """Content of the artifact ``sha``, verified against its hash."""
        final = self.path(sha, verify=False)
        data = final.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise StoreError(
                f"artifact {sha} is corrupted: its content hashes to {actual}; restore "
                f"{final} from a backup or store the file again"
            )
        return data

    def copy_to(self, sha: str, dest: Path) -> Path:
        """Copy the verified artifact ``sha`` to ``dest`` (a writable copy) and return ``dest``."""
        src = self.path(sha)
        dest = Path(dest)
        shutil.copyfile(src, dest)
        return dest
