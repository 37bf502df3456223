"""The index of artifacts: registers content-addressed files in the ``artifacts`` table.

The files themselves live under ``<root>/artifacts`` (:class:`cardiotwin.store.artifacts.ArtifactStore`);
this index records each one's kind, size and place so that results can refer to artifacts by
SHA-256 and the database checks that they exist.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardiotwin.store.artifacts import ArtifactStore, check_sha256
from cardiotwin.store.audit import utc_now_iso
from cardiotwin.store.checks import check_kind
from cardiotwin.store.rows import ArtifactRow
from cardiotwin.store.unit_of_work import DatabaseError, UnitOfWork

__all__ = ["ArtifactIndex"]


class ArtifactIndex:
    """Artifact files and their rows.

    See :meth:`cardiotwin.store.Store.put_artifact` and
    :meth:`~cardiotwin.store.Store.artifact_path`.

    Parameters
    ----------
    unit_of_work : UnitOfWork
        The store's transactions.
    files : ArtifactStore
        Where the files are kept.
    """

    def __init__(self, unit_of_work: UnitOfWork, files: ArtifactStore) -> None:
        self._uow = unit_of_work
        self.files = files

    def put(self, path_or_bytes: Path | str | bytes, *, kind: str) -> str:
        """Store a file or content as an artifact (idempotent); return its SHA-256."""
        check_kind(kind, what="artifact")
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            sha, size = self.files.put_bytes(bytes(path_or_bytes))
        else:
            sha, size = self.files.put_file(Path(path_or_bytes))

        def body(session: Session) -> None:
            if session.get(ArtifactRow, sha) is None:
                session.add(
                    ArtifactRow(
                        sha256=sha,
                        kind=kind,
                        relpath=ArtifactStore.relpath(sha),
                        size=size,
                        created_utc=utc_now_iso(),
                    )
                )

        try:
            self._uow.run(body)
        except DatabaseError as exc:
            if not isinstance(exc.__cause__, IntegrityError):  # same artifact added concurrently
                raise
        return sha

    def path(self, sha: str, *, verify: bool = True) -> Path:
        """Path of a stored artifact, its content verified against ``sha``."""
        return self.files.path(check_sha256(sha), verify=verify)
