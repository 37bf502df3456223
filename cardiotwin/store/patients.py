"""Patients: registering pseudonymised patients and listing them, each call audited.

A patient is a pseudonym and non-identifying metadata; keys that name a direct identifier
(:func:`cardiotwin.privacy.find_identifying_key`, plus a bare ``name``) are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardiotwin.errors import InputError, StoreError
from cardiotwin.privacy import find_identifying_key
from cardiotwin.store.access import Actor
from cardiotwin.store.audit import utc_now_iso
from cardiotwin.store.checks import check_pseudonym, json_native
from cardiotwin.store.rows import PatientRow, ResultRow, TwinVersionRow
from cardiotwin.store.unit_of_work import Done, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["PatientRepository", "checked_patient_meta"]

# Patient metadata must not hold a bare "name" either (the twin may: a boundary cap has one).
_EXTRA_IDENTIFYING_KEYS = frozenset({"name"})


def checked_patient_meta(pseudonym: str, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """Patient metadata as plain JSON, refused (InputError) if any key names a direct
    identifier."""
    meta_native = json_native("patient meta", dict(meta or {}))
    bad = find_identifying_key(meta_native, "meta", extra=_EXTRA_IDENTIFYING_KEYS)
    if bad:
        raise InputError(
            f"patient {pseudonym}: {bad} looks like a direct identifier; the store keeps only "
            "pseudonymised, non-identifying metadata"
        )
    return meta_native


class PatientRepository:
    """The ``patients`` table (with counts from ``twin_versions`` and ``results``).

    See :meth:`cardiotwin.store.Store.create_patient`, :meth:`~cardiotwin.store.Store.ensure_patient`
    and :meth:`~cardiotwin.store.Store.list_patients` for the behaviour and errors.
    """

    def __init__(self, unit_of_work: UnitOfWork) -> None:
        self._uow = unit_of_work

    def create(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Register a new patient (StoreError if it exists)."""
        check_pseudonym(pseudonym)
        meta_native = checked_patient_meta(pseudonym, meta)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is not None:
                raise StoreError(f"patient {pseudonym} exists already")
            session.add(
                PatientRow(pseudonym=pseudonym, created_utc=utc_now_iso(), meta=meta_native)
            )
            return Done(None, details={"meta_keys": sorted(meta_native)})

        self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="create",
            permission="patient.create",
            pseudonym=pseudonym,
            obj="patient",
        )
        logger.info("created patient %s", pseudonym)

    def ensure(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Register a patient unless already registered; return True if it was created."""
        check_pseudonym(pseudonym)
        meta_native = checked_patient_meta(pseudonym, meta)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is not None:
                return Done(False, details={"created": False})
            session.add(
                PatientRow(pseudonym=pseudonym, created_utc=utc_now_iso(), meta=meta_native)
            )
            return Done(True, details={"created": True, "meta_keys": sorted(meta_native)})

        return self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="create",
            permission="patient.create",
            pseudonym=pseudonym,
            obj="patient",
        )

    def list_all(self, *, actor: Actor, purpose: str) -> list[dict[str, Any]]:
        """All patients with their latest twin version and number of results."""

        def op(session: Session) -> Done:
            latest = (
                select(TwinVersionRow.pseudonym, func.max(TwinVersionRow.version).label("v"))
                .group_by(TwinVersionRow.pseudonym)
                .subquery()
            )
            counts = (
                select(ResultRow.pseudonym, func.count(ResultRow.id).label("n"))
                .group_by(ResultRow.pseudonym)
                .subquery()
            )
            rows = session.execute(
                select(PatientRow, latest.c.v, counts.c.n)
                .outerjoin(latest, latest.c.pseudonym == PatientRow.pseudonym)
                .outerjoin(counts, counts.c.pseudonym == PatientRow.pseudonym)
                .order_by(PatientRow.pseudonym)
            ).all()
            out = [
                {
                    "pseudonym": p.pseudonym,
                    "created_utc": p.created_utc,
                    "meta": p.meta,
                    "latest_version": v or 0,
                    "n_results": n or 0,
                }
                for p, v, n in rows
            ]
            return Done(out, details={"n_patients": len(out)})

        return self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="patient.list",
            pseudonym=None,
            obj="patients",
        )
