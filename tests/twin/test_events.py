"""Stale and drift events of a twin, recomputed from stored observation rows
(:func:`cardiotwin.twin.history.flag_events`), in process."""

from __future__ import annotations

from datetime import timedelta

from cardiotwin.monitoring import Observation
from cardiotwin.twin import history
from cardiotwin.twin.assimilate import STALE_AFTER_S
from cardiotwin.twin.state import PatientTwin, Physiology
from tests.twin.test_assimilate import T0

P = "tw-ev"


def _twin():
    tw = PatientTwin(pseudonym=P, physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75))
    tw.version = 1
    return tw


def _rows(version, start, minutes, *, sbp, dbp, hr=70):
    rows = []
    for i in range(minutes):
        t = start + timedelta(minutes=i)
        for code, value, unit in (("8867-4", hr, "/min"), ("8480-6", sbp, "mm[Hg]"),
                                  ("8462-4", dbp, "mm[Hg]")):
            obs = Observation(subject=P, time=t, code=code, value_as_received=value, unit=unit,
                              source="test", record=f"{code}-{i}")
            rows.append({**history.observation_row(obs), "twin_version": version})
    return rows


def test_no_data_is_stale_since_the_build():
    ev = history.flag_events(_twin(), [], now=T0)
    assert [(e["kind"], e["time_utc"], e["version"]) for e in ev] == [("stale", None, 1)]


def test_a_gap_longer_than_the_stale_limit_and_a_pressure_rise_are_events():
    rows = (_rows(2, T0, 5, sbp=130, dbp=75)                        # like the build: no drift
            + _rows(3, T0 + timedelta(hours=1), 10, sbp=165, dbp=95)  # after a gap, hypertensive
            + _rows(4, T0 + timedelta(hours=1, minutes=10), 20, sbp=130, dbp=75))  # back
    ev = history.flag_events(_twin(), rows, now=T0 + timedelta(hours=1, minutes=50))
    kinds = [e["kind"] for e in ev]
    assert kinds == ["current", "stale", "current", "drift", "drift-cleared", "stale"], ev
    stale = ev[1]
    # 15 min after the last observation of the first batch (minute 4), in force: version 2
    assert stale["time_utc"].startswith("2024-05-01T10:19:00") and stale["version"] == 2
    assert STALE_AFTER_S == 15 * 60
    assert ev[2]["time_utc"].startswith("2024-05-01T11:00:00") and ev[2]["version"] == 3
    assert ev[3]["version"] == 3 and "mean arterial pressure" in ev[3]["detail"]
    assert ev[4]["version"] == 4
    assert ev[5]["time_utc"].startswith("2024-05-01T11:44:00")


def test_no_stale_event_while_data_is_fresh():
    rows = _rows(2, T0, 5, sbp=130, dbp=75)
    ev = history.flag_events(_twin(), rows, now=T0 + timedelta(minutes=10))
    assert [e["kind"] for e in ev] == ["current"]
