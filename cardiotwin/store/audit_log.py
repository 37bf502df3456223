"""The audit log as read back: records for review, the chain's head, and verification.

Writing records is the unit of work's job (:mod:`cardiotwin.store.unit_of_work`); the hash chain
itself is :mod:`cardiotwin.store.audit`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardiotwin.store.access import Actor
from cardiotwin.store.audit import (
    RECORD_FIELDS,
    AuditHead,
    AuditVerification,
    read_anchor,
    verify_chain,
)
from cardiotwin.store.checks import check_pseudonym
from cardiotwin.store.rows import AuditHeadRow, AuditRow, row_as_dict
from cardiotwin.store.unit_of_work import Done, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["AUDIT_FIELDS", "AuditLog"]

AUDIT_FIELDS: tuple[str, ...] = (*RECORD_FIELDS, "prev_hash", "hash")
"""The keys of each record returned by :meth:`AuditLog.records`."""


class AuditLog:
    """Reads and verifies the ``audit`` and ``audit_head`` tables and the anchor file.

    See :meth:`cardiotwin.store.Store.audit_records`, :meth:`~cardiotwin.store.Store.audit_head`
    and :meth:`~cardiotwin.store.Store.verify_audit`.

    Parameters
    ----------
    unit_of_work : UnitOfWork
        The store's transactions.
    anchor_path : Path
        The anchor file ``<root>/audit.head``.
    audit_key : bytes or None
        The key the chain was written with.
    """

    def __init__(
        self, unit_of_work: UnitOfWork, *, anchor_path: Path, audit_key: bytes | None
    ) -> None:
        self._uow = unit_of_work
        self.anchor_path = anchor_path
        self._key = audit_key

    def records(
        self,
        *,
        actor: Actor,
        purpose: str,
        pseudonym: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Audit records (oldest first), optionally of one patient; the read is audited."""
        if pseudonym is not None:
            check_pseudonym(pseudonym)

        def op(session: Session) -> Done:
            query = select(AuditRow).where(AuditRow.seq > since_seq).order_by(AuditRow.seq)
            if pseudonym is not None:
                query = query.where(AuditRow.patient_pseudonym == pseudonym)
            if limit is not None:
                query = query.limit(limit)
            rows = session.execute(query).scalars().all()
            out = [row_as_dict(r, AUDIT_FIELDS) for r in rows]
            return Done(out, details={"n_records": len(out), "since_seq": since_seq})

        return self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="audit.read",
            pseudonym=pseudonym,
            obj="audit",
        )

    def head(self) -> AuditHead:
        """The chain's current head (sequence number and hash)."""
        return self._uow.head()

    def verify(self, *, expected_head: AuditHead | None = None) -> AuditVerification:
        """Verify the whole audit chain and its head."""
        # Read the anchor file before the snapshot: it never leads the committed chain, so it
        # cannot lead a snapshot taken afterwards either.
        anchor = read_anchor(self.anchor_path)
        anchor_exists = self.anchor_path.exists()
        with self._uow.read_only() as conn:
            with conn.begin():
                tip = conn.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)).first()
                cols = [getattr(AuditRow, n) for n in AUDIT_FIELDS]
                result = conn.execute(
                    select(*cols).order_by(AuditRow.seq).execution_options(yield_per=2000)
                )
                anchors: dict[str, AuditHead] = {}
                if tip is not None:
                    anchors["the database head row"] = AuditHead(tip[0], tip[1])
                if anchor is not None:
                    anchors[f"the anchor file {self.anchor_path.name}"] = anchor
                verdict = verify_chain(
                    (r._asdict() for r in result),
                    key=self._key,
                    expected_head=expected_head,
                    anchors=anchors,
                )
        if not verdict.ok:
            logger.warning("audit verification failed: %s", verdict.reason)
            return verdict
        last = 0 if verdict.head is None else verdict.head.seq
        if tip is None:
            return AuditVerification(
                False, verdict.n_records, None, "the audit head row is missing", verdict.head
            )
        if tip[0] < last:
            return AuditVerification(
                False,
                verdict.n_records,
                tip[0] + 1,
                f"records {tip[0] + 1}..{last} were appended outside the store "
                f"(the database head row is seq {tip[0]})",
                verdict.head,
            )
        if anchor is None and last > 0:
            reason = (
                f"the anchor file {self.anchor_path} is "
                + ("unreadable" if anchor_exists else "missing")
                + "; the chain itself verified, but removal of its last records cannot be ruled "
                "out (compare with a head kept elsewhere: verify_audit(expected_head=...))"
            )
            return AuditVerification(False, verdict.n_records, None, reason, verdict.head)
        return verdict
