"""``cardiotwin ingest`` and ``cardiotwin twin show`` as a user types them (in-process CliRunner)
on a real store holding a twin saved without anatomy or flow solve."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from cardiotwin.cli import app
from tests.twin.test_assimilate import T0

runner = CliRunner()
PSEUDO = "tw-cli"


def _text(res) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(res.output.split())


@pytest.fixture(autouse=True)
def store_home(tmp_path, monkeypatch):
    """A fresh store per test with one stored twin (build physiology only)."""
    from cardiotwin.store import Actor
    from cardiotwin.twin.state import PatientTwin, Physiology
    from cardiotwin.workflows import open_store

    home = tmp_path / "home"
    monkeypatch.setenv("CARDIOTWIN_HOME", str(home))
    monkeypatch.setenv("CARDIOTWIN_USER", "dr_cli")
    st = open_store(home)
    st.save_twin(PatientTwin(pseudonym=PSEUDO, physiology=Physiology(
        heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75)),
        actor=Actor("dr_cli", "clinician"), purpose="test", reason="built from DICOM")
    st.close()
    return home


def _bundle(path, minutes, *, hr=72, sbp=150, dbp=85):
    entries = []
    for i in range(minutes):
        t = (T0 + timedelta(minutes=i)).isoformat()
        for code, value, unit in (("8867-4", hr, "/min"), ("8480-6", sbp, "mm[Hg]"),
                                  ("8462-4", dbp, "mm[Hg]")):
            entries.append({"resource": {
                "resourceType": "Observation", "id": f"{code}-{i}", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": f"Patient/{PSEUDO}"}, "effectiveDateTime": t,
                "valueQuantity": {"value": value, "unit": unit,
                                  "system": "http://unitsofmeasure.org", "code": unit}}})
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": entries}))
    return path


def test_ingest_then_show_with_spread_age_and_flags(tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    _bundle(feed / "vitals.json", 10)
    (feed / "notes.md").write_text("not monitoring data")
    res = runner.invoke(app, ["ingest", str(feed)])
    assert res.exit_code == 0, res.output
    assert PSEUDO in res.output and "30" in res.output
    # the data are from 2024, so the twin is stale now, and the pressure rose: drift
    assert "STALE" in res.output and "DRIFT" in res.output
    res = runner.invoke(app, ["twin", "show", PSEUDO])
    assert res.exit_code == 0, res.output
    for text in ("version 2", "mean arterial pressure", "± 1 SD", "30 observations",
                 "STALE", "DRIFT", "data age"):
        assert text in _text(res), text
    # what did it say a minute after the build? version 1, no data yet
    first = runner.invoke(app, ["twin", "show", PSEUDO, "--as-of",
                                "2000-01-01T00:00:00+00:00"])
    assert first.exit_code == 1
    assert "at or before 2000-01-01" in _text(first) and "Traceback" not in first.output


def test_ingest_csv_needs_subject_and_columns_and_says_so(tmp_path):
    csv = tmp_path / "cuff.csv"
    csv.write_text("t,sbp\n2024-05-01T10:05:00+00:00,128\n2024-05-01T10:10:00+00:00,990\n")
    res = runner.invoke(app, ["ingest", str(csv), "--subject", PSEUDO])
    assert res.exit_code == 1 and "--columns" in _text(res)
    res = runner.invoke(app, ["ingest", str(csv), "--subject", PSEUDO, "--columns",
                              "time=t,sbp=8480-6:mm[Hg]"])
    assert res.exit_code == 0, res.output
    assert "quarantined (implausible)" in _text(res) and "0-300 mm[Hg]" in _text(res)
    bad = runner.invoke(app, ["ingest", str(csv), "--subject", PSEUDO, "--columns",
                              "time=t,sbp=8480-6:psi"])
    assert bad.exit_code == 1 and "psi" in bad.output and "Traceback" not in bad.output
    res = runner.invoke(app, ["ingest", str(tmp_path / "none.json")])
    assert res.exit_code == 1 and "no such file" in _text(res)


def test_show_refuses_a_time_without_offset():
    res = runner.invoke(app, ["twin", "show", PSEUDO, "--as-of", "2024-05-01T10:42"])
    assert res.exit_code == 1 and "UTC offset" in _text(res)
