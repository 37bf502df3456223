"""What a twin says and when its flags changed (:func:`twin_status`, :func:`twin_events`),
replay of a version from its stored observations, and the live MQTT service and demo step."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardiotwin.errors import InputError
from cardiotwin.store import Actor, Store
from cardiotwin.twin.state import PatientTwin, Physiology
from cardiotwin.workflows.observations import ingest_observations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwinStatus:
    """What a twin says at a time (:func:`twin_status`).

    Attributes
    ----------
    pseudonym, version : the twin version in force at ``as_of_utc``.
    saved_utc, reason : when and why that version was saved.
    as_of_utc : the time spoken for (ISO 8601 UTC).
    estimate : :class:`~cardiotwin.twin.assimilate.TwinEstimate` (physiology with ± one SD,
        outlets, data age, stale and drift flags).
    physiology : the physiology of the last 3-D run (the twin's build values).
    versions : the version list up to this one (``version``, ``created_utc``, ``reason``).
    twin : that twin version itself.
    """

    pseudonym: str
    version: int
    saved_utc: str
    reason: str
    as_of_utc: str
    estimate: Any
    physiology: Physiology
    versions: tuple[Mapping[str, Any], ...] = ()
    twin: PatientTwin | None = field(default=None, repr=False, compare=False)

    @property
    def stale(self) -> bool:
        return bool(self.estimate.stale)

    @property
    def drift(self) -> bool:
        return bool(self.estimate.drift)


def _utc_iso(t: Any) -> str:
    from datetime import UTC

    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def twin_status(pseudonym: str, *, store: Store, actor: Actor, as_of: Any = None,
                purpose: str = "patient monitoring") -> TwinStatus:
    """What the twin says at ``as_of`` (timezone-aware datetime; default now): the version in
    force then, its physiology with spread, data age, stale and drift flags (audited reads)."""
    from datetime import UTC, datetime

    from cardiotwin.twin import assimilate as assim

    if as_of is not None and (not isinstance(as_of, datetime) or as_of.tzinfo is None):
        raise InputError(f"as_of must be a timezone-aware time (2024-05-01T10:42:00+02:00), got "
                         f"{as_of!r}")
    when = as_of or datetime.now(UTC)
    iso = _utc_iso(when)
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose,
                           as_of=None if as_of is None else iso)
    estimate = assim.status(assim.state_of(twin), twin, as_of=when)
    entry = twin.history[-1] if twin.history else {}
    versions = tuple(v for v in store.twin_versions(pseudonym, actor=actor, purpose=purpose)
                     if v["version"] <= twin.version)
    return TwinStatus(pseudonym=pseudonym, version=twin.version,
                      saved_utc=str(entry.get("time_utc", "")), reason=str(entry.get("reason", "")),
                      as_of_utc=iso, estimate=estimate, physiology=twin.physiology,
                      versions=versions, twin=twin)


def replay_twin(pseudonym: str, *, store: Store, actor: Actor, version: int | None = None,
                purpose: str = "patient monitoring"):
    """Recompute a twin version's filter state from the stored observations (audited reads).

    Returns ``(replayed, stored)``: two
    :class:`~cardiotwin.twin.assimilate.AssimilationState` (``stored`` None when the version has
    none); they are equal bit for bit when the history is intact.
    """
    from cardiotwin.twin import history

    target = store.load_twin(pseudonym, actor=actor, purpose=purpose, version=version)
    stored = history.stored_state(target)
    versions = {target.version: target}
    if stored is not None and stored.reference.version not in versions:
        start = stored.reference.version
        versions[start] = store.load_twin(pseudonym, actor=actor, purpose=purpose, version=start)
    rows = store.list_observations(pseudonym, actor=actor, purpose=purpose,
                                   upto_version=target.version)
    return history.replay(versions, rows, upto_version=target.version), stored


@dataclass(frozen=True)
class TwinEvent:
    """A change of a twin's stale or drift flag (:func:`twin_events`).

    Attributes
    ----------
    pseudonym : the twin.
    kind : ``"stale"``, ``"current"`` (data again), ``"drift"`` or ``"drift-cleared"``.
    time_utc : data time of the change (ISO 8601 UTC); None for "stale since the build".
    version : the twin version in force after the change.
    detail : why, in words.
    """

    pseudonym: str
    kind: str
    time_utc: str | None
    version: int
    detail: str


def twin_events(pseudonym: str, *, store: Store, actor: Actor, now: Any = None,
                purpose: str = "patient monitoring") -> tuple[TwinEvent, ...]:
    """The stale and drift events of a twin since its filter started (its last 3-D run),
    recomputed from the stored observations (:func:`cardiotwin.twin.history.flag_events`;
    audited reads). ``now`` (timezone-aware, default the clock) ends the last gap."""
    from datetime import UTC, datetime

    from cardiotwin.twin import history

    latest = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    stored = history.stored_state(latest)
    start = latest
    if stored is not None and stored.reference.version != latest.version:
        start = store.load_twin(pseudonym, actor=actor, purpose=purpose,
                                version=stored.reference.version)
    rows = store.list_observations(pseudonym, actor=actor, purpose=purpose,
                                   after_version=start.version, upto_version=latest.version)
    found = history.flag_events(start, rows, now=now or datetime.now(UTC))
    return tuple(TwinEvent(pseudonym=pseudonym, **e) for e in found)


def all_events(*, store: Store, actor: Actor, now: Any = None,
               purpose: str = "patient monitoring") -> tuple[TwinEvent, ...]:
    """:func:`twin_events` of every twin in the store (audited), ordered by time (events
    without a time first)."""
    out: list[TwinEvent] = []
    for p in store.list_patients(actor=actor, purpose=purpose):
        if p.get("latest_version"):
            out += twin_events(p["pseudonym"], store=store, actor=actor, now=now,
                               purpose=purpose)
    return tuple(sorted(out, key=lambda e: (e.time_utc or "", e.pseudonym)))


def serve_observations(broker: str | None, *, handler: Any = None, embedded: bool = False,
                       topic: str | None = None, client_id: str | None = None,
                       max_seconds: float | None = None, connect_timeout_s: float = 10.0,
                       on_ready: Any = None, batch_handler: Any = None,
                       batch_window_s: float | None = None):
    """Serve live observations over MQTT until ``max_seconds`` or Ctrl-C (``twin serve``).

    Parameters
    ----------
    broker : str or None
        ``HOST:PORT`` of the broker; None starts the embedded broker (amqtt) on 127.0.0.1:1883.
    handler : callable
        ``handler(pseudonym, observations)`` for every message's accepted observations
        (:data:`cardiotwin.monitoring.mqtt.Handler`).
    embedded : bool
        Start the embedded broker on ``broker``'s address (default 127.0.0.1:1883).
    topic, client_id : str, optional
        Topic filter and fixed client id (``monitoring.mqtt`` defaults).
    max_seconds : float, optional
        Stop after this long.
    connect_timeout_s : float
        Bound of starting the broker and of connecting, s.
    on_ready : callable, optional
        ``on_ready(service, embedded_broker_or_None)`` once subscribed.
    batch_handler : callable, optional
        Instead of ``handler``: ``batch_handler({pseudonym: observations})`` for the messages of
        each ``batch_window_s`` (:class:`~cardiotwin.monitoring.mqtt.ObservationService` batch
        mode: acknowledged after it returned).

    Returns
    -------
    ObservationService
        The stopped service (its ``stats`` and ``quarantine``).
    """
    from cardiotwin.monitoring.broker import EmbeddedBroker
    from cardiotwin.monitoring.mqtt import (
        DEFAULT_PORT,
        SERVICE_CLIENT_ID,
        SUBSCRIPTION,
        ObservationService,
        parse_broker,
    )

    host, port = parse_broker(broker or f"127.0.0.1:{DEFAULT_PORT}")
    local = None
    if embedded or broker is None:
        local = EmbeddedBroker(host=host, port=port).start(timeout_s=connect_timeout_s)
    try:
        batch = {} if batch_handler is None else {"batch_handler": batch_handler}
        if batch_handler is not None and batch_window_s is not None:
            batch["batch_window_s"] = batch_window_s
        service = ObservationService(host, port, handler=handler, topic=topic or SUBSCRIPTION,
                                     client_id=client_id or SERVICE_CLIENT_ID, **batch)
        service.start(timeout_s=connect_timeout_s)
        if on_ready is not None:
            on_ready(service, local)
        service.run(max_seconds=max_seconds, timeout_s=connect_timeout_s)
    finally:
        if local is not None:
            local.stop()
    return service


def replay_record(record: str | Path, *, broker: str, subject: str, speed: float = 1.0,
                  max_beats: int | None = None, start_time: Any = None):
    """Replay a WFDB record as a live MQTT stream (``monitor replay``); see
    :func:`cardiotwin.monitoring.mqtt.replay_wfdb`. ``broker`` is ``HOST:PORT``."""
    from cardiotwin.monitoring.mqtt import parse_broker, replay_wfdb

    host, port = parse_broker(broker)
    return replay_wfdb(record, host=host, port=port, subject=subject, speed=speed,
                       max_beats=max_beats, start_time=start_time)


@dataclass(frozen=True)
class LiveUpdate:
    """What :func:`live_update` did.

    Attributes
    ----------
    record : the synthetic WFDB record replayed (path without extension).
    broker : ``host:port`` of the embedded broker it went through.
    published : messages published (one Observation each), all acknowledged by the broker.
    received : messages the service received.
    versions_before, version_after : the twin's version before and after.
    ingests : ingests that made a new version (one per message with new observations).
    seconds : wall-clock time of the whole step, s.
    status : :class:`TwinStatus` of the twin after the update (estimate ± SD, data age, flags).
    """

    record: Path
    broker: str
    published: int
    received: int
    versions_before: int
    version_after: int
    ingests: int
    seconds: float
    status: TwinStatus


def live_update(pseudonym: str, *, store: Store, actor: Actor, folder: str | Path,
                seconds: float = 20.0, speed: float = 10.0, timeout_s: float = 30.0,
                purpose: str = "patient monitoring") -> LiveUpdate:
    """Show a twin following its patient: a short bedside record replayed over MQTT into it.

    The step of ``cardiotwin demo`` after the rehearsal. It writes a synthetic ECG + arterial
    pressure record of ``seconds`` (:func:`cardiotwin.monitoring.synthetic.write_vitals_record`)
    into ``folder``, starts the embedded broker (amqtt) on a free loopback port, subscribes an
    :class:`~cardiotwin.monitoring.mqtt.ObservationService` whose handler applies every message
    to the stored twin (:func:`ingest_observations`, as ``twin serve`` does), replays the
    record's per-beat vitals at ``speed`` with times ending now, waits until every message was
    handled, and stops both. Every wait is bounded by ``timeout_s``.

    The replay is paced (``speed`` 10: about 55 messages/s) because amqtt 0.12 was seen to drop
    QoS-1 messages to the subscriber when a publisher sends them back to back (40 sent, 23-39
    delivered in 3 of 5 runs; none lost in 15 paced runs). Should it lose some anyway, the step
    logs a warning and reports ``received < published`` instead of failing the demo.

    Returns
    -------
    LiveUpdate

    Raises
    ------
    BrokerError
        The broker did not start, or the messages were not all handled within ``timeout_s``.
    StoreError
        No twin ``pseudonym`` in ``store``.
    """
    from datetime import UTC, datetime, timedelta

    from cardiotwin.errors import BrokerError
    from cardiotwin.monitoring.broker import EmbeddedBroker
    from cardiotwin.monitoring.mqtt import ObservationService, replay_wfdb
    from cardiotwin.monitoring.synthetic import write_vitals_record

    t_start = time.monotonic()
    before = store.load_twin(pseudonym, actor=actor, purpose=purpose).version
    vitals = write_vitals_record(folder, seconds=seconds)
    new_versions: list[int] = []

    def apply(subject: str, observations: Any) -> None:
        res = ingest_observations(subject, observations, store=store, actor=actor,
                                  purpose=purpose)
        if res.version is not None:
            new_versions.append(res.version)

    with EmbeddedBroker() as broker:
        service = ObservationService(broker.host, broker.port, handler=apply,
                                     client_id=f"cardiotwin-demo-{os.getpid()}")
        with service.running(timeout_s=timeout_s):
            summary = replay_wfdb(vitals.record, host=broker.host, port=broker.port,
                                  subject=pseudonym, speed=speed,
                                  start_time=datetime.now(UTC) - timedelta(seconds=seconds),
                                  connect_timeout_s=timeout_s, ack_timeout_s=timeout_s)
            left = max(timeout_s - (time.monotonic() - t_start), 1.0)
            try:
                service.wait_for(lambda s: s.messages >= summary.observations, timeout_s=left,
                                 what=f"{summary.observations} messages received")
            except BrokerError:
                log.warning("the embedded broker delivered %d of %d messages within %.0f s",
                            service.stats.messages, summary.observations, timeout_s)
        # stopping joined the network thread, so the last handler has returned
        address = broker.address
    status = twin_status(pseudonym, store=store, actor=actor, purpose=purpose)
    return LiveUpdate(record=vitals.record, broker=address, published=summary.observations,
                      received=service.stats.messages, versions_before=before,
                      version_after=status.version, ingests=len(new_versions),
                      seconds=time.monotonic() - t_start, status=status)


def log_observations(pseudonym: str, observations: Any) -> None:
    """The handler that only logs an accepted batch (``twin serve`` until it ingests)."""
    from cardiotwin.monitoring.mqtt import log_handler

    log_handler(pseudonym, observations)

