"""Live monitoring over MQTT: FHIR R4 Observations on a topic per twin, QoS 1.

**Topic scheme.** One topic per twin: ``cardiotwin/<pseudonym>/observations``
(:func:`observation_topic`); the service subscribes to ``cardiotwin/+/observations``
(:data:`SUBSCRIPTION`). The pseudonym in the topic must agree with the Observation's
``subject`` (``Patient/<pseudonym>``); a message naming another patient is quarantined.

**Payload.** One FHIR R4 ``Observation`` (or a ``Bundle`` of them) as UTF-8 JSON, at most
:data:`MAX_PAYLOAD_BYTES`; it is read by :func:`~.fhir.read_fhir`, so the rules of the file reader
(LOINC code, UCUM unit, time with a timezone, final status) apply unchanged.
:func:`observation_to_fhir` writes the payload of one :class:`~.observations.Observation`.

**Delivery.** Published and subscribed at QoS 1 (at least once). The service keeps a persistent
session (``clean_session=False`` with a fixed client id), so messages published while it is
disconnected are queued by the broker and delivered when it reconnects; paho reconnects by itself
with a growing delay (``reconnect_delay_set``). A message delivered twice, or the same observation
sent twice, is recognised by the duplicate check of :class:`~.checks.Screen` and handed on once.
The broker is acknowledged only after the handler returned, so a crash inside the handler means
redelivery, never loss.

**Hostile input.** An oversized payload, bytes that are not UTF-8, invalid JSON, a resource that
is not an Observation, an unknown code or unit, an implausible value or an injection string in any
field becomes a :class:`~.quarantine.Rejection`; the service goes on with the next message.
Nothing the subscriber does can raise into paho's network thread.

Every blocking wait (connecting, subscribing, acknowledgements, stopping) is time-bounded and
raises :class:`~cardiotwin.errors.BrokerError` naming the broker and what to do.
See ``docs/monitoring.md`` ("Live streams over MQTT").
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardiotwin.errors import BrokerError, CardiotwinError, InputError
from cardiotwin.monitoring.checks import Screen
from cardiotwin.monitoring.fhir import read_fhir
from cardiotwin.monitoring.observations import (
    LOINC_SYSTEM,
    UCUM_SYSTEM,
    Observation,
    is_pseudonym,
)
from cardiotwin.monitoring.quarantine import Quarantine, Rejection

logger = logging.getLogger(__name__)

TOPIC_ROOT = "cardiotwin"
"""First level of every topic."""

SUBSCRIPTION = f"{TOPIC_ROOT}/+/observations"
"""The topic filter ``twin serve`` subscribes to: the observations of every twin."""

QOS = 1
"""MQTT quality of service of publishing and subscribing (at least once; duplicates are
recognised by the checks)."""

MAX_PAYLOAD_BYTES = 64 * 1024
"""A message larger than this is quarantined unread (one Observation is about 600 bytes)."""

DEFAULT_PORT = 1883
"""The IANA port of MQTT."""

SERVICE_CLIENT_ID = "cardiotwin-twin-serve"
"""The fixed client id of the service: the broker keeps its session (subscription and queued
QoS-1 messages) under this id while it is away."""

Handler = Callable[[str, tuple[Observation, ...]], object]
"""``handler(pseudonym, observations)``: receives the observations of one message that passed
the checks (never empty). It runs on the MQTT network thread; the message is acknowledged to the
broker after it returns."""

BatchHandler = Callable[[dict[str, tuple[Observation, ...]]], object]
"""``batch_handler({pseudonym: observations})``: receives the accepted observations of every
message of one batch window, grouped by twin in arrival order, and must make them durable (one
store transaction) before it returns; the batch's messages are acknowledged to the broker after
it returns. It runs on the service's batch thread."""

DEFAULT_BATCH_WINDOW_S = 0.05
"""Longest wait from a batch's first message to handing the batch on, s."""

DEFAULT_MAX_BATCH = 500
"""Most messages in one batch. The broker must let this many QoS-1 messages be in flight to the
service (mosquitto ``max_inflight_messages``, default 20), or batches stay small."""

BATCH_ATTEMPTS = 3
"""How often a failing batch handler is tried (0.1 s, then 0.2 s apart) before the batch is
counted as a handler error."""


def observation_topic(pseudonym: str, *, root: str = TOPIC_ROOT) -> str:
    """``cardiotwin/<pseudonym>/observations``: where a twin's observations are published.

    Raises
    ------
    InputError
        ``pseudonym`` is not a twin pseudonym (it would break the topic or name a patient).
    """
    if not is_pseudonym(pseudonym):
        raise InputError("the subject is not a twin pseudonym (1-64 letters, digits or . _ : -); "
                         "give the twin's pseudonym (cardiotwin twin list), never a name")
    return f"{root}/{pseudonym}/observations"


def subject_of_topic(topic: str, *, root: str = TOPIC_ROOT) -> str | None:
    """The pseudonym of a topic written by :func:`observation_topic`; None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != root or parts[2] != "observations":
        return None
    return parts[1] if is_pseudonym(parts[1]) else None


def parse_broker(address: str, *, option: str = "--broker") -> tuple[str, int]:
    """``"HOST:PORT"`` (or ``"HOST"``, port 1883) → ``(host, port)``.

    Raises
    ------
    InputError
        The address has no host or its port is not a number in 1-65535; the message names
        ``option``.
    """
    host, sep, port_text = address.strip().rpartition(":")
    if not sep:
        host, port_text = address.strip(), str(DEFAULT_PORT)
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 1 <= port <= 65535:
        raise InputError(f"{option} {address!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, port


def fhir_id(obs: Observation) -> str:
    """A stable FHIR ``id`` for an observation: the same observation always gets the same id."""
    key = "|".join(str(k) for k in obs.key)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def observation_to_fhir(obs: Observation) -> dict[str, Any]:
    """The FHIR R4 ``Observation`` JSON (a dict) of ``obs``: what a publisher sends.

    The value and unit are the ones received (:attr:`~.Observation.value_as_received`,
    :attr:`~.Observation.unit`); :func:`~.fhir.read_fhir` reads it back to an equal observation
    (same :attr:`~.Observation.key`).
    """
    doc: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir_id(obs),
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": obs.code,
                             "display": obs.vital.name}]},
        "subject": {"reference": f"Patient/{obs.subject}"},
        "effectiveDateTime": obs.time.isoformat(),
        "valueQuantity": {"value": obs.value_as_received, "unit": obs.unit,
                          "system": UCUM_SYSTEM, "code": obs.unit},
    }
    if obs.device:
        doc["device"] = {"reference": f"Device/{obs.device}"}
    return doc


def _paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise BrokerError("paho-mqtt is not installed; pip install 'paho-mqtt>=2.1,<3'") from err
    return mqtt


def _bounded(fn: Callable[[], object], *, timeout_s: float, what: str) -> None:
    """Run ``fn`` in a helper thread and wait at most ``timeout_s`` for it."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            failure.append(err)
        finally:
            done.set()

    threading.Thread(target=run, name=f"bounded:{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise BrokerError(f"{what} did not finish within {timeout_s:g} s")
    if failure:
        raise failure[0]


def _acknowledged(info: Any) -> bool:
    """Whether the broker acknowledged a message (paho's ``is_published`` raises for one
    queued while disconnected, which paho still sends on reconnection)."""
    try:
        return bool(info.is_published())
    except RuntimeError:
        return bool(getattr(info, "_published", False))


@dataclass
class ServiceStats:
    """What :class:`ObservationService` has done so far (counts since it was made).

    Attributes
    ----------
    messages : int
        Messages received (including redeliveries).
    accepted : int
        Observations handed to the handler.
    duplicates : int
        Observations recognised as already received (redeliveries, the same value twice).
    quarantined : int
        Records put in the quarantine (a message can give several).
    handler_errors : int
        Messages whose handler raised (logged with the traceback).
    batches : int
        Batches handed to the batch handler (batch mode only).
    acked : int
        Messages acknowledged to the broker after their batch was handled (batch mode only).
    connects : int
        Successful connections (the first one and every reconnection).
    disconnects : int
        Connections lost.
    reconnect_seconds : list of float
        For every reconnection: seconds from losing the connection to being connected again.
    session_resumed : list of bool
        For every connection: whether the broker still had our session (``session present``).
    """

    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    handler_errors: int = 0
    batches: int = 0
    acked: int = 0
    connects: int = 0
    disconnects: int = 0
    reconnect_seconds: list[float] = field(default_factory=list)
    session_resumed: list[bool] = field(default_factory=list)


class ObservationService:
    """Subscribes to the twins' observation topics, checks every message and hands on what passes.

    Parameters
    ----------
    host, port : str, int
        The broker.
    handler : callable, optional
        ``handler(pseudonym, observations)`` (:data:`Handler`), called once per message with the
        observations that passed the checks. ``twin serve`` passes one that ingests them into
        the twin. Give this or ``batch_handler``.
    batch_handler : callable, optional
        Batch mode (:data:`BatchHandler`): the accepted observations of all messages that
        arrived within ``batch_window_s`` (at most ``max_batch`` messages) are handed on
        together, grouped by twin, and every message of the batch is acknowledged to the broker
        (manual PUBACK, in arrival order) only after the handler returned, i.e. after its
        commit. A handler that raises is tried :data:`BATCH_ATTEMPTS` times; then the batch is
        logged and counted in ``stats.handler_errors`` and acknowledged, as in per-message mode.
    batch_window_s, max_batch : float, int
        Longest wait from a batch's first message, s, and most messages per batch.
    topic : str
        Topic filter; :data:`SUBSCRIPTION` by default. Every topic it matches must have the form
        of :func:`observation_topic` (others are quarantined).
    client_id : str
        Fixed MQTT client id under which the broker keeps the persistent session.
    screen : Screen, optional
        The checks (plausible, monotone, duplicate) and the quarantine; a new one by default.
    max_payload_bytes : int
        Larger messages are quarantined unread.
    keepalive_s : int
        MQTT keep-alive, s: a silent broker is noticed after about 1.5 times this.
    reconnect_delay_s : tuple of float
        First and longest wait between reconnection attempts, s (doubling in between).
    topic_root : str
        First level of the topics (:data:`TOPIC_ROOT`).

    Examples
    --------
    >>> svc = ObservationService("127.0.0.1", 1883, handler=print)   # doctest: +SKIP
    >>> with svc.running(timeout_s=10):                               # doctest: +SKIP
    ...     svc.wait_for(lambda s: s.accepted >= 10, timeout_s=30)
    """

    def __init__(self, host: str, port: int, *, handler: Handler | None = None,
                 topic: str = SUBSCRIPTION, client_id: str = SERVICE_CLIENT_ID,
                 screen: Screen | None = None, max_payload_bytes: int = MAX_PAYLOAD_BYTES,
                 keepalive_s: int = 15, reconnect_delay_s: tuple[float, float] = (0.5, 10.0),
                 topic_root: str = TOPIC_ROOT, batch_handler: BatchHandler | None = None,
                 batch_window_s: float = DEFAULT_BATCH_WINDOW_S,
                 max_batch: int = DEFAULT_MAX_BATCH):
        if (handler is None) == (batch_handler is None):
            raise InputError("give either handler(pseudonym, observations) or "
                             "batch_handler({pseudonym: observations}), not both or neither")
        if not callable(handler if batch_handler is None else batch_handler):
            raise InputError("handler must be callable as handler(pseudonym, observations)")
        if not (batch_window_s > 0 and max_batch >= 1):
            raise InputError(f"batch_window_s {batch_window_s!r} must be > 0 and max_batch "
                             f"{max_batch!r} at least 1")
        self.host, self.port = host, int(port)
        self.handler = handler
        self.batch_handler = batch_handler
        self.batch_window_s = float(batch_window_s)
        self.max_batch = int(max_batch)
        self._pending: list[tuple[int, int, tuple[Observation, ...]]] = []
        self._pending_since = 0.0
        self._batch_cond = threading.Condition()
        self._batch_thread: threading.Thread | None = None
        self._closing = False
        self.topic = topic
        self.topic_root = topic_root
        self.client_id = client_id
        self.screen = screen if screen is not None else Screen()
        self.max_payload_bytes = int(max_payload_bytes)
        self.stats = ServiceStats()
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._connect_error = ""
        self._lost_at: float | None = None
        mqtt = _paho()
        self._mqtt = mqtt
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=False, protocol=mqtt.MQTTv311,
                                   manual_ack=batch_handler is not None)
        self._client.reconnect_delay_set(min_delay=reconnect_delay_s[0],
                                         max_delay=reconnect_delay_s[1])
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._keepalive = int(keepalive_s)
        self._started = False

    @property
    def quarantine(self) -> Quarantine:
        """The refused records (with their reasons)."""
        return self.screen.quarantine

    @property
    def broker(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    # ---------------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connect_error = f"the broker refused the connection: {reason_code}"
            logger.warning("MQTT %s: %s", self.broker, self._connect_error)
            return
        with self._cond:
            self.stats.connects += 1
            self.stats.session_resumed.append(bool(flags.session_present))
            if self._lost_at is not None:
                self.stats.reconnect_seconds.append(time.monotonic() - self._lost_at)
                self._lost_at = None
            self._cond.notify_all()
        logger.info("MQTT %s: connected as %s (session %s)", self.broker, self.client_id,
                    "resumed" if flags.session_present else "new")
        # subscribing again is harmless when the broker kept the session, and needed when not
        client.subscribe(self.topic, qos=QOS)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._connect_error = f"the broker refused the subscription to {self.topic!r}"
            logger.error("MQTT %s: %s", self.broker, self._connect_error)
            return
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self.stats.disconnects += 1
            if self._lost_at is None:
                self._lost_at = time.monotonic()
            self._cond.notify_all()
        if self._started:
            logger.warning("MQTT %s: connection lost (%s); reconnecting", self.broker, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            if self.batch_handler is not None:
                self._enqueue(msg)
                return
            self._handle(msg.topic, bytes(msg.payload))
        except Exception:  # noqa: BLE001 - the network thread must never die on a message
            logger.exception("MQTT %s: unexpected failure on a message of %s", self.broker,
                             msg.topic)

    # ---------------------------------------------------------------- one message
    def _quarantine(self, topic: str, *, kind: str, field: str, reason: str, value: str = "",
                    expected: str = "", subject: str = "", raw: str = "") -> None:
        source = f"mqtt:{topic}"
        full = f"{source}: {field}: {reason}" if field else f"{source}: {reason}"
        full += (f" (got {value})" if value else "") + (f"; expected {expected}" if expected else "")
        self.screen.quarantine.add(Rejection(
            kind=kind, source=source, record="message", field=field, reason=full,
            value=value, expected=expected, subject=subject, raw=raw))
        logger.info("quarantined a message of %s: %s", topic, reason)

    def process(self, topic: str, payload: bytes) -> tuple[Observation, ...]:
        """Check one message and return the observations that passed (also counted in
        :attr:`stats`); refused records go to the quarantine. Never raises on bad input."""
        with self._cond:
            n_q = len(self.screen.quarantine)
            n_dup = self.screen.duplicates
            accepted = self._read(topic, payload)
            self.stats.messages += 1
            self.stats.accepted += len(accepted)
            self.stats.duplicates += self.screen.duplicates - n_dup
            self.stats.quarantined += len(self.screen.quarantine) - n_q
        return accepted

    def _read(self, topic: str, payload: bytes) -> tuple[Observation, ...]:
        # the topic is checked for its form only: it may carry a name, so it is not repeated
        pseudonym = subject_of_topic(topic, root=self.topic_root)
        if pseudonym is None:
            self._quarantine("(topic not shown)", kind="subject", field="topic",
                             reason="the topic is not <root>/<pseudonym>/observations with a "
                                    "twin pseudonym (the topic is not repeated here)",
                             expected=f"{self.topic_root}/<pseudonym>/observations")
            return ()
        if len(payload) > self.max_payload_bytes:
            self._quarantine(topic, kind="malformed", field="payload",
                             reason="message larger than a monitoring message may be",
                             value=f"{len(payload)} bytes",
                             expected=f"at most {self.max_payload_bytes} bytes (one FHIR "
                                      "Observation or a small Bundle)", subject=pseudonym)
            return ()
        try:
            doc = json.loads(payload.decode("utf-8"))
        except UnicodeDecodeError as err:
            self._quarantine(topic, kind="malformed", field="payload",
                             reason=f"not UTF-8 text ({err.reason} at byte {err.start})",
                             expected="FHIR R4 Observation JSON in UTF-8", subject=pseudonym)
            return ()
        except (ValueError, RecursionError) as err:
            # the raw text is not kept: it could not be read, so it cannot be redacted
            self._quarantine(topic, kind="malformed", field="payload",
                             reason=f"not JSON ({str(err)[:200]})",
                             expected="FHIR R4 Observation JSON", subject=pseudonym)
            return ()
        if not isinstance(doc, dict):
            self._quarantine(topic, kind="malformed", field="payload",
                             reason=f"the JSON is a {type(doc).__name__}, not a FHIR resource",
                             expected="a JSON object with resourceType Observation or Bundle",
                             subject=pseudonym)
            return ()
        try:
            batch = read_fhir(doc, subject=pseudonym, name=f"mqtt:{topic}")
        except CardiotwinError as err:
            self._quarantine(topic, kind="malformed", field="resource", reason=str(err)[:500],
                             expected="a FHIR R4 Observation or Bundle", subject=pseudonym)
            return ()
        except Exception as err:  # noqa: BLE001 - hostile JSON must not stop the service
            logger.warning("FHIR reader failed on a message of %s", topic, exc_info=True)
            self._quarantine(topic, kind="malformed", field="resource",
                             reason=f"unreadable FHIR resource ({type(err).__name__})",
                             expected="a FHIR R4 Observation or Bundle", subject=pseudonym)
            return ()
        return tuple(self.screen.offer_batch(batch))

    def _handle(self, topic: str, payload: bytes) -> None:
        accepted = self.process(topic, payload)
        if accepted:
            try:
                self.handler(accepted[0].subject, accepted)
            except Exception:  # noqa: BLE001 - logged; the service goes on
                with self._cond:
                    self.stats.handler_errors += 1
                logger.exception("handler failed on %d observations of %s", len(accepted),
                                 accepted[0].subject)
        with self._cond:
            self._cond.notify_all()

    # ---------------------------------------------------------------- batch mode
    def _enqueue(self, msg) -> None:
        """Batch mode, network thread: check the message and queue it for the batch thread
        (it is acknowledged once its batch was handled)."""
        if self._closing:
            return  # not checked and not acknowledged: the broker delivers it again next time
        accepted = self.process(msg.topic, bytes(msg.payload))
        with self._batch_cond:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((msg.mid, msg.qos, accepted))
            self._batch_cond.notify_all()

    def _batch_loop(self) -> None:
        while True:
            with self._batch_cond:
                while not self._pending and self._started:
                    self._batch_cond.wait(0.5)
                if not self._pending:
                    return
                while (len(self._pending) < self.max_batch and self._started
                       and time.monotonic() - self._pending_since < self.batch_window_s):
                    self._batch_cond.wait(self.batch_window_s
                                          - (time.monotonic() - self._pending_since))
                batch, self._pending = (self._pending[:self.max_batch],
                                        self._pending[self.max_batch:])
                self._pending_since = time.monotonic()
            try:
                self._handle_batch(batch)
            except Exception:  # noqa: BLE001 - the batch thread must never die on a batch
                logger.exception("MQTT %s: unexpected failure on a batch", self.broker)

    def _handle_batch(self, batch: list[tuple[int, int, tuple[Observation, ...]]]) -> None:
        groups: dict[str, list[Observation]] = {}
        for _mid, _qos, accepted in batch:
            for obs in accepted:
                groups.setdefault(obs.subject, []).append(obs)
        if groups:
            payload = {p: tuple(obs) for p, obs in groups.items()}
            for attempt in range(1, BATCH_ATTEMPTS + 1):
                try:
                    self.batch_handler(payload)
                    break
                except Exception:  # noqa: BLE001 - logged; retried, then counted
                    if attempt == BATCH_ATTEMPTS:
                        with self._cond:
                            self.stats.handler_errors += len(batch)
                        logger.exception("batch handler failed %d times on %d messages of %d "
                                         "twins; acknowledged without being applied", attempt,
                                         len(batch), len(groups))
                    else:
                        logger.warning("batch handler failed (attempt %d of %d); retrying",
                                       attempt, BATCH_ATTEMPTS, exc_info=True)
                        time.sleep(0.1 * attempt)
        for mid, qos, _accepted in batch:  # after the commit, in arrival order
            if qos > 0:
                self._client.ack(mid, qos)
        with self._cond:
            self.stats.batches += 1 if groups else 0
            self.stats.acked += len(batch)
            self._cond.notify_all()

    # ---------------------------------------------------------------- life cycle
    def start(self, *, timeout_s: float = 10.0) -> ObservationService:
        """Connect, subscribe and start receiving in a background thread.

        Raises
        ------
        BrokerError
            Not connected and subscribed within ``timeout_s`` (the message names the broker).
        """
        if self._started:
            return self
        self._subscribed.clear()
        self._connect_error = ""
        self._closing = False
        try:
            self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        except (OSError, ValueError) as err:
            raise BrokerError(f"MQTT broker {self.broker}: {err}") from err
        self._client.loop_start()
        self._started = True
        if self.batch_handler is not None:
            self._batch_thread = threading.Thread(target=self._batch_loop, daemon=True,
                                                  name=f"mqtt-batches:{self.broker}")
            self._batch_thread.start()
        if not self._subscribed.wait(timeout_s):
            why = self._connect_error or "no answer"
            self.stop(timeout_s=5.0)
            raise BrokerError(
                f"MQTT broker {self.broker}: not connected and subscribed to {self.topic!r} "
                f"within {timeout_s:g} s ({why}); start the broker (mosquitto -p {self.port}), "
                "check --broker HOST:PORT, or use --embedded")
        return self

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Disconnect (the broker keeps the session) and stop the network thread.

        Raises
        ------
        BrokerError
            The network thread did not stop within ``timeout_s`` (e.g. a handler that hangs).
        """
        if not self._started:
            return
        self._closing = True  # batch mode: later messages stay unacknowledged, redelivered
        with self._batch_cond:
            self._started = False
            self._batch_cond.notify_all()
        if self._batch_thread is not None:
            # the batch thread hands on and acknowledges what is pending, then ends
            _bounded(lambda: self._batch_thread.join(), timeout_s=timeout_s,
                     what=f"handing on the last batch of {self.broker}")
            self._batch_thread = None
        self._client.disconnect()
        _bounded(self._client.loop_stop, timeout_s=timeout_s,
                 what=f"stopping the MQTT client of {self.broker}")

    @contextmanager
    def running(self, *, timeout_s: float = 10.0) -> Iterator[ObservationService]:
        """Context manager: :meth:`start` on entry, :meth:`stop` on exit."""
        self.start(timeout_s=timeout_s)
        try:
            yield self
        finally:
            self.stop()

    def wait_for(self, condition: Callable[[ServiceStats], bool], *, timeout_s: float,
                 what: str = "the condition") -> ServiceStats:
        """Block until ``condition(stats)`` holds; return the stats.

        Raises
        ------
        BrokerError
            Not reached within ``timeout_s``; the message gives the counts so far.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not condition(self.stats):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerError(f"MQTT {self.broker}: {what} not reached within "
                                      f"{timeout_s:g} s; so far {self.stats}")
                self._cond.wait(min(left, 0.5))
            return self.stats

    def run(self, *, max_seconds: float | None = None, stop: threading.Event | None = None,
            timeout_s: float = 10.0) -> ServiceStats:
        """Serve until ``stop`` is set, ``max_seconds`` have passed, or Ctrl-C; then stop.

        Returns
        -------
        ServiceStats
            The counts at the end.
        """
        stop = stop or threading.Event()
        self.start(timeout_s=timeout_s)
        try:
            stop.wait(max_seconds if max_seconds is not None else None)
        except KeyboardInterrupt:
            logger.info("interrupted; stopping")
        finally:
            self.stop()
        return self.stats


class ObservationPublisher:
    """Publishes observations as FHIR R4 Observation JSON on their twin's topic at QoS 1.

    Messages published while the broker is away are kept by paho and sent when it is back;
    :meth:`flush` waits (time-bounded) until the broker acknowledged all of them.

    Parameters
    ----------
    host, port : str, int
        The broker.
    client_id : str, optional
        MQTT client id; a random one by default. Give a fixed one together with
        ``persistent=True`` to keep the session across reconnections.
    persistent : bool
        ``clean_session=False``.
    reconnect_delay_s : tuple of float
        First and longest wait between reconnection attempts, s.
    topic_root : str
        First level of the topics.
    """

    def __init__(self, host: str, port: int, *, client_id: str = "", persistent: bool = False,
                 reconnect_delay_s: tuple[float, float] = (0.5, 10.0),
                 topic_root: str = TOPIC_ROOT):
        mqtt = _paho()
        self.host, self.port = host, int(port)
        self.topic_root = topic_root
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=not persistent if client_id else True,
                                   protocol=mqtt.MQTTv311)
        self._client.reconnect_delay_set(min_delay=reconnect_delay_s[0],
                                         max_delay=reconnect_delay_s[1])
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self._connected.clear()
        self._pending: list[Any] = []
        self.published = 0

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    @property
    def broker(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def connect(self, *, timeout_s: float = 10.0) -> ObservationPublisher:
        """Connect and start the network thread.

        Raises
        ------
        BrokerError
            Not connected within ``timeout_s``.
        """
        try:
            self._client.connect_async(self.host, self.port, keepalive=15)
        except (OSError, ValueError) as err:
            raise BrokerError(f"MQTT broker {self.broker}: {err}") from err
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            _bounded(self._client.loop_stop, timeout_s=5.0, what="stopping the publisher")
            raise BrokerError(f"MQTT broker {self.broker}: not connected within {timeout_s:g} "
                              f"s; start the broker (mosquitto -p {self.port}) or check --broker")
        return self

    def publish(self, obs: Observation) -> None:
        """Queue one observation for its twin's topic (QoS 1); returns at once."""
        payload = json.dumps(observation_to_fhir(obs), separators=(",", ":"))
        self.publish_raw(observation_topic(obs.subject, root=self.topic_root),
                         payload.encode("utf-8"))

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Queue any payload on any topic at QoS 1 (tests send hostile messages with it)."""
        info = self._client.publish(topic, payload, qos=QOS)
        if info.rc not in (self._mqtt_success(), self._mqtt_no_conn()):
            raise BrokerError(f"MQTT broker {self.broker}: publishing on {topic!r} failed "
                              f"(paho code {info.rc})")
        self._pending.append(info)
        self.published += 1

    @staticmethod
    def _mqtt_success() -> int:
        return _paho().MQTT_ERR_SUCCESS

    @staticmethod
    def _mqtt_no_conn() -> int:
        return _paho().MQTT_ERR_NO_CONN

    def unacknowledged(self) -> int:
        """Messages not yet acknowledged by the broker."""
        self._pending = [i for i in self._pending if not _acknowledged(i)]
        return len(self._pending)

    def flush(self, *, timeout_s: float = 30.0) -> None:
        """Wait until the broker acknowledged every message published so far.

        Raises
        ------
        BrokerError
            Some messages are still unacknowledged after ``timeout_s``; the message says how many.
        """
        deadline = time.monotonic() + timeout_s
        while self.unacknowledged():
            if time.monotonic() > deadline:
                raise BrokerError(f"MQTT broker {self.broker}: {len(self._pending)} of "
                                  f"{self.published} messages not acknowledged within "
                                  f"{timeout_s:g} s; is the broker running?")
            time.sleep(0.01)

    def close(self, *, timeout_s: float = 10.0) -> None:
        """Disconnect and stop the network thread (call :meth:`flush` first to lose nothing)."""
        self._client.disconnect()
        _bounded(self._client.loop_stop, timeout_s=timeout_s, what="stopping the publisher")

    def __enter__(self) -> ObservationPublisher:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class ReplaySummary:
    """What :func:`replay_wfdb` sent.

    Attributes
    ----------
    record : str
        The WFDB record name.
    subject : str
        The twin's pseudonym (the topic).
    beats : int
        Beat times sent (an ECG beat and a pressure beat at different times count twice).
    observations : int
        Messages sent (one Observation each), all acknowledged by the broker.
    record_seconds : float
        Record time spanned by what was sent, s.
    wall_seconds : float
        Wall-clock time of the replay, s.
    speed : float
        The speed factor asked for.
    reader_rejections : int
        Beats the WFDB reader refused (logged; not sent).
    """

    record: str
    subject: str
    beats: int
    observations: int
    record_seconds: float
    wall_seconds: float
    speed: float
    reader_rejections: int


def replay_wfdb(record: str | Path, *, host: str, port: int, subject: str, speed: float = 1.0,
                max_beats: int | None = None, start_time: datetime | None = None,
                connect_timeout_s: float = 10.0, ack_timeout_s: float = 60.0,
                topic_root: str = TOPIC_ROOT,
                sleep: Callable[[float], None] = time.sleep) -> ReplaySummary:
    """Replay a WFDB record's per-beat vitals as a live stream on the twin's topic.

    The record is read by :func:`~.wfdb_records.read_wfdb` (heart rate per R-R interval from the
    first ECG lead; systolic, diastolic, mean pressure and pulse rate per beat of the first
    arterial-pressure channel). Each observation is sent as one FHIR R4 Observation at QoS 1,
    in time order, when its beat is due: at real speed (``speed=1``) a beat 2 s into the record is
    sent 2 s after the start, at ``speed=10`` after 0.2 s; ``speed=math.inf`` sends as fast as
    the broker acknowledges.

    Parameters
    ----------
    record : str or Path
        The WFDB record (name without ``.hea``).
    host, port : str, int
        The broker.
    subject : str
        The twin's pseudonym (WFDB records carry none).
    speed : float
        Replay speed factor (> 0).
    max_beats : int, optional
        Send only the first this many beat times.
    start_time : datetime, optional
        Timezone-aware time of the record's first sample; now (UTC) by default, so the stream
        carries current times.
    connect_timeout_s, ack_timeout_s : float
        Bounds of connecting and of waiting for the broker's acknowledgement of the last
        message, s.

    Returns
    -------
    ReplaySummary

    Raises
    ------
    InputError
        Bad record, subject, speed or max_beats.
    BrokerError
        The broker is not reachable, or did not acknowledge every message in time.
    """
    from cardiotwin.monitoring.wfdb_records import read_wfdb

    if not (isinstance(speed, int | float) and speed > 0 and not math.isnan(speed)):
        raise InputError(f"--speed {speed!r}: expected a factor > 0 (1 = real time, 10 = ten "
                         "times faster)")
    if max_beats is not None and max_beats < 1:
        raise InputError(f"--max-beats {max_beats!r}: expected at least 1")
    observation_topic(subject, root=topic_root)  # refuses a bad pseudonym before reading
    t0 = start_time or datetime.now(UTC)
    batch = read_wfdb(record, subject=subject, start_time=t0)
    for r in batch.rejections:
        logger.warning("replay: not sent: %s", r.reason)
    stream = sorted(batch.observations, key=lambda o: (o.time, o.device, o.code))
    times = sorted({o.time for o in stream})
    if max_beats is not None:
        times = times[:max_beats]
        stream = [o for o in stream if o.time <= times[-1]]
    if not stream:
        raise InputError(f"{record}: no beats to replay")
    first = stream[0].time
    name = Path(record).name
    logger.info("replaying %s for %s: %d observations, %d beats at speed %g", name, subject,
                len(stream), len(times), speed)
    started = time.monotonic()
    pub = ObservationPublisher(host, port, topic_root=topic_root)
    pub.connect(timeout_s=connect_timeout_s)
    try:
        for obs in stream:
            due = (obs.time - first).total_seconds() / speed
            wait = due - (time.monotonic() - started)
            if wait > 0:
                sleep(wait)
            pub.publish(obs)
        pub.flush(timeout_s=ack_timeout_s)
    finally:
        pub.close()
    return ReplaySummary(record=name, subject=subject, beats=len(times),
                         observations=len(stream),
                         record_seconds=(stream[-1].time - first).total_seconds(),
                         wall_seconds=time.monotonic() - started, speed=float(speed),
                         reader_rejections=len(batch.rejections))


def log_handler(pseudonym: str, observations: Sequence[Observation]) -> None:
    """A :data:`Handler` that only logs each accepted batch (for a service that updates no twin,
    e.g. to watch a feed)."""
    summary = ", ".join(f"{o.vital.name} {o.value_as_received:g} {o.unit}"
                        for o in observations[:4])
    more = f" (+{len(observations) - 4})" if len(observations) > 4 else ""
    logger.info("%s: %d accepted at %s: %s%s", pseudonym, len(observations),
                observations[0].time.isoformat(), summary, more)
