"""Login page (app/Home.py): rendering, wrong password (audited), lockout, login, logout."""

from __future__ import annotations

from cardiotwin.store import Actor, users
from cardiotwin.store.users import MAX_FAILED_LOGINS
from cardiotwin.workflows import open_store
from tests.app.conftest import log_in


def _login_records(root, username):
    """Audit records of logins of ``username``, read as the seeded privacy officer."""
    store = open_store(root)
    try:
        officer = users.authenticate(store, "officer", "demo-officer", client="pytest")
        records = store.audit_records(actor=officer, purpose="audit review")
    finally:
        store.close()
    return [r for r in records if r["action"] == "login" and r["actor"] == username]


def test_login_page_renders(app_home):
    at = app_home.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["cardiotwin"]
    assert {w.label for w in at.text_input} == {"Username", "Password"}
    assert at.text_input(key="login_password").proto.type == 1  # TextInput.Type.PASSWORD
    assert [b.label for b in at.button] == ["Log in"]
    assert "actor" not in at.session_state


def test_wrong_password_shows_error_and_is_audited(app_home, demo_store):
    root = demo_store[0]
    n_before = len(_login_records(root, "clinician"))
    at = log_in(app_home, "clinician", "not-the-password")
    assert not at.exception
    assert len(at.error) == 1
    assert "Login failed" in at.error[0].value
    assert "invalid user name or password" in at.error[0].value
    assert "actor" not in at.session_state
    new = _login_records(root, "clinician")[n_before:]
    assert [(r["outcome"], r["client"]) for r in new] == [("failure", "app")]
    assert new[0]["details"]["reason"] == "wrong password"


def test_lockout_message(app_home, demo_store):
    root = demo_store[0]
    store = open_store(root)
    try:
        users.add_user(store, "locktest", "right-password", "clinician")
    finally:
        store.close()
    at = app_home
    for _ in range(MAX_FAILED_LOGINS):
        at = log_in(at, "locktest", "wrong-password")
    # The attempt that reaches the limit says the account is now locked...
    assert "Account locked" in at.error[0].value
    # ...and afterwards even the right password is refused with the lock message.
    at = log_in(at, "locktest", "right-password")
    assert "actor" not in at.session_state
    assert "is locked" in at.error[0].value and "unlock" in at.error[0].value
    outcomes = [r["outcome"] for r in _login_records(root, "locktest")]
    assert outcomes == ["failure"] * MAX_FAILED_LOGINS + ["denied"]


def test_correct_login_then_logout(app_home):
    at = log_in(app_home, "clinician", "demo-clinician")
    assert not at.exception
    assert not at.error
    assert at.session_state["actor"] == Actor("clinician", "clinician", client="app")
    # A successful login opens the patient list.
    assert [t.value for t in at.title] == ["Patients"]
    logout = at.sidebar.button(key="logout")
    logout.click()
    at.run()
    assert "actor" not in at.session_state
    assert [t.value for t in at.title] == ["cardiotwin"]
    assert "logged out" in at.info[0].value


def test_idle_session_expires(app_home):
    at = app_home.run()
    at.session_state["actor"] = Actor("clinician", "clinician", client="app")
    at.session_state["last_activity"] = 0.0  # idle since 1970: beyond SESSION_TIMEOUT_S
    at.switch_page("views/patients.py").run()
    assert "Please log in" in at.warning[0].value
    assert "expired" in at.info[0].value
    assert "actor" not in at.session_state
    assert len(at.dataframe) == 0
