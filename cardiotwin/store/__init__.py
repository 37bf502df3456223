"""cardiotwin.store: the audited store of pseudonymised twins, results and artifacts.

>>> from cardiotwin.store import Store, Actor  # doctest: +SKIP
"""

from cardiotwin.store.access import PERMISSIONS, ROLES, Actor, is_allowed
from cardiotwin.store.artifacts import ArtifactStore
from cardiotwin.store.audit import GENESIS_HASH, AuditHead, AuditVerification, verify_chain
from cardiotwin.store.db import Store, TwinLike, check_pseudonym
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
