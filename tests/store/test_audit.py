"""Audit chain: canonical hashing, tamper detection with the right first_bad_seq, anchors, HMAC,
concurrent writers."""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing as mp
import sqlite3

import pytest

from cardiotwin.store import Actor, AuditHead, Store, verify_chain
from cardiotwin.store.audit import GENESIS_HASH, canonical_record, chain_hash
from tests.store.helpers import make_twin

PURPOSE = "treatment planning"
KEY = b"k" * 32


def fill(store: Store, n_reads: int = 8) -> None:
    """1 write + n_reads reads → 1 + n_reads records."""
    actor = Actor("dr_a", "clinician")
    store.save_twin(make_twin(), actor=actor, purpose=PURPOSE, reason="built")
    for _ in range(n_reads):
        store.load_twin_state("P0001", actor=actor, purpose=PURPOSE)


def sql(store: Store, statement: str, *params) -> None:
    """Tamper with the database directly, as an attacker with file access would."""
    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    con.execute(statement, params)
    con.commit()
    con.close()


@pytest.fixture
def filled(store):
    fill(store)
    assert store.verify_audit().ok
    assert store.audit_head().seq == 9
    return store


def test_chain_hash_matches_independent_computation(filled):
    # Recompute record 1's hash with hashlib from the raw row: SHA-256("0"*64 || canonical JSON).
    con = sqlite3.connect(filled.root / "cardiotwin.sqlite")
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM audit WHERE seq = 1").fetchone())
    con.close()
    row["details"] = json.loads(row["details"])
    fields = [
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
    ]
    canonical = json.dumps({k: row[k] for k in fields}, sort_keys=True, separators=(",", ":"))
    assert row["prev_hash"] == "0" * 64
    assert row["hash"] == hashlib.sha256(("0" * 64 + canonical).encode()).hexdigest()
    assert row["time_utc"].endswith("Z") and "T" in row["time_utc"]


def test_edited_field_is_detected(filled):
    sql(filled, "UPDATE audit SET actor = 'someone_else' WHERE seq = 4")
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 4 and "altered" in v.reason


def test_edited_details_json_is_detected(filled):
    sql(filled, "UPDATE audit SET details = '{\"x\": 1}' WHERE seq = 2")
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 2


def test_edit_with_recomputed_hash_breaks_the_next_link(filled):
    # Without a key an attacker can recompute one record's hash; the next prev_hash then breaks.
    con = sqlite3.connect(filled.root / "cardiotwin.sqlite")
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM audit WHERE seq = 5").fetchone())
    row["details"] = json.loads(row["details"])
    row["purpose"] = "harmless"
    new_hash = chain_hash(row["prev_hash"], canonical_record(row))
    con.execute("UPDATE audit SET purpose = 'harmless', hash = ? WHERE seq = 5", (new_hash,))
    con.commit()
    con.close()
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 6 and "prev_hash" in v.reason


def test_deleted_middle_row_is_detected(filled):
    sql(filled, "DELETE FROM audit WHERE seq = 5")
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 5 and "missing" in v.reason


def test_deleted_row_with_renumbering_is_detected(filled):
    sql(filled, "DELETE FROM audit WHERE seq = 5")
    sql(filled, "UPDATE audit SET seq = seq - 1 WHERE seq > 5")
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 5


def test_swapped_rows_are_detected(filled):
    # Swap the whole content (all columns but seq) of records 3 and 6.
    cols = [
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
        "prev_hash",
        "hash",
    ]
    con = sqlite3.connect(filled.root / "cardiotwin.sqlite")
    r3 = con.execute(f"SELECT {','.join(cols)} FROM audit WHERE seq = 3").fetchone()
    r6 = con.execute(f"SELECT {','.join(cols)} FROM audit WHERE seq = 6").fetchone()
    assign = ",".join(f"{c} = ?" for c in cols)
    con.execute(f"UPDATE audit SET {assign} WHERE seq = 3", r6)
    con.execute(f"UPDATE audit SET {assign} WHERE seq = 6", r3)
    con.commit()
    con.close()
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 3


def test_inserted_row_in_the_middle_is_detected(filled):
    sql(filled, "UPDATE audit SET seq = seq + 100 WHERE seq >= 4")
    sql(filled, "UPDATE audit SET seq = seq - 99 WHERE seq >= 104")
    sql(
        filled,
        "INSERT INTO audit (seq, time_utc, actor, role, action, patient_pseudonym, object, "
        "purpose, outcome, client, details, prev_hash, hash) VALUES (4, '2020-01-01T00:00:00Z', "
        "'x', 'admin', 'read', 'P0001', 'twin', 'p', 'success', 'cli', '{}', ?, ?)",
        "0" * 64,
        "f" * 64,
    )
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 4


def test_appended_row_outside_the_store_is_detected(filled):
    head = filled.audit_head()
    rec = {
        "seq": 10,
        "time_utc": "2020-01-01T00:00:00.000000Z",
        "actor": "x",
        "role": "admin",
        "action": "read",
        "patient_pseudonym": "P0001",
        "object": "twin",
        "purpose": "p",
        "outcome": "success",
        "client": "cli",
        "details": {},
    }
    digest = chain_hash(head.hash, canonical_record(rec))  # a perfectly chained forgery
    sql(
        filled,
        "INSERT INTO audit (seq, time_utc, actor, role, action, patient_pseudonym, object, "
        "purpose, outcome, client, details, prev_hash, hash) VALUES (10, ?, 'x', 'admin', "
        "'read', 'P0001', 'twin', 'p', 'success', 'cli', '{}', ?, ?)",
        rec["time_utc"],
        head.hash,
        digest,
    )
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 10 and "appended outside" in v.reason


def test_truncated_tail_is_detected_by_the_database_head(filled):
    sql(filled, "DELETE FROM audit WHERE seq >= 7")
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 7 and "removed from the end" in v.reason


def test_truncated_tail_with_forged_db_head_is_detected_by_the_anchor_file(filled):
    con = sqlite3.connect(filled.root / "cardiotwin.sqlite")
    h6 = con.execute("SELECT hash FROM audit WHERE seq = 6").fetchone()[0]
    con.close()
    sql(filled, "DELETE FROM audit WHERE seq >= 7")
    sql(filled, "UPDATE audit_head SET seq = 6, hash = ?", h6)
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq == 7 and "audit.head" in v.reason
    # Also forging the anchor file: only a head kept outside the store still catches it.
    (filled.root / "audit.head").write_text(json.dumps({"seq": 6, "hash": h6}))
    assert filled.verify_audit().ok
    v = filled.verify_audit(expected_head=AuditHead(9, "a" * 64))
    assert not v.ok and v.first_bad_seq == 7 and "expected head" in v.reason


def test_expected_head_is_checked(filled):
    head = filled.audit_head()
    assert filled.verify_audit(expected_head=head).ok
    filled.list_patients(actor=Actor("dr_a", "clinician"), purpose=PURPOSE)
    assert filled.verify_audit(expected_head=head).ok  # later records are fine
    v = filled.verify_audit(expected_head=AuditHead(head.seq, "0" * 63 + "1"))
    assert not v.ok and v.first_bad_seq == head.seq


def test_missing_anchor_file_fails_verification(filled):
    (filled.root / "audit.head").unlink()
    v = filled.verify_audit()
    assert not v.ok and v.first_bad_seq is None and "missing" in v.reason


def test_hmac_chain(tmp_path):
    store = Store(tmp_path / "k", audit_key=KEY)
    fill(store, n_reads=2)
    assert store.verify_audit().ok
    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM audit WHERE seq = 1").fetchone())
    con.close()
    row["details"] = json.loads(row["details"])
    expected = hmac.new(KEY, GENESIS_HASH.encode() + canonical_record(row), hashlib.sha256)
    assert row["hash"] == expected.hexdigest()
    store.close()
    wrong = Store(tmp_path / "k", audit_key=b"w" * 32)
    v = wrong.verify_audit()
    assert not v.ok and v.first_bad_seq == 1 and "audit key" in v.reason
    wrong.close()


def test_verify_chain_on_plain_records():
    recs, prev = [], GENESIS_HASH
    for seq in (1, 2, 3):
        r = {
            "seq": seq,
            "time_utc": "t",
            "actor": "a",
            "role": "admin",
            "action": "read",
            "patient_pseudonym": None,
            "object": "o",
            "purpose": "p",
            "outcome": "success",
            "client": "cli",
            "details": {"n": seq},
        }
        r["prev_hash"], r["hash"] = prev, chain_hash(prev, canonical_record(r))
        prev = r["hash"]
        recs.append(r)
    assert verify_chain(recs).ok and verify_chain(recs).n_records == 3
    assert verify_chain([]).ok
    v = verify_chain([recs[0], recs[2], recs[1]])
    assert not v.ok and v.first_bad_seq == 2


def _writer(root: str, name: str, n: int) -> None:
    store = Store(root)
    actor = Actor(name, "clinician")
    for _ in range(n):
        store.list_patients(actor=actor, purpose="concurrency test")
    store.close()


def test_two_processes_writing_concurrently(tmp_path):
    root = tmp_path / "conc"
    Store(root).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), f"w{i}", 200)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    store = Store(root)
    v = store.verify_audit()
    assert v.ok, v.reason
    assert v.n_records == 400
    con = sqlite3.connect(root / "cardiotwin.sqlite")
    counts = dict(con.execute("SELECT actor, COUNT(*) FROM audit GROUP BY actor").fetchall())
    con.close()
    assert counts == {"w0": 200, "w1": 200}
    assert store.audit_head().seq == 400
