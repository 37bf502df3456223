"""Monitoring observations and the quarantine: ingesting a batch into a new twin version, audited.

One ingest is one transaction (:meth:`ObservationRepository.ingest`): the observations not seen
before are checked against those stored (a duplicate is recognised by its key hash and not
stored again; an earlier time than the stream's last stored one, or another value at a stored
time, is quarantined), the twin's latest state is updated by a function the caller gives (the
store does not import the twin package), and the new twin version, the observation rows (each
naming that version) and the quarantine rows are committed together with the audit record:
all or nothing.

Observations and rejections cross this boundary as plain dicts:

* observation: ``key_sha256``, ``time_utc`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), ``code``,
  ``device``, ``value_si``, ``value_as_received``, ``unit``, ``source``, ``record``;
* rejection: the fields of ``cardiotwin.monitoring.Rejection`` (``kind``, ``source``,
  ``record``, ``field``, ``reason``, ``value``, ``expected``, ``raw``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardiotwin.errors import CardiotwinError, InputError, StoreError
from cardiotwin.store.access import Actor, check_actor
from cardiotwin.store.audit import utc_now_iso
from cardiotwin.store.checks import check_pseudonym, check_purpose, json_native
from cardiotwin.store.rows import (
    ObservationRow,
    PatientRow,
    QuarantineRow,
    TwinVersionRow,
    row_as_dict,
)
from cardiotwin.store.twins import insert_version
from cardiotwin.store.unit_of_work import AuditChain, Done, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["OBSERVATION_FIELDS", "QUARANTINE_FIELDS", "IngestRecord", "ObservationRepository"]

OBSERVATION_FIELDS: tuple[str, ...] = (
    "id", "pseudonym", "twin_version", "key_sha256", "time_utc", "code", "device", "value_si",
    "value_as_received", "unit", "source", "record", "received_utc",
)
"""The keys of each observation returned by :meth:`ObservationRepository.list_for`."""

QUARANTINE_FIELDS: tuple[str, ...] = (
    "id", "pseudonym", "received_utc", "kind", "source", "record", "field", "reason", "value",
    "expected", "raw",
)
"""The keys of each rejection returned by :meth:`ObservationRepository.quarantine_for`."""

_OBS_KEYS = ("key_sha256", "time_utc", "code", "device", "value_si", "value_as_received", "unit",
             "source", "record")
_REJ_KEYS = ("kind", "source", "record", "field", "reason", "value", "expected", "raw")

#: update(latest twin state, new observations) → (new twin state, reason of the version)
Update = Callable[[dict[str, Any], list[dict[str, Any]]], tuple[dict[str, Any], str]]


@dataclass(frozen=True)
class IngestRecord:
    """What :meth:`ObservationRepository.ingest` committed.

    Attributes
    ----------
    version : the new twin version, or None when nothing new was accepted.
    base_version : the version the update started from.
    accepted : key hashes of the observations stored, in the order given.
    duplicates : how many were already stored (or given twice).
    rejections : the quarantined records, those given and those the stored checks refused.
    state : the new twin state (None when no version was written).
    """

    version: int | None
    base_version: int
    accepted: tuple[str, ...]
    duplicates: int
    rejections: tuple[dict[str, Any], ...]
    state: dict[str, Any] | None = field(default=None, repr=False)


def _check_obs(d: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in _OBS_KEYS if k not in d]
    if missing:
        raise InputError(f"observation dict lacks {missing}; expected keys {list(_OBS_KEYS)}")
    return {k: d[k] for k in _OBS_KEYS}


def _check_rej(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: str(d.get(k, "") or "") for k in _REJ_KEYS}
    if not out["kind"] or not out["reason"]:
        raise InputError("a quarantined record needs a kind and a reason")
    return out


class ObservationRepository:
    """The ``observations`` and ``quarantine`` tables (with the twin version an ingest writes).

    See :meth:`cardiotwin.store.Store.ingest_observations`,
    :meth:`~cardiotwin.store.Store.list_observations` and
    :meth:`~cardiotwin.store.Store.list_quarantine`.
    """

    def __init__(self, unit_of_work: UnitOfWork) -> None:
        self._uow = unit_of_work

    def ingest(
        self,
        pseudonym: str,
        *,
        observations: Sequence[Mapping[str, Any]],
        rejections: Sequence[Mapping[str, Any]],
        update: Update,
        actor: Actor,
        purpose: str,
    ) -> IngestRecord:
        """Store new observations and the twin version they give, and the rejections; one
        audited transaction. ``update`` runs inside it on the latest state (so two ingests for
        one patient never interleave)."""
        check_pseudonym(pseudonym)
        obs = [_check_obs(o) for o in observations]
        rejs = [_check_rej(r) for r in rejections]

        def op(session: Session) -> Done:
            return self._ingest_one(session, pseudonym, obs, rejs, update)

        record = self._uow.audited(op, actor=actor, purpose=purpose, action="write",
                                   permission="twin.write", pseudonym=pseudonym,
                                   obj="observations")
        logger.info("ingest %s: %d accepted, %d duplicates, %d quarantined -> version %s",
                    pseudonym, len(record.accepted), record.duplicates, len(record.rejections),
                    record.version)
        return record

    def ingest_many(
        self,
        items: Sequence[tuple[str, Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
        *,
        update: Update,
        actor: Actor,
        purpose: str,
    ) -> list[IngestRecord | CardiotwinError]:
        """The ingests of several patients in **one** transaction (one disk sync for all).

        ``items`` are ``(pseudonym, observations, rejections)``. Each item runs in its own
        savepoint with its own audit record, exactly as :meth:`ingest` would; an item the store
        refuses (unknown patient, no twin, a bad state) is rolled back to its savepoint, audited
        as a failure and returned as its error, and the others are committed. Returns one
        :class:`IngestRecord` or error per item, in order.

        Raises
        ------
        AccessDenied
            The role may not write twins (audited once).
        DatabaseError
            The transaction failed as a whole; nothing is written.
        """
        checked = []
        for pseudonym, observations, rejections in items:
            check_pseudonym(pseudonym)
            checked.append((pseudonym, [_check_obs(o) for o in observations],
                            [_check_rej(r) for r in rejections]))
        check_actor(actor)
        purpose = check_purpose(purpose)
        self._uow.authorise(actor, "twin.write", action="write", pseudonym=None,
                            obj="observations", purpose=purpose)

        def body(session: Session, chain: AuditChain) -> list[IngestRecord | CardiotwinError]:
            out: list[IngestRecord | CardiotwinError] = []
            for pseudonym, obs, rejs in checked:
                savepoint = session.begin_nested()
                try:
                    done = self._ingest_one(session, pseudonym, obs, rejs, update)
                except CardiotwinError as exc:
                    savepoint.rollback()
                    chain.append(actor=actor, action="write", pseudonym=pseudonym,
                                 obj="observations", purpose=purpose, outcome="failure",
                                 details={"error": type(exc).__name__,
                                          "message": str(exc)[:500]})
                    out.append(exc)
                    continue
                savepoint.commit()
                chain.append(actor=actor, action="write", pseudonym=pseudonym,
                             obj=done.object or "observations", purpose=purpose,
                             outcome="success", details=done.details)
                out.append(done.value)
            return out

        records = self._uow.run_chained(body)
        logger.info("ingest of %d patients in one transaction: %d new versions, %d refused",
                    len(records), sum(isinstance(r, IngestRecord) and r.version is not None
                                      for r in records),
                    sum(isinstance(r, CardiotwinError) for r in records))
        return records

    def _ingest_one(self, session: Session, pseudonym: str, obs: list[dict[str, Any]],
                    rejs: list[dict[str, Any]], update: Update) -> Done:
        """The work of one patient's ingest inside the caller's transaction."""
        if session.get(PatientRow, pseudonym) is None:
            raise StoreError(f"patient {pseudonym} is not in this store; build the twin first "
                             "(cardiotwin twin build)")
        latest = session.execute(
            select(TwinVersionRow)
            .where(TwinVersionRow.pseudonym == pseudonym)
            .order_by(TwinVersionRow.version.desc())
            .limit(1)
        ).scalar_one_or_none()
        if latest is None:
            raise StoreError(f"patient {pseudonym} has no twin to update; build it first "
                             "(cardiotwin twin build)")
        fresh, dupes, refused = self._screen(session, pseudonym, obs)
        now = utc_now_iso()
        version = None
        state = None
        if fresh:
            state, reason = update(dict(latest.state), [dict(o) for o in fresh])
            state = json_native(f"twin {pseudonym} state", state)
            saved = insert_version(session, pseudonym, state, base_version=latest.version,
                                   reason=reason)
            version = saved.version
            state = {**state, "version": version, "history": saved.history}
            for o in fresh:
                session.add(ObservationRow(pseudonym=pseudonym, twin_version=version,
                                           received_utc=now, **o))
        for r in [*rejs, *refused]:
            session.add(QuarantineRow(pseudonym=pseudonym, received_utc=now, **r))
        details = {"accepted": len(fresh), "duplicates": dupes,
                   "quarantined": len(rejs) + len(refused), "twin_version": version}
        record = IngestRecord(version, latest.version, tuple(o["key_sha256"] for o in fresh),
                              dupes, tuple([*rejs, *refused]), state)
        return Done(record, object="observations" if version is None
                    else f"twin/v{version}", details=details)

    @staticmethod
    def _screen(session: Session, pseudonym: str, obs: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
        """Split ``obs`` into new ones, duplicates and refusals against what is stored."""
        if not obs:
            return [], 0, []
        keys = {o["key_sha256"] for o in obs}
        known = set(session.execute(
            select(ObservationRow.key_sha256).where(ObservationRow.pseudonym == pseudonym,
                                                    ObservationRow.key_sha256.in_(keys))
        ).scalars())
        last = {(c, d): t for c, d, t in session.execute(
            select(ObservationRow.code, ObservationRow.device, func.max(ObservationRow.time_utc))
            .where(ObservationRow.pseudonym == pseudonym)
            .group_by(ObservationRow.code, ObservationRow.device))}
        fresh: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        dupes = 0
        seen: set[str] = set()
        for o in obs:
            if o["key_sha256"] in known or o["key_sha256"] in seen:
                dupes += 1
                continue
            stream = (o["code"], o["device"])
            t_last = last.get(stream)
            if t_last is not None and o["time_utc"] <= t_last:
                same_time = o["time_utc"] == t_last
                refused.append({
                    "kind": "conflict" if same_time else "out-of-order",
                    "source": str(o["source"]), "record": str(o["record"]),
                    "field": "value" if same_time else "time",
                    "reason": (f"{o['source']}#{o['record']}: "
                               + ("another value of this stream at the same time is stored"
                                  if same_time else
                                  f"time {o['time_utc']} is not after the last stored "
                                  f"observation of this stream ({t_last})")),
                    "value": f"{o['value_as_received']:g} {o['unit']} at {o['time_utc']}",
                    "expected": f"a time after {t_last}", "raw": ""})
                continue
            seen.add(o["key_sha256"])
            fresh.append(o)
        return fresh, dupes, refused

    def list_for(self, pseudonym: str, *, actor: Actor, purpose: str,
                 upto_version: int | None = None, after_version: int | None = None
                 ) -> list[dict[str, Any]]:
        """Stored observations of a patient in ingest order, optionally only those assimilated
        into versions ``after_version < v <= upto_version``."""
        check_pseudonym(pseudonym)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is None:
                raise StoreError(f"patient {pseudonym} is not in this store")
            q = select(ObservationRow).where(ObservationRow.pseudonym == pseudonym)
            if upto_version is not None:
                q = q.where(ObservationRow.twin_version <= upto_version)
            if after_version is not None:
                q = q.where(ObservationRow.twin_version > after_version)
            rows = session.execute(q.order_by(ObservationRow.id)).scalars().all()
            out = [row_as_dict(r, OBSERVATION_FIELDS) for r in rows]
            return Done(out, details={"n_observations": len(out)})

        return self._uow.audited(op, actor=actor, purpose=purpose, action="read",
                                 permission="twin.read", pseudonym=pseudonym, obj="observations")

    def quarantine_for(self, pseudonym: str, *, actor: Actor, purpose: str
                       ) -> list[dict[str, Any]]:
        """The quarantined records of a patient (oldest first)."""
        check_pseudonym(pseudonym)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is None:
                raise StoreError(f"patient {pseudonym} is not in this store")
            rows = session.execute(select(QuarantineRow).where(QuarantineRow.pseudonym ==
                                                               pseudonym)
                                   .order_by(QuarantineRow.id)).scalars().all()
            out = [row_as_dict(r, QUARANTINE_FIELDS) for r in rows]
            return Done(out, details={"n_rejections": len(out)})

        return self._uow.audited(op, actor=actor, purpose=purpose, action="read",
                                 permission="twin.read", pseudonym=pseudonym, obj="quarantine")
