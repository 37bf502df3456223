"""The command line as a user types it (typer's CliRunner runs the real commands in-process)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cardiotwin.cli import app

runner = CliRunner()


def test_help_lists_every_command_group():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for group in ("demo", "twin", "device", "audit", "phantom", "users", "dicom", "rehearse"):
        assert group in res.output


def test_dicom_scan_json_on_the_real_corpus(shared_data):
    # The corpus README: three series (the Siemens MR in 9 transfer syntaxes shares one series
    # UID, the tilted GE head CT with 28 slices, the 20-slice JPEG 2000 abdominal CT).
    res = runner.invoke(app, ["dicom", "scan", str(shared_data / "dicom"), "--json",
                              "--select", "largest-ct"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    series = [s for p in out["patients"] for st in p["studies"] for s in st["series"]]
    assert sorted(s["n_files"] for s in series) == [9, 20, 28]
    # largest-ct skips the tilted GE series (it cannot be read without resampling) and picks the
    # 512 x 512 x 20 JPEG 2000 CT.
    assert len(out["selection"]["files"]) == 20


def test_dicom_scan_table_names_problems_and_bad_paths(shared_data, tmp_path):
    res = runner.invoke(app, ["dicom", "scan", str(shared_data / "dicom" / "dcm_qa_ct_ge")])
    assert res.exit_code == 0, res.output
    assert "gantry tilt" in res.output and "uneven slice spacing" in res.output
    missing = runner.invoke(app, ["dicom", "scan", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1
    assert "Traceback" not in missing.output


def test_dicom_deid_uses_the_store_key_and_is_audited(shared_data, tmp_path):
    from pydicom import dcmread

    from cardiotwin.imaging.deid import pseudonym
    from cardiotwin.store import Actor
    from cardiotwin.workflows import open_store

    src = shared_data / "dicom" / "dcm_qa_ct_ge"
    store_dir, out = tmp_path / "store", tmp_path / "deid"
    res = runner.invoke(app, ["dicom", "deid", str(src), str(out), "--store", str(store_dir),
                              "--shift-dates"])
    assert res.exit_code == 0, res.output
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == 28  # the GE head CT has 28 slices (data README)
    st = open_store(store_dir)
    original = dcmread(next(p for p in sorted(src.rglob("*")) if p.is_file()
                            and p.suffix.lower() not in (".json", ".txt", ".md")),
                       stop_before_pixels=True)
    expected = pseudonym(str(original.PatientID), st.pseudonym_key())
    assert {str(dcmread(p, stop_before_pixels=True).PatientID) for p in written} == {expected}
    officer = Actor(username="po", role="privacy_officer", client="test")
    recs = [r for r in st.audit_records(actor=officer, purpose="audit review")
            if r["action"] == "deidentify"]
    assert len(recs) == 1 and recs[0]["outcome"] == "success"
    assert recs[0]["details"]["files"] == 28 and recs[0]["details"]["pseudonyms"] == [expected]
    assert st.verify_audit().ok

    # A researcher may not de-identify identified data: refused, audited, nothing written.
    denied = runner.invoke(app, ["dicom", "deid", str(src), str(tmp_path / "deid2"), "--store",
                                 str(store_dir), "--role", "researcher"])
    assert denied.exit_code == 1 and "may not" in denied.output
    assert not (tmp_path / "deid2").exists()
    assert st.verify_audit().ok
