"""Shared pieces of the app pages: the store, the logged-in actor, and tables for display.

Where the store is
    ``--store PATH`` after ``--`` on the streamlit command line
    (``streamlit run app/Home.py -- --store out/demo/store``), else ``$CARDIOTWIN_HOME``, else
    ``out/demo/store``.

Who is logged in
    ``st.session_state["actor"]`` holds the :class:`~cardiotwin.store.Actor` returned by
    :func:`cardiotwin.store.users.authenticate` (client ``"app"``). Every page except the login page
    calls :func:`require_actor` first. A session idle for longer than :data:`SESSION_TIMEOUT_S`
    is logged out.

The helpers that build tables (``*_table``) are pure functions of the dictionaries the workflows
return; they never read patient data themselves.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from cardiotwin import workflows
from cardiotwin.errors import AccessDenied, CardiotwinError
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.study.results import ComparisonRow, FlowSummary
from cardiotwin.workflows import Actor, Store

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("out/demo/store")
"""Store used when neither ``--store`` nor ``$CARDIOTWIN_HOME`` is given."""

SESSION_TIMEOUT_S = 30 * 60.0
"""Idle time after which a logged-in session is logged out (seconds)."""

CLIENT = "app"
"""``client`` recorded in the audit records of actions taken in the app."""

PAGES: dict[str, Any] = {}
"""The app's pages (``st.Page``) by name: ``login``, ``patients``, ``rehearse``; set by Home.py."""

_ACTOR = "actor"
_LAST_ACTIVITY = "last_activity"
_PSEUDONYM = "pseudonym"
_NOTICE = "notice"


# ------------------------------------------------------------------------------------- store
def store_root(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> Path:
    """The store folder from ``--store`` in ``argv``, ``$CARDIOTWIN_HOME``, or the default.

    Unknown arguments are ignored (``sys.argv`` may belong to pytest when the app is tested).
    """
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--store", type=Path, default=None)
    args, _ = parser.parse_known_args(list(argv))
    if args.store is not None:
        return args.store
    if environ.get("CARDIOTWIN_HOME"):
        return Path(environ["CARDIOTWIN_HOME"])
    return DEFAULT_STORE


@st.cache_resource(show_spinner=False)
def _open_store(root: str) -> Store:
    return workflows.open_store(Path(root))


def get_store() -> Store:
    """The store of this app (one :class:`Store` per folder, shared by the sessions)."""
    return _open_store(str(store_root().resolve()))


# ------------------------------------------------------------------------------------- login
def current_actor() -> Actor | None:
    """The logged-in actor, or None (also None once the session has been idle too long)."""
    actor = st.session_state.get(_ACTOR)
    if actor is None:
        return None
    last = st.session_state.get(_LAST_ACTIVITY, 0.0)
    if time.time() - last > SESSION_TIMEOUT_S:
        logout(notice=f"Your session expired after {SESSION_TIMEOUT_S / 60:.0f} minutes without "
                      "activity. Please log in again.")
        return None
    st.session_state[_LAST_ACTIVITY] = time.time()
    return actor


def login(username: str, password: str) -> Actor:
    """Authenticate against the store's users; keep the actor in the session.

    Raises
    ------
    AccessDenied
        Wrong user name or password, or a locked account (the attempt is audited by the store).
    """
    actor = workflows.login(get_store(), username, password, client=CLIENT)
    st.session_state[_ACTOR] = actor
    st.session_state[_LAST_ACTIVITY] = time.time()
    st.session_state.pop(_NOTICE, None)
    log.info("user %s logged in to the app as %s", actor.username, actor.role)
    return actor


def logout(*, notice: str | None = None) -> None:
    """Forget the actor and everything shown from patient data in this session."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if notice:
        st.session_state[_NOTICE] = notice


def pop_notice() -> str | None:
    """A message for the login page (e.g. session expired), shown once."""
    return st.session_state.pop(_NOTICE, None)


def require_actor() -> Actor:
    """The logged-in actor; otherwise show the login requirement and stop the page."""
    actor = current_actor()
    if actor is None:
        notice = pop_notice()
        if notice:
            st.info(notice)
        st.warning("Please log in to see patient data. Every access is audited.", icon="🔒")
        st.page_link(PAGES["login"], label="Go to the login page", icon="🔑")
        st.stop()
    return actor


def sidebar(actor: Actor | None) -> None:
    """Who is logged in, and the logout button."""
    with st.sidebar:
        if actor is None:
            st.caption("Not logged in.")
            return
        st.markdown(f"**{actor.username}** · {actor.role.replace('_', ' ')}")
        if st.button("Log out", key="logout"):
            logout(notice="You have been logged out.")
            st.switch_page(PAGES["login"])
        st.caption(f"Store: `{store_root()}`")


def show_error(exc: CardiotwinError, *, what: str) -> None:
    """An error from the library, with its actionable message."""
    if isinstance(exc, AccessDenied):
        st.error(f"{what}: access denied. {exc}", icon="⛔")
    else:
        st.error(f"{what}: {exc}", icon="⚠️")


def patients_with_twins_or_stop(store: Store, actor: Actor, *, purpose: str,
                                empty_message: str) -> list[workflows.PatientEntry]:
    """Patients that have a stored twin (audited list); stops the page with a message when the
    list cannot be read or is empty."""
    try:
        patients = workflows.list_patients(store=store, actor=actor, purpose=purpose)
    except CardiotwinError as exc:
        show_error(exc, what="Cannot list the patients")
        st.stop()
    patients = [p for p in patients if p.latest_version]
    if not patients:
        st.info(empty_message)
        st.stop()
    return patients


def selected_pseudonym(pseudonyms: Sequence[str], *, label: str = "Patient (pseudonym)") -> str:
    """A selectbox of pseudonyms whose choice is remembered across pages."""
    current = st.session_state.get(_PSEUDONYM)
    index = list(pseudonyms).index(current) if current in pseudonyms else 0
    choice = st.selectbox(label, list(pseudonyms), index=index)
    st.session_state[_PSEUDONYM] = choice
    return choice


# ------------------------------------------------------------------------------------- tables
def _num(value: Any, fmt: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(float(value), fmt)


ANATOMY_ROWS: tuple[tuple[str, str, str], ...] = (
    # (label, AorticRootLandmarks attribute, unit)
    ("Annulus diameter (area-derived)", "annulus_diameter_mm", "mm"),
    ("Annulus diameter (perimeter-derived)", "annulus_perimeter_diameter_mm", "mm"),
    ("Annulus min / max diameter", "", "mm"),
    ("Annulus area", "annulus_area_mm2", "mm²"),
    ("Annulus perimeter", "annulus_perimeter_mm", "mm"),
    ("LVOT diameter", "lvot_diameter_mm", "mm"),
    ("Sinus of Valsalva diameter", "sinus_diameter_mm", "mm"),
    ("Native valve orifice area", "valve_orifice_area_cm2", "cm²"),
    ("Valve calcium volume", "calcium_volume_mm3", "mm³"),
)


def anatomy_table(landmarks: AorticRootLandmarks) -> pd.DataFrame:
    """Key aortic-root measurements of a twin for display."""
    rows = []
    for label, key, unit in ANATOMY_ROWS:
        if not key:
            value = (f"{_num(landmarks.annulus_min_diameter_mm)} / "
                     f"{_num(landmarks.annulus_max_diameter_mm)}")
        else:
            value = _num(getattr(landmarks, key), ".2f" if unit == "cm²" else ".1f")
        rows.append({"measurement": label, "value": value, "unit": unit})
    return pd.DataFrame(rows)


def physiology_table(physiology: Any) -> pd.DataFrame:
    """Haemodynamic state of a twin (a ``Physiology``) with its derived values."""
    rows = [
        ("Heart rate", physiology.heart_rate_bpm, "bpm"),
        ("Stroke volume", physiology.stroke_volume_ml, "mL"),
        ("Blood pressure (systolic / diastolic)",
         f"{_num(physiology.systolic_bp_mmhg, '.0f')} / {_num(physiology.diastolic_bp_mmhg, '.0f')}",
         "mmHg"),
        ("Mean arterial pressure", physiology.mean_arterial_pressure_mmhg, "mmHg"),
        ("Cardiac output", physiology.cardiac_output_l_min, "L/min"),
        ("Ejection time" + ("" if physiology.ejection_time_s is not None else " (predicted)"),
         physiology.effective_ejection_time_s * 1e3, "ms"),
        ("Mean systolic flow", physiology.mean_systolic_flow_ml_s, "mL/s"),
    ]
    return pd.DataFrame([{"quantity": q, "value": v if isinstance(v, str) else _num(v),
                          "unit": u} for q, v, u in rows])


def _outlet_label(name: str) -> str:
    """``outlet:left_common_carotid`` → ``left common carotid`` (readable vessel name)."""
    return name.removeprefix("outlet:").replace("_", " ")


def flow_summary_table(summary: FlowSummary) -> pd.DataFrame:
    """Results of one steady flow run for display."""
    rows = [
        ("Peak transvalvular gradient", summary.peak_gradient_mmhg, "mmHg"),
        ("Net pressure loss", summary.net_gradient_mmhg, "mmHg"),
        ("Inflow (mean systolic)", summary.inflow_l_min, "L/min"),
    ]
    for name, q in summary.outlet_flows_l_min.items():
        rows.append((f"Flow {_outlet_label(name)}", q, "L/min"))
    rows += [
        ("Mean wall shear stress", summary.wss_mean_pa, "Pa"),
        ("Max wall shear stress", summary.wss_max_pa, "Pa"),
        ("Mass imbalance", summary.mass_imbalance_pct, "%"),
    ]
    return pd.DataFrame([{"quantity": q, "value": _num(v, ".2f"), "unit": u} for q, v, u in rows])


def show_convergence(summary: FlowSummary, *, prefix: str = "") -> None:
    """A warning or error box when a steady run did not converge (nothing when it did)."""
    note = summary.convergence() if isinstance(summary, FlowSummary) else None
    if note is not None:
        getattr(st, note.level)(f"{prefix}{note.text}")


def sizing_table(report: Any) -> pd.DataFrame:
    """Every size of a family against the annulus (a ``SizingReport``); ★ marks the recommended."""
    rows = []
    for s in report.sizes:
        rows.append({
            "size (mm)": f"{s.nominal_diameter_mm:g}"
                         + (" ★" if s.nominal_diameter_mm == report.recommended_mm else ""),
            "area oversizing (%)": f"{s.area_oversizing_pct:+.1f}",
            "perimeter oversizing (%)": f"{s.perimeter_oversizing_pct:+.1f}",
            "in chart range": "yes" if s.in_chart_range else "no",
            "uncovered annulus (mm²)": f"{s.gap_area_mm2:.0f}",
            "warnings": "; ".join(s.warnings),
        })
    return pd.DataFrame(rows)


def comparison_table(rows: Sequence[ComparisonRow]) -> pd.DataFrame:
    """A rehearsal's before/after rows with the change after − before, numbers kept numeric."""
    df = pd.DataFrame([{"metric": r.metric, "before": r.before, "after": r.after, "unit": r.unit}
                       for r in rows], columns=["metric", "before", "after", "unit"])
    df["metric"] = df["metric"].astype(str).str.replace("_", " ", regex=False)  # vessel names
    df["before"] = pd.to_numeric(df["before"], errors="coerce")
    df["after"] = pd.to_numeric(df["after"], errors="coerce")
    df["change"] = df["after"] - df["before"]
    return df[["metric", "before", "after", "change", "unit"]]


def gradient_chart_frame(rows: Sequence[ComparisonRow]) -> pd.DataFrame:
    """Peak and net gradients before/after (mmHg), indexed by metric, for a grouped bar chart."""
    keep = {"Peak transvalvular gradient": "peak gradient", "Net pressure loss": "net pressure loss"}
    data = {keep[r.metric]: {"before (native valve)": r.before, "after (device)": r.after}
            for r in rows if r.metric in keep}
    return pd.DataFrame.from_dict(data, orient="index").astype(float)
