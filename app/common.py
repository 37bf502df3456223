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
                                empty_message: str) -> list[dict[str, Any]]:
    """Patients that have a stored twin (audited list); stops the page with a message when the
    list cannot be read or is empty."""
    try:
        patients = workflows.list_patients(store=store, actor=actor, purpose=purpose)
    except CardiotwinError as exc:
        show_error(exc, what="Cannot list the patients")
        st.stop()
    patients = [p for p in patients if p.get("latest_version", 1)]
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


ANATOMY_ROWS: tuple[tuple[str, str, str, float], ...] = (
    # (label, landmarks key, unit, factor from the stored unit)
    ("Annulus diameter (area-derived)", "annulus_diameter_mm", "mm", 1.0),
    ("Annulus diameter (perimeter-derived)", "annulus_perimeter_diameter_mm", "mm", 1.0),
    ("Annulus min / max diameter", "", "mm", 1.0),
    ("Annulus area", "annulus_area_mm2", "mm²", 1.0),
    ("Annulus perimeter", "annulus_perimeter_mm", "mm", 1.0),
    ("LVOT diameter", "lvot_diameter_mm", "mm", 1.0),
    ("Sinus of Valsalva diameter", "sinus_diameter_mm", "mm", 1.0),
    ("Native valve orifice area", "valve_orifice_area_mm2", "cm²", 0.01),
    ("Valve calcium volume", "calcium_volume_mm3", "mm³", 1.0),
)


def anatomy_table(landmarks: dict[str, Any]) -> pd.DataFrame:
    """Key aortic-root measurements of a twin (``AorticRootLandmarks.to_dict()``) for display."""
    rows = []
    for label, key, unit, factor in ANATOMY_ROWS:
        if not key:
            value = (f"{_num(landmarks.get('annulus_min_diameter_mm'))} / "
                     f"{_num(landmarks.get('annulus_max_diameter_mm'))}")
        elif key in landmarks:
            value = _num(landmarks[key] * factor, ".2f" if unit == "cm²" else ".1f")
        else:
            continue
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


def flow_summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Results of one flow run (the ``summary`` of a stored result) for display."""
    rows = [
        ("Peak transvalvular gradient", summary.get("peak_gradient_mmhg"), "mmHg"),
        ("Net pressure loss", summary.get("net_gradient_mmhg"), "mmHg"),
        ("Inflow (mean systolic)", summary.get("inflow_l_min"), "L/min"),
    ]
    for name, q in summary.get("outlet_flows_l_min", {}).items():
        rows.append((f"Flow {_outlet_label(name)}", q, "L/min"))
    rows += [
        ("Mean wall shear stress", summary.get("wss_mean_pa"), "Pa"),
        ("Max wall shear stress", summary.get("wss_max_pa"), "Pa"),
        ("Mass imbalance", None if summary.get("mass_imbalance") is None
         else 100 * summary["mass_imbalance"], "%"),
    ]
    return pd.DataFrame([{"quantity": q, "value": _num(v, ".2f"), "unit": u} for q, v, u in rows])


def convergence_message(summary: dict[str, Any]) -> tuple[str, str] | None:
    """How far to trust a flow run's numbers: ``(level, text)`` with level ``"warning"`` or
    ``"error"``, or None when the steady solve converged.

    The solver (``cardiotwin.physics.steady``) reports ``status`` ``"converged"``, ``"settled"`` (no
    strict steady state, but outlet flows and pressures stopped changing; usable with care) or
    ``"max_iterations"``; summaries without ``status`` carry only ``converged``.
    """
    status = summary.get("status") or ("converged" if summary.get("converged", True)
                                        else "not converged")
    reason = summary.get("status_reason") or summary.get("reason") or ""
    if status == "converged":
        return None
    if status == "settled":
        return ("warning", "No strict steady state at this flow; the outlet flows and pressures "
                           f"settled, so the numbers are usable with care. {reason}".strip())
    return ("error", f"The flow solve did not converge ({status}, "
                     f"{summary.get('iterations', '?')} iterations); do not use these numbers. "
                     f"{reason}".strip())


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


def comparison_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``Rehearsal.comparison()`` rows with the change after − before, numbers kept numeric."""
    df = pd.DataFrame(rows, columns=["metric", "before", "after", "unit"])
    df["metric"] = df["metric"].astype(str).str.replace("_", " ", regex=False)  # vessel names
    df["before"] = pd.to_numeric(df["before"], errors="coerce")
    df["after"] = pd.to_numeric(df["after"], errors="coerce")
    df["change"] = df["after"] - df["before"]
    return df[["metric", "before", "after", "change", "unit"]]


def gradient_chart_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Peak and net gradients before/after (mmHg), indexed by metric, for a grouped bar chart."""
    keep = {"Peak transvalvular gradient": "peak gradient", "Net pressure loss": "net pressure loss"}
    data = {keep[r["metric"]]: {"before (native valve)": r["before"], "after (device)": r["after"]}
            for r in rows if r["metric"] in keep}
    return pd.DataFrame.from_dict(data, orient="index").astype(float)
