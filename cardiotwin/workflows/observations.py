"""Monitoring observations in: checked, stored and assimilated into new twin versions, from
readers, files, a FHIR document posted to the REST API, or batches of a live service."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardiotwin.errors import CardiotwinError, InputError
from cardiotwin.store import Actor, Store
from cardiotwin.twin.state import PatientTwin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_observations` did for one twin.

    Attributes
    ----------
    pseudonym : the twin.
    accepted : observations stored (and assimilated when their code is one the filter reads).
    duplicates : observations already stored, or given twice (idempotent: not stored again).
    quarantined : the refused records with their reasons (also stored in the quarantine).
    version : the new twin version, or None when nothing new was accepted.
    base_version : the version the update started from.
    stale, stale_reason : the twin is stale now (its newest observation is too old).
    drift, drift_reasons : predicted metrics moved beyond the thresholds since the last 3-D run.
    status : the twin's estimate now (:class:`~cardiotwin.twin.assimilate.TwinEstimate`).
    """

    pseudonym: str
    accepted: int
    duplicates: int
    quarantined: tuple[Any, ...]
    version: int | None
    base_version: int
    stale: bool
    stale_reason: str
    drift: bool
    drift_reasons: tuple[str, ...]
    status: Any = None


def _screen_twin(pseudonym: str, observations: Any, rejected: Any = ()):
    """The checks of one twin's ingest: ``(screen, observation rows, rejection dicts)``."""
    from cardiotwin.monitoring import Rejection, Screen
    from cardiotwin.store import check_pseudonym
    from cardiotwin.twin import history

    check_pseudonym(pseudonym)
    screen = Screen()
    screen.quarantine.extend(rejected)
    for obs in observations:
        if obs.subject != pseudonym:
            screen.quarantine.add(Rejection(
                kind="subject", source=obs.source, record=obs.record, field="subject",
                reason=f"{obs.where}: the observation is of another subject than twin "
                       f"{pseudonym} (not repeated here)",
                expected=f"subject {pseudonym}"))
            continue
        screen.offer(obs)
    rows = [history.observation_row(o) for o in screen.accepted]
    return screen, rows, [r.to_dict() for r in screen.quarantine]


@dataclass(frozen=True)
class BatchIngest:
    """One twin's part of :func:`ingest_batches`.

    Attributes
    ----------
    pseudonym : the twin.
    accepted, duplicates, quarantined : observations stored, already stored, quarantined.
    version : the new twin version, None when nothing new was accepted or on ``error``.
    error : why the store refused this twin's part ("" when it did not).
    """

    pseudonym: str
    accepted: int
    duplicates: int
    quarantined: int
    version: int | None
    error: str = ""


def ingest_batches(batches: Mapping[str, Any], *, store: Store, actor: Actor,
                   purpose: str = "patient monitoring") -> list[BatchIngest]:
    """:func:`ingest_observations` for many twins in **one** store transaction (audited per twin).

    ``batches`` maps each pseudonym to its observations. Each twin's observations are checked,
    stored and assimilated into a new version exactly as :func:`ingest_observations` does
    (same rows, same filter update, same duplicate and order checks, its own audit record);
    the whole lot is committed with one disk sync, which is what lets a live service keep up
    with hundreds of twins a second. A twin the store refuses (unknown pseudonym, no twin) is
    reported in its :class:`BatchIngest` and does not stop the others. No estimate is
    computed (:func:`twin_status` gives it).
    """
    from cardiotwin.twin import history

    items, screens = [], []
    for pseudonym, observations in batches.items():
        screen, rows, rejections = _screen_twin(pseudonym, observations)
        items.append((pseudonym, rows, rejections))
        screens.append(screen)
    records = store.ingest_observations_many(items, update=history.apply_batch, actor=actor,
                                             purpose=purpose)
    out = []
    for (pseudonym, _rows, rejections), screen, rec in zip(items, screens, records, strict=True):
        if isinstance(rec, CardiotwinError):
            out.append(BatchIngest(pseudonym, 0, screen.duplicates, len(rejections), None,
                                   error=str(rec)))
        else:
            out.append(BatchIngest(pseudonym, len(rec.accepted),
                                   rec.duplicates + screen.duplicates, len(rec.rejections),
                                   rec.version))
    return out


def ingest_observations(pseudonym: str, observations: Any, *, store: Store, actor: Actor,
                        rejected: Any = (), purpose: str = "patient monitoring",
                        now: Any = None) -> IngestResult:
    """Check monitoring observations of one twin, store them and update the twin (audited).

    The observations pass the checks of :class:`cardiotwin.monitoring.Screen` (plausible,
    monotone per stream, duplicates idempotent) and those against the stored ones; an
    observation of another subject is quarantined without repeating its subject. The accepted
    ones are assimilated (:mod:`cardiotwin.twin.assimilate`) into a new twin version, stored
    with the observations and the quarantined records in one transaction. ``rejected``:
    records a reader already refused (:class:`~cardiotwin.monitoring.Rejection`), stored in the
    quarantine too. ``now`` (timezone-aware; default the clock) is the time the stale flag is
    judged at.
    """
    from datetime import UTC, datetime

    from cardiotwin.monitoring import Rejection
    from cardiotwin.twin import assimilate as assim
    from cardiotwin.twin import history

    screen, rows, rejections = _screen_twin(pseudonym, observations, rejected)
    record = store.ingest_observations(pseudonym, observations=rows, rejections=rejections,
                                       update=history.apply_batch, actor=actor, purpose=purpose)
    quarantined = tuple(Rejection.from_dict({**r, "subject": ""}) for r in record.rejections)
    now = now or datetime.now(UTC)
    estimate = None
    if record.state is not None:
        twin = PatientTwin.from_dict(record.state)
        estimate = assim.status(assim.state_of(twin), twin, as_of=now)
    else:
        twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
        estimate = assim.status(assim.state_of(twin), twin, as_of=now)
    return IngestResult(pseudonym=pseudonym, accepted=len(record.accepted),
                        duplicates=record.duplicates + screen.duplicates,
                        quarantined=quarantined, version=record.version,
                        base_version=record.base_version, stale=estimate.stale,
                        stale_reason=estimate.stale_reason, drift=estimate.drift,
                        drift_reasons=estimate.drift_reasons, status=estimate)


def ingest_fhir(pseudonym: str, document: Mapping[str, Any], *, store: Store, actor: Actor,
                purpose: str = "patient monitoring", source: str = "api",
                now: Any = None) -> IngestResult:
    """Ingest a FHIR R4 Observation or Bundle given as parsed JSON (the body of a REST call)
    into twin ``pseudonym`` (audited; see :func:`ingest_observations`).

    Records the reader refuses (unknown code or unit, no timezone, wrong status…) and
    observations of another subject are quarantined under this twin with their reasons.

    Raises
    ------
    InputError
        The document is not a FHIR Observation or Bundle (nothing is stored).
    AccessDenied
        The role may not write twins (audited as denied).
    StoreError
        No twin of that pseudonym (audited as a failure).
    """
    from cardiotwin.monitoring import read_fhir
    from cardiotwin.store import check_pseudonym

    check_pseudonym(pseudonym)
    store.check_permission("twin.write", actor=actor, purpose=purpose, pseudonym=pseudonym,
                           obj="observations", action="write")
    if not isinstance(document, Mapping):
        raise InputError(f"the body must be a FHIR Observation or Bundle JSON object, got "
                         f"{type(document).__name__}")
    batch = read_fhir(dict(document), subject=pseudonym, name=source)
    return ingest_observations(pseudonym, batch.observations, store=store, actor=actor,
                               rejected=batch.rejections, purpose=purpose, now=now)


_FORMATS = {".json": "fhir", ".hl7": "hl7", ".er7": "hl7", ".txt": "hl7", ".csv": "csv",
            ".hea": "wfdb"}


def _read_monitoring_file(path: Path, *, fmt: str | None, subject: str | None,
                          columns: Any, default_timezone: Any, start_time: Any = None):
    from cardiotwin.monitoring import read_fhir, read_hl7v2, read_table, read_wfdb
    from cardiotwin.monitoring.table import ColumnMap, parse_column_map

    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt == "fhir":
        return read_fhir(path, subject=subject)
    if fmt == "hl7":
        return read_hl7v2(path, subject=subject, default_timezone=default_timezone)
    if fmt == "csv":
        if columns is None:
            raise InputError(f"{path}: a CSV file needs its column map (--columns "
                             "time=t,hr=8867-4:/min,sbp=8480-6:mm[Hg])")
        cmap = columns if isinstance(columns, ColumnMap) else parse_column_map(columns)
        return read_table(path, columns=cmap, subject=subject, default_timezone=default_timezone)
    if fmt == "wfdb":
        if subject is None:
            raise InputError(f"{path}: a WFDB record names no patient; give the twin's "
                             "pseudonym (--subject)")
        return read_wfdb(path.with_suffix("") if path.suffix == ".hea" else path,
                         subject=subject, start_time=start_time,
                         default_timezone=default_timezone)
    raise InputError(f"{path}: cannot tell the format from the extension {path.suffix!r}; give "
                     "--format fhir, hl7, wfdb or csv")


def ingest_file(path: str | Path, *, store: Store, actor: Actor, subject: str | None = None,
                format: str | None = None, columns: Any = None, default_timezone: Any = None,
                start_time: Any = None, purpose: str = "patient monitoring",
                now: Any = None) -> list[IngestResult]:
    """Read a monitoring file, or every file of a folder, and ingest it per twin (audited).

    ``format`` is ``fhir``, ``hl7``, ``wfdb`` or ``csv`` (default: from the extension:
    ``.json``, ``.hl7``/``.er7``/``.txt``, ``.hea``, ``.csv``; in a folder, files of other
    extensions are skipped). ``subject`` is the twin's pseudonym for records that carry none
    (WFDB, CSV without a subject column). ``columns``: the CSV column map
    (:class:`~cardiotwin.monitoring.ColumnMap` or ``"time=t,hr=8867-4:/min"``). Records a
    reader refuses go to the quarantine of the file's one twin; in a file of several twins,
    refused records whose subject is unknown are reported and logged but cannot be filed under
    a twin. ``default_timezone`` (a ``tzinfo``) is the zone of times that carry no offset (HL7
    v2, CSV, a WFDB header); ``start_time`` the time of a WFDB record's first sample when its
    header has none.

    Returns
    -------
    list of IngestResult
        One per twin per file, in file order.
    """
    path = Path(path)
    if format is not None and format not in ("fhir", "hl7", "wfdb", "csv"):
        raise InputError(f"--format {format!r} is not one of fhir, hl7, wfdb, csv")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and (format or _FORMATS.get(p.suffix.lower())) is not None
                       and (format != "wfdb" or p.suffix == ".hea"))
    elif path.exists() or path.with_suffix(".hea").exists():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or folder")
    results: list[IngestResult] = []
    for f in files:
        batch = _read_monitoring_file(f, fmt=format, subject=subject, columns=columns,
                                      default_timezone=default_timezone, start_time=start_time)
        by_subject: dict[str, list[Any]] = {}
        for o in batch.observations:
            by_subject.setdefault(o.subject, []).append(o)
        subjects = sorted(by_subject) or ([subject] if subject else [])
        if not subjects:
            log.warning("%s: no observation with a subject; %d refused records not filed: %s",
                        f.name, len(batch.rejections),
                        "; ".join(r.reason for r in batch.rejections[:3]))
            continue
        for s in subjects:
            mine = [r for r in batch.rejections
                    if r.subject == s or (len(subjects) == 1 and r.subject not in by_subject)]
            results.append(ingest_observations(s, by_subject.get(s, []), store=store,
                                               actor=actor, rejected=mine, purpose=purpose,
                                               now=now))
        unfiled = [r for r in batch.rejections if len(subjects) > 1 and r.subject not in by_subject]
        if unfiled:
            log.warning("%s: %d refused records name no known twin and were not filed",
                        f.name, len(unfiled))
    return results

