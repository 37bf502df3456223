"""A coarse demo store for the app tests, built once per session with :func:`app.seed.seed_store`.

The phantom is made at 1.5 mm voxels and meshed with h_max 4 mm / h_min 2 mm, so the baseline
and device flow solves take tens of seconds rather than minutes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

HOME = Path(__file__).resolve().parents[2] / "app" / "Home.py"
APP_TIMEOUT_S = 30.0
"""Timeout of a page run that does not solve a flow (login, lists, sizing)."""


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """(store root, SeedReport, build seconds) of a coarse demo store with the default users."""
    from app.seed import seed_store

    root = tmp_path_factory.mktemp("app") / "store"
    t0 = time.perf_counter()
    report = seed_store(root, spacing_mm=1.5, h_max_mm=4.0, h_min_mm=2.0,
                        progress=lambda _f, _m: None)
    return root, report, time.perf_counter() - t0


@pytest.fixture
def app_home(demo_store, monkeypatch):
    """A fresh AppTest of app/Home.py pointed at the demo store via $CARDIOTWIN_HOME."""
    root = demo_store[0]
    monkeypatch.setenv("CARDIOTWIN_HOME", str(root))
    return AppTest.from_file(str(HOME), default_timeout=APP_TIMEOUT_S)


def log_in(at: AppTest, username: str, password: str) -> AppTest:
    """Fill the login form and submit it."""
    at.run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    next(b for b in at.button if b.label == "Log in").click()
    return at.run()
