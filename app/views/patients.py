"""Patients: the pseudonymised list, and one twin's anatomy, physiology and baseline flow.

Every read goes through :mod:`cardiotwin.workflows` (``list_patients``, ``open_twin``) with the
logged-in actor, so each view of a patient is audited.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import common
from cardiotwin import workflows
from cardiotwin.errors import CardiotwinError
from cardiotwin.study.results import FlowSummary

PURPOSE = "treatment planning"

actor = common.require_actor()
store = common.get_store()
st.title("Patients")
st.caption("Pseudonymised: the app never shows names or hospital IDs.")

patients = common.patients_with_twins_or_stop(
    store, actor, purpose=PURPOSE,
    empty_message=f"No twin in the store `{common.store_root()}` yet. Seed the demo patient with "
                  f"`python -m app.seed --store {common.store_root()}` or build one with "
                  "`cardiotwin twin build DICOM_DIR`.")

listing = pd.DataFrame([{"pseudonym": p.pseudonym, "latest_version": p.latest_version,
                         "created_utc": p.created_utc} for p in patients])
st.dataframe(listing, hide_index=True, width="stretch")

pseudonym = common.selected_pseudonym([p.pseudonym for p in patients])
try:
    twin = workflows.open_twin(pseudonym, store=store, actor=actor, purpose=PURPOSE)
except CardiotwinError as exc:
    common.show_error(exc, what=f"Cannot open twin {pseudonym}")
    st.stop()

st.header(f"{twin.pseudonym} · twin version {twin.version}")
lms = twin.landmarks if twin.anatomy.get("landmarks") else None
baseline = FlowSummary.baseline_of(twin)

c1, c2, c3, c4 = st.columns(4)
if lms is not None:
    c1.metric("Annulus diameter", f"{lms.annulus_diameter_mm:.1f} mm",
              help="Area-derived, 2·√(A/π), in the annulus (virtual basal ring) plane")
    c2.metric("Annulus area", f"{lms.annulus_area_mm2:.0f} mm²")
    c3.metric("Native orifice area", f"{lms.valve_orifice_area_cm2:.2f} cm²",
              help="Anatomic orifice area by planimetry")
if baseline is not None:
    c4.metric("Peak gradient (native)", f"{baseline.peak_gradient_mmhg:.1f} mmHg")

left, right = st.columns(2)
with left:
    st.subheader("Aortic root")
    if lms is not None:
        st.dataframe(common.anatomy_table(lms), hide_index=True, width="stretch")
    else:
        st.info("This twin has no anatomy measurements.")
    gate = twin.quality_gate
    if gate is not None:
        st.caption(f"Anatomy quality gate: {gate.status} ({len(gate.checks)} checks against "
                   "documented ranges)")
        for check in gate.warnings:
            st.warning(f"Anatomy: {check.name}: {check.message}")
with right:
    st.subheader("Physiology")
    st.dataframe(common.physiology_table(twin.physiology), hide_index=True, width="stretch")

st.subheader("Baseline flow (native valve)")
if baseline is not None:
    st.dataframe(common.flow_summary_table(baseline), hide_index=True, width="stretch",
                 height="content")
    common.show_convergence(baseline)
    st.caption(f"Steady flow at the mean systolic inflow; {baseline.n_dofs:,} unknowns, "
               f"{baseline.effective_status} in {baseline.iterations} iterations, "
               f"{baseline.solve_time_s:.0f} s.")
else:
    st.info("No baseline flow yet: it is solved with the first rehearsal.")

st.subheader("Live monitoring")
try:
    status = workflows.twin_status(pseudonym, store=store, actor=actor, purpose=PURPOSE)
except CardiotwinError as exc:
    common.show_error(exc, what=f"Cannot read the monitoring state of {pseudonym}")
else:
    est = status.estimate
    if est.stale:
        st.warning(f"STALE: {est.stale_reason}. The twin's physiology below is its estimate with "
                   "a spread that grows with the data age; feed it vitals (`cardiotwin ingest`, "
                   "`cardiotwin twin serve`) before relying on it.")
    if est.drift:
        st.error("DRIFT since the last 3-D run: " + "; ".join(est.drift_reasons)
                 + ". Run a new 3-D simulation (rehearse) before using its gradients.")
    if not est.stale and not est.drift:
        st.success("Current: recent data, no drift since the last 3-D run.")
    age = "no data yet" if est.data_age_s is None else f"{est.data_age_s / 60.0:.0f} min"
    st.caption(f"Twin version {status.version} as of {status.as_of_utc}: "
               f"{est.n_observations} observations assimilated; data age {age}.")
    st.dataframe(pd.DataFrame([{"quantity": e.name.replace("_", " "), "twin now": round(e.mean, 2),
                                "± 1 SD": round(e.sd, 2), "unit": e.unit}
                               for e in est.estimates.values()]),
                 hide_index=True, width="stretch")

st.page_link(common.PAGES["rehearse"], label=f"Rehearse a valve on {twin.pseudonym}", icon="🛠️")
