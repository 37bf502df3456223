"""The cardiotwin clinician app (Streamlit).

Start it with ``streamlit run app/Home.py -- --store out/demo/store`` (or ``make app``, which first
seeds the demo store with :mod:`app.seed`). The app is thin: every access to patient data goes
through :mod:`cardiotwin.workflows` with the logged-in :class:`~cardiotwin.store.Actor`, which
audits it. Pages: the login page in ``Home.py`` (which also holds the ``st.navigation``), and
``views/patients.py``, ``views/rehearse.py``. Shared helpers live in :mod:`app.common`.
"""
