"""Twins: saving a patient's twin as numbered versions and loading them, each call audited.

A twin version is the JSON state of a ``PatientTwin`` (``to_dict()``). Versions run 1, 2, 3… per
patient; saving checks the version the twin was loaded at, so a concurrent change is never lost
silently. The store does not import the twin package (dependencies point downward): it needs only
:class:`TwinLike` to save, and the twin class (``twin_type``) to load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.orm import Session

from cardiotwin.errors import InputError, StoreError
from cardiotwin.store.access import Actor
from cardiotwin.store.audit import utc_now_iso
from cardiotwin.store.checks import check_pseudonym, json_native
from cardiotwin.store.rows import PatientRow, TwinVersionRow
from cardiotwin.store.unit_of_work import Done, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["SavedVersion", "TwinLike", "TwinRepository", "changed_fields", "insert_version"]


@runtime_checkable
class TwinLike(Protocol):
    """What :meth:`Store.save_twin` needs from a twin (``cardiotwin.twin.state.PatientTwin``).

    The store does not import the twin package (dependencies point downward); the twin class is
    passed to :class:`Store` as ``twin_type`` for :meth:`Store.load_twin`.
    """

    pseudonym: str
    version: int
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]: ...


def changed_fields(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Top-level (and one level down for dicts) fields that differ between two twin states."""
    skip = {"version", "history", "format_version", "pseudonym"}
    prev = prev or {}
    changed: list[str] = []
    for name in sorted((set(prev) | set(new)) - skip):
        a, b = prev.get(name), new.get(name)
        if a == b or (name not in prev and b in (None, {}, [])):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            subs = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            changed.extend(f"{name}.{k}" for k in subs)
        else:
            changed.append(name)
    return changed


@dataclass(frozen=True)
class SavedVersion:
    """What :func:`insert_version` wrote: the new version, its history, the changed fields."""

    version: int
    history: list[dict[str, Any]]
    changed: list[str]
    created_patient: bool
    superseded_version: int | None


def insert_version(
    session: Session,
    pseudonym: str,
    state: dict[str, Any],
    *,
    base_version: int,
    reason: str,
    supersede: bool = False,
) -> SavedVersion:
    """Add a twin version row inside the caller's transaction (see :meth:`TwinRepository.save`).

    ``state`` is the JSON-native twin state; its ``version`` and ``history`` are set here. For
    use cases that write a twin version together with other rows in one transaction (ingesting
    observations).

    Raises
    ------
    StoreError
        On a version conflict, or a version > 0 of an unknown patient.
    """
    created_patient = False
    if session.get(PatientRow, pseudonym) is None:
        if base_version != 0:
            raise StoreError(
                f"twin {pseudonym} claims version {base_version} but no such patient is "
                "stored; was it saved to another store?"
            )
        session.add(PatientRow(pseudonym=pseudonym, created_utc=utc_now_iso(), meta={}))
        created_patient = True
    latest_row = session.execute(
        select(TwinVersionRow)
        .where(TwinVersionRow.pseudonym == pseudonym)
        .order_by(TwinVersionRow.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    latest = 0 if latest_row is None else latest_row.version
    if base_version != latest and not supersede:
        raise StoreError(
            f"twin {pseudonym}: version conflict, this twin is based on version "
            f"{base_version} but version {latest} is stored; load the latest version, "
            "re-apply the change and save again"
        )
    new_version = latest + 1
    now = utc_now_iso()
    changed = changed_fields(None if latest_row is None else latest_row.state, state)
    entry = {"version": new_version, "time_utc": now, "reason": reason, "changed": changed}
    new_state = dict(state)
    new_state["version"] = new_version
    history = list(state.get("history") or [])
    if base_version != latest and latest_row is not None:
        history = list(latest_row.state.get("history") or [])
    new_state["history"] = [*history, entry]
    session.add(
        TwinVersionRow(
            pseudonym=pseudonym,
            version=new_version,
            created_utc=now,
            reason=reason,
            state=new_state,
        )
    )
    session.flush()
    return SavedVersion(new_version, new_state["history"], changed, created_patient,
                        latest if base_version != latest else None)


class TwinRepository:
    """The ``twin_versions`` table (and the patient a new twin registers).

    See :meth:`cardiotwin.store.Store.save_twin`, :meth:`~cardiotwin.store.Store.load_twin_state`,
    :meth:`~cardiotwin.store.Store.load_twin` and :meth:`~cardiotwin.store.Store.twin_versions`
    for the behaviour and errors.

    Parameters
    ----------
    unit_of_work : UnitOfWork
        The store's audited transactions.
    twin_type : type or None
        The class :meth:`load` returns (needs a ``from_dict`` classmethod); None: only
        :meth:`load_state` works.
    """

    def __init__(self, unit_of_work: UnitOfWork, *, twin_type: type | None = None) -> None:
        self._uow = unit_of_work
        self._twin_type = twin_type

    def save(
        self,
        twin: TwinLike,
        *,
        actor: Actor,
        purpose: str,
        reason: str,
        supersede: bool = False,
    ) -> int:
        """Save ``twin`` as a new version; set its version and history; return the version."""
        if not isinstance(twin, TwinLike):
            raise InputError(
                f"save_twin needs a PatientTwin (pseudonym, version, history, to_dict), got "
                f"{type(twin).__name__}"
            )
        pseudonym = check_pseudonym(twin.pseudonym)
        if not isinstance(reason, str) or not reason.strip():
            raise InputError("save_twin: reason must say why this version is saved")
        state = json_native(f"twin {pseudonym} state", twin.to_dict())
        base_version = int(twin.version)

        def op(session: Session) -> Done:
            saved = insert_version(session, pseudonym, state, base_version=base_version,
                                   reason=reason, supersede=supersede)
            return Done(
                (saved.version, saved.history),
                object=f"twin/v{saved.version}",
                details={
                    "reason": reason,
                    "changed": saved.changed,
                    "created_patient": saved.created_patient,
                    "superseded_version": saved.superseded_version,
                },
            )

        new_version, history = self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="write",
            permission="twin.write",
            pseudonym=pseudonym,
            obj="twin",
        )
        twin.version = new_version
        twin.history = history
        logger.info("saved twin %s version %d", pseudonym, new_version)
        return new_version

    def load_state(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        version: int | None = None,
        as_of: str | None = None,
    ) -> dict[str, Any]:
        """The stored state dict of a twin version (latest by default; with ``as_of``, an ISO
        8601 UTC time ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, the latest saved at or before it)."""
        check_pseudonym(pseudonym)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise InputError(f"version must be an int or None, got {version!r}")
        if as_of is not None and version is not None:
            raise InputError("give a version or as_of, not both")

        def op(session: Session) -> Done:
            query = select(TwinVersionRow).where(TwinVersionRow.pseudonym == pseudonym)
            if as_of is not None:
                query = query.where(TwinVersionRow.created_utc <= as_of)
            if version is None:
                query = query.order_by(TwinVersionRow.version.desc()).limit(1)
            else:
                query = query.where(TwinVersionRow.version == version)
            row = session.execute(query).scalar_one_or_none()
            if row is None:
                which = "any saved twin" if version is None else f"twin version {version}"
                if as_of is not None:
                    which = f"twin saved at or before {as_of}"
                raise StoreError(
                    f"patient {pseudonym} has no {which} in this store; check the pseudonym "
                    "(cardiotwin patients list) and the version"
                )
            return Done(row.state, object=f"twin/v{row.version}")

        return self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="twin.read",
            pseudonym=pseudonym,
            obj="twin" if version is None else f"twin/v{version}",
        )

    def load(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        version: int | None = None,
        as_of: str | None = None,
    ) -> Any:
        """A twin version (latest by default, or the latest saved by ``as_of``) as ``twin_type``."""
        twin_type = self._twin_type
        if twin_type is None:
            raise StoreError(
                "this Store was opened without twin_type; open it with "
                "cardiotwin.workflows.open_store(root) or use load_twin_state() for a dict"
            )
        state = self.load_state(pseudonym, actor=actor, purpose=purpose, version=version,
                                as_of=as_of)
        return twin_type.from_dict(state)

    def versions(self, pseudonym: str, *, actor: Actor, purpose: str) -> list[dict[str, Any]]:
        """Version list of a patient's twin: ``version``, ``created_utc``, ``reason``."""
        check_pseudonym(pseudonym)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is None:
                raise StoreError(f"patient {pseudonym} is not in this store")
            rows = session.execute(
                select(TwinVersionRow.version, TwinVersionRow.created_utc, TwinVersionRow.reason)
                .where(TwinVersionRow.pseudonym == pseudonym)
                .order_by(TwinVersionRow.version)
            ).all()
            return Done([{"version": v, "created_utc": t, "reason": r} for v, t, r in rows])

        return self._uow.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="twin.read",
            pseudonym=pseudonym,
            obj="twin/versions",
        )
