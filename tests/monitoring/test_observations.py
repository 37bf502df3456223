"""The validated Observation: codes, UCUM units through units.py, times, subjects."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cardiotwin import units
from cardiotwin.errors import InputError, ObservationError, UnitError, UnknownCodeError
from cardiotwin.monitoring import VITALS, Observation, Quarantine, Rejection

T = datetime(2024, 5, 1, 10, 42, tzinfo=timezone(timedelta(hours=2)))


def obs(**kw):
    d = dict(subject="tw-0001", time=T, code="8480-6", value_as_received=120, unit="mm[Hg]",
             source="test", device="mon-1", record="r1")
    d.update(kw)
    return Observation(**d)


@pytest.mark.parametrize(("code", "value", "unit", "si"), [
    ("8480-6", 120.0, "mm[Hg]", units.mmhg_to_pa(120.0)),
    ("8480-6", 16.0, "kPa", 16000.0),
    ("8867-4", 72.0, "/min", 1.2),
    ("8867-4", 72.0, "{beats}/min", 1.2),
    ("8741-1", 6.0, "L/min", 1e-4),
    ("20562-5", 70.0, "mL", 70e-6),
    ("59408-5", 97.0, "%", 0.97),
])
def test_values_are_kept_as_received_and_in_si(code, value, unit, si):
    o = obs(code=code, value_as_received=value, unit=unit)
    assert o.value == pytest.approx(si, rel=1e-12)
    assert o.value_as_received == value and o.unit == unit


def test_time_is_utc_and_a_naive_time_is_refused():
    o = obs()
    assert o.time == datetime(2024, 5, 1, 8, 42, tzinfo=UTC) and o.time.utcoffset() == timedelta(0)
    with pytest.raises(ObservationError, match=r"test#r1: time: time has no timezone"):
        obs(time=datetime(2024, 5, 1, 10, 42))


def test_unknown_code_and_unit_are_refused_with_their_names():
    with pytest.raises(UnknownCodeError, match=r"unknown LOINC code.*'29463-7'.*8867-4 \(Heart"):
        obs(code="29463-7", value_as_received=70, unit="kg")  # body weight: not a twin vital
    with pytest.raises(UnitError, match=r"unknown unit.*'psi'.*mm\[Hg\], mmHg, kPa, Pa"):
        obs(unit="psi")
    with pytest.raises(UnitError, match=r"'L/min' is a unit of flow, not of pressure"):
        obs(unit="L/min")
    assert issubclass(UnitError, InputError) and issubclass(UnknownCodeError, ObservationError)


@pytest.mark.parametrize("subject", ["", "John Doe", "Doe^John", "x" * 65, None])
def test_subject_must_look_like_a_pseudonym(subject):
    with pytest.raises(ObservationError, match="subject is not a twin pseudonym"):
        obs(subject=subject)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "12a", None])
def test_value_must_be_a_finite_number(value):
    with pytest.raises(ObservationError, match="value"):
        obs(value_as_received=value)


def test_frozen_round_trip_and_key():
    o = obs()
    with pytest.raises(AttributeError):
        o.value = 1.0
    back = Observation.from_dict(o.to_dict())
    assert back == o and back.key == o.key
    # the same reading from another source is the same observation
    assert obs(source="other", record="x").key == o.key


def test_every_vital_has_a_known_display_unit_and_an_ordered_range():
    for code, v in VITALS.items():
        lo, hi = v.plausible_si
        assert lo < hi, code
        assert v.range_source


def test_quarantine_round_trips_through_json_lines(tmp_path):
    q = Quarantine()
    try:
        obs(unit="psi")
    except ObservationError as err:
        q.add(Rejection.from_error(err, source="test", record="r1", raw="x" * 5000))
    path = q.write_jsonl(tmp_path / "q.jsonl")
    back = Quarantine.read_jsonl(path)
    assert list(back) == list(q) and back.kinds() == {"unit": 1}
    r = next(iter(back))
    assert r.field == "unit" and r.value == "psi" and "mm[Hg]" in r.expected
    assert len(r.raw) <= 2001  # hostile input is cut
