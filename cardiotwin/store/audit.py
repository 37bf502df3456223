"""The hash chain of the audit log: canonical records, chain hashes, verification, head anchor.

Every audit record is serialised canonically (JSON, sorted keys, no whitespace, UTF-8, time as ISO
8601 UTC) and hashed together with the previous record's hash::

    hash_n = SHA-256(prev_hash_n || canonical_n)            (unkeyed)
    hash_n = HMAC-SHA256(key, prev_hash_n || canonical_n)   (keyed, ``audit_key``)
    prev_hash_1 = "0" * 64                                  (genesis)

where ``prev_hash`` is the previous record's hex digest as ASCII. The sequence number is part of
the canonical record, so edits, deletions, reordering and insertions anywhere before the last
record break the chain at a known place (:func:`verify_chain`).

Removing records from the *end* leaves a valid shorter chain. That is detectable only against a
head recorded elsewhere: the store keeps the head (sequence number and hash) in its database and
in the file ``<root>/audit.head`` (replaced atomically after each commit), and
:func:`verify_chain` takes an ``expected_head`` that a privacy officer can keep outside the
machine (e.g. print ``cardiotwin audit head`` into a ticket). Without a key, someone who can write
the database can rebuild a consistent chain; the HMAC key, kept outside the store, prevents that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardiotwin.store.artifacts import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = [
    "GENESIS_HASH",
    "RECORD_FIELDS",
    "OUTCOMES",
    "AuditHead",
    "AuditVerification",
    "canonical_record",
    "chain_hash",
    "verify_chain",
    "read_anchor",
    "write_anchor",
    "utc_now_iso",
]

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record."""

RECORD_FIELDS: tuple[str, ...] = (
    "seq",
    "time_utc",
    "actor",
    "role",
    "action",
    "patient_pseudonym",
    "object",
    "purpose",
    "outcome",
    "client",
    "details",
)
"""Fields covered by a record's hash (``prev_hash`` is chained in front of them)."""

OUTCOMES: tuple[str, ...] = ("success", "failure", "denied")
"""``success``: done; ``failure``: attempted but failed (e.g. unknown patient, wrong password);
``denied``: refused by the permission table or an account lock."""


def utc_now_iso() -> str:
    """Current time as ISO 8601 UTC with microseconds, e.g. ``2025-01-31T12:00:00.123456Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_record(record: Mapping[str, Any]) -> bytes:
    """Canonical bytes of the hashed fields of ``record`` (sorted keys, no whitespace, UTF-8)."""
    payload = {name: record.get(name) for name in RECORD_FIELDS}
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain_hash(prev_hash: str, canonical: bytes, *, key: bytes | None = None) -> str:
    """Hex digest chaining ``canonical`` to ``prev_hash`` (SHA-256, or HMAC-SHA256 with ``key``)."""
    message = prev_hash.encode("ascii") + canonical
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditHead:
    """The last record of a chain: its sequence number and hash (``seq`` 0 = empty chain)."""

    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"seq": self.seq, "hash": self.hash}


@dataclass(frozen=True)
class AuditVerification:
    """Result of verifying an audit chain.

    Attributes
    ----------
    ok : bool
        True if every record verified and the head matched every anchor checked.
    n_records : int
        Number of records read.
    first_bad_seq : int or None
        Sequence number of the first record that is missing, altered or out of place
        (for a truncated tail: the first missing sequence number). None if ``ok``.
    reason : str
        What was found, in words.
    head : AuditHead or None
        Last record of the chain as read (None for an empty chain).
    """

    ok: bool
    n_records: int
    first_bad_seq: int | None
    reason: str
    head: AuditHead | None = None


def verify_chain(
    records: Iterable[Mapping[str, Any]],
    *,
    key: bytes | None = None,
    expected_head: AuditHead | None = None,
    anchors: Mapping[str, AuditHead] | None = None,
) -> AuditVerification:
    """Verify an audit chain read in ``seq`` order.

    Parameters
    ----------
    records : iterable of mapping
        Records with the :data:`RECORD_FIELDS` plus ``prev_hash`` and ``hash``, ordered by
        ``seq`` (as stored). Sequence numbers must run 1, 2, 3… without gaps.
    key : bytes or None
        HMAC key the chain was written with (None for an unkeyed chain).
    expected_head : AuditHead or None
        A head recorded independently of the records. The chain must contain record
        ``expected_head.seq`` with that hash (later records are allowed); a shorter chain means
        its tail was removed.
    anchors : mapping of str to AuditHead, optional
        Further heads to check the same way, by description (e.g. ``{"the audit.head file":
        head}``).

    Returns
    -------
    AuditVerification
        With ``first_bad_seq`` the first sequence number at which the chain breaks:
        an edited record (its hash no longer matches), a deleted record (a gap, or a
        ``prev_hash`` that no longer matches its predecessor), swapped or inserted records, or
        the first record missing from the end according to an anchor.
    """
    checks: dict[str, AuditHead] = dict(anchors or {})
    if expected_head is not None:
        checks["the expected head"] = expected_head
    wanted = {a.seq for a in checks.values()}
    seen: dict[int, str] = {}
    prev = GENESIS_HASH
    expected_seq = 1
    n = 0
    head: AuditHead | None = None
    for rec in records:
        n += 1
        seq = rec.get("seq")
        if seq != expected_seq:
            if isinstance(seq, int) and seq > expected_seq:
                reason = f"record seq {expected_seq} is missing (next record has seq {seq})"
            else:
                reason = f"record seq {seq!r} is out of order (expected {expected_seq})"
            return AuditVerification(False, n, expected_seq, reason, head)
        if rec.get("prev_hash") != prev:
            return AuditVerification(
                False,
                n,
                expected_seq,
                f"record seq {seq}: prev_hash does not match the hash of record {seq - 1} "
                "(a record was removed, inserted or moved)",
                head,
            )
        try:
            computed = chain_hash(prev, canonical_record(rec), key=key)
        except (TypeError, ValueError) as exc:
            return AuditVerification(
                False, n, expected_seq, f"record seq {seq} cannot be serialised: {exc}", head
            )
        if not hmac.compare_digest(computed, str(rec.get("hash"))):
            return AuditVerification(
                False,
                n,
                expected_seq,
                f"record seq {seq}: content does not match its hash (a field was altered"
                + (", or the audit key is wrong)" if key is not None else ")"),
                head,
            )
        if seq in wanted:
            seen[seq] = computed
        prev = computed
        head = AuditHead(seq, computed)
        expected_seq += 1
    last = 0 if head is None else head.seq
    # Report the anchor that shows the earliest damage first.
    problems: list[tuple[int, str]] = []
    for what, anchor in checks.items():
        if anchor.seq > last:
            problems.append(
                (
                    last + 1,
                    f"chain ends at seq {last} but {what} is seq {anchor.seq}: "
                    f"records {last + 1}..{anchor.seq} were removed from the end",
                )
            )
        elif anchor.seq == 0:
            if anchor.hash != GENESIS_HASH:
                problems.append((1, f"{what} is malformed (seq 0 with a non-genesis hash)"))
        elif not hmac.compare_digest(seen[anchor.seq], anchor.hash):
            problems.append((anchor.seq, f"record seq {anchor.seq} does not match {what}'s hash"))
    if problems:
        first_bad, reason = min(problems)
        return AuditVerification(False, n, first_bad, reason, head)
    return AuditVerification(True, n, None, f"{n} records verified", head)


def read_anchor(path: Path) -> AuditHead | None:
    """Read the head anchor file; None if it does not exist or cannot be parsed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return AuditHead(int(data["seq"]), str(data["hash"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("audit head anchor %s is unreadable: %s", path, exc)
        return None


def write_anchor(path: Path, head: AuditHead) -> None:
    """Atomically record ``head`` in the anchor file, unless the file already holds a later head.

    Several processes may call this after their commits in any order; the file always holds the
    head of some committed record, so it may lag the chain by a few records but never leads it.
    """
    current = read_anchor(path)
    if current is not None and current.seq >= head.seq:
        return
    text = json.dumps(head.to_dict(), sort_keys=True) + "\n"
    atomic_write_bytes(Path(path), text.encode("ascii"))
