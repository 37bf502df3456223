"""The unit of work: one database transaction that makes a change and writes its audit record.

Every use case of the store that reads or writes patient-linked data runs as an *audited
operation* (:meth:`UnitOfWork.audited`): it takes an :class:`~cardiotwin.store.access.Actor` and
a purpose, and its audit record is written in the same transaction as the data change: either
both are committed or neither. Reads are audited too. A refused action (role not permitted)
raises :class:`~cardiotwin.errors.AccessDenied` after committing an audit record with outcome
``"denied"``; a failed one (unknown patient, version conflict...) raises after committing a
``"failure"`` record.

Concurrency: every audited transaction first takes the chain lock (``BEGIN IMMEDIATE`` on SQLite;
``SELECT … FOR UPDATE`` of the ``audit_head`` row elsewhere), so appends from several threads or
processes are serialised and the chain stays linear; a busy database is retried with backoff.
After each commit the new head is written to the anchor file ``<root>/audit.head``.

The repositories (:mod:`~cardiotwin.store.patients`, :mod:`~cardiotwin.store.twins`,
:mod:`~cardiotwin.store.results`, :mod:`~cardiotwin.store.users`…) describe *what* an operation
does as a function of the session returning :class:`Done`; this module decides *how* it is run
and audited. A new use case (e.g. erasing a patient's data) is one more such function.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cardiotwin.errors import AccessDenied, CardiotwinError, StoreError
from cardiotwin.store.access import PERMISSIONS, Actor, check_actor, is_allowed
from cardiotwin.store.audit import (
    GENESIS_HASH,
    AuditHead,
    canonical_record,
    chain_hash,
    utc_now_iso,
    write_anchor,
)
from cardiotwin.store.checks import check_purpose, json_native
from cardiotwin.store.engine import READONLY_OPTION, is_busy
from cardiotwin.store.rows import AuditHeadRow, AuditRow, Base

logger = logging.getLogger(__name__)

__all__ = ["Done", "DatabaseError", "AuditChain", "UnitOfWork"]

T = TypeVar("T")


@dataclass
class Done:
    """What an audited operation returns: its value and what to put in its audit record.

    Parameters
    ----------
    value : Any
        Returned to the caller of :meth:`UnitOfWork.audited`.
    object : str or None
        The audited object if more precise than the one named before the operation ran (e.g.
        ``"twin/v3"`` instead of ``"twin"``).
    details : dict
        The record's details (counts, versions, kinds; never identifying data).
    """

    value: Any
    object: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class DatabaseError(StoreError):
    """The database itself failed (not the request); no failure record is attempted."""


class AuditChain:
    """The audit chain within one transaction, its head row locked: appends records to it.

    Obtained from :meth:`UnitOfWork.run_chained`; valid only inside that transaction.
    """

    def __init__(self, session: Session, tip: AuditHeadRow, *, key: bytes | None) -> None:
        self._session = session
        self._tip = tip
        self._key = key
        self.n_appended = 0

    @property
    def head(self) -> AuditHead:
        """The chain's head including the records appended in this transaction."""
        return AuditHead(self._tip.seq, self._tip.hash)

    def append(
        self,
        *,
        actor: Actor,
        action: str,
        pseudonym: str | None,
        obj: str,
        purpose: str,
        outcome: str,
        details: Mapping[str, Any] | None = None,
        actor_name: str | None = None,
        role: str | None = "",
    ) -> AuditHead:
        """Append one audit record and return the new head.

        Parameters
        ----------
        actor : Actor
            Who acts (user name, role and client are recorded).
        action, obj, purpose, outcome : str
            The record's ``action``, ``object``, ``purpose`` and ``outcome``.
        pseudonym : str or None
            The patient concerned, if exactly one.
        details : mapping, optional
            JSON details (checked like any stored JSON).
        actor_name : str or None
            Record this user name instead of ``actor.username`` (a login attempt under a name
            that may not exist).
        role : str or None
            Record this role instead of ``actor.role`` ("" keeps the actor's; None: unknown).
        """
        tip = self._tip
        record = {
            "seq": tip.seq + 1,
            "time_utc": utc_now_iso(),
            "actor": (actor_name if actor_name is not None else actor.username)[:64],
            "role": actor.role if role == "" else role,
            "action": action,
            "patient_pseudonym": pseudonym,
            "object": obj,
            "purpose": purpose,
            "outcome": outcome,
            "client": actor.client,
            "details": json_native("audit details", dict(details or {})),
        }
        digest = chain_hash(tip.hash, canonical_record(record), key=self._key)
        self._session.add(AuditRow(**record, prev_hash=tip.hash, hash=digest))
        tip.seq = record["seq"]
        tip.hash = digest
        self.n_appended += 1
        return AuditHead(record["seq"], digest)


class UnitOfWork:
    """Transactions on the store's database, each with its audit records.

    Parameters
    ----------
    engine : Engine
        From :func:`cardiotwin.store.engine.make_engine`.
    anchor_path : Path
        The file that keeps a copy of the chain's head (``<root>/audit.head``).
    audit_key : bytes or None
        Key of the HMAC-SHA256 chain hashes (None: plain SHA-256).
    max_attempts : int
        How often a transaction is tried while the database is busy.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        anchor_path: Path,
        audit_key: bytes | None,
        max_attempts: int = 8,
    ) -> None:
        self.engine = engine
        self.anchor_path = anchor_path
        self._key = audit_key
        self._max_attempts = max_attempts
        self.url_display = engine.url.render_as_string(hide_password=True)
        """The database URL without its password, for messages."""
        self._session_factory = sessionmaker(engine, expire_on_commit=False)

    # ---- schema ---------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create missing tables and the chain's head row; start the anchor file if new."""
        for attempt in range(self._max_attempts):
            try:
                Base.metadata.create_all(self.engine)
                break
            except OperationalError as exc:
                # Another process created the tables between the check and the CREATE.
                if attempt + 1 < self._max_attempts and (
                    is_busy(exc) or "already exists" in str(exc.orig)
                ):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise StoreError(
                    f"cannot create the store schema in {self.url_display}: {exc.orig}"
                ) from exc

        def body(session: Session) -> AuditHead:
            tip = session.get(AuditHeadRow, 1)
            if tip is None:
                last = session.execute(
                    select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)
                ).scalar_one_or_none()
                tip = AuditHeadRow(
                    id=1,
                    seq=0 if last is None else last.seq,
                    hash=GENESIS_HASH if last is None else last.hash,
                )
                session.add(tip)
            return AuditHead(tip.seq, tip.hash)

        try:
            head = self.run(body)
        except DatabaseError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            head = self.head()  # created concurrently by another process
        if head.seq == 0 and not self.anchor_path.exists():
            write_anchor(self.anchor_path, head)

    # ---- transactions ---------------------------------------------------------------------

    def run(self, body: Callable[[Session], T]) -> T:
        """Run ``body`` in one write transaction, retrying if the database is busy.

        Raises
        ------
        DatabaseError
            If the database fails (or stays busy); the transaction is rolled back.
        """
        delay = 0.02
        for attempt in range(1, self._max_attempts + 1):
            try:
                with self._session_factory() as session, session.begin():
                    return body(session)
            except DBAPIError as exc:
                if is_busy(exc) and attempt < self._max_attempts:
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                raise DatabaseError(
                    f"the store database {self.url_display} could not complete the "
                    f"transaction: {exc.orig}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def run_chained(self, body: Callable[[Session, AuditChain], T]) -> T:
        """Run ``body`` in one write transaction holding the chain lock; anchor the new head.

        ``body`` gets the session and the locked :class:`AuditChain` to append its records to.
        """

        def locked(session: Session) -> tuple[T, AuditChain]:
            chain = AuditChain(session, self._lock_tip(session), key=self._key)
            return body(session, chain), chain

        value, chain = self.run(locked)
        if chain.n_appended:
            self._anchor(chain.head)
        return value

    def read_only(self) -> Connection:
        """A connection for a read-only snapshot (no write lock); use it as a context manager."""
        return self.engine.connect().execution_options(**{READONLY_OPTION: True})

    def head(self) -> AuditHead:
        """The chain's current head (sequence number and hash) as committed."""
        with self.read_only() as conn:
            row = conn.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)).first()
        return AuditHead(0, GENESIS_HASH) if row is None else AuditHead(row[0], row[1])

    def _lock_tip(self, session: Session) -> AuditHeadRow:
        tip = session.execute(
            select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()
        ).scalar_one_or_none()
        if tip is None:
            raise StoreError(
                f"the audit head row is missing from {self.url_display}; the audit table was "
                "tampered with or the schema is incomplete (run cardiotwin audit verify)"
            )
        return tip

    def _anchor(self, head: AuditHead) -> None:
        try:
            write_anchor(self.anchor_path, head)
        except OSError as exc:
            # The commit stands; the anchor only lags (verify then checks an older head).
            logger.error("could not update the audit head anchor %s: %s", self.anchor_path, exc)

    # ---- audited operations ---------------------------------------------------------------

    def record(
        self,
        *,
        actor: Actor,
        action: str,
        pseudonym: str | None,
        obj: str,
        purpose: str,
        outcome: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Commit a lone audit record (a denial, a failure, an action done outside the store)."""

        def body(_session: Session, chain: AuditChain) -> None:
            chain.append(
                actor=actor,
                action=action,
                pseudonym=pseudonym,
                obj=obj,
                purpose=purpose,
                outcome=outcome,
                details=details,
            )

        self.run_chained(body)

    def authorise(
        self,
        actor: Actor,
        permission: str,
        *,
        action: str,
        pseudonym: str | None,
        obj: str,
        purpose: str,
    ) -> None:
        """Return if ``actor`` holds ``permission``; else audit the denial and raise.

        Raises
        ------
        AccessDenied
            After committing an audit record with outcome ``"denied"``.
        """
        if is_allowed(actor.role, permission):
            return
        self.record(
            actor=actor,
            action=action,
            pseudonym=pseudonym,
            obj=obj,
            purpose=purpose,
            outcome="denied",
            details={"permission": permission},
        )
        allowed = ", ".join(sorted(PERMISSIONS.get(permission, ())))
        logger.warning(
            "denied %s to %s (role %s) on %s",
            permission,
            actor.username,
            actor.role,
            pseudonym or obj,
        )
        raise AccessDenied(
            f"user '{actor.username}' with role '{actor.role}' may not do '{permission}' "
            f"(allowed roles: {allowed or 'none'}); the attempt was recorded in the audit log"
        )

    def audited(
        self,
        op: Callable[[Session], Done],
        *,
        actor: Actor,
        purpose: str,
        action: str,
        permission: str,
        pseudonym: str | None,
        obj: str,
    ) -> Any:
        """Run ``op`` and its audit record in one transaction; return ``op``'s value.

        Parameters
        ----------
        op : callable
            Does the work in the session it is given and returns a :class:`Done`; raises a
            :class:`~cardiotwin.errors.CardiotwinError` if the request fails.
        actor, purpose
            Who and why (checked and recorded).
        action : str
            The record's action (``"read"``, ``"write"``, ``"create"``, ``"admin"``…).
        permission : str
            The permission ``actor`` must hold (:data:`~cardiotwin.store.access.PERMISSIONS`).
        pseudonym : str or None
            The patient concerned, if exactly one.
        obj : str
            The object recorded (unless ``op`` names a more precise one).

        Raises
        ------
        AccessDenied
            If the role lacks ``permission`` (a ``"denied"`` record is committed).
        CardiotwinError
            Whatever ``op`` raised, after committing a ``"failure"`` record and rolling back the
            work.
        DatabaseError
            If the database fails (nothing is recorded).
        """
        check_actor(actor)
        purpose = check_purpose(purpose)
        self.authorise(
            actor, permission, action=action, pseudonym=pseudonym, obj=obj, purpose=purpose
        )

        def body(session: Session, chain: AuditChain) -> Any:
            done = op(session)
            chain.append(
                actor=actor,
                action=action,
                pseudonym=pseudonym,
                obj=done.object or obj,
                purpose=purpose,
                outcome="success",
                details=done.details,
            )
            return done.value

        try:
            return self.run_chained(body)
        except DatabaseError:
            raise
        except CardiotwinError as exc:
            self.record(
                actor=actor,
                action=action,
                pseudonym=pseudonym,
                obj=obj,
                purpose=purpose,
                outcome="failure",
                details={"error": type(exc).__name__, "message": str(exc)[:500]},
            )
            raise
