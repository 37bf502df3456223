"""Store: twin versions, results, patients, permissions and the audit rows each call writes."""

from __future__ import annotations

import sqlite3

import pytest

from cardiotwin.errors import AccessDenied, InputError, StoreError
from cardiotwin.store import Actor, Store
from cardiotwin.store.unit_of_work import AuditChain
from cardiotwin.twin.state import PatientTwin, Physiology
from tests.store.helpers import make_twin

PURPOSE = "treatment planning"


def audit_rows(store: Store) -> list[dict]:
    """All audit rows read directly with sqlite3 (independent of the store's own reader)."""
    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY seq")]
    con.close()
    return rows


def summary(rows):
    return [(r["actor"], r["action"], r["patient_pseudonym"], r["outcome"]) for r in rows]


def test_sqlite_pragmas(store):
    # DESIGN.md §5: WAL, synchronous=FULL (2), foreign keys on.
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_save_twice_gives_versions_1_2_and_load_round_trips(store, clinician):
    twin = make_twin()
    assert store.save_twin(twin, actor=clinician, purpose=PURPOSE, reason="built") == 1
    assert twin.version == 1
    twin.physiology = Physiology(
        heart_rate_bpm=82, stroke_volume_ml=70, systolic_bp_mmhg=120, diastolic_bp_mmhg=80
    )
    assert store.save_twin(twin, actor=clinician, purpose=PURPOSE, reason="new vitals") == 2
    loaded = store.load_twin("P0001", actor=clinician, purpose=PURPOSE)
    assert isinstance(loaded, PatientTwin)
    assert loaded == twin
    assert loaded.version == 2
    assert [h["version"] for h in loaded.history] == [1, 2]
    assert loaded.history[1]["reason"] == "new vitals"
    assert loaded.history[1]["changed"] == ["physiology.heart_rate_bpm"]
    v1 = store.load_twin("P0001", actor=clinician, purpose=PURPOSE, version=1)
    assert v1.physiology.heart_rate_bpm == 70.0
    assert v1.anatomy["landmarks"]["annulus_centre_mm"] == [1.0, 2.0, 3.0]
    versions = store.twin_versions("P0001", actor=clinician, purpose=PURPOSE)
    assert [(v["version"], v["reason"]) for v in versions] == [(1, "built"), (2, "new vitals")]

    rows = audit_rows(store)
    assert summary(rows) == [
        ("dr_a", "write", "P0001", "success"),
        ("dr_a", "write", "P0001", "success"),
        ("dr_a", "read", "P0001", "success"),
        ("dr_a", "read", "P0001", "success"),
        ("dr_a", "read", "P0001", "success"),
    ]
    assert [r["object"] for r in rows] == [
        "twin/v1",
        "twin/v2",
        "twin/v2",
        "twin/v1",
        "twin/versions",
    ]
    assert all(r["purpose"] == PURPOSE and r["role"] == "clinician" for r in rows)
    assert all(r["client"] == "app" for r in rows)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert store.verify_audit().ok


def test_load_unknown_pseudonym_raises_and_is_audited_as_failure(store, researcher):
    with pytest.raises(StoreError, match="P9999"):
        store.load_twin("P9999", actor=researcher, purpose="cohort study")
    rows = audit_rows(store)
    assert summary(rows) == [("res_b", "read", "P9999", "failure")]
    assert "StoreError" in rows[0]["details"]
    assert store.verify_audit().ok


def test_version_conflict_is_refused(store, clinician):
    twin = make_twin()
    store.save_twin(twin, actor=clinician, purpose=PURPOSE, reason="built")
    stale = store.load_twin("P0001", actor=clinician, purpose=PURPOSE)
    store.save_twin(twin, actor=clinician, purpose=PURPOSE, reason="second")
    with pytest.raises(StoreError, match="version conflict"):
        store.save_twin(stale, actor=clinician, purpose=PURPOSE, reason="stale")
    assert stale.version == 1  # untouched by the failed save
    assert [r["outcome"] for r in audit_rows(store)][-1] == "failure"
    assert store.load_twin("P0001", actor=clinician, purpose=PURPOSE).version == 2


def test_denied_write_raises_and_leaves_committed_denied_record(store, researcher):
    twin = make_twin()
    with pytest.raises(AccessDenied, match="researcher"):
        store.save_twin(twin, actor=researcher, purpose="curiosity", reason="x")
    assert twin.version == 0
    rows = audit_rows(store)
    assert summary(rows) == [("res_b", "write", "P0001", "denied")]
    # Nothing else was written.
    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    assert con.execute("SELECT COUNT(*) FROM twin_versions").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM patients").fetchone()[0] == 0
    con.close()
    assert store.verify_audit().ok


def test_audit_log_reading_is_restricted_and_audited(store, clinician, officer):
    store.create_patient("P0002", actor=clinician, purpose=PURPOSE, meta={"source": "phantom"})
    with pytest.raises(AccessDenied):
        store.audit_records(actor=clinician, purpose="look")
    records = store.audit_records(actor=officer, purpose="monthly review", pseudonym="P0002")
    assert summary(records) == [("dr_a", "create", "P0002", "success")]
    assert summary(audit_rows(store))[-2:] == [
        ("dr_a", "read", None, "denied"),
        ("po_c", "read", "P0002", "success"),
    ]


def test_all_roles_may_read_pseudonymised_twins(store, clinician):
    store.save_twin(make_twin(), actor=clinician, purpose=PURPOSE, reason="built")
    for role in ("clinician", "researcher", "device_engineer", "privacy_officer", "admin"):
        who = Actor(f"u_{role}", role)
        assert store.load_twin("P0001", actor=who, purpose="review").version == 1
        assert [p["pseudonym"] for p in store.list_patients(actor=who, purpose="review")] == [
            "P0001"
        ]


def test_list_patients_and_results(store, clinician):
    store.create_patient("P0001", actor=clinician, purpose=PURPOSE)
    twin = make_twin("P0001")
    # The patient exists already: a version-0 twin is saved as version 1 of that patient.
    assert store.save_twin(twin, actor=clinician, purpose=PURPOSE, reason="built") == 1
    sha = store.put_artifact(b"fake mesh bytes", kind="mesh")
    rid = store.add_result(
        "P0001",
        kind="rehearsal",
        label="valve 26 mm",
        summary={"mean_gradient_mmhg": 8.5},
        provenance={"step": "flow.steady"},
        artifacts={"mesh": sha},
        twin_version=1,
        actor=clinician,
        purpose=PURPOSE,
    )
    results = store.list_results("P0001", actor=clinician, purpose=PURPOSE)
    assert [r["id"] for r in results] == [rid]
    assert results[0]["summary"] == {"mean_gradient_mmhg": 8.5}
    assert results[0]["artifacts"] == {"mesh": sha}
    patients = store.list_patients(actor=clinician, purpose=PURPOSE)
    assert patients == [
        {
            "pseudonym": "P0001",
            "created_utc": patients[0]["created_utc"],
            "meta": {},
            "latest_version": 1,
            "n_results": 1,
        }
    ]
    assert [(r["action"], r["object"]) for r in audit_rows(store)] == [
        ("create", "patient"),
        ("write", "twin/v1"),
        ("write", f"result/{rid}"),
        ("read", "results"),
        ("read", "patients"),
    ]


def test_add_result_checks_references_and_permissions(store, clinician):
    store.save_twin(make_twin(), actor=clinician, purpose=PURPOSE, reason="built")
    with pytest.raises(StoreError, match="no twin version 7"):
        store.add_result(
            "P0001",
            kind="sweep",
            label="x",
            summary={},
            provenance={},
            artifacts={},
            twin_version=7,
            actor=clinician,
            purpose=PURPOSE,
        )
    with pytest.raises(StoreError, match="put_artifact"):
        store.add_result(
            "P0001",
            kind="sweep",
            label="x",
            summary={},
            provenance={},
            artifacts={"m": "a" * 64},
            twin_version=1,
            actor=clinician,
            purpose=PURPOSE,
        )
    engineer = Actor("dev_e", "device_engineer")
    store.add_result(
        "P0001",
        kind="sweep",
        label="design A",
        summary={"dp_mmhg": 3.0},
        provenance={},
        artifacts={},
        twin_version=1,
        actor=engineer,
        purpose="sweep",
    )
    with pytest.raises(AccessDenied):
        store.add_result(
            "P0001",
            kind="rehearsal",
            label="x",
            summary={},
            provenance={},
            artifacts={},
            twin_version=1,
            actor=engineer,
            purpose="sweep",
        )
    assert [r["outcome"] for r in audit_rows(store)] == [
        "success",
        "failure",
        "failure",
        "success",
        "denied",
    ]
    assert store.verify_audit().ok


def test_identifying_meta_and_bad_input_are_refused(store, clinician):
    with pytest.raises(InputError, match="PatientName"):
        store.create_patient(
            "P0003", actor=clinician, purpose=PURPOSE, meta={"PatientName": "DOE^JOHN"}
        )
    with pytest.raises(InputError, match="pseudonym"):
        store.create_patient("../etc", actor=clinician, purpose=PURPOSE)
    with pytest.raises(InputError, match="purpose"):
        store.list_patients(actor=clinician, purpose=" ")
    with pytest.raises(InputError, match="role"):
        Actor("x", "nurse")
    assert audit_rows(store) == []  # nothing was accessed


def test_duplicate_patient_is_a_failure(store, clinician):
    store.create_patient("P0004", actor=clinician, purpose=PURPOSE)
    with pytest.raises(StoreError, match="exists already"):
        store.create_patient("P0004", actor=clinician, purpose=PURPOSE)
    assert [r["outcome"] for r in audit_rows(store)] == ["success", "failure"]


def test_load_twin_without_twin_type_gives_the_state_dict(tmp_path, clinician):
    # the store sits below the twin package: without twin_type it refuses to guess the class
    with Store(tmp_path / "s2") as s:
        s.save_twin(make_twin(), actor=clinician, purpose=PURPOSE, reason="built")
        with pytest.raises(StoreError, match="twin_type"):
            s.load_twin("P0001", actor=clinician, purpose=PURPOSE)
        state = s.load_twin_state("P0001", actor=clinician, purpose=PURPOSE)
        assert PatientTwin.from_dict(state).version == 1


def test_ensure_patient_is_idempotent_and_audited(store, clinician, researcher):
    assert store.ensure_patient("P0005", actor=clinician, purpose=PURPOSE) is True
    assert store.ensure_patient("P0005", actor=clinician, purpose=PURPOSE) is False
    with pytest.raises(AccessDenied):
        store.ensure_patient("P0006", actor=researcher, purpose=PURPOSE)
    rows = audit_rows(store)
    assert summary(rows) == [
        ("dr_a", "create", "P0005", "success"),
        ("dr_a", "create", "P0005", "success"),
        ("res_b", "create", "P0006", "denied"),
    ]
    assert '"created":false' in rows[1]["details"].replace(" ", "")


def test_supersede_keeps_history(store, clinician):
    store.save_twin(make_twin(), actor=clinician, purpose=PURPOSE, reason="first scan")
    rebuilt = make_twin(hr=90.0)  # a rebuild from a new scan starts at version 0
    with pytest.raises(StoreError, match="version conflict"):
        store.save_twin(rebuilt, actor=clinician, purpose=PURPOSE, reason="second scan")
    v = store.save_twin(
        rebuilt, actor=clinician, purpose=PURPOSE, reason="second scan", supersede=True
    )
    assert v == 2
    loaded = store.load_twin("P0001", actor=clinician, purpose=PURPOSE)
    assert [h["reason"] for h in loaded.history] == ["first scan", "second scan"]
    assert loaded.physiology.heart_rate_bpm == 90.0


def test_pseudonym_key_is_created_once_and_stable(store, tmp_path, monkeypatch):
    monkeypatch.delenv("CARDIOTWIN_PSEUDONYM_KEY", raising=False)
    key = store.pseudonym_key()
    assert len(key) == 32
    assert store.pseudonym_key() == key
    assert Store(store.root).pseudonym_key() == key
    assert oct((store.root / "pseudonym.key").stat().st_mode & 0o777) == oct(0o600)
    monkeypatch.setenv("CARDIOTWIN_PSEUDONYM_KEY", "ab" * 32)
    assert store.pseudonym_key() == bytes.fromhex("ab" * 32)


def test_failed_transaction_leaves_neither_data_nor_audit(store, clinician, monkeypatch):
    # Make the audit append fail inside the transaction: the twin row must roll back with it.
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(AuditChain, "append", broken)
    with pytest.raises(RuntimeError):
        store.save_twin(make_twin(), actor=clinician, purpose=PURPOSE, reason="built")
    monkeypatch.undo()
    con = sqlite3.connect(store.root / "cardiotwin.sqlite")
    assert con.execute("SELECT COUNT(*) FROM twin_versions").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM patients").fetchone()[0] == 0
    con.close()
    assert audit_rows(store) == []
    assert store.save_twin(make_twin(), actor=clinician, purpose=PURPOSE, reason="built") == 1
    assert store.verify_audit().ok
