"""The command line as a user types it (typer's CliRunner runs the real commands in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardiotwin.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def store_home(tmp_path, monkeypatch):
    """Commands without --store use $CARDIOTWIN_HOME: a fresh store per test, never the repo."""
    home = tmp_path / "home"
    monkeypatch.setenv("CARDIOTWIN_HOME", str(home))
    return home


def _audit(store_dir, action: str) -> list[dict]:
    from cardiotwin.store import Actor
    from cardiotwin.workflows import open_store

    st = open_store(store_dir)
    assert st.verify_audit().ok
    officer = Actor(username="po", role="privacy_officer", client="test")
    return [r for r in st.audit_records(actor=officer, purpose="audit review")
            if r["action"] == action]


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


def test_dicom_scan_uses_the_store_pseudonyms_and_is_audited(shared_data, store_home):
    from pydicom import dcmread

    from cardiotwin.imaging.deid import pseudonym
    from cardiotwin.workflows import open_store

    src = shared_data / "dicom" / "dcm_qa_ct_ge"
    res = runner.invoke(app, ["dicom", "scan", str(src), "--json"])
    assert res.exit_code == 0, res.output
    first = next(p for p in sorted(src.rglob("*.dcm")))
    expected = pseudonym(str(dcmread(first, stop_before_pixels=True).PatientID),
                         open_store(store_home).pseudonym_key())
    assert [p["label"] for p in json.loads(res.output)["patients"]] == [expected]
    (rec,) = _audit(store_home, "scan")
    assert rec["outcome"] == "success" and rec["details"]["pseudonyms"] == [expected]
    assert rec["patient_pseudonym"] == expected  # one patient: filed under them
    # 28 slices + Ref/_2.json + LICENSE (files looked at); one series
    assert rec["details"]["files"] == 30 and rec["details"]["series"] == 1
    assert str(src) not in json.dumps(rec)  # no path of identified data in the audit trail


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
    recs = _audit(store_dir, "deidentify")
    assert len(recs) == 1 and recs[0]["outcome"] == "success"
    assert recs[0]["details"]["files"] == 28 and recs[0]["details"]["pseudonyms"] == [expected]
    assert recs[0]["patient_pseudonym"] == expected
    assert st.verify_audit().ok

    # A researcher may not de-identify identified data: refused, audited, nothing written.
    denied = runner.invoke(app, ["dicom", "deid", str(src), str(tmp_path / "deid2"), "--store",
                                 str(store_dir), "--role", "researcher"])
    assert denied.exit_code == 1 and "may not" in denied.output
    assert not (tmp_path / "deid2").exists()
    assert st.verify_audit().ok


# --------------------------------------------------------------------------------- dicom convert


def test_dicom_convert_tilted_ge_ct_needs_resample_and_matches_the_reader(shared_data, tmp_path):
    import nibabel as nib
    import numpy as np

    from cardiotwin.imaging.dicom import read_series

    src = shared_data / "dicom" / "dcm_qa_ct_ge"  # 18.5° gantry tilt, uneven steps (README)
    out = tmp_path / "ge.nii.gz"
    refused = runner.invoke(app, ["dicom", "convert", str(src), str(out)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    text = " ".join(refused.output.split())
    assert "gantry tilt" in text and "--resample" in text and not out.exists()

    res = runner.invoke(app, ["dicom", "convert", str(src), str(out), "--resample"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "512 x 611 x 56" in text and "resampled uneven slice spacing" in text
    ref = read_series(src, resample=True)
    img = nib.load(str(out))
    # NIfTI sform/qform: voxel (i, j, k) -> RAS mm = diag(-1, -1, 1) LPS (NIfTI-1 standard);
    # the affine is stored in float32 (1.5e-5 mm ulp at 200 mm: half of it is the rounding).
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ref.affine
    assert img.shape == ref.shape[::-1]
    np.testing.assert_allclose(img.affine, ras, atol=1e-5, rtol=0)
    np.testing.assert_allclose(img.get_qform(), ras, atol=1e-5, rtol=0)
    assert int(img.header["sform_code"]) == int(img.header["qform_code"]) == 1
    assert np.array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), ref.array)
    # nothing of the patient in the header: the description is generic
    assert img.header["descrip"].tobytes().rstrip(b"\0") == b"cardiotwin CT volume"
    exists = runner.invoke(app, ["dicom", "convert", str(src), str(out), "--resample"])
    assert exists.exit_code == 1 and "--force" in exists.output


def test_dicom_convert_is_audited_with_pseudonym_and_output_hash(shared_data, tmp_path,
                                                                 store_home):
    from cardiotwin.provenance import sha256_file

    src = shared_data / "dicom" / "dcm_qa_ct_ge"
    out = tmp_path / "ge.nrrd"
    refused = runner.invoke(app, ["dicom", "convert", str(src), str(out)])  # tilted: refused
    assert refused.exit_code == 1 and not out.exists()
    res = runner.invoke(app, ["dicom", "convert", str(src), str(out), "--resample"])
    assert res.exit_code == 0, res.output
    failed, done = _audit(store_home, "convert")
    assert failed["outcome"] == "failure" and failed["details"] == {"error": "DicomError"}
    assert done["outcome"] == "success"
    assert done["details"]["output_sha256"] == sha256_file(out)
    assert done["details"]["format"] == "nrrd" and done["details"]["shape"] == [56, 611, 512]
    assert done["details"]["pseudonym"].startswith("PT-")
    assert done["details"]["pseudonym"] in res.output
    assert done["patient_pseudonym"] == done["details"]["pseudonym"]
    assert failed["patient_pseudonym"] is None  # refused before the patient was known


def test_dicom_convert_jpeg2000_ct_to_nrrd_reads_back_equal(shared_data, tmp_path):
    import numpy as np

    from cardiotwin.imaging.dicom import read_series
    from cardiotwin.imaging.export import read_nrrd

    src = shared_data / "dicom" / "totalseg_ct_j2k" / "dicom"  # 20 slices, JPEG 2000 (README)
    out = tmp_path / "ct.nrrd"
    res = runner.invoke(app, ["dicom", "convert", str(src), str(out)])
    assert res.exit_code == 0, res.output
    assert "512 x 512 x 20" in res.output and "no (voxels as stored)" in res.output
    ref, back = read_series(src), read_nrrd(out)
    assert np.array_equal(back.array, ref.array)
    # NRRD stores the geometry as decimal text in float64: equal to 1e-9 mm
    np.testing.assert_allclose(back.origin_mm, ref.origin_mm, atol=1e-9, rtol=0)
    np.testing.assert_allclose(back.spacing_mm, ref.spacing_mm, atol=1e-9, rtol=0)
    np.testing.assert_allclose(back.direction, ref.direction, atol=1e-9, rtol=0)
    header = out.read_bytes().split(b"\n\n", 1)[0]
    assert b"Anonymized" not in header and b"patient" not in header.lower()


def test_dicom_convert_mosaic_file_and_wrong_inputs(shared_data, tmp_path):
    import nibabel as nib

    ts = shared_data / "dicom" / "dcm_qa_ts" / "In"
    res = runner.invoke(app, ["dicom", "convert", str(ts / "1.dcm"), str(tmp_path / "m.nii")])
    assert res.exit_code == 0, res.output
    assert nib.load(str(tmp_path / "m.nii")).shape == (64, 64, 35)  # Siemens mosaic, 35 slices
    # the folder holds the mosaic 9 times (data README): refused, pointing at one file
    dup = runner.invoke(app, ["dicom", "convert", str(ts), str(tmp_path / "d.nii")])
    assert dup.exit_code == 1 and "one file" in " ".join(dup.output.split())
    many = runner.invoke(app, ["dicom", "convert", str(shared_data / "dicom"),
                               str(tmp_path / "x.nii")])
    assert many.exit_code == 1 and "--select" in many.output and "Traceback" not in many.output
    bad = runner.invoke(app, ["dicom", "convert", str(ts), str(tmp_path / "x.txt")])
    assert bad.exit_code == 1 and ".nii.gz" in bad.output


def test_rehearse_pulsatile_prints_the_cycle_table_and_plots_it(coarse_demo):
    pseudonym = coarse_demo["twin"].pseudonym
    store_dir = coarse_demo["store"].root
    res = runner.invoke(app, ["rehearse", pseudonym, "--size", "23", "--pulsatile",
                              "--t-end-ms", "30", "--store", str(store_dir)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "pulsatile, 30 ms" in out and "EOA, Gorlin" in out and "Mean transvalvular" in out
    png = next(Path(store_dir, "runs", pseudonym).glob("*23mm*_cycle/cycle_comparison.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    bad = runner.invoke(app, ["rehearse", pseudonym, "--pulsatile", "--dt-ms", "50",
                              "--store", str(store_dir)])
    assert bad.exit_code == 1 and "dt_ms must be in [0.05, 5] ms" in " ".join(bad.output.split())


def test_segment_writes_labels_with_a_sidecar_and_evaluate_scores_them(tmp_path, store_home):
    """`phantom write` → `segment DICOM -o` → `segment --evaluate` against the phantom's truth:
    the built-in segmentation of the default phantom (2 mm) scores Dice ≥ 0.95 on the LV blood
    pool and aorta, the read is audited under the patient's pseudonym, and the sidecar names
    the structures."""
    res = runner.invoke(app, ["phantom", "write", str(tmp_path / "ph"), "--spacing", "2"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "seg.nii.gz"
    res = runner.invoke(app, ["segment", str(tmp_path / "ph" / "dicom"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "seg.json").read_text())
    assert {"lv_blood", "aorta"} <= set(side["structures"]) and side["volumes_ml"]["aorta"] > 50
    [rec] = _audit(store_home, "segment")
    assert rec["outcome"] == "success" and rec["patient_pseudonym"] == side["pseudonym"]
    res = runner.invoke(app, ["segment", "--evaluate", str(out),
                              str(tmp_path / "ph" / "labels.nii.gz")], terminal_width=200)
    assert res.exit_code == 0, res.output
    dice = {line.split("│")[1].strip(): float(line.split("│")[2])
            for line in res.output.splitlines() if line.count("│") > 3}
    assert dice["lv_blood"] >= 0.95 and dice["aorta"] >= 0.95, res.output
    # the thresholds an error message may recommend are options of the command
    res = runner.invoke(app, ["segment", str(tmp_path / "ph" / "dicom"), "-o",
                              str(tmp_path / "seg250.nii.gz"), "--blood-threshold", "250"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "seg250.json").read_text())["blood_threshold_hu"] == 250.0
    # a mapping that names no structure in common says what to do
    res = runner.invoke(app, ["segment", "--evaluate", str(out),
                              str(tmp_path / "ph" / "labels.nii.gz"), "--map", "valve=6",
                              "--truth-map", "aorta=3"])
    assert res.exit_code != 0 and "share no structure" in res.output


def test_twin_build_refuses_a_scan_without_a_heart(shared_data, store_home):
    """The real abdominal CT (venous phase, no heart in view): `twin build` stops with the reason
    and a remedy, exit code 1, no traceback, and nothing is stored."""
    res = runner.invoke(app, ["twin", "build",
                              str(shared_data / "dicom" / "totalseg_ct_j2k" / "dicom"),
                              "--no-flow"])
    assert res.exit_code == 1, res.output
    assert "heart is not in the field of view" in res.output
    assert "Traceback" not in res.output
    from cardiotwin.store import Actor
    from cardiotwin.workflows import list_patients, open_store

    actor = Actor(username="dr", role="clinician", client="test")
    assert list_patients(store=open_store(store_home), actor=actor) == []


def test_dicom_scan_names_truncated_files(tmp_path):
    import numpy as np

    from cardiotwin.imaging.dicom import write_ct_series
    from cardiotwin.imaging.volume import Volume

    vol = Volume(np.zeros((3, 8, 8), np.float32), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    files = write_ct_series(vol, tmp_path / "dcm" / "s1")
    for f in files:
        f.write_bytes(f.read_bytes()[:-40])
    res = runner.invoke(app, ["dicom", "scan", str(tmp_path / "dcm")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "3 DICOM file(s) skipped: s1/CT00001.dcm (truncated: pixel data shorter than its " \
           "header announces (88 of 128 bytes))" in text


def test_dicom_convert_picks_one_volume_of_a_diffusion_series(tmp_path):
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    from cardiotwin.imaging.dicom import write_ct_series
    from cardiotwin.imaging.export import read_nifti
    from cardiotwin.imaging.volume import Volume

    uid = generate_uid(entropy_srcs=["dwi"])
    for b in (0, 1000):
        vol = Volume(np.full((3, 8, 8), float(b // 10), np.float32), (1.0, 1.0, 2.0),
                     (0.0, 0.0, 0.0), np.eye(3))
        for f in write_ct_series(vol, tmp_path / "dwi" / f"b{b}", series_uid=uid, seed=b):
            ds = pydicom.dcmread(f)
            ds.DiffusionBValue = float(b)
            ds.save_as(f)
    refused = runner.invoke(app, ["dicom", "convert", str(tmp_path / "dwi"),
                                  str(tmp_path / "all.nii.gz")])
    assert refused.exit_code == 1
    text = " ".join(refused.output.split())
    assert "[0] b=0 (3 slices); [1] b=1000 (3 slices)" in text and "--volume b=1000" in text
    res = runner.invoke(app, ["dicom", "convert", str(tmp_path / "dwi"),
                              str(tmp_path / "b1000.nii.gz"), "--volume", "b=1000"])
    assert res.exit_code == 0, res.output
    assert "volume      b=1000" in res.output
    assert np.all(read_nifti(tmp_path / "b1000.nii.gz").array == 100.0)


def test_dicom_convert_single_image_needs_min_slices_1(tmp_path):
    import numpy as np

    from cardiotwin.imaging.dicom import write_ct_series
    from cardiotwin.imaging.volume import Volume

    vol = Volume(np.zeros((1, 8, 8), np.float32), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0), np.eye(3))
    write_ct_series(vol, tmp_path / "one")
    refused = runner.invoke(app, ["dicom", "convert", str(tmp_path / "one"),
                                  str(tmp_path / "a.nii.gz")])
    assert refused.exit_code == 1 and "--min-slices 1" in " ".join(refused.output.split())
    res = runner.invoke(app, ["dicom", "convert", str(tmp_path / "one"),
                              str(tmp_path / "a.nii.gz"), "--min-slices", "1"])
    assert res.exit_code == 0, res.output
    assert "1 x 8 x 8" not in res.output and "8 x 8 x 1" in res.output


def test_dicom_deid_names_and_offers_the_burned_in_option(tmp_path, store_home):
    """A burn-in-prone image (US) without BurnedInAnnotation is refused with the option that
    accepts it after checking, and that option is on the command line."""
    import pydicom

    res = runner.invoke(app, ["phantom", "write", str(tmp_path / "ph"), "--spacing", "3"])
    assert res.exit_code == 0, res.output
    src = tmp_path / "us"
    src.mkdir()
    f = sorted((tmp_path / "ph" / "dicom").glob("*.dcm"))[0]
    ds = pydicom.dcmread(f)
    ds.Modality = "US"
    if "BurnedInAnnotation" in ds:
        del ds.BurnedInAnnotation
    ds.save_as(src / "us.dcm")
    res = runner.invoke(app, ["dicom", "deid", str(src), str(tmp_path / "out1")])
    assert res.exit_code == 1 and "--accept-unknown-burned-in" in res.output, res.output
    res = runner.invoke(app, ["dicom", "deid", str(src), str(tmp_path / "out2"),
                              "--accept-unknown-burned-in"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out2").rglob("*.dcm"))) == 1


def test_dicom_scan_lists_the_volumes_of_a_multi_volume_series(tmp_path):
    """Three echoes at the same positions: `dicom scan` lists each volume with the option that
    reads it, its slice count and echo time; --json carries them too."""
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    from cardiotwin.imaging.dicom import write_ct_series
    from cardiotwin.imaging.volume import Volume

    uid, study = generate_uid(entropy_srcs=["me"]), generate_uid(entropy_srcs=["me-study"])
    for echo in (1, 2, 3):
        vol = Volume(np.full((3, 8, 8), 10.0 * echo, np.float32), (1.0, 1.0, 2.0),
                     (0.0, 0.0, 0.0), np.eye(3))
        for f in write_ct_series(vol, tmp_path / "me" / f"e{echo}", series_uid=uid,
                                 study_uid=study, seed=echo):
            ds = pydicom.dcmread(f)
            ds.EchoNumbers, ds.EchoTime = echo, 4.5 * echo
            ds.save_as(f)
    res = runner.invoke(app, ["dicom", "scan", str(tmp_path / "me")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "series 1 holds 3 volumes at the same slice positions" in text
    assert "--volume 1 or --volume echo=2 3 slices, TE 9 ms" in text
    res = runner.invoke(app, ["dicom", "scan", str(tmp_path / "me"), "--json"])
    [series] = json.loads(res.output)["patients"][0]["studies"][0]["series"]
    assert [v["label"] for v in series["volumes"]] == ["echo=1", "echo=2", "echo=3"]


def test_twin_build_and_segment_read_one_volume_of_a_multi_volume_series(tmp_path, store_home):
    """The phantom CT (2 mm) acquired twice in one series: acquisition 1 holds no contrast
    (air), acquisition 2 the phantom. `twin build` refuses the series naming --volume; with
    --volume it reads that volume (acquisition 1 has no blood pool to find); `segment --volume
    acquisition=2` segments the phantom and records the volume it read."""
    import numpy as np
    import pydicom

    from cardiotwin import workflows
    from cardiotwin.imaging.dicom import write_ct_series

    study = workflows.write_phantom(tmp_path / "ph", spacing_mm=2.0, write_labels=False)
    first = pydicom.dcmread(study.files[0])
    air = study.phantom.ct.with_array(np.full(study.phantom.ct.shape, -1000.0, np.float32))
    for f in write_ct_series(air, study.dicom_dir / "acq1", series_uid=first.SeriesInstanceUID,
                             study_uid=first.StudyInstanceUID, seed="air",
                             frame_of_reference_uid=first.FrameOfReferenceUID):
        ds = pydicom.dcmread(f)
        ds.AcquisitionNumber = 1
        ds.save_as(f)
    for f in study.files:
        ds = pydicom.dcmread(f)
        ds.AcquisitionNumber = 2
        ds.save_as(f)
    dicom_dir = str(study.dicom_dir)
    refused = runner.invoke(app, ["twin", "build", dicom_dir, "--no-flow"])
    assert refused.exit_code == 1
    text = " ".join(refused.output.split())
    assert "2 volumes at the same slice positions, told apart by AcquisitionNumber" in text
    assert "--volume 1 or --volume acquisition=2 of cardiotwin dicom convert, twin build" in text
    res = runner.invoke(app, ["twin", "build", dicom_dir, "--no-flow", "--volume",
                              "acquisition=1"])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "no contrast blood pool" in text
    assert "--blood-search-range LOW HIGH" in text  # the settings it names are options
    res = runner.invoke(app, ["twin", "build", dicom_dir, "--no-flow", "--volume", "7"])
    assert res.exit_code == 1 and "has no volume 7" in " ".join(res.output.split())
    res = runner.invoke(app, ["twin", "build", dicom_dir, "--no-flow", "--phase", "350",
                              "--volume", "1"])
    assert res.exit_code == 1 and "no phase 350.0 to pick" in " ".join(res.output.split())
    out = tmp_path / "seg.nii.gz"
    res = runner.invoke(app, ["segment", dicom_dir, "-o", str(out), "--volume", "acquisition=2",
                              "--blood-search-range", "120", "900", "--left-heart-only"])
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "seg.json").read_text())
    assert side["provenance"]["parameters"]["volume"] == "acquisition=2"
    assert side["volumes_ml"]["aorta"] > 50
    assert "myocardium" not in side["volumes_ml"]  # --left-heart-only skips it
