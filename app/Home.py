"""cardiotwin clinician app: entry point, navigation and the login page.

Run::

    python -m app.seed --store out/demo/store          # default users + the demo twin, once
    streamlit run app/Home.py -- --store out/demo/store

The store can also be given by ``$CARDIOTWIN_HOME``; the default is ``out/demo/store``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # `streamlit run` puts only app/ on the path; `app` is a package
    sys.path.insert(0, _REPO)

import streamlit as st  # noqa: E402

from app import common  # noqa: E402
from cardiotwin.errors import AccessDenied, CardiotwinError  # noqa: E402


def login_page() -> None:
    """Username + password → the store's users; the actor is kept in the session."""
    st.title("cardiotwin")
    st.caption("Patient-specific cardiac digital twins — procedure rehearsal. "
               "Every access to patient data is audited.")
    notice = common.pop_notice()
    if notice:
        st.info(notice)
    actor = common.current_actor()
    if actor is not None:
        st.success(f"Logged in as **{actor.username}** ({actor.role.replace('_', ' ')}).")
        st.page_link(common.PAGES["patients"], label="Open the patient list", icon="🫀")
        if st.button("Log out", key="logout_main"):
            common.logout(notice="You have been logged out.")
            st.rerun()
        return
    with st.form("login"):
        username = st.text_input("Username", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    if not username or not password:
        st.error("Enter your username and password.")
        return
    try:
        common.login(username.strip(), password)
    except AccessDenied as exc:
        locked = "lock" in str(exc).lower()
        st.error(("Account locked. " if locked else "Login failed. ") + str(exc), icon="⛔")
        return
    except CardiotwinError as exc:
        common.show_error(exc, what="Login failed")
        return
    st.switch_page(common.PAGES["patients"])


st.set_page_config(page_title="cardiotwin", page_icon="🫀", layout="wide")
common.PAGES.update(
    login=st.Page(login_page, title="Login", icon="🔑", default=True),
    patients=st.Page("views/patients.py", title="Patients", icon="🫀"),
    rehearse=st.Page("views/rehearse.py", title="Rehearse", icon="🛠️"),
)
navigation = st.navigation(list(common.PAGES.values()))
common.sidebar(common.current_actor())
navigation.run()
