"""Users: argon2 hashes, audited logins, lockout after 5 failures."""

from __future__ import annotations

import sqlite3

import pytest

from cardiotwin.errors import AccessDenied, InputError, StoreError
from cardiotwin.store import Actor, add_user, authenticate, list_users, unlock_user
from cardiotwin.store.users import MAX_FAILED_LOGINS

PASSWORD = "correct horse battery"


def logins(store):
    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    rows = con.execute(
        "SELECT actor, role, outcome, client FROM audit WHERE action = 'login' ORDER BY seq"
    ).fetchall()
    con.close()
    return rows


def test_password_is_stored_as_argon2id_hash_only(store):
    add_user(store, "dr_a", PASSWORD, "clinician")
    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    (h,) = con.execute("SELECT password_hash FROM users").fetchone()
    dump = "\n".join(con.iterdump())
    con.close()
    assert h.startswith("$argon2id$")
    assert PASSWORD not in dump
    assert PASSWORD not in (store.root / "audit.head").read_text()


def test_login_success_and_failure_are_audited(store, caplog):
    add_user(store, "dr_a", PASSWORD, "clinician")
    actor = authenticate(store, "dr_a", PASSWORD, client="app")
    assert actor == Actor("dr_a", "clinician", client="app")
    with pytest.raises(AccessDenied, match="invalid user name or password"):
        authenticate(store, "dr_a", "wrong password", client="app")
    with pytest.raises(AccessDenied, match="invalid user name or password"):
        authenticate(store, "nobody", PASSWORD, client="app")
    assert logins(store) == [
        ("dr_a", "clinician", "success", "app"),
        ("dr_a", "clinician", "failure", "app"),
        ("nobody", None, "failure", "app"),
    ]
    assert "wrong password" not in caplog.text and PASSWORD not in caplog.text
    assert store.verify_audit().ok


def test_five_failures_lock_the_account(store):
    add_user(store, "dr_a", PASSWORD, "clinician")
    for i in range(MAX_FAILED_LOGINS):
        with pytest.raises(AccessDenied) as err:
            authenticate(store, "dr_a", f"bad guess {i}")
    assert "now locked" in str(err.value)
    with pytest.raises(AccessDenied, match="locked after 5 consecutive failed logins"):
        authenticate(store, "dr_a", PASSWORD)  # even the right password
    assert [o for _, _, o, _ in logins(store)] == ["failure"] * 5 + ["denied"]
    assert list_users(store)[0]["locked"] is True
    unlock_user(store, "dr_a")
    assert authenticate(store, "dr_a", PASSWORD).role == "clinician"


def test_success_resets_the_failure_count(store):
    add_user(store, "dr_a", PASSWORD, "clinician")
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(AccessDenied):
            authenticate(store, "dr_a", "bad guess")
    authenticate(store, "dr_a", PASSWORD)
    with pytest.raises(AccessDenied, match="invalid"):
        authenticate(store, "dr_a", "bad guess")
    assert list_users(store)[0]["failed_logins"] == 1


def test_user_management_rules(store):
    add_user(store, "boss", PASSWORD, "admin")
    boss = authenticate(store, "boss", PASSWORD)
    add_user(store, "res_b", PASSWORD, "researcher", actor=boss)
    researcher = authenticate(store, "res_b", PASSWORD)
    with pytest.raises(AccessDenied):
        add_user(store, "x_user", PASSWORD, "admin", actor=researcher)
    with pytest.raises(StoreError, match="exists already"):
        add_user(store, "res_b", PASSWORD, "researcher", actor=boss)
    with pytest.raises(InputError, match="at least 8"):
        add_user(store, "short", "1234567", "researcher")
    with pytest.raises(InputError, match="role"):
        add_user(store, "nurse_a", PASSWORD, "nurse")
    assert [u["username"] for u in list_users(store, actor=boss)] == ["boss", "res_b"]
    assert all("hash" not in k for u in list_users(store) for k in u)
    assert store.verify_audit().ok
