"""The live step of `cardiotwin demo` (workflows.live_update) on a cheap saved twin, and the
synthetic bedside record it replays (monitoring.synthetic)."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import pytest

from cardiotwin import workflows
from cardiotwin.errors import InputError
from cardiotwin.monitoring import read_wfdb
from cardiotwin.monitoring.synthetic import write_vitals_record
from cardiotwin.store import Actor
from cardiotwin.twin.state import PatientTwin, Physiology


def test_synthetic_record_gives_the_vitals_it_was_made_with(tmp_path):
    v = write_vitals_record(tmp_path, seconds=20.0, heart_rate_bpm=72.0, systolic_mmhg=128.0,
                            diastolic_mmhg=78.0)
    assert (tmp_path / "bedside.hea").exists()
    assert (tmp_path / "bedside.dat").stat().st_size < 50_000
    batch = read_wfdb(v.record, subject="tw-1", start_time=datetime(2024, 5, 1, tzinfo=UTC))
    assert not batch.rejections
    by_code: dict[tuple[str, str], list[float]] = {}
    for o in batch.observations:
        by_code.setdefault((o.code, o.device.split(":")[1]), []).append(o.value_as_received)
    assert len(by_code["8867-4", "II"]) == v.beats - 1  # one heart rate per R-R interval
    assert len(by_code["8480-6", "ABP"]) >= v.beats - 2
    assert statistics.median(by_code["8867-4", "II"]) == pytest.approx(72.0, abs=3.0)
    assert statistics.median(by_code["8480-6", "ABP"]) == pytest.approx(128.0, abs=2.0)
    assert statistics.median(by_code["8462-4", "ABP"]) == pytest.approx(78.0, abs=4.0)
    with pytest.raises(InputError, match="heart_rate_bpm"):
        write_vitals_record(tmp_path, heart_rate_bpm=300.0)


def test_live_update_replays_a_record_through_the_embedded_broker_into_the_twin(tmp_path):
    st = workflows.open_store(tmp_path / "store")
    actor = Actor("dr_live", "clinician")
    st.save_twin(PatientTwin(pseudonym="tw-live", physiology=Physiology(
        heart_rate_bpm=65, stroke_volume_ml=70, systolic_bp_mmhg=120, diastolic_bp_mmhg=75)),
        actor=actor, purpose="test", reason="built from DICOM")
    live = workflows.live_update("tw-live", store=st, actor=actor, folder=tmp_path / "mon",
                                 seconds=8.0, timeout_s=30.0)
    assert live.published > 20 and live.received == live.published
    assert live.versions_before == 1
    assert live.ingests == live.published  # one message, one new version
    assert live.version_after == 1 + live.published
    est = live.status.estimate
    assert est.n_observations == live.published
    assert not est.stale and est.data_age_s is not None and est.data_age_s < 60
    hr = est.estimates["heart_rate"]
    assert hr.mean == pytest.approx(72.0, abs=4.0) and 0 < hr.sd < 10
    # the store holds what went through the broker, and it replays bit for bit
    replayed, stored = workflows.replay_twin("tw-live", store=st, actor=actor)
    assert stored is not None and replayed.to_dict() == stored.to_dict()
    st.close()
