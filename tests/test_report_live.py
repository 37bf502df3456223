"""The report's live-twin section (cardiotwin.report.live_section) shows what the twin says: data
age, STALE / DRIFT, the estimate with its spread — the same numbers as workflows.twin_status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cardiotwin import report, workflows
from cardiotwin.store import Actor
from cardiotwin.twin.state import PatientTwin, Physiology
from tests.twin.test_history import PSEUDO, PURPOSE, synthetic
from tests.twin.test_history import _truth as truth_of


def test_live_section_shows_stale_then_current_with_the_estimate(tmp_path):
    store = workflows.open_store(tmp_path / "store")
    actor = Actor("dr_r", "clinician", client="pytest")
    try:
        store.save_twin(PatientTwin(pseudonym=PSEUDO, physiology=Physiology(
            heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75)),
            actor=actor, purpose=PURPOSE, reason="built from DICOM")
        before = workflows.twin_status(PSEUDO, store=store, actor=actor)
        html = "\n".join(report.live_section(before.estimate))
        assert "STALE" in html and "no data" in html  # no vitals yet

        truth, f = truth_of()
        now = datetime.now(UTC).replace(microsecond=0)
        obs = synthetic(truth, f, minutes=10, seed=3, start=now - timedelta(minutes=10))
        workflows.ingest_observations(PSEUDO, obs, store=store, actor=actor, now=now)
        after = workflows.twin_status(PSEUDO, store=store, actor=actor)
        html = "\n".join(report.live_section(after.estimate))
        assert "STALE" not in html
        assert f"{after.estimate.n_observations} observations assimilated" in html
        hr = after.estimate.estimates["heart_rate"]
        assert f"<td>heart rate</td><td>{hr.mean:.3g}</td><td>{hr.sd:.3g}</td>" in html
        assert report.live_section(None) == []
    finally:
        store.close()
