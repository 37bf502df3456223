"""Live monitoring over MQTT against a real mosquitto (``conftest.mosquitto``) and, once, the
embedded amqtt broker: delivery, hostile messages, a broker restart, a restart of the service,
and the replay of PhysioNet records. Every wait is bounded (``wait_for``, ``flush``)."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from cardiotwin.errors import BrokerError, InputError
from cardiotwin.monitoring import Observation, read_fhir
from cardiotwin.monitoring.broker import EmbeddedBroker
from cardiotwin.monitoring.checks import Screen
from cardiotwin.monitoring.mqtt import (
    MAX_PAYLOAD_BYTES,
    ObservationPublisher,
    ObservationService,
    observation_to_fhir,
    observation_topic,
    parse_broker,
    replay_wfdb,
    subject_of_topic,
)

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
WAIT_S = 15.0


def hr(i: int, *, subject: str = "tw-1", bpm: float | None = None) -> Observation:
    return Observation(subject=subject, time=T0 + timedelta(seconds=i), code="8867-4",
                       value_as_received=70.0 + 0.1 * i if bpm is None else bpm, unit="/min",
                       source="test", device="monitor-1", record=f"beat {i}")


class Recorder:
    """A handler that keeps what it was given."""

    def __init__(self):
        self.calls: list[tuple[str, tuple[Observation, ...]]] = []

    def __call__(self, pseudonym, observations):
        self.calls.append((pseudonym, observations))

    @property
    def observations(self) -> list[Observation]:
        return [o for _, obs in self.calls for o in obs]


def service(broker, recorder, *, client_id: str, screen: Screen | None = None):
    return ObservationService(broker.host, broker.port, handler=recorder, client_id=client_id,
                              screen=screen, reconnect_delay_s=(0.2, 1.0))


def test_payload_topic_and_address_helpers():
    obs = hr(3)
    back = read_fhir(observation_to_fhir(obs), subject="tw-1").observations
    assert len(back) == 1 and back[0].key == obs.key
    assert observation_topic("tw-1") == "cardiotwin/tw-1/observations"
    assert subject_of_topic("cardiotwin/tw-1/observations") == "tw-1"
    assert subject_of_topic("cardiotwin/Doe^John/observations") is None
    assert subject_of_topic("other/tw-1/observations") is None
    with pytest.raises(InputError, match="not a twin pseudonym"):
        observation_topic("Doe^John")
    assert parse_broker("127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_broker("broker.local") == ("broker.local", 1883)
    with pytest.raises(InputError, match=r"--broker 'h:x': expected HOST:PORT"):
        parse_broker("h:x")


def test_unreachable_broker_is_a_clear_time_bounded_error():
    from cardiotwin.monitoring.broker import free_port

    port = free_port()
    t = time.monotonic()
    with pytest.raises(BrokerError, match=rf"127.0.0.1:{port}: not connected and subscribed .* "
                                          r"within 1 s.*mosquitto -p"):
        ObservationService("127.0.0.1", port, handler=Recorder(), client_id="t-none").start(
            timeout_s=1.0)
    assert time.monotonic() - t < 8.0


def test_published_observations_arrive_parsed_in_order(mosquitto):
    rec = Recorder()
    svc = service(mosquitto, rec, client_id="t-basic")
    with svc.running(timeout_s=WAIT_S), ObservationPublisher(mosquitto.host,
                                                             mosquitto.port) as pub:
        for i in range(20):
            pub.publish(hr(i))
        pub.flush(timeout_s=WAIT_S)
        svc.wait_for(lambda s: s.accepted >= 20, timeout_s=WAIT_S, what="20 accepted")
    assert [o.key for o in rec.observations] == [hr(i).key for i in range(20)]
    assert {p for p, _ in rec.calls} == {"tw-1"}
    got = rec.observations[0]
    assert got.source == "fhir:mqtt:cardiotwin/tw-1/observations" and got.device == "monitor-1"
    assert got.value == pytest.approx(70.0 / 60.0)
    assert len(svc.quarantine) == 0 and svc.stats.messages == 20




HOSTILE = {
    "oversized": b"{" + b" " * (MAX_PAYLOAD_BYTES + 10) + b"}",
    "invalid JSON": b'{"resourceType": "Observation", ',
    "not UTF-8": b"\xff\xfe\x00garbage",
    "deeply nested JSON": b"[" * 50_000 + b"]" * 50_000,
    "a JSON list": b"[1, 2, 3]",
    "not an Observation": json.dumps({"resourceType": "Patient", "id": "x"}).encode(),
}


def _doc(**changes) -> bytes:
    doc = observation_to_fhir(hr(50))
    for path, value in changes.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    return json.dumps(doc).encode()


HOSTILE_FHIR = {  # kind of rejection expected
    "unit": (_doc(**{"valueQuantity.code": "[psi]", "valueQuantity.unit": "[psi]"}), "unit"),
    "unit of another kind": (_doc(**{"valueQuantity.code": "L/min"}), "unit"),
    "implausible": (_doc(**{"valueQuantity.value": 900}), "implausible"),
    "SQL in the subject": (_doc(**{"subject.reference": "Patient/x'; DROP TABLE twins;--"}),
                           "subject"),
    "another patient": (_doc(**{"subject.reference": "Patient/tw-2"}), "subject"),
    "script in the code": (_doc(**{"code.coding.0.code": "<script>alert(1)</script>"}),
                           "unknown-code"),
    "text in the value": (_doc(**{"valueQuantity.value": "72; DROP TABLE x"}), "malformed"),
    "no timezone": (_doc(effectiveDateTime="2024-05-01T10:00:00"), "malformed"),
    "preliminary": (_doc(status="preliminary"), "status"),
}


def test_hostile_messages_are_quarantined_and_the_service_keeps_running(mosquitto):
    rec = Recorder()
    svc = service(mosquitto, rec, client_id="t-hostile")
    n_bad = len(HOSTILE) + len(HOSTILE_FHIR) + 1
    with svc.running(timeout_s=WAIT_S), ObservationPublisher(mosquitto.host,
                                                             mosquitto.port) as pub:
        pub.publish(hr(0))
        for payload in HOSTILE.values():
            pub.publish_raw("cardiotwin/tw-1/observations", payload)
        for payload, _ in HOSTILE_FHIR.values():
            pub.publish_raw("cardiotwin/tw-1/observations", payload)
        # a topic that is not a twin's (a name where the pseudonym goes)
        pub.publish_raw("cardiotwin/Doe^John/observations", json.dumps(
            observation_to_fhir(hr(1))).encode())
        pub.publish(hr(2))  # the service still works after all of them
        pub.flush(timeout_s=WAIT_S)
        svc.wait_for(lambda s: s.messages >= n_bad + 2, timeout_s=WAIT_S, what="all messages")
    assert [o.key for o in rec.observations] == [hr(0).key, hr(2).key]
    assert svc.stats.quarantined == n_bad == len(svc.quarantine)
    kinds = [r.kind for r in svc.quarantine]
    assert kinds[:len(HOSTILE)] == ["malformed"] * len(HOSTILE)
    assert kinds[len(HOSTILE):-1] == [kind for _, kind in HOSTILE_FHIR.values()]
    assert kinds[-1] == "subject"
    by = list(svc.quarantine)
    assert f"at most {MAX_PAYLOAD_BYTES} bytes" in by[0].reason
    assert "[psi]" in by[len(HOSTILE)].reason
    # what could name a patient is never repeated in the quarantine
    text = json.dumps([r.to_dict() for r in svc.quarantine])
    assert "Doe^John" not in text and "DROP TABLE twins" not in text.replace("<redacted>", "")


def test_broker_restart_reconnects_resumes_and_applies_nothing_twice(mosquitto):
    rec = Recorder()
    svc = service(mosquitto, rec, client_id="t-restart")
    pub = ObservationPublisher(mosquitto.host, mosquitto.port, client_id="t-restart-pub",
                               persistent=True, reconnect_delay_s=(0.1, 0.5))
    with svc.running(timeout_s=WAIT_S):
        pub.connect(timeout_s=WAIT_S)
        for i in range(10):
            pub.publish(hr(i))
        pub.flush(timeout_s=WAIT_S)
        svc.wait_for(lambda s: s.accepted >= 10, timeout_s=WAIT_S, what="10 before the restart")

        mosquitto.stop()
        svc.wait_for(lambda s: s.disconnects >= 1, timeout_s=WAIT_S, what="the disconnection")
        for i in range(10, 20):  # during the outage: kept by the publisher, sent when back
            pub.publish(hr(i))
        mosquitto.start()
        svc.wait_for(lambda s: s.connects >= 2, timeout_s=WAIT_S, what="the reconnection")
        for i in range(20, 30):  # after the restart
            pub.publish(hr(i))
        pub.flush(timeout_s=WAIT_S)
        svc.wait_for(lambda s: s.accepted >= 30, timeout_s=WAIT_S, what="30 observations")
        for i in range(30):  # every observation again: redelivered, recognised, not applied
            pub.publish(hr(i))
        pub.flush(timeout_s=WAIT_S)
        svc.wait_for(lambda s: s.duplicates >= 30, timeout_s=WAIT_S, what="30 duplicates")
    pub.close()
    keys = [o.key for o in rec.observations]
    assert sorted(keys, key=lambda k: k[3]) == [hr(i).key for i in range(30)]  # none lost
    assert len(keys) == len(set(keys)) == 30  # none applied twice
    assert svc.stats.session_resumed[-1] is True  # mosquitto kept the persistent session
    assert len(svc.stats.reconnect_seconds) == 1 and svc.stats.reconnect_seconds[0] < 10.0
    assert len(svc.quarantine) == 0


def test_messages_published_while_the_service_is_away_are_delivered_on_its_return(mosquitto):
    rec = Recorder()
    screen = Screen()
    svc = service(mosquitto, rec, client_id="t-away", screen=screen)
    svc.start(timeout_s=WAIT_S)
    svc.stop()  # the broker keeps the session of this client id
    with ObservationPublisher(mosquitto.host, mosquitto.port) as pub:
        for i in range(15):
            pub.publish(hr(i))
        pub.flush(timeout_s=WAIT_S)  # acknowledged by the broker: queued for t-away
    back = service(mosquitto, rec, client_id="t-away", screen=screen)
    with back.running(timeout_s=WAIT_S):
        back.wait_for(lambda s: s.accepted >= 15, timeout_s=WAIT_S, what="the queued 15")
    assert back.stats.session_resumed == [True]
    assert [o.key for o in rec.observations] == [hr(i).key for i in range(15)]


def _check_replay(rec: Recorder, svc: ObservationService, n: int) -> None:
    got = rec.observations
    assert len(got) == n and len(svc.quarantine) == 0 and svc.stats.duplicates == 0
    times = [o.time for o in got]
    assert times == sorted(times)  # in order


def test_replay_of_mixedsignals_delivers_every_beat_in_order(mosquitto, shared_data):
    rec = Recorder()
    svc = service(mosquitto, rec, client_id="t-replay-mixed")
    with svc.running(timeout_s=WAIT_S):
        res = replay_wfdb(shared_data / "physionet" / "mixedsignals", host=mosquitto.host,
                          port=mosquitto.port, subject="tw-mixed", speed=math.inf,
                          start_time=T0)
        svc.wait_for(lambda s: s.accepted >= res.observations, timeout_s=WAIT_S,
                     what=f"{res.observations} replayed observations")
    assert res.reader_rejections == 0 and res.record_seconds > 200.0
    assert res.observations > 1500  # HR per R-R interval, 4 vitals per pressure beat
    _check_replay(rec, svc, res.observations)
    assert {o.code for o in rec.observations} == {"8867-4", "8480-6", "8462-4", "8478-0"}


def test_replay_of_record_100_at_accelerated_speed_keeps_its_pace(mosquitto, shared_data):
    rec = Recorder()
    svc = service(mosquitto, rec, client_id="t-replay-100")
    with svc.running(timeout_s=WAIT_S):
        res = replay_wfdb(shared_data / "physionet" / "100", host=mosquitto.host,
                          port=mosquitto.port, subject="tw-100", speed=50.0, max_beats=100)
        svc.wait_for(lambda s: s.accepted >= res.observations, timeout_s=WAIT_S,
                     what="100 beats")
    assert res.beats == res.observations == 100
    # paced: the wall time is the record time / speed (not faster; a little slower at most)
    assert res.record_seconds / 50.0 <= res.wall_seconds <= res.record_seconds / 50.0 + 2.0
    _check_replay(rec, svc, 100)
    # the stream carries current times (start_time defaults to now)
    assert abs((rec.observations[0].time - datetime.now(UTC)).total_seconds()) < 120.0
    with pytest.raises(InputError, match="--speed 0"):
        replay_wfdb(shared_data / "physionet" / "100", host=mosquitto.host,
                    port=mosquitto.port, subject="tw-100", speed=0)


def test_embedded_broker_serves_a_stream():
    rec = Recorder()
    with EmbeddedBroker() as broker:
        svc = ObservationService(broker.host, broker.port, handler=rec, client_id="t-embedded")
        with svc.running(timeout_s=WAIT_S), ObservationPublisher(broker.host,
                                                                 broker.port) as pub:
            for i in range(10):
                pub.publish(hr(i))
            pub.flush(timeout_s=WAIT_S)
            svc.wait_for(lambda s: s.accepted >= 10, timeout_s=WAIT_S, what="10 accepted")
    assert [o.key for o in rec.observations] == [hr(i).key for i in range(10)]


def test_cli_twin_serve_receives_a_replay_from_cli_monitor_replay(mosquitto, shared_data,
                                                                   tmp_path):
    """`twin serve` in its own process receives `monitor replay`'s beats through mosquitto and
    applies each to the stored twin (one new version per message); a pseudonym without a twin
    is reported, not fatal."""
    import os
    import subprocess
    import sys
    import threading

    from typer.testing import CliRunner

    from cardiotwin import workflows
    from cardiotwin.cli import app
    from cardiotwin.store import Actor
    from cardiotwin.twin.state import PatientTwin, Physiology

    home = tmp_path / "home"
    st = workflows.open_store(home)
    actor = Actor("dr_serve", "clinician")
    st.save_twin(PatientTwin(pseudonym="tw-cli", physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75)),
        actor=actor, purpose="test", reason="built from DICOM")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), CARDIOTWIN_HOME=str(home),
               CARDIOTWIN_USER="dr_serve")
    serve = subprocess.Popen(
        [sys.executable, "-m", "cardiotwin.cli", "twin", "serve", "--broker", mosquitto.address,
         "--client-id", "t-cli", "--max-seconds", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    subscribed = threading.Event()

    def read() -> None:
        for line in serve.stdout:
            lines.append(line)
            if line.startswith("subscribed to"):
                subscribed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert subscribed.wait(30), "".join(lines)
        res = CliRunner().invoke(app, ["monitor", "replay", str(shared_data / "physionet" / "100"),
                                       "--broker", mosquitto.address, "--subject", "tw-cli",
                                       "--speed", "1000", "--max-beats", "20"])
        assert res.exit_code == 0, res.output
        assert "20 observations over 20 beat times" in res.output
        deadline = time.monotonic() + 15
        while sum("tw-cli: Heart rate" in x for x in lines) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum("tw-cli: Heart rate" in x for x in lines) == 20, "".join(lines)
        while (sum("twin tw-cli: version" in x for x in lines) < 20
               and time.monotonic() < deadline + 15):
            time.sleep(0.1)
        assert sum("twin tw-cli: version" in x for x in lines) == 20, "".join(lines)
        res = CliRunner().invoke(app, ["monitor", "replay", str(shared_data / "physionet" / "100"),
                                       "--broker", mosquitto.address, "--subject", "no-such-twin",
                                       "--speed", "1000", "--max-beats", "1"])
        assert res.exit_code == 0, res.output
        while not any("not applied to no-such-twin" in x for x in lines) \
                and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert any("not applied to no-such-twin" in x for x in lines), "".join(lines)
    finally:
        serve.terminate()  # SIGTERM ends the service (the --max-seconds bound is a fallback)
        serve.wait(15)
        reader.join(5)
    status = workflows.twin_status("tw-cli", store=st, actor=actor)
    assert status.version == 21  # the build version and one per replayed beat
    st.close()
    bad = CliRunner().invoke(app, ["monitor", "replay", "x", "--broker", "h:x", "--subject", "a"])
    assert bad.exit_code == 1 and "--broker 'h:x': expected HOST:PORT" in bad.output
