"""Rehearse page (app/views/rehearse.py): login requirement, sizing defaults, a run with results."""

from __future__ import annotations

import time

from cardiotwin import workflows
from cardiotwin.devices.catalog import load_catalog
from cardiotwin.store import users
from cardiotwin.study import DEFAULT_FAMILY
from tests.app.conftest import log_in

RUN_TIMEOUT_S = 400.0
"""A rehearsal on the coarse demo twin solves one steady flow (~tens of seconds on 2 busy cores)."""


def test_rehearse_requires_login(app_home, demo_store):
    root = demo_store[0]
    store = workflows.open_store(root)
    try:
        n_audit = store.audit_head().seq
    finally:
        store.close()
    at = app_home.run()
    at.switch_page("views/rehearse.py").run()
    assert not at.exception
    assert "Please log in" in at.warning[0].value
    assert len(at.button) == 0 and len(at.selectbox) == 0 and len(at.dataframe) == 0
    # Nothing was read from the store: the audit chain did not grow.
    store = workflows.open_store(root)
    try:
        assert store.audit_head().seq == n_audit
    finally:
        store.close()


def test_rehearse_run_disabled_for_roles_without_permission(app_home):
    # The permission table (cardiotwin.store.access) lets only clinician/admin run rehearsals.
    at = log_in(app_home, "officer", "demo-officer")
    at.switch_page("views/rehearse.py").run()
    assert not at.exception
    run = next(b for b in at.button if b.label == "Run rehearsal")
    assert run.disabled
    assert any("may view sizing but not run" in c.value for c in at.caption)


def test_rehearse_runs_and_shows_before_after(app_home, demo_store, capsys):
    root, report, _ = demo_store
    pseudonym = report.pseudonyms[0]
    at = log_in(app_home, "clinician", "demo-clinician")
    at.switch_page("views/rehearse.py").run()
    assert not at.exception

    # Defaults: the recommended size of the workflow's sizing, the family's nominal depth, no tilt.
    store = workflows.open_store(root)
    try:
        me = users.authenticate(store, "clinician", "demo-clinician", client="pytest")
        sizing = workflows.size_device(pseudonym, store=store, actor=me)
    finally:
        store.close()
    family = load_catalog().family(DEFAULT_FAMILY)
    size_box = next(s for s in at.selectbox if s.label == "Valve size")
    assert size_box.value == sizing.recommended_mm
    assert size_box.options == [f"{s.nominal_diameter_mm:g} mm" + (
        " (recommended)" if s.nominal_diameter_mm == sizing.recommended_mm else "")
        for s in sizing.sizes]
    depth = next(s for s in at.slider if s.label.startswith("Implantation depth"))
    assert depth.value == family.nominal_depth_mm
    assert (depth.min, depth.max) == (-2.0, 10.0)
    tilt = next(s for s in at.slider if s.label.startswith("Tilt from"))
    assert (tilt.value, tilt.min, tilt.max) == (0.0, 0.0, 20.0)
    sizing_table = at.dataframe[0].value
    assert len(sizing_table) == len(sizing.sizes)
    assert sum("★" in s for s in sizing_table["size (mm)"]) == (sizing.recommended_mm is not None)

    run = next(b for b in at.button if b.label == "Run rehearsal")
    run.click()
    t0 = time.perf_counter()
    at.run(timeout=RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[app] Run → results: {elapsed:.1f} s")
    assert not at.exception
    assert len(at.get("progress")) == 1
    reh = at.session_state["rehearsal_result"]["rehearsal"]
    # The page flags exactly the runs whose solve did not converge (the solver's own verdict).
    flagged = [m.value for m in (*at.error, *at.warning) if m.value.startswith(("Before", "After"))]
    expected = [w for w, s in (("Before", reh.before), ("After", reh.after))
                if s.convergence() is not None]
    assert sorted(m.split(" ")[0] for m in flagged) == sorted(expected)
    assert not [e.value for e in at.error if not e.value.startswith(("Before", "After"))]
    comparison = at.dataframe[1].value.set_index("metric")
    before = comparison.loc["Peak transvalvular gradient", "before"]
    after = comparison.loc["Peak transvalvular gradient", "after"]
    # A valve with an open orifice of several cm² replaces a stenotic one (< 1 cm²): the peak
    # gradient must fall (simplified Bernoulli, ΔP = 4 v², v = Q/A).
    assert after < before
    assert comparison.loc["Valve orifice area", "after"] > comparison.loc[
        "Valve orifice area", "before"]
    assert len(at.get("vega_lite_chart")) == 1
    assert reh.pseudonym == pseudonym and reh.result_id is not None
    assert reh.nominal_diameter_mm == sizing.recommended_mm
