"""Checks: plausibility per code, monotone times per stream, idempotent duplicates."""

from datetime import UTC, datetime, timedelta

from cardiotwin.monitoring import Observation, Screen, Verdict

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def hr(minutes, bpm, *, device="mon-1", source="s"):
    return Observation(subject="tw-1", time=T0 + timedelta(minutes=minutes), code="8867-4",
                       value_as_received=bpm, unit="/min", source=source, device=device,
                       record=f"m{minutes}")


def test_implausible_value_is_quarantined_with_the_range_and_its_source():
    s = Screen()
    assert s.offer(hr(0, 350)) is Verdict.REJECTED
    (r,) = s.quarantine
    assert r.kind == "implausible" and r.value == "350 /min"
    assert r.expected.startswith("0-300 /min") and "ricu" in r.expected
    assert "s#m0: value: Heart rate (8867-4) is outside its plausible range" in r.reason
    assert s.accepted == []


def test_duplicates_are_one_observation_and_conflicts_are_quarantined():
    s = Screen()
    assert s.offer(hr(0, 70)) is Verdict.ACCEPTED
    assert s.offer(hr(0, 70, source="again")) is Verdict.DUPLICATE
    assert s.offer(hr(0, 71)) is Verdict.REJECTED
    assert len(s.accepted) == 1 and s.duplicates == 1
    (r,) = s.quarantine
    assert r.kind == "conflict" and "70 /min" in r.expected


def test_times_increase_per_stream_and_streams_are_independent():
    s = Screen()
    assert s.offer_all([hr(0, 70), hr(2, 72)]) == [hr(0, 70), hr(2, 72)]
    assert s.offer(hr(1, 71)) is Verdict.REJECTED
    assert s.offer(hr(1, 71, device="mon-2")) is Verdict.ACCEPTED  # another device
    assert s.offer(hr(0, 70)) is Verdict.DUPLICATE  # a re-delivered old one is no error
    (r,) = s.quarantine
    assert r.kind == "out-of-order" and r.field == "time"
    assert "after 2024-05-01T10:02:00+00:00" in r.expected
    # nothing silently dropped: every offer is accepted, a duplicate or quarantined
    assert len(s.accepted) + s.duplicates + len(s.quarantine) == 5
