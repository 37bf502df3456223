"""Rehearse: place a transcatheter valve on the twin, simulate, compare before/after.

Sizing comes from :func:`cardiotwin.workflows.size_device`, the run from
:func:`cardiotwin.workflows.rehearse` (synchronous, with a progress bar driven by its progress
callback). Both are audited with the logged-in actor.
"""

from __future__ import annotations

import time

import streamlit as st

from app import common
from cardiotwin import workflows
from cardiotwin.devices.placement import DEPTH_RANGE_MM, MAX_TILT_DEG
from cardiotwin.errors import CardiotwinError
from cardiotwin.study import DEFAULT_FAMILY

PURPOSE = "procedure rehearsal"
RESULT = "rehearsal_result"

actor = common.require_actor()
store = common.get_store()
st.title("Rehearse a transcatheter valve")

patients = common.patients_with_twins_or_stop(
    store, actor, purpose=PURPOSE, empty_message="No twin in the store yet; see the Patients page.")
pseudonym = common.selected_pseudonym([p.pseudonym for p in patients])

catalog = workflows.device_catalog()
families = [k for k, f in catalog.families.items() if f.kind == "transcatheter_aortic_valve"]
family_key = st.selectbox(
    "Device family", families, index=families.index(DEFAULT_FAMILY)
    if DEFAULT_FAMILY in families else 0,
    format_func=lambda k: catalog.families[k].label)
family = catalog.family(family_key)

try:
    sizing = workflows.size_device(pseudonym, store=store, actor=actor, family=family_key,
                                   purpose=PURPOSE)
except CardiotwinError as exc:
    common.show_error(exc, what=f"Cannot size the device on {pseudonym}")
    st.stop()

st.subheader("Sizing")
st.caption(f"Annulus area {sizing.annulus_area_mm2:.0f} mm², perimeter "
           f"{sizing.annulus_perimeter_mm:.1f} mm. ★ recommended size. Source: {family.sizing_source}.")
st.dataframe(common.sizing_table(sizing), hide_index=True, width="stretch")
for warning in sizing.warnings:
    st.warning(warning)

sizes = [s.nominal_diameter_mm for s in sizing.sizes]
default_size = sizing.recommended_mm if sizing.recommended_mm in sizes else sizes[0]

with st.form("placement"):
    st.subheader("Placement")
    size_mm = st.selectbox(
        "Valve size", sizes, index=sizes.index(default_size),
        format_func=lambda s: f"{s:g} mm" + (" (recommended)" if s == sizing.recommended_mm else ""))
    depth_mm = st.slider("Implantation depth below the annulus (mm)",
                         min_value=float(DEPTH_RANGE_MM[0]), max_value=float(DEPTH_RANGE_MM[1]),
                         value=float(family.nominal_depth_mm), step=0.5,
                         help="Inflow edge of the frame below the annulus plane; "
                              f"family nominal {family.nominal_depth_mm:g} mm.")
    tilt_deg = st.slider("Tilt from the annulus normal (°)", min_value=0.0,
                         max_value=float(MAX_TILT_DEG), value=0.0, step=1.0)
    rotation_deg = st.slider("Tilt direction around the normal (°)", min_value=0.0,
                             max_value=350.0, value=0.0, step=10.0)
    may_run = workflows.can(actor, "rehearsal.run")
    run = st.form_submit_button("Run rehearsal", type="primary", disabled=not may_run)
    if not may_run:
        st.caption(f"Your role ({actor.role.replace('_', ' ')}) may view sizing but not run "
                   "rehearsals; this needs a clinician or admin account.")

if run:
    bar = st.progress(0.0, text="starting")

    def _progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

    t0 = time.perf_counter()
    try:
        rehearsal = workflows.rehearse(
            pseudonym, store=store, actor=actor, nominal_diameter_mm=size_mm, family=family_key,
            depth_mm=depth_mm, tilt_deg=tilt_deg, rotation_deg=rotation_deg, purpose=PURPOSE,
            progress=_progress)
    except CardiotwinError as exc:
        bar.empty()
        common.show_error(exc, what="The rehearsal failed")
    else:
        st.session_state[RESULT] = {"rehearsal": rehearsal, "elapsed_s": time.perf_counter() - t0}

result = st.session_state.get(RESULT)
if result is not None and result["rehearsal"].pseudonym == pseudonym:
    reh = result["rehearsal"]
    st.subheader(f"Before / after: {reh.nominal_diameter_mm:g} mm valve, depth "
                 f"{reh.depth_mm:g} mm, tilt {reh.tilt_deg:g}°")
    rows = reh.rows()
    st.dataframe(common.comparison_table(rows), hide_index=True, width="stretch", height="content",
                 column_config={c: st.column_config.NumberColumn(format="%.2f")
                                for c in ("before", "after", "change")})
    st.bar_chart(common.gradient_chart_frame(rows), stack=False, horizontal=True, y_label="mmHg",
                 color=["#9e9e9e", "#d62728"])
    for warning in reh.sizing_warnings:
        st.warning(f"Sizing: {warning}")
    for when, summary in (("Before (native valve)", reh.before), ("After (device)", reh.after)):
        common.show_convergence(summary, prefix=f"{when}: ")
    st.caption(f"Result #{reh.result_id} stored with the twin; solved in "
               f"{result['elapsed_s']:.0f} s ({reh.after.n_dofs:,} unknowns). "
               "Steady flow at the mean systolic inflow; the device is a porous (Brinkman) region.")
