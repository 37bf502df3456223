"""Patients page (app/views/patients.py): pseudonymised list, anatomy and baseline of the demo twin."""

from __future__ import annotations

import pytest

from cardiotwin import workflows
from cardiotwin.store import users
from tests.app.conftest import log_in


def test_patients_page_requires_login(app_home):
    at = app_home.run()
    at.switch_page("views/patients.py").run()
    assert not at.exception
    assert "Please log in" in at.warning[0].value
    assert len(at.dataframe) == 0


def test_patients_page_shows_the_demo_twin(app_home, demo_store):
    root, report, _ = demo_store
    pseudonym = report.pseudonyms[0]
    at = log_in(app_home, "clinician", "demo-clinician")
    assert not at.exception
    listing = at.dataframe[0].value
    assert list(listing["pseudonym"]) == [pseudonym]
    assert at.selectbox[0].value == pseudonym
    assert at.header[0].value.startswith(pseudonym)

    # The numbers shown are the twin's own, read independently through the workflows.
    store = workflows.open_store(root)
    try:
        me = users.authenticate(store, "clinician", "demo-clinician", client="pytest")
        twin = workflows.open_twin(pseudonym, store=store, actor=me)
        officer = users.authenticate(store, "officer", "demo-officer", client="pytest")
        audit = store.audit_records(actor=officer, purpose="audit review", pseudonym=pseudonym)
    finally:
        store.close()
    lms = twin.anatomy["landmarks"]
    anatomy = at.dataframe[1].value.set_index("measurement")
    assert float(anatomy.loc["Annulus area", "value"]) == pytest.approx(
        lms["annulus_area_mm2"], abs=0.05)  # shown with 1 decimal
    assert float(anatomy.loc["Native valve orifice area", "value"]) == pytest.approx(
        lms["valve_orifice_area_mm2"] / 100.0, abs=0.005)  # mm² → cm², 2 decimals
    physiology = at.dataframe[2].value.set_index("quantity")
    assert float(physiology.loc["Cardiac output", "value"]) == pytest.approx(
        twin.physiology.cardiac_output_l_min, abs=0.05)
    baseline = next(r["summary"] for r in twin.results if r["label"] == "baseline")
    flows = at.dataframe[3].value.set_index("quantity")
    assert float(flows.loc["Peak transvalvular gradient", "value"]) == pytest.approx(
        baseline["peak_gradient_mmhg"], abs=0.005)

    # Live monitoring: the demo twin has no vitals yet, so it says it is stale, and shows the
    # estimate with its spread (the same numbers the workflows give).
    assert any(w.value.startswith("STALE") for w in at.warning)
    live = at.dataframe[-1].value.set_index("quantity")
    store = workflows.open_store(root)
    try:
        status = workflows.twin_status(pseudonym, store=store, actor=me)
    finally:
        store.close()
    hr = status.estimate.estimates["heart_rate"]
    assert float(live.loc["heart rate", "twin now"]) == pytest.approx(hr.mean, abs=0.005)
    assert float(live.loc["heart rate", "± 1 SD"]) == pytest.approx(hr.sd, abs=0.005) and hr.sd > 0

    # The app's view of the twin was audited as a read by the logged-in clinician from the app.
    app_reads = [r for r in audit if r["actor"] == "clinician" and r["client"] == "app"
                 and r["action"] == "read" and r["outcome"] == "success"]
    assert app_reads, "opening the twin in the app left no audit record"
