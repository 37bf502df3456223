"""Results: what was computed on a patient's twin (rehearsals, flows, sweeps), each call audited.

A result holds JSON ``summary`` numbers (units in the keys), its ``provenance`` and the SHA-256 of
the artifacts it refers to (stored first with :meth:`cardiotwin.store.Store.put_artifact`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardiotwin.errors import InputError, StoreError
from cardiotwin.store.access import Actor
from cardiotwin.store.artifacts import check_sha256
from cardiotwin.store.audit import utc_now_iso
from cardiotwin.store.checks import check_kind, check_pseudonym, json_native
from cardiotwin.store.rows import ArtifactRow, PatientRow, ResultRow, TwinVersionRow, row_as_dict
from cardiotwin.store.unit_of_work import Done, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["RESULT_FIELDS", "ResultRepository"]

RESULT_FIELDS: tuple[str, ...] = (
    "id",
    "pseudonym",
    "twin_version",
    "kind",
    "label",
    "created_utc",
    "summary",
    "provenance",
    "artifacts",
)
"""The keys of each result returned by :meth:`ResultRepository.list_for`."""


class ResultRepository:
    """The ``results`` table.

    See :meth:`cardiotwin.store.Store.add_result` and :meth:`~cardiotwin.store.Store.list_results`
    for the behaviour and errors.
    """

    def __init__(self, unit_of_work: UnitOfWork) -> None:
        self._uow = unit_of_work

    def add(
        self,
        pseudonym: str,
        *,
        kind: str,
        label: str,
        summary: Mapping[str, Any],
        provenance: Mapping[str, Any] | Any,
        artifacts: Mapping[str, str],
        twin_version: int | None,
        actor: Actor,
        purpose: str,
    ) -> int:
        """Store a result computed on a patient's twin and return its id."""
        check_pseudonym(pseudonym)
        check_kind(kind, what="result")
        if not isinstance(label, str):
            raise InputError(f"result label must be a str, got {type(label).__name__}")
        summary_n = json_native("result summary", dict(summary))
        provenance_n = json_native("result provenance", provenance)
        if not isinstance(provenance_n, dict):
            raise InputError("result provenance must be a mapping or a Provenance")
        artifacts_n = json_native("result artifacts", dict(artifacts))
        for name, sha in artifacts_n.items():
            try:
                check_sha256(sha)
            except StoreError:
                raise InputError(
                    f"result artifact {name!r}: {sha!r} is not a SHA-256 from put_artifact"
                ) from None
        permission = "rehearsal.run" if kind == "rehearsal" else "result.write"

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is None:
                raise StoreError(f"patient {pseudonym} is not in this store")
            if twin_version is not None:
                exists = session.execute(
                    select(TwinVersionRow.id).where(
                        TwinVersionRow.pseudonym == pseudonym,
                        TwinVersionRow.version == twin_version,
                    )
                ).scalar_one_or_none()
                if exists is None:
                    raise StoreError(f"patient {pseudonym} has no twin version {twin_version}")
            for name, sha in artifacts_n.items():
                if session.get(ArtifactRow, sha) is None:
                    raise StoreError(
                        f"result artifact {name!r} ({sha}) is not in the store; store it with "
                        "put_artifact first"
                    )
            row = ResultRow(
                pseudonym=pseudonym,
                twin_version=twin_version,
                kind=kind,
                label=label,
                created_utc=utc_now_iso(),
                summary=summary_n,
                provenance=provenance_n,
                artifacts=artifacts_n,
            )
            session.add(row)
            session.flush()
            return Done(
                row.id,
                object=f"result/{row.id}",
                details={"kind": kind, "twin_version": twin_version},
            )

        result_id = self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="write",
            permission=permission,
            pseudonym=pseudonym,
            obj=f"result:{kind}",
        )
        logger.info("stored %s result %d for %s", kind, result_id, pseudonym)
        return result_id

    def list_for(
        self, pseudonym: str, *, actor: Actor, purpose: str, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Results of a patient (oldest first), optionally of one ``kind``."""
        check_pseudonym(pseudonym)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is None:
                raise StoreError(f"patient {pseudonym} is not in this store")
            query = select(ResultRow).where(ResultRow.pseudonym == pseudonym)
            if kind is not None:
                query = query.where(ResultRow.kind == kind)
            rows = session.execute(query.order_by(ResultRow.id)).scalars().all()
            out = [row_as_dict(r, RESULT_FIELDS) for r in rows]
            return Done(out, details={"n_results": len(out), "kind": kind})

        return self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="result.read",
            pseudonym=pseudonym,
            obj="results",
        )
