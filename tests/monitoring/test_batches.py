"""Batch mode of the MQTT service (against a real mosquitto) and many twins' ingests in one store
transaction (workflows.ingest_batches): the same rows and versions as one ingest per twin, a
refused twin does not stop the others, and a message is acknowledged only after its batch's
handler returned."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from cardiotwin import workflows
from cardiotwin.errors import InputError
from cardiotwin.monitoring import Observation
from cardiotwin.monitoring.mqtt import ObservationPublisher, ObservationService
from cardiotwin.store import Actor
from cardiotwin.twin.state import PatientTwin, Physiology

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
WAIT_S = 20.0


def hr(subject: str, i: int) -> Observation:
    return Observation(subject=subject, time=T0 + timedelta(seconds=i), code="8867-4",
                       value_as_received=70.0 + 0.5 * i, unit="/min", source="test",
                       device="m", record=f"beat {i}")


def twin(name: str) -> PatientTwin:
    return PatientTwin(pseudonym=name, physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75))


@pytest.fixture
def store(tmp_path):
    st = workflows.open_store(tmp_path / "store")
    actor = Actor("dr_batch", "clinician")
    for name in ("tw-a", "tw-b"):
        st.save_twin(twin(name), actor=actor, purpose="test", reason="built")
    yield st, actor
    st.close()


def test_ingest_batches_equals_one_ingest_per_twin_and_isolates_a_refused_twin(store, tmp_path):
    st, actor = store
    out = workflows.ingest_batches({"tw-a": [hr("tw-a", 0), hr("tw-a", 1)],
                                    "no-such-twin": [hr("no-such-twin", 0)],
                                    "tw-b": [hr("tw-b", 0)]}, store=st, actor=actor)
    assert [(r.pseudonym, r.accepted, r.version) for r in out] == [
        ("tw-a", 2, 2), ("no-such-twin", 0, None), ("tw-b", 1, 2)]
    assert "not in this store" in out[1].error
    again = workflows.ingest_batches({"tw-a": [hr("tw-a", 1)]}, store=st, actor=actor)
    assert (again[0].accepted, again[0].duplicates, again[0].version) == (0, 1, None)
    # the same observations ingested one call per twin give the same state
    ref = workflows.open_store(tmp_path / "ref")
    ref.save_twin(twin("tw-a"), actor=actor, purpose="test", reason="built")
    workflows.ingest_observations("tw-a", [hr("tw-a", 0), hr("tw-a", 1)], store=ref,
                                  actor=actor)
    a = st.load_twin("tw-a", actor=actor, purpose="test").parameters["assimilation"]
    b = ref.load_twin("tw-a", actor=actor, purpose="test").parameters["assimilation"]
    assert a == b
    ref.close()
    records = st.audit_records(actor=Actor("root", "admin"), purpose="test")
    outcomes = [(r["patient_pseudonym"], r["outcome"]) for r in records
                if r["action"] == "write" and r["object"] != "twin"]
    assert ("no-such-twin", "failure") in outcomes and ("tw-b", "success") in outcomes
    assert st.verify_audit().ok


def test_batch_mode_acknowledges_after_the_handler_and_groups_by_twin(mosquitto):
    calls: list[dict[str, tuple[Observation, ...]]] = []
    release = threading.Event()

    def handler(groups):
        calls.append(groups)
        release.wait(WAIT_S)  # held: nothing of this batch may be acknowledged yet

    svc = ObservationService(mosquitto.host, mosquitto.port, batch_handler=handler,
                             batch_window_s=0.3, max_batch=100, client_id="t-batch",
                             reconnect_delay_s=(0.2, 1.0))
    with svc.running(timeout_s=10), ObservationPublisher(mosquitto.host, mosquitto.port) as pub:
        for i in range(10):
            pub.publish(hr("tw-a", i))
            pub.publish(hr("tw-b", i))
        pub.flush(timeout_s=WAIT_S)
        svc.wait_for(lambda s: s.messages >= 20 and len(calls) >= 1, timeout_s=WAIT_S,
                     what="20 messages and a batch")
        assert svc.stats.acked == 0
        release.set()
        svc.wait_for(lambda s: s.acked >= 20, timeout_s=WAIT_S, what="20 acknowledged")
    got = {p: [o.key for g in calls for o in g.get(p, ())] for p in ("tw-a", "tw-b")}
    assert got == {p: [hr(p, i).key for i in range(10)] for p in ("tw-a", "tw-b")}
    assert svc.stats.handler_errors == 0 and svc.stats.batches == len(calls)


def test_batch_mode_messages_unacknowledged_at_a_crash_come_again(mosquitto):
    """A service that dies inside its batch handler (nothing acknowledged) gets the messages
    again from the broker under the same client id."""
    first: list[str] = []
    hold = threading.Event()

    def dies(groups):
        first.extend(groups)
        hold.wait(WAIT_S)  # the process "dies" in here: the batch is never acknowledged

    svc = ObservationService(mosquitto.host, mosquitto.port, batch_handler=dies,
                             batch_window_s=0.2, client_id="t-batch-crash")
    svc.start(timeout_s=10)
    with ObservationPublisher(mosquitto.host, mosquitto.port) as pub:
        for i in range(5):
            pub.publish(hr("tw-a", i))
        pub.flush(timeout_s=WAIT_S)
    svc.wait_for(lambda s: s.messages >= 5, timeout_s=WAIT_S, what="5 messages")
    svc.wait_for(lambda s: bool(first), timeout_s=WAIT_S, what="the batch handed on")
    svc._client.loop_stop()  # drop the connection without acknowledging (as kill -9 would)
    if svc._client.socket() is not None:
        svc._client.socket().close()
    assert first and svc.stats.acked == 0
    got: list[Observation] = []
    again = ObservationService(mosquitto.host, mosquitto.port,
                               batch_handler=lambda g: got.extend(g.get("tw-a", ())),
                               batch_window_s=0.2, client_id="t-batch-crash")
    with again.running(timeout_s=10):
        again.wait_for(lambda s: s.acked >= 5, timeout_s=WAIT_S, what="5 redelivered")
    hold.set()
    assert [o.key for o in got] == [hr("tw-a", i).key for i in range(5)]


def test_batch_mode_options_are_checked():
    with pytest.raises(InputError, match="either handler"):
        ObservationService("127.0.0.1", 1883)
    with pytest.raises(InputError, match="either handler"):
        ObservationService("127.0.0.1", 1883, handler=print, batch_handler=print)
    with pytest.raises(InputError, match="batch_window_s"):
        ObservationService("127.0.0.1", 1883, batch_handler=print, batch_window_s=0)
