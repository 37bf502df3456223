"""The store's façade: :class:`Store`, one object for every audited use case of the store.

A :class:`Store` opens the database (:mod:`~cardiotwin.store.engine`), runs every use case as an
audited transaction (:mod:`~cardiotwin.store.unit_of_work`) and delegates each to the repository
of what it touches:

==========================  ========================================================
:mod:`.patients`            ``create_patient``, ``ensure_patient``, ``list_patients``
:mod:`.twins`               ``save_twin``, ``load_twin``, ``load_twin_state``, ``twin_versions``
:mod:`.results`             ``add_result``, ``list_results``
:mod:`.observations`        ``ingest_observations``, ``list_observations``, ``list_quarantine``
:mod:`.artifact_index`      ``put_artifact``, ``artifact_path``
:mod:`.audit_log`           ``audit_records``, ``audit_head``, ``verify_audit``
:mod:`.pseudonym_key`       ``pseudonym_key``
:mod:`.unit_of_work`        ``check_permission``, ``record_event``
:mod:`.users`               staff accounts (functions taking a :class:`Store`)
==========================  ========================================================

Every public method that reads or writes patient-linked data takes an :class:`Actor` and a
purpose and writes its audit record in the same transaction as the data change (see
:mod:`cardiotwin.store.unit_of_work` for denials, failures and concurrency). One SQLite file
``<root>/cardiotwin.sqlite`` by default, or any SQLAlchemy URL (``url=`` or
``CARDIOTWIN_DB_URL``); large files are content-addressed artifacts under ``<root>/artifacts``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from cardiotwin.errors import InputError
from cardiotwin.store.access import PERMISSIONS, Actor, check_actor
from cardiotwin.store.artifact_index import ArtifactIndex
from cardiotwin.store.artifacts import ArtifactStore
from cardiotwin.store.audit import AuditHead, AuditVerification
from cardiotwin.store.audit_log import AuditLog
from cardiotwin.store.checks import check_pseudonym, check_purpose
from cardiotwin.store.engine import database_url, make_engine
from cardiotwin.store.observations import IngestRecord, ObservationRepository, Update
from cardiotwin.store.patients import PatientRepository
from cardiotwin.store.pseudonym_key import load_pseudonym_key
from cardiotwin.store.results import ResultRepository
from cardiotwin.store.twins import TwinLike, TwinRepository
from cardiotwin.store.unit_of_work import Done, UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["ANCHOR_FILENAME", "Store"]

ANCHOR_FILENAME = "audit.head"
"""The file in the store's root that keeps a copy of the audit chain's head."""


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
        None: :meth:`load_twin` refuses and :meth:`load_twin_state` gives the plain dict
        (``cardiotwin.workflows.open_store`` passes ``PatientTwin``).
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
        self.url = database_url(self.root, url)
        self.artifacts = ArtifactStore(self.root / "artifacts")
        self.anchor_path = self.root / ANCHOR_FILENAME
        self.engine = make_engine(self.url, busy_timeout_s=busy_timeout_s)
        self.unit_of_work = UnitOfWork(
            self.engine, anchor_path=self.anchor_path, audit_key=audit_key
        )
        """The store's audited transactions, for repositories outside this class (users)."""
        self._url_display = self.unit_of_work.url_display
        self.unit_of_work.create_schema()
        self.patients = PatientRepository(self.unit_of_work)
        self.twins = TwinRepository(self.unit_of_work, twin_type=twin_type)
        self.results = ResultRepository(self.unit_of_work)
        self.observations = ObservationRepository(self.unit_of_work)
        self.artifact_index = ArtifactIndex(self.unit_of_work, self.artifacts)
        self.audit_log = AuditLog(
            self.unit_of_work, anchor_path=self.anchor_path, audit_key=audit_key
        )
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

    # ---- permissions and events -----------------------------------------------------------

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
            actor,
            permission,
            action=action,
            pseudonym=pseudonym,
            obj=obj or permission,
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
        exactly one (the record then appears in :meth:`audit_records` filtered by that patient).
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
        self.patients.create(pseudonym, actor=actor, purpose=purpose, meta=meta)

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
        return self.patients.ensure(pseudonym, actor=actor, purpose=purpose, meta=meta)

    def pseudonym_key(self) -> bytes:
        """The secret key for keyed patient pseudonyms (HMAC in ``cardiotwin.imaging.deid``).

        Taken from the environment variable ``CARDIOTWIN_PSEUDONYM_KEY`` (hex, >= 32 hex
        characters) if set, else from ``<root>/pseudonym.key``, which is created with 32 random
        bytes (mode 0600) on first use. The same key must be used for every scan of a store, so
        that later scans of a patient map to the same twin; back it up with the database and
        keep it away from anyone who should not re-identify patients by brute force.
        """
        return load_pseudonym_key(self.root)

    def list_patients(self, *, actor: Actor, purpose: str) -> list[dict[str, Any]]:
        """All patients with ``pseudonym``, ``created_utc``, ``meta``, ``latest_version`` (0 if
        no twin saved) and ``n_results``. Audited as one read."""
        return self.patients.list_all(actor=actor, purpose=purpose)

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
        return self.twins.save(
            twin, actor=actor, purpose=purpose, reason=reason, supersede=supersede
        )

    def load_twin_state(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        version: int | None = None,
        as_of: str | None = None,
    ) -> dict[str, Any]:
        """The stored state dict of a twin version (latest by default). Audited as a read.

        ``as_of`` (ISO 8601 UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``) gives the latest version saved
        at or before that time: what the twin said then.

        Raises
        ------
        StoreError
            If the patient has no twin (or not that version); audited as a failed read.
        AccessDenied
            Never for the five roles (all may read pseudonymised twins); audited if raised.
        """
        return self.twins.load_state(pseudonym, actor=actor, purpose=purpose, version=version,
                                     as_of=as_of)

    def load_twin(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        version: int | None = None,
        as_of: str | None = None,
    ) -> Any:
        """Load a twin version (latest by default) as the store's ``twin_type``.

        See :meth:`load_twin_state` for errors. The store sits below the twin package and does not
        import it: open the store with ``twin_type=PatientTwin`` (``cardiotwin.workflows.open_store``
        does) or use :meth:`load_twin_state` for the plain dict.
        """
        return self.twins.load(pseudonym, actor=actor, purpose=purpose, version=version,
                               as_of=as_of)

    def twin_versions(self, pseudonym: str, *, actor: Actor, purpose: str) -> list[dict[str, Any]]:
        """Version list of a patient's twin: ``version``, ``created_utc``, ``reason``. Audited."""
        return self.twins.versions(pseudonym, actor=actor, purpose=purpose)

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
        return self.results.add(
            pseudonym,
            kind=kind,
            label=label,
            summary=summary,
            provenance=provenance,
            artifacts=artifacts,
            twin_version=twin_version,
            actor=actor,
            purpose=purpose,
        )

    def list_results(
        self, pseudonym: str, *, actor: Actor, purpose: str, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Results of a patient (oldest first), optionally of one ``kind``. Audited as a read.

        Raises
        ------
        StoreError
            If the patient is not in the store (audited as a failed read).
        """
        return self.results.list_for(pseudonym, actor=actor, purpose=purpose, kind=kind)

    # ---- observations -------------------------------------------------------------------

    def ingest_observations(
        self,
        pseudonym: str,
        *,
        observations: Sequence[Mapping[str, Any]],
        rejections: Sequence[Mapping[str, Any]],
        update: Update,
        actor: Actor,
        purpose: str,
    ) -> IngestRecord:
        """Store monitoring observations, the twin version they give and the rejections, in
        one audited transaction (:mod:`cardiotwin.store.observations`).

        Observations already stored are counted as duplicates; one earlier than its stream's
        last stored time, or another value at a stored time, is quarantined. When any new
        observation remains, ``update(latest_state, new_observations)`` returns the new twin
        state and the reason of its version, saved as the next version; every new observation
        row names that version. Requires ``twin.write`` (clinician/admin).

        Raises
        ------
        StoreError
            Unknown patient or no twin (audited as a failure; nothing is written).
        AccessDenied
            The role may not write twins (audited).
        """
        return self.observations.ingest(pseudonym, observations=observations,
                                        rejections=rejections, update=update, actor=actor,
                                        purpose=purpose)

    def ingest_observations_many(
        self,
        items: Sequence[tuple[str, Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
        *,
        update: Update,
        actor: Actor,
        purpose: str,
    ) -> list[Any]:
        """:meth:`ingest_observations` for several patients ``(pseudonym, observations,
        rejections)`` in one transaction: one savepoint and one audit record per patient, one
        disk sync for all. A patient the store refuses gets its error in the returned list (an
        :class:`~cardiotwin.errors.CardiotwinError`, audited as a failure); the others are
        committed. Requires ``twin.write``."""
        return self.observations.ingest_many(items, update=update, actor=actor, purpose=purpose)

    def list_observations(
        self,
        pseudonym: str,
        *,
        actor: Actor,
        purpose: str,
        upto_version: int | None = None,
        after_version: int | None = None,
    ) -> list[dict[str, Any]]:
        """Stored observations of a patient in ingest order (optionally those assimilated into
        versions ``after_version < v <= upto_version``). Audited as a read."""
        return self.observations.list_for(pseudonym, actor=actor, purpose=purpose,
                                          upto_version=upto_version, after_version=after_version)

    def list_quarantine(self, pseudonym: str, *, actor: Actor, purpose: str
                        ) -> list[dict[str, Any]]:
        """The quarantined monitoring records of a patient, with their reasons. Audited."""
        return self.observations.quarantine_for(pseudonym, actor=actor, purpose=purpose)

    # ---- artifacts ------------------------------------------------------------------------

    def put_artifact(self, path_or_bytes: Path | str | bytes, *, kind: str) -> str:
        """Store a file (path) or content (bytes) as a content-addressed artifact; return its
        SHA-256. Idempotent. Not audited by itself: the result or twin that references the
        artifact is (see :meth:`add_result`)."""
        return self.artifact_index.put(path_or_bytes, kind=kind)

    def artifact_path(self, sha: str, *, verify: bool = True) -> Path:
        """Path of a stored artifact, its content verified against ``sha`` (StoreError if not)."""
        return self.artifact_index.path(sha, verify=verify)

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
        return self.audit_log.records(
            actor=actor, purpose=purpose, pseudonym=pseudonym, since_seq=since_seq, limit=limit
        )

    def audit_head(self) -> AuditHead:
        """The chain's current head (sequence number and hash), e.g. to keep outside the store."""
        return self.audit_log.head()

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
        return self.audit_log.verify(expected_head=expected_head)
