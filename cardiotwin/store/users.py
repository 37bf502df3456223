"""Staff accounts: argon2id password hashes, roles, audited logins and lockout.

Passwords are never stored, logged or put into exception messages; only their argon2id hashes
(argon2-cffi defaults, RFC 9106 low-memory profile) are kept. After
:data:`MAX_FAILED_LOGINS` consecutive failed logins an account is locked until an admin unlocks
it (:func:`unlock_user`). Every login attempt is audited (action ``"login"``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cardiotwin.errors import AccessDenied, InputError, StoreError
from cardiotwin.store.access import SYSTEM_ACTOR, Actor, check_role, check_username
from cardiotwin.store.audit import utc_now_iso
from cardiotwin.store.rows import UserRow
from cardiotwin.store.unit_of_work import AuditChain, Done

if TYPE_CHECKING:
    from cardiotwin.store.facade import Store

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_FAILED_LOGINS",
    "MIN_PASSWORD_LENGTH",
    "add_user",
    "authenticate",
    "list_users",
    "record_refused",
    "unlock_user",
]

MAX_FAILED_LOGINS = 5
"""Consecutive failed logins after which an account is locked."""

MIN_PASSWORD_LENGTH = 8

_HASHER = PasswordHasher()
# Verifying against this when the user does not exist keeps the response time of unknown and
# known user names alike (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash("cardiotwin-dummy-password")
_RESERVED = frozenset({SYSTEM_ACTOR.username})


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"password must be a text of at least {MIN_PASSWORD_LENGTH} characters")


def add_user(
    store: Store,
    username: str,
    password: str,
    role: str,
    *,
    actor: Actor | None = None,
    purpose: str = "user administration",
) -> None:
    """Create a staff account.

    Parameters
    ----------
    store : Store
        The store.
    username : str
        1–64 characters from ``[A-Za-z0-9._@-]``; ``"system"`` is reserved.
    password : str
        At least :data:`MIN_PASSWORD_LENGTH` characters; only its argon2id hash is stored.
    role : str
        One of :data:`cardiotwin.store.ROLES`.
    actor : Actor or None
        The admin creating the account. None means local administration by someone with
        file-system access to the store (recorded as actor ``"system"``), e.g. the first admin.
    purpose : str
        Audited purpose.

    Raises
    ------
    StoreError
        If the user exists (audited as a failure).
    AccessDenied
        If ``actor`` is not an admin (audited).
    """
    check_username(username)
    check_role(role)
    _check_password(password)
    if username in _RESERVED:
        raise InputError(f"user name {username!r} is reserved; choose another")
    password_hash = _HASHER.hash(password)

    def op(session: Session) -> Done:
        if session.get(UserRow, username) is not None:
            raise StoreError(f"user '{username}' exists already")
        session.add(
            UserRow(
                username=username,
                password_hash=password_hash,
                role=role,
                created_utc=utc_now_iso(),
                failed_logins=0,
                locked=False,
            )
        )
        return Done(None, details={"role": role})

    store.unit_of_work.audited(
        op,
        actor=actor or SYSTEM_ACTOR,
        purpose=purpose,
        action="admin",
        permission="user.manage",
        pseudonym=None,
        obj=f"user/{username}",
    )
    logger.info("created user %s with role %s", username, role)


def unlock_user(
    store: Store,
    username: str,
    *,
    actor: Actor | None = None,
    purpose: str = "user administration",
) -> None:
    """Unlock an account locked by failed logins (and reset its failure count). Audited."""
    check_username(username)

    def op(session: Session) -> Done:
        user = session.get(UserRow, username)
        if user is None:
            raise StoreError(f"user '{username}' does not exist")
        was_locked = bool(user.locked)
        user.locked = False
        user.failed_logins = 0
        return Done(None, details={"was_locked": was_locked})

    store.unit_of_work.audited(
        op,
        actor=actor or SYSTEM_ACTOR,
        purpose=purpose,
        action="admin",
        permission="user.manage",
        pseudonym=None,
        obj=f"user/{username}",
    )


def list_users(
    store: Store, *, actor: Actor | None = None, purpose: str = "user administration"
) -> list[dict[str, Any]]:
    """Accounts with ``username``, ``role``, ``created_utc``, ``last_login_utc``, ``locked``,
    ``failed_logins`` (never the hashes). Audited; requires an admin (or local access)."""

    def op(session: Session) -> Done:
        rows = session.execute(select(UserRow).order_by(UserRow.username)).scalars().all()
        out = [
            {
                "username": u.username,
                "role": u.role,
                "created_utc": u.created_utc,
                "last_login_utc": u.last_login_utc,
                "locked": bool(u.locked),
                "failed_logins": u.failed_logins,
            }
            for u in rows
        ]
        return Done(out, details={"n_users": len(out)})

    return store.unit_of_work.audited(
        op,
        actor=actor or SYSTEM_ACTOR,
        purpose=purpose,
        action="read",
        permission="user.manage",
        pseudonym=None,
        obj="users",
    )


def authenticate(store: Store, username: str, password: str, *, client: str = "cli") -> Actor:
    """Check a user name and password; return the :class:`Actor` to act as.

    Every attempt is audited (action ``"login"``, outcome ``success``, ``failure`` or, for a
    locked account, ``denied``) in the same transaction as the failure counter.

    Parameters
    ----------
    store : Store
        The store.
    username, password : str
        Credentials. The password is never logged or stored.
    client : str
        Where the login comes from (``"app"``, ``"cli"``…), recorded in the audit log.

    Raises
    ------
    AccessDenied
        For an unknown user or a wrong password (same message, so user names cannot be probed),
        and for a locked account (a message saying so and how to unlock it).
    """
    name = username if isinstance(username, str) else repr(username)
    try:
        check_username(name)
        valid_name = True
    except InputError:
        valid_name = False
    probe = Actor(SYSTEM_ACTOR.username, "admin", client=client)  # validates client

    def body(session: Session, chain: AuditChain) -> tuple[str, Actor | None]:
        user = session.get(UserRow, name) if valid_name else None

        def record(outcome: str, role: str | None, details: dict[str, Any]) -> None:
            chain.append(
                actor=probe,
                actor_name=name,
                role=role,
                action="login",
                pseudonym=None,
                obj=f"user/{name}"[:200],
                purpose="authentication",
                outcome=outcome,
                details=details,
            )

        if user is None:
            try:
                _HASHER.verify(_DUMMY_HASH, password if isinstance(password, str) else "")
            except VerificationError:
                pass
            record("failure", None, {"reason": "unknown user"})
            return "invalid", None
        if user.locked:
            record("denied", user.role, {"reason": "account locked"})
            return "locked", None
        try:
            ok = isinstance(password, str) and _HASHER.verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if ok:
            user.failed_logins = 0
            user.last_login_utc = utc_now_iso()
            if _HASHER.check_needs_rehash(user.password_hash):
                user.password_hash = _HASHER.hash(password)
            record("success", user.role, {})
            return "ok", Actor(user.username, user.role, client=client)
        user.failed_logins = (user.failed_logins or 0) + 1
        user.locked = user.failed_logins >= MAX_FAILED_LOGINS
        record(
            "failure",
            user.role,
            {
                "reason": "wrong password",
                "failed_logins": user.failed_logins,
                "locked": bool(user.locked),
            },
        )
        return ("locked_now" if user.locked else "invalid"), None

    status, actor = store.unit_of_work.run_chained(body)
    if status == "ok":
        assert actor is not None
        logger.info("login of %s (%s) from %s", actor.username, actor.role, client)
        return actor
    logger.warning("failed login for user name %r from %s (%s)", name[:64], client, status)
    if status == "locked":
        raise AccessDenied(
            f"account '{name}' is locked after {MAX_FAILED_LOGINS} consecutive failed logins; "
            "ask an admin to unlock it (cardiotwin.store.users.unlock_user)"
        )
    if status == "locked_now":
        raise AccessDenied(
            f"invalid user name or password; account '{name}' is now locked after "
            f"{MAX_FAILED_LOGINS} consecutive failed logins, ask an admin to unlock it"
        )
    raise AccessDenied("invalid user name or password")


def record_refused(store: Store, *, client: str, reason: str, username: str | None = None) -> None:
    """Audit an attempt refused before a password was checked (action ``"login"``, outcome
    ``failure``): a request without credentials, or with an unknown or expired token.

    Parameters
    ----------
    client : str
        Where the attempt came from (``"api/127.0.0.1"``).
    reason : str
        Why it was refused (no secret: never the token or a password).
    username : str or None
        The user name the attempt claimed, if any (recorded as given, cut to 64 characters);
        ``"anonymous"`` when none.
    """
    probe = Actor(SYSTEM_ACTOR.username, "admin", client=client)  # validates client
    name = (username if isinstance(username, str) and username else "anonymous")[:64]

    def body(session: Session, chain: AuditChain) -> None:
        chain.append(actor=probe, actor_name=name, role=None, action="login", pseudonym=None,
                     obj="api", purpose="authentication", outcome="failure",
                     details={"reason": reason[:200]})

    store.unit_of_work.run_chained(body)
    logger.warning("refused request from %s: %s", client, reason)
