"""The store's database connection: which URL, and an engine set up for audited writes.

One SQLite file ``<root>/cardiotwin.sqlite`` by default, or any SQLAlchemy URL (``url=`` or the
``CARDIOTWIN_DB_URL`` environment variable). On SQLite every connection gets a busy timeout, the
WAL journal (files only), ``synchronous=FULL`` and foreign keys, and writers take the write lock
at ``BEGIN IMMEDIATE`` so that two transactions never both read the audit chain's head and then
collide on commit. Another database (PostgreSQL) needs no connection set-up here: the chain lock
is a ``SELECT … FOR UPDATE`` (:mod:`cardiotwin.store.unit_of_work`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

__all__ = [
    "DB_FILENAME",
    "ENV_DB_URL",
    "READONLY_OPTION",
    "database_url",
    "make_engine",
    "is_busy",
]

DB_FILENAME = "cardiotwin.sqlite"
"""The SQLite file in the store's root when no URL is given."""

ENV_DB_URL = "CARDIOTWIN_DB_URL"
"""Environment variable holding the SQLAlchemy URL of the store's database."""

READONLY_OPTION = "cardiotwin_readonly"
"""Connection execution option: a read-only snapshot (a deferred ``BEGIN`` on SQLite)."""


def database_url(root: Path, url: str | None = None) -> str:
    """The database URL of the store at ``root``.

    Parameters
    ----------
    root : Path
        The store's directory.
    url : str or None
        An explicit SQLAlchemy URL; None: ``CARDIOTWIN_DB_URL`` if set, else the SQLite file
        ``<root>/cardiotwin.sqlite``.
    """
    return url or os.environ.get(ENV_DB_URL) or f"sqlite:///{root / DB_FILENAME}"


def make_engine(url: str, *, busy_timeout_s: float) -> Engine:
    """A SQLAlchemy engine for ``url``, with the SQLite set-up described in the module docstring.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.
    busy_timeout_s : float
        How long (s) a SQLite connection waits for another writer before reporting busy.
    """
    is_sqlite = url.startswith("sqlite")
    connect_args: dict[str, Any] = {}
    if is_sqlite:
        connect_args = {"timeout": busy_timeout_s, "check_same_thread": False}
    engine = create_engine(url, hide_parameters=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        in_memory = engine.url.database in (None, "", ":memory:")

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # We emit BEGIN ourselves (below), so the driver must not.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if not in_memory:
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Writers take the write lock at BEGIN, so two transactions never both read the chain
            # head and then collide on commit; read-only snapshots use a deferred BEGIN.
            if conn.get_execution_options().get(READONLY_OPTION):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def is_busy(exc: DBAPIError) -> bool:
    """Whether a database error means "busy, try again" (SQLite lock, PostgreSQL serialisation
    failure or deadlock) rather than a failed request."""
    orig = exc.orig
    name = getattr(orig, "sqlite_errorname", "")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or name.startswith("SQLITE_BUSY"):
        return True
    text = str(orig).lower()
    if "database is locked" in text or "database is busy" in text:
        return True
    # PostgreSQL: serialization_failure, deadlock_detected.
    return getattr(orig, "pgcode", None) in ("40001", "40P01") or getattr(
        orig, "sqlstate", None
    ) in ("40001", "40P01")
