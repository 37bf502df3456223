"""app/seed.py: default users and the demo twin, idempotent."""

from __future__ import annotations

import time

import pytest

from app.seed import DEFAULT_USERS, main, seed_store
from cardiotwin import workflows
from cardiotwin.errors import AccessDenied
from cardiotwin.store import Actor, users


def test_seed_created_users_and_twin(demo_store):
    root, report, build_s = demo_store
    assert set(report.users_added) == {"clinician", "officer"}
    assert report.built_pseudonym is not None and report.built_pseudonym.startswith("PT-")
    assert report.pseudonyms == (report.built_pseudonym,)
    store = workflows.open_store(root)
    try:
        for username, password, role in DEFAULT_USERS:
            assert users.authenticate(store, username, password, client="pytest") == Actor(
                username, role, client="pytest")
        # The clinician cannot read the audit log; the officer can (permission table).
        me = users.authenticate(store, "clinician", "demo-clinician", client="pytest")
        with pytest.raises(AccessDenied):
            store.audit_records(actor=me, purpose="curiosity")
        twin = workflows.open_twin(report.built_pseudonym, store=store, actor=me)
        assert any(r["label"] == "baseline" for r in twin.results)
    finally:
        store.close()


def test_seed_is_idempotent(demo_store, capsys):
    root, report, _ = demo_store
    t0 = time.perf_counter()
    again = seed_store(root, spacing_mm=1.5, h_max_mm=4.0, h_min_mm=2.0)
    assert time.perf_counter() - t0 < 20.0  # nothing rebuilt (a build takes minutes)
    assert again.users_added == ()
    assert again.built_pseudonym is None
    assert again.pseudonyms == report.pseudonyms
    # The command line says so too.
    assert main(["--store", str(root)]) == 0
    out = capsys.readouterr().out
    assert "default users already present" in out
    assert f"store already has twin(s): {report.pseudonyms[0]}" in out
