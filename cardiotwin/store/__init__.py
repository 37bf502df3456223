"""cardiotwin.store: the audited store of pseudonymised twins, results and artifacts.

:class:`Store` is the façade every caller uses; :mod:`cardiotwin.store.users` manages staff
accounts and logins. The modules behind the façade (rows, engine, unit of work, one repository
per entity) are documented in :mod:`cardiotwin.store.facade`.

>>> from cardiotwin.store import Store, Actor  # doctest: +SKIP
"""

from cardiotwin.store.access import PERMISSIONS, ROLES, Actor, is_allowed
from cardiotwin.store.artifacts import ArtifactStore
from cardiotwin.store.audit import GENESIS_HASH, AuditHead, AuditVerification, verify_chain
from cardiotwin.store.checks import check_pseudonym
from cardiotwin.store.facade import Store
from cardiotwin.store.twins import TwinLike
from cardiotwin.store.users import add_user, authenticate, list_users, unlock_user

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "Actor",
    "is_allowed",
    "ArtifactStore",
    "GENESIS_HASH",
    "AuditHead",
    "AuditVerification",
    "verify_chain",
    "Store",
    "TwinLike",
    "check_pseudonym",
    "add_user",
    "authenticate",
    "list_users",
    "unlock_user",
]
