"""Twin versions from monitoring data, on a real store: ingest, history as of a time, replay.

The twin is a stored ``PatientTwin`` with its build physiology only (no anatomy, no mesh, no
flow solve): the filter needs nothing more.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cardiotwin import workflows
from cardiotwin.errors import AccessDenied, StoreError
from cardiotwin.monitoring import Observation, Rejection
from cardiotwin.store import Actor
from cardiotwin.twin import assimilate as A
from cardiotwin.twin.state import PatientTwin, Physiology
from tests.twin.test_assimilate import OFFSET, T0, synthetic

PSEUDO = "tw-1"
PURPOSE = "test"


@pytest.fixture
def store(tmp_path):
    s = workflows.open_store(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def clinician():
    return Actor("dr_a", "clinician", client="pytest")


@pytest.fixture
def twin(store, clinician):
    t = PatientTwin(pseudonym=PSEUDO, physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75))
    store.save_twin(t, actor=clinician, purpose=PURPOSE, reason="built from DICOM")
    return t


def _truth():
    prior = A.initial_state(PatientTwin(pseudonym=PSEUDO, physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75)))
    return np.array(prior.mean) + OFFSET, prior.proximal_fraction


def test_each_ingest_is_a_new_version_with_what_changed(store, clinician, twin):
    truth, f = _truth()
    obs = synthetic(truth, f, minutes=10, seed=11)
    now = T0 + timedelta(minutes=10)
    first = workflows.ingest_observations(PSEUDO, obs[:25], store=store, actor=clinician, now=now)
    assert (first.accepted, first.duplicates, first.version, first.base_version) == (25, 0, 2, 1)
    assert not first.stale and first.quarantined == ()
    second = workflows.ingest_observations(PSEUDO, obs[25:], store=store, actor=clinician,
                                           now=now)
    assert second.version == 3
    state3 = store.load_twin(PSEUDO, actor=clinician, purpose=PURPOSE)
    entry = state3.history[-1]
    assert entry["reason"].startswith("assimilated 25 of 25 observations")
    assert "parameters.assimilation" in entry["changed"]
    rec = state3.parameters["assimilation"]
    assert rec["n_observations"] == 50
    assert rec["last_update"]["n"] == 25
    assert rec["last_update"]["mean_before"] == (
        store.load_twin(PSEUDO, actor=clinician, purpose=PURPOSE, version=2)
        .parameters["assimilation"]["mean"])
    assert len(rec["last_update"]["observations_sha256"]) == 64
    # the observation rows name the version they went into
    rows = store.list_observations(PSEUDO, actor=clinician, purpose=PURPOSE)
    assert [r["twin_version"] for r in rows] == [2] * 25 + [3] * 25
    assert store.verify_audit().ok


def test_duplicates_are_idempotent_and_bad_records_are_quarantined(store, clinician, twin):
    truth, f = _truth()
    obs = synthetic(truth, f, minutes=3, seed=12)
    workflows.ingest_observations(PSEUDO, obs, store=store, actor=clinician)
    again = workflows.ingest_observations(PSEUDO, obs, store=store, actor=clinician)
    assert (again.accepted, again.duplicates, again.version) == (0, 15, None)
    late = Observation(subject=PSEUDO, time=T0, code="8867-4", value_as_received=90, unit="/min",
                       source="late", device="monitor-1", record="r1")
    crazy = Observation(subject=PSEUDO, time=T0 + timedelta(hours=1), code="8480-6",
                        value_as_received=420, unit="mm[Hg]", source="edge", record="m1")
    other = Observation(subject="someone-else", time=T0 + timedelta(hours=1), code="8867-4",
                        value_as_received=80, unit="/min", source="edge", record="m2")
    refused = Rejection(kind="unit", source="csv:v.csv", record="row 3", field="sbp",
                        reason="unknown unit", value="psi")
    res = workflows.ingest_observations(PSEUDO, [late, crazy, other], store=store,
                                        actor=clinician, rejected=[refused])
    assert res.accepted == 0 and res.version is None
    kinds = sorted(r.kind for r in res.quarantined)
    assert kinds == ["implausible", "out-of-order", "subject", "unit"]
    assert not any("someone-else" in r.reason for r in res.quarantined)
    stored = store.list_quarantine(PSEUDO, actor=clinician, purpose=PURPOSE)
    assert len(stored) == 4
    assert len(store.list_observations(PSEUDO, actor=clinician, purpose=PURPOSE)) == 15


def test_nothing_is_half_written_when_the_update_fails(store, clinician, twin, monkeypatch):
    from cardiotwin.twin import history

    truth, f = _truth()
    obs = synthetic(truth, f, minutes=2, seed=13)

    def broken(state, rows):
        raise StoreError("simulated failure in the middle of the update")

    monkeypatch.setattr(history, "apply_batch", broken)
    with pytest.raises(StoreError):
        workflows.ingest_observations(PSEUDO, obs, store=store, actor=clinician)
    assert store.list_observations(PSEUDO, actor=clinician, purpose=PURPOSE) == []
    assert [v["version"] for v in store.twin_versions(PSEUDO, actor=clinician,
                                                       purpose=PURPOSE)] == [1]


def test_only_the_care_team_ingests(store, twin):
    truth, f = _truth()
    with pytest.raises(AccessDenied):
        workflows.ingest_observations(PSEUDO, synthetic(truth, f, minutes=1, seed=1), store=store,
                                      actor=Actor("res_b", "researcher"))


def test_history_as_of_a_time_and_replay_bit_for_bit(store, clinician, twin):
    truth, f = _truth()
    obs = synthetic(truth, f, minutes=30, seed=14)
    workflows.ingest_observations(PSEUDO, obs[:50], store=store, actor=clinician)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    workflows.ingest_observations(PSEUDO, obs[50:100], store=store, actor=clinician)
    workflows.ingest_observations(PSEUDO, obs[100:], store=store, actor=clinician)
    then = workflows.twin_status(PSEUDO, store=store, actor=clinician, as_of=between)
    assert then.version == 2
    assert then.estimate.n_observations == 50
    assert [v["version"] for v in then.versions] == [1, 2]
    now = workflows.twin_status(PSEUDO, store=store, actor=clinician)
    assert now.version == 4 and now.estimate.n_observations == 150
    assert now.estimate.estimates["mean_bp"].sd < then.estimate.estimates["mean_bp"].sd
    before_build = workflows.twin_status  # a time before the twin existed is refused clearly
    with pytest.raises(StoreError, match="at or before"):
        before_build(PSEUDO, store=store, actor=clinician, as_of=datetime(2000, 1, 1, tzinfo=UTC))
    for version in (2, 3, 4):
        replayed, stored = workflows.replay_twin(PSEUDO, store=store, actor=clinician,
                                                 version=version)
        assert json.dumps(replayed.to_dict()) == json.dumps(stored.to_dict())
        assert np.array_equal(replayed.arrays()[1], stored.arrays()[1])


def test_ingest_file_reads_fhir_and_csv_per_twin(store, clinician, twin, tmp_path):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "id": f"hr-{i}", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                      "subject": {"reference": f"Patient/{PSEUDO}"},
                      "effectiveDateTime": (T0 + timedelta(minutes=i)).isoformat(),
                      "valueQuantity": {"value": 72 + i, "unit": "/min",
                                        "system": "http://unitsofmeasure.org", "code": "/min"}}}
        for i in range(3)]}
    path = tmp_path / "vitals.json"
    path.write_text(json.dumps(bundle))
    [res] = workflows.ingest_file(path, store=store, actor=clinician)
    assert (res.pseudonym, res.accepted, res.version) == (PSEUDO, 3, 2)
    csv = tmp_path / "cuff.csv"
    csv.write_text("t,sbp,dbp\n2024-05-01T10:05:00+00:00,128,74\n"
                   "2024-05-01T10:10:00+00:00,131,psi\n")
    [res] = workflows.ingest_file(csv, store=store, actor=clinician, subject=PSEUDO,
                                  columns="time=t,sbp=8480-6:mm[Hg],dbp=8462-4:mm[Hg]")
    assert res.accepted == 3 and res.version == 3
    assert [r.kind for r in res.quarantined] == ["malformed"]


def test_ingest_a_wfdb_record_with_ecg_and_arterial_pressure(store, clinician, twin,
                                                             shared_data):
    # mixedsignals: 230 s of ECG and ABP (PhysioNet); per-beat HR, SBP, DBP, MAP and pulse rate
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    [res] = workflows.ingest_file(shared_data / "physionet" / "mixedsignals.hea", store=store,
                                  actor=clinician, subject=PSEUDO, start_time=start,
                                  now=start + timedelta(minutes=4))
    assert res.accepted > 1500 and res.version == 2 and not res.stale
    est = res.status.estimates
    # the record's medians: 104/min, 160/90 mmHg, mean 111 mmHg (docs/monitoring.md)
    assert est["heart_rate"].mean == pytest.approx(104, abs=3)
    assert est["systolic_bp"].mean == pytest.approx(160, abs=8)
    assert est["diastolic_bp"].mean == pytest.approx(90, abs=8)
    assert res.drift  # MAP 111 mmHg against 99 at the build
    replayed, stored = workflows.replay_twin(PSEUDO, store=store, actor=clinician)
    assert replayed == stored


def test_ingest_for_an_unknown_twin_is_refused_and_audited(store, clinician):
    truth, f = _truth()
    with pytest.raises(StoreError, match="not in this store"):
        workflows.ingest_observations("tw-none", synthetic(truth, f, minutes=1, seed=1,
                                                           subject="tw-none"),
                                      store=store, actor=clinician)
    officer = Actor("po", "privacy_officer")
    recs = store.audit_records(actor=officer, purpose=PURPOSE, pseudonym="tw-none")
    assert [r["outcome"] for r in recs] == ["failure"]
