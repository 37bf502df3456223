"""Fixtures for the store tests: a fresh store in a temp dir and a few actors."""

from __future__ import annotations

import pytest

from cardiotwin.store import Actor, Store
from cardiotwin.twin.state import PatientTwin


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store", twin_type=PatientTwin)
    yield s
    s.close()


@pytest.fixture
def clinician():
    return Actor("dr_a", "clinician", client="app")


@pytest.fixture
def researcher():
    return Actor("res_b", "researcher", client="cli")


@pytest.fixture
def officer():
    return Actor("po_c", "privacy_officer", client="app")
