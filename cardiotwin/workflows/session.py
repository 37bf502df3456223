"""Use cases of the store and its users: opening the store, logging in, accounts, permissions,
auditing refused requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cardiotwin.store import Actor, Store
from cardiotwin.twin.state import PatientTwin


def login(store: Store, username: str, password: str, *, client: str) -> Actor:
    """Authenticate a user of the store and return the actor to pass to the other use cases.

    The attempt (success, failure, lockout) is audited by the store; raises ``AccessDenied``.
    """
    from cardiotwin.store import users

    return users.authenticate(store, username, password, client=client)


def open_store(root: str | Path, **kwargs: Any) -> Store:
    """Open (or create) the twin store at ``root`` for the use cases in this module."""
    return Store(Path(root), twin_type=PatientTwin, **kwargs)


def add_user(store: Store, username: str, password: str, role: str) -> None:
    """Add a staff account that can log in (audited by the store)."""
    from cardiotwin.store import users

    users.add_user(store, username, password, role)


def list_users(store: Store) -> list[dict[str, Any]]:
    """Staff accounts and their roles (never passwords)."""
    from cardiotwin.store import users

    return users.list_users(store)


def can(actor: Actor, permission: str) -> bool:
    """Whether ``actor``'s role holds ``permission`` (e.g. ``"rehearsal.run"``), to show or hide
    an action; the use case itself still checks and audits."""
    from cardiotwin.store import is_allowed

    return is_allowed(actor.role, permission)


def refuse_request(store: Store, *, client: str, reason: str, username: str | None = None
                   ) -> None:
    """Audit a request refused before any password was checked (no credentials, an unknown or
    expired token) as a failed login; see :func:`cardiotwin.store.users.record_refused`."""
    from cardiotwin.store import users

    users.record_refused(store, client=client, reason=reason, username=username)

