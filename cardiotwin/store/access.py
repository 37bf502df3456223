"""Who may do what: actors, roles and the permission table of the store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cardiotwin.errors import InputError

__all__ = [
    "ROLES",
    "PERMISSIONS",
    "Actor",
    "SYSTEM_ACTOR",
    "is_allowed",
    "check_actor",
    "check_username",
    "check_role",
]

ROLES: tuple[str, ...] = ("clinician", "researcher", "device_engineer", "privacy_officer", "admin")
"""The roles a user can hold."""

_ALL = frozenset(ROLES)
_CARE = frozenset({"clinician", "admin"})

PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        # Pseudonymised data: everyone with an account may read it (reads are audited).
        "patient.list": _ALL,
        "twin.read": _ALL,
        "result.read": _ALL,
        # Building and changing twins, rehearsing procedures: care team only.
        "patient.create": _CARE,
        "twin.write": _CARE,
        "rehearsal.run": _CARE,
        # Non-rehearsal results (sweeps, validation runs) may also come from research/device teams.
        "result.write": frozenset({"clinician", "admin", "researcher", "device_engineer"}),
        # Who saw what: privacy officer and admin.
        "audit.read": frozenset({"privacy_officer", "admin"}),
        # Reading DICOM to list it (pseudonymised) or convert it to a volume without identity:
        # everyone with an account (audited, like the pseudonymised reads above).
        "dicom.read": _ALL,
        # Reading identified DICOM to write de-identified copies: care team and privacy officer.
        "dicom.deidentify": frozenset({"clinician", "admin", "privacy_officer"}),
        "user.manage": frozenset({"admin"}),
    }
)
"""Permission name → roles allowed. Anything not listed is refused."""

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,63}$")


def is_allowed(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (unknown permissions are never allowed)."""
    return role in PERMISSIONS.get(permission, frozenset())


def check_username(username: str) -> str:
    """Validate a user name (1–64 characters from ``[A-Za-z0-9._@-]``) and return it."""
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise InputError(
            "username must be 1-64 characters from [A-Za-z0-9._@-] starting with a letter or "
            f"digit, got {username!r}"
        )
    return username


def check_role(role: str) -> str:
    """Validate a role name and return it."""
    if role not in ROLES:
        raise InputError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True)
class Actor:
    """Someone (or something) acting on the store; recorded in every audit record.

    Parameters
    ----------
    username : str
        The authenticated user name (staff account, never a patient identifier).
    role : str
        One of :data:`ROLES`.
    client : str
        Where the action comes from: ``"cli"``, ``"app"``, ``"api"``, ``"pipeline"``...
    """

    username: str
    role: str
    client: str = "cli"

    def __post_init__(self) -> None:
        check_username(self.username)
        check_role(self.role)
        if not isinstance(self.client, str) or not _CLIENT.fullmatch(self.client):
            raise InputError(
                f"Actor.client must be 1-64 characters from [A-Za-z0-9._:/@-], got {self.client!r}"
            )


def check_actor(actor: Actor) -> Actor:
    """Check that ``actor`` is an :class:`Actor` (not a user name) and return it."""
    if not isinstance(actor, Actor):
        raise InputError(
            f"actor must be a cardiotwin.store.Actor, got {type(actor).__name__}; obtain one from "
            "cardiotwin.store.users.authenticate"
        )
    return actor


SYSTEM_ACTOR = Actor("system", "admin", client="local")
"""Actor recorded for local administration without a logged-in user (e.g. creating the first
admin account from the command line, which requires file-system access to the store)."""
