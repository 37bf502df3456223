"""The store's tables as SQLAlchemy 2 ORM rows (one class per table).

The table and column names are the on-disk schema: a store written by an earlier version must
open unchanged, so rename nothing here without a migration. Only portable column types are used
(no SQLite-only features), so the same rows serve PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "UserRow",
    "PatientRow",
    "TwinVersionRow",
    "ResultRow",
    "ObservationRow",
    "QuarantineRow",
    "ArtifactRow",
    "AuditRow",
    "AuditHeadRow",
    "row_as_dict",
]


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class UserRow(Base):
    """A staff account (never a patient)."""

    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    created_utc: Mapped[str] = mapped_column(String(32))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    last_login_utc: Mapped[str | None] = mapped_column(String(32), nullable=True)


class PatientRow(Base):
    """A pseudonymised patient: the pseudonym and non-identifying metadata only."""

    __tablename__ = "patients"
    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_utc: Mapped[str] = mapped_column(String(32))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TwinVersionRow(Base):
    """One saved version of a patient's twin state (``PatientTwin.to_dict()``)."""

    __tablename__ = "twin_versions"
    __table_args__ = (UniqueConstraint("pseudonym", "version", name="uq_twin_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(64), ForeignKey("patients.pseudonym"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    created_utc: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)


class ResultRow(Base):
    """A result computed on a twin (rehearsal, sweep point, validation run)."""

    __tablename__ = "results"
    __table_args__ = (
        ForeignKeyConstraint(
            ["pseudonym", "twin_version"],
            ["twin_versions.pseudonym", "twin_versions.version"],
            name="fk_result_twin_version",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(64), ForeignKey("patients.pseudonym"), index=True)
    twin_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text)
    created_utc: Mapped[str] = mapped_column(String(32))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSON)


class ObservationRow(Base):
    """One accepted monitoring observation of a patient, and the twin version it went into.

    ``key_sha256`` hashes what makes an observation itself (stream, time, SI value; not the
    source), unique per patient: the same observation ingested twice is stored once.
    ``time_utc`` is ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that text order is time order.
    """

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("pseudonym", "key_sha256", name="uq_observation_key"),
        ForeignKeyConstraint(
            ["pseudonym", "twin_version"],
            ["twin_versions.pseudonym", "twin_versions.version"],
            name="fk_observation_twin_version",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(64), ForeignKey("patients.pseudonym"), index=True)
    twin_version: Mapped[int] = mapped_column(Integer)
    key_sha256: Mapped[str] = mapped_column(String(64))
    time_utc: Mapped[str] = mapped_column(String(32), index=True)
    code: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(Text)
    value_si: Mapped[float] = mapped_column(Float)
    value_as_received: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    record: Mapped[str] = mapped_column(Text)
    received_utc: Mapped[str] = mapped_column(String(32))


class QuarantineRow(Base):
    """One refused monitoring record, with the reason (``monitoring.Rejection`` fields)."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudonym: Mapped[str] = mapped_column(String(64), ForeignKey("patients.pseudonym"), index=True)
    received_utc: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    record: Mapped[str] = mapped_column(Text)
    field: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    expected: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)


class ArtifactRow(Base):
    """A content-addressed file under ``<root>/artifacts``."""

    __tablename__ = "artifacts"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    relpath: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    created_utc: Mapped[str] = mapped_column(String(32))


class AuditRow(Base):
    """One audit record, chained to the previous one by ``prev_hash``.

    ``seq`` is assigned by the store under the chain lock (it is part of the hashed content), so
    it runs 1, 2, 3… without gaps.
    """

    __tablename__ = "audit"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time_utc: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    patient_pseudonym: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    object: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    client: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The single row (id 1) holding the chain's head; locked by every audited transaction."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def row_as_dict(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The attributes ``names`` of an ORM row as a plain dict (what the store's readers return)."""
    return {n: getattr(row, n) for n in names}
