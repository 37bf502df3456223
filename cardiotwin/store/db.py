"""The store: SQLAlchemy 2 models and the :class:`Store` that reads and writes them with an audit.

One SQLite file ``<root>/cardiotwin.sqlite`` by default (WAL journal, ``synchronous=FULL``,
foreign keys on), or any SQLAlchemy URL (``url=`` or the ``CARDIOTWIN_DB_URL`` environment
variable; the SQL is portable so PostgreSQL can follow). Large files are content-addressed
artifacts under ``<root>/artifacts`` (:mod:`cardiotwin.store.artifacts`).

Every public method that reads or writes patient-linked data takes an :class:`Actor` and a
purpose and writes its audit record in the same transaction as the data change: either both are
committed or neither. Reads are audited too. A refused action (role not permitted) raises
:class:`~cardiotwin.errors.AccessDenied` after committing an audit record with outcome
``"denied"``; a failed one (unknown patient, version conflict...) raises after committing a
``"failure"`` record.

Concurrency: every audited transaction first takes the chain lock (``BEGIN IMMEDIATE`` on SQLite;
``SELECT … FOR UPDATE`` of the ``audit_head`` row elsewhere), so appends from several threads or
processes are serialised and the chain stays linear; a busy database is retried with backoff.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardiotwin.errors import InputError, StoreError
from cardiotwin.privacy import find_identifying_key
from cardiotwin.store.access import PERMISSIONS, Actor, check_actor
from cardiotwin.store.artifacts import ArtifactStore, check_sha256
from cardiotwin.store.audit import (
    RECORD_FIELDS,
    AuditHead,
    AuditVerification,
    read_anchor,
    utc_now_iso,
    verify_chain,
)
from cardiotwin.store.checks import check_kind, check_pseudonym, check_purpose, json_native
from cardiotwin.store.engine import database_url, make_engine
from cardiotwin.store.rows import (
    ArtifactRow,
    AuditHeadRow,
    AuditRow,
    PatientRow,
    ResultRow,
    TwinVersionRow,
    row_as_dict,
)
from cardiotwin.store.unit_of_work import DatabaseError, Done, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = [
    "ANCHOR_FILENAME",
    "TwinLike",
    "Store",
]

ANCHOR_FILENAME = "audit.head"
ENV_PSEUDONYM_KEY = "CARDIOTWIN_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILENAME = "pseudonym.key"

# Patient metadata must not hold a bare "name" either (the twin may: a boundary cap has one).
_EXTRA_IDENTIFYING_KEYS = frozenset({"name"})


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


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


def _find_identifying_key(value: Any, path: str) -> str | None:
    return find_identifying_key(value, path, extra=_EXTRA_IDENTIFYING_KEYS)


def _checked_patient_meta(pseudonym: str, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """Patient metadata as plain JSON, refused if any key names a direct identifier."""
    meta_native = json_native("patient meta", dict(meta or {}))
    bad = _find_identifying_key(meta_native, "meta")
    if bad:
        raise InputError(
            f"patient {pseudonym}: {bad} looks like a direct identifier; the store keeps only "
            "pseudonymised, non-identifying metadata"
        )
    return meta_native


def _changed_fields(prev: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
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


_RESULT_FIELDS = (
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
_AUDIT_FIELDS = (*RECORD_FIELDS, "prev_hash", "hash")

# --------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------


class Store:
    """The audited store of pseudonymised patients, twin versions, results and artifacts.

    Parameters
    ----------
    root : Path
        Directory of the store: ``cardiotwin.sqlite`` (unless a URL is given), ``artifacts/``
        and the audit head anchor ``audit.head``. Created if missing.
    url : str or None
        SQLAlchemy database URL. Default: ``CARDIOTWIN_DB_URL`` if set, else the SQLite file in
        ``root``.
    audit_key : bytes or None
        Key for HMAC-SHA256 audit hashes. Keep it outside the store (e.g. an environment secret)
        so that someone who can write the database cannot forge a consistent chain. A store must
        always be opened with the key it was written with.
    twin_type : type or None
        The twin class returned by :meth:`load_twin`; it needs a ``from_dict`` classmethod.
        None: ``cardiotwin.twin.state.PatientTwin``, looked up when first needed.
    busy_timeout_s : float
        How long a transaction waits for another writer before retrying.

    Examples
    --------
    >>> from cardiotwin.twin.state import PatientTwin  # doctest: +SKIP
    >>> store = Store(tmp_path, twin_type=PatientTwin)  # doctest: +SKIP
    >>> me = Actor("dr_a", "clinician", client="app")  # doctest: +SKIP
    >>> store.save_twin(twin, actor=me, purpose="treatment planning", reason="built")  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        root: Path | str,
        *,
        url: str | None = None,
        audit_key: bytes | None = None,
        twin_type: type | None = None,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if audit_key is not None and (not isinstance(audit_key, bytes) or len(audit_key) < 16):
            raise InputError("audit_key must be bytes of length >= 16 (e.g. os.urandom(32))")
        self._key = audit_key
        self._twin_type = twin_type
        self.url = database_url(self.root, url)
        self.artifacts = ArtifactStore(self.root / "artifacts")
        self.anchor_path = self.root / ANCHOR_FILENAME
        self.engine = make_engine(self.url, busy_timeout_s=busy_timeout_s)
        self.unit_of_work = UnitOfWork(
            self.engine, anchor_path=self.anchor_path, audit_key=audit_key
        )
        """The audited transactions of this store, for its repositories (users, …)."""
        self._url_display = self.unit_of_work.url_display
        self.unit_of_work.create_schema()
        logger.debug("opened store %s", self._url_display)

    # ---- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store(root={str(self.root)!r}, url={self._url_display!r})"

    def check_permission(
        self,
        permission: str,
        *,
        actor: Actor,
        purpose: str,
        pseudonym: str | None = None,
        obj: str = "",
        action: str = "execute",
    ) -> None:
        """Raise :class:`AccessDenied` (and audit the denial) unless ``actor`` holds ``permission``.

        For workflows that gate an action the store does not perform itself (e.g. starting a
        rehearsal run before its result is stored). Nothing is recorded when allowed.
        """
        check_actor(actor)
        purpose = check_purpose(purpose)
        if pseudonym is not None:
            check_pseudonym(pseudonym)
        if permission not in PERMISSIONS:
            raise InputError(f"unknown permission {permission!r}; known: {sorted(PERMISSIONS)}")
        self.unit_of_work.authorise(
            actor, permission, action=action, pseudonym=pseudonym, obj=obj or permission,
            purpose=purpose,
        )

    def record_event(
        self,
        permission: str,
        *,
        actor: Actor,
        purpose: str,
        action: str,
        obj: str,
        details: Mapping[str, Any] | None = None,
        outcome: str = "success",
        pseudonym: str | None = None,
    ) -> None:
        """Audit an action done outside the store (e.g. de-identifying a DICOM folder).

        Call :meth:`check_permission` before doing the work and this afterwards, with
        ``outcome="failure"`` when it failed. ``details`` go through the same identifier check
        as every audit record: counts, pseudonyms and hashes, never names or paths of
        identified data. ``pseudonym``: the one patient the action concerned, if it concerned
        exactly one (the record then appears in :meth:`audit_log` filtered by that patient).
        """
        if outcome not in ("success", "failure"):
            raise InputError(f"outcome must be 'success' or 'failure'; got {outcome!r}")
        if permission not in PERMISSIONS:
            raise InputError(f"unknown permission {permission!r}; known: {sorted(PERMISSIONS)}")
        if pseudonym is not None:
            check_pseudonym(pseudonym)
        if outcome == "failure":
            check_actor(actor)
            self.unit_of_work.record(
                actor=actor,
                action=action,
                pseudonym=pseudonym,
                obj=obj,
                purpose=check_purpose(purpose),
                outcome="failure",
                details=dict(details or {}),
            )
            return
        payload = dict(details or {})

        def op(session: Session) -> Done:
            return Done(None, details=payload)

        self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action=action,
            permission=permission,
            pseudonym=pseudonym,
            obj=obj,
        )

    # ---- patients -------------------------------------------------------------------------

    def create_patient(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Register a pseudonymised patient.

        Parameters
        ----------
        pseudonym : str
            The keyed pseudonym from de-identification (never a name or hospital ID).
        actor, purpose
            Who does it and why (audited). Requires role clinician or admin.
        meta : mapping, optional
            Non-identifying metadata (e.g. ``{"source": "phantom", "age_band": "70-79"}``). Keys
            naming direct identifiers (name, patient ID, birth date, address…) are refused.

        Raises
        ------
        StoreError
            If the patient exists already (audited as a failure).
        AccessDenied
            If the role may not create patients (audited as denied).
        """
        check_pseudonym(pseudonym)
        meta_native = _checked_patient_meta(pseudonym, meta)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is not None:
                raise StoreError(f"patient {pseudonym} exists already")
            session.add(
                PatientRow(pseudonym=pseudonym, created_utc=utc_now_iso(), meta=meta_native)
            )
            return Done(None, details={"meta_keys": sorted(meta_native)})

        self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="create",
            permission="patient.create",
            pseudonym=pseudonym,
            obj="patient",
        )
        logger.info("created patient %s", pseudonym)

    def ensure_patient(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Register a patient unless already registered; return True if it was created.

        Like :meth:`create_patient` (same permission and checks) but an existing patient is not
        an error; the audit record (action ``"create"``) says ``{"created": false}`` then, and
        the existing metadata is left unchanged.
        """
        check_pseudonym(pseudonym)
        meta_native = _checked_patient_meta(pseudonym, meta)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is not None:
                return Done(False, details={"created": False})
            session.add(
                PatientRow(pseudonym=pseudonym, created_utc=utc_now_iso(), meta=meta_native)
            )
            return Done(True, details={"created": True, "meta_keys": sorted(meta_native)})

        return self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="create",
            permission="patient.create",
            pseudonym=pseudonym,
            obj="patient",
        )

    def pseudonym_key(self) -> bytes:
        """The secret key for keyed patient pseudonyms (HMAC in ``cardiotwin.imaging.deid``).

        Taken from the environment variable ``CARDIOTWIN_PSEUDONYM_KEY`` (hex, >= 32 hex
        characters) if set, else from ``<root>/pseudonym.key``, which is created with 32 random
        bytes (mode 0600) on first use. The same key must be used for every scan of a store, so
        that later scans of a patient map to the same twin; back it up with the database and
        keep it away from anyone who should not re-identify patients by brute force.
        """
        env = os.environ.get(ENV_PSEUDONYM_KEY)
        if env:
            try:
                key = bytes.fromhex(env.strip())
            except ValueError:
                raise InputError(f"{ENV_PSEUDONYM_KEY} must be hexadecimal") from None
            if len(key) < 16:
                raise InputError(f"{ENV_PSEUDONYM_KEY} must hold at least 16 bytes (32 hex digits)")
            return key
        path = self.root / PSEUDONYM_KEY_FILENAME
        if not path.exists():
            key = os.urandom(32)
            try:
                # O_EXCL: if two processes race, exactly one creates the key, the other reads it.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(key.hex() + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                logger.info("created a new pseudonym key in %s", path)
        for _ in range(50):  # the creating process may not have written it yet
            text = path.read_text(encoding="ascii").strip()
            if text:
                break
            time.sleep(0.01)
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise StoreError(
                f"{path} is corrupted (not hexadecimal); restore it from a backup"
            ) from None
        if len(key) < 16:
            raise StoreError(f"{path} holds fewer than 16 bytes; restore it from a backup")
        return key

    def list_patients(self, *, actor: Actor, purpose: str) -> list[dict[str, Any]]:
        """All patients with ``pseudonym``, ``created_utc``, ``meta``, ``latest_version`` (0 if
        no twin saved) and ``n_results``. Audited as one read."""

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

        return self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="patient.list",
            pseudonym=None,
            obj="patients",
        )

    # ---- twins ----------------------------------------------------------------------------

    def save_twin(
        self,
        twin: TwinLike,
        *,
        actor: Actor,
        purpose: str,
        reason: str,
        supersede: bool = False,
    ) -> int:
        """Save ``twin`` as a new version and return the version number (1, 2, …).

        The twin must be at the latest stored version (``twin.version``, 0 for a new twin):
        saving over a version someone else saved in the meantime raises :class:`StoreError`
        instead of losing their change. On success ``twin.version`` is set to the new version and
        a history entry (version, time, reason, changed fields) is appended to ``twin.history``.
        A new twin (version 0) of an unregistered pseudonym registers the patient.

        Parameters
        ----------
        twin : PatientTwin
            The twin to save.
        actor, purpose
            Who and why (audited). Requires role clinician or admin.
        reason : str
            Why this version exists (``"built from DICOM"``, ``"vitals update"``…).
        supersede : bool
            Save even if ``twin`` is not based on the latest stored version, e.g. a twin rebuilt
            from a new scan of a known patient. The stored history is kept and continued.

        Raises
        ------
        StoreError
            On a version conflict or an unknown patient for a twin with version > 0 (audited).
        AccessDenied
            If the role may not write twins (clinician/admin only; audited).
        InputError
            If the reason is empty or the state is not JSON-serialisable.
        """
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
            changed = _changed_fields(None if latest_row is None else latest_row.state, state)
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
            return Done(
                (new_version, new_state["history"]),
                object=f"twin/v{new_version}",
                details={
                    "reason": reason,
                    "changed": changed,
                    "created_patient": created_patient,
                    "superseded_version": latest if base_version != latest else None,
                },
            )

        new_version, history = self.unit_of_work.audited(
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

    def load_twin_state(
        self, pseudonym: str, *, actor: Actor, purpose: str, version: int | None = None
    ) -> dict[str, Any]:
        """The stored state dict of a twin version (latest by default). Audited as a read.

        Raises
        ------
        StoreError
            If the patient has no twin (or not that version); audited as a failed read.
        AccessDenied
            Never for the five roles (all may read pseudonymised twins); audited if raised.
        """
        check_pseudonym(pseudonym)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise InputError(f"version must be an int or None, got {version!r}")

        def op(session: Session) -> Done:
            query = select(TwinVersionRow).where(TwinVersionRow.pseudonym == pseudonym)
            if version is None:
                query = query.order_by(TwinVersionRow.version.desc()).limit(1)
            else:
                query = query.where(TwinVersionRow.version == version)
            row = session.execute(query).scalar_one_or_none()
            if row is None:
                which = "any saved twin" if version is None else f"twin version {version}"
                raise StoreError(
                    f"patient {pseudonym} has no {which} in this store; check the pseudonym "
                    "(cardiotwin patients list) and the version"
                )
            return Done(row.state, object=f"twin/v{row.version}")

        return self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="twin.read",
            pseudonym=pseudonym,
            obj="twin" if version is None else f"twin/v{version}",
        )

    def load_twin(
        self, pseudonym: str, *, actor: Actor, purpose: str, version: int | None = None
    ) -> Any:
        """Load a twin version (latest by default) as the store's ``twin_type``.

        See :meth:`load_twin_state` for errors. The store sits below the twin package and does not
        import it: open the store with ``twin_type=PatientTwin`` (``cardiotwin.workflows.open_store``
        does) or use :meth:`load_twin_state` for the plain dict.
        """
        twin_type = self._twin_type
        if twin_type is None:
            raise StoreError(
                "this Store was opened without twin_type; open it with "
                "cardiotwin.workflows.open_store(root) or use load_twin_state() for a dict")
        state = self.load_twin_state(pseudonym, actor=actor, purpose=purpose, version=version)
        return twin_type.from_dict(state)

    def twin_versions(self, pseudonym: str, *, actor: Actor, purpose: str) -> list[dict[str, Any]]:
        """Version list of a patient's twin: ``version``, ``created_utc``, ``reason``. Audited."""
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

        return self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="twin.read",
            pseudonym=pseudonym,
            obj="twin/versions",
        )

    # ---- results --------------------------------------------------------------------------

    def add_result(
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
        """Store a result computed on a patient's twin and return its id.

        Parameters
        ----------
        pseudonym : str
            The patient.
        kind : str
            Result type, lower-case (``"rehearsal"``, ``"flow.steady"``, ``"sweep"``…).
            ``"rehearsal"`` requires the ``rehearsal.run`` permission (clinician/admin), other
            kinds ``result.write`` (also researcher/device_engineer).
        label : str
            Human-readable label (e.g. ``"SAPIEN 3 26 mm, depth 3 mm"``).
        summary : mapping
            The numbers shown to users (JSON; units in the keys).
        provenance : mapping or Provenance
            How the result was made (``Provenance.to_dict()`` or the object itself).
        artifacts : mapping of str to str
            Name → SHA-256 of artifacts stored with :meth:`put_artifact`.
        twin_version : int or None
            The twin version the result was computed on (must exist), or None.
        actor, purpose
            Who and why (audited).

        Raises
        ------
        StoreError
            Unknown patient, twin version or artifact (audited as a failure).
        AccessDenied
            The role may not write this kind of result (audited).
        """
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

        result_id = self.unit_of_work.audited(
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

    def list_results(
        self, pseudonym: str, *, actor: Actor, purpose: str, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Results of a patient (oldest first), optionally of one ``kind``. Audited as a read.

        Raises
        ------
        StoreError
            If the patient is not in the store (audited as a failed read).
        """
        check_pseudonym(pseudonym)

        def op(session: Session) -> Done:
            if session.get(PatientRow, pseudonym) is None:
                raise StoreError(f"patient {pseudonym} is not in this store")
            query = select(ResultRow).where(ResultRow.pseudonym == pseudonym)
            if kind is not None:
                query = query.where(ResultRow.kind == kind)
            rows = session.execute(query.order_by(ResultRow.id)).scalars().all()
            out = [row_as_dict(r, _RESULT_FIELDS) for r in rows]
            return Done(out, details={"n_results": len(out), "kind": kind})

        return self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="result.read",
            pseudonym=pseudonym,
            obj="results",
        )

    # ---- artifacts ------------------------------------------------------------------------

    def put_artifact(self, path_or_bytes: Path | str | bytes, *, kind: str) -> str:
        """Store a file (path) or content (bytes) as a content-addressed artifact; return its
        SHA-256. Idempotent. Not audited by itself: the result or twin that references the
        artifact is (see :meth:`add_result`)."""
        check_kind(kind, what="artifact")
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            sha, size = self.artifacts.put_bytes(bytes(path_or_bytes))
        else:
            sha, size = self.artifacts.put_file(Path(path_or_bytes))

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
            self.unit_of_work.run(body)
        except DatabaseError as exc:
            if not isinstance(exc.__cause__, IntegrityError):  # same artifact added concurrently
                raise
        return sha

    def artifact_path(self, sha: str, *, verify: bool = True) -> Path:
        """Path of a stored artifact, its content verified against ``sha`` (StoreError if not)."""
        return self.artifacts.path(check_sha256(sha), verify=verify)

    # ---- audit ----------------------------------------------------------------------------

    def audit_records(
        self,
        *,
        actor: Actor,
        purpose: str,
        pseudonym: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Audit records (oldest first), optionally of one patient. Privacy officer/admin only.

        The read itself is audited (after the records returned).
        """
        if pseudonym is not None:
            check_pseudonym(pseudonym)

        def op(session: Session) -> Done:
            query = select(AuditRow).where(AuditRow.seq > since_seq).order_by(AuditRow.seq)
            if pseudonym is not None:
                query = query.where(AuditRow.patient_pseudonym == pseudonym)
            if limit is not None:
                query = query.limit(limit)
            rows = session.execute(query).scalars().all()
            out = [row_as_dict(r, _AUDIT_FIELDS) for r in rows]
            return Done(out, details={"n_records": len(out), "since_seq": since_seq})

        return self.unit_of_work.audited(
            op,
            actor=actor,
            purpose=purpose,
            action="read",
            permission="audit.read",
            pseudonym=pseudonym,
            obj="audit",
        )

    def audit_head(self) -> AuditHead:
        """The chain's current head (sequence number and hash), e.g. to keep outside the store."""
        return self.unit_of_work.head()

    def verify_audit(self, *, expected_head: AuditHead | None = None) -> AuditVerification:
        """Verify the whole audit chain and its head.

        Checks, in one database snapshot: every record's hash and link (edits, deletions,
        reordering, insertions); that the head row in the database equals the last record; that
        the chain reaches the head in ``<root>/audit.head`` (tail truncation); and, if given,
        ``expected_head`` (a head kept outside the store, the only defence against someone who
        can rewrite both the database and the root directory).

        Returns
        -------
        AuditVerification
            ``ok`` and, if not, ``first_bad_seq`` and ``reason``.
        """
        # Read the anchor file before the snapshot: it never leads the committed chain, so it
        # cannot lead a snapshot taken afterwards either.
        anchor = read_anchor(self.anchor_path)
        anchor_exists = self.anchor_path.exists()
        with self.unit_of_work.read_only() as conn:
            with conn.begin():
                tip = conn.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)).first()
                cols = [getattr(AuditRow, n) for n in _AUDIT_FIELDS]
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
