"""Tests of series discovery and selection (cardiotwin.imaging.discovery).

A generated tree (2 patients, 3 studies, 6 series, junk files, nested folders) is written once per
module from a coarse phantom with :func:`cardiotwin.imaging.dicom.write_ct_series`; attributes a
scanner would write (ImageType, ContrastBolusAgent, ConvolutionKernel, cardiac phase, trigger
time) are then set with pydicom. Its ground truth is what was written. The real corpus in
``shared/data/dicom`` is checked against the facts in its README and dcm2niix's sidecars.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet

from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging import discovery
from cardiotwin.imaging.deid import pseudonym
from cardiotwin.imaging.dicom import NO_SERIES_UID, read_series, write_ct_series
from cardiotwin.imaging.discovery import scan_tree, select_series
from cardiotwin.imaging.phantom import PhantomParameters, make_phantom
from cardiotwin.imaging.volume import Volume

KEY = b"k" * 32
NAMES = ("DOE^JANE", "ROE^RICHARD")
IDS = ("MRN-0001", "MRN-0002")
UID_ROOT = "1.2.826.0.1.3680043.10.999."
STUDY = {s: f"{UID_ROOT}1.{i}" for i, s in enumerate(("a1", "a2", "b1"), start=1)}
SERIES = {s: f"{UID_ROOT}2.{i}" for i, s in enumerate(
    ("cta", "native", "scout", "mpr", "multiphase", "oblique"), start=1)}
PHASES = tuple(range(5, 100, 10))  # 5, 15, ..., 95 % of R-R
RR_MS = 1000.0  # NominalInterval of the multi-phase series


def _edit(files: list[Path], **attrs) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.save_as(f, enforce_file_format=True)


def _rotation_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    """The generated tree and its ground truth."""
    root = tmp_path_factory.mktemp("tree")
    ph = make_phantom(PhantomParameters(spacing_mm=(3.0, 3.0, 3.0), noise_hu=0.0), seed=0)
    ct = ph.ct.array
    org = ph.ct.origin_mm
    eye = np.eye(3)

    def vol(arr, spacing, direction=eye):
        return Volume(np.ascontiguousarray(arr), spacing, org, direction)

    pa = dict(patient_name=NAMES[0], patient_id=IDS[0])
    pb = dict(patient_name=NAMES[1], patient_id=IDS[1])
    a1 = root / "DOE_scans" / "2024" / "study1"
    files = {}
    files["cta"] = write_ct_series(
        vol(ct[10:50], (3.0, 3.0, 3.0)), a1 / "cta", **pa, study_uid=STUDY["a1"],
        series_uid=SERIES["cta"], series_number=2, series_description="CTA 0.75 Bv40")
    _edit(files["cta"], ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], ConvolutionKernel="Bv40",
          ContrastBolusAgent="Iomeprol 350")
    files["native"] = write_ct_series(
        vol(ct[10:60:2], (3.0, 3.0, 6.0)), a1 / "native", **pa, study_uid=STUDY["a1"],
        series_uid=SERIES["native"], series_number=1, series_description="Calcium score")
    _edit(files["native"], ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], ConvolutionKernel="Qr36",
          ContrastBolusAgent="")
    files["scout"] = write_ct_series(
        vol(ct[30:31], (3.0, 3.0, 3.0)), a1 / "scout", **pa, study_uid=STUDY["a1"],
        series_uid=SERIES["scout"], series_number=0, series_description="Topogram")
    _edit(files["scout"], ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
          ContrastBolusAgent="Iomeprol 350")
    # A DERIVED reformat with more voxels than the CTA: largest-contrast-ct must still prefer
    # the ORIGINAL series.
    files["mpr"] = write_ct_series(
        vol(ct[5:50], (3.0, 3.0, 3.0)), a1 / "deep" / "nested" / "mpr", **pa, study_uid=STUDY["a1"],
        series_uid=SERIES["mpr"], series_number=3, series_description="MPR heart")
    _edit(files["mpr"], ContrastBolusAgent="Iomeprol 350")
    # Second study: one series holding 10 cardiac phases of 8 slices, one folder per phase.
    mp = []
    for p in PHASES:
        fs = write_ct_series(
            vol(ct[20:28], (3.0, 3.0, 3.0)), root / "DOE_scans" / "2025" / "cine" / f"p{p:02d}",
            **pa, study_uid=STUDY["a2"], series_uid=SERIES["multiphase"], series_number=5,
            series_description="Cardiac 4D", seed=f"phase{p}")
        _edit(fs, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], ContrastBolusAgent="Iohexol",
              NominalPercentageOfCardiacPhase=p, TriggerTime=p / 100 * RR_MS,
              NominalInterval=RR_MS, ConvolutionKernel="B26f")
        mp += fs
    files["multiphase"] = mp
    # Patient B: an oblique (20° about x), anisotropic series with a trigger time only.
    files["oblique"] = write_ct_series(
        vol(ct[5:25], (2.5, 2.0, 1.25), _rotation_x(20.0)), root / "ROE" / "ct", **pb,
        study_uid=STUDY["b1"], series_uid=SERIES["oblique"], series_number=4,
        series_description="Oblique CTA")
    _edit(files["oblique"], ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], ContrastBolusAgent="Yes",
          TriggerTime=612.0, HeartRate=60, ConvolutionKernel="FC43")
    # Junk: text, a file truncated inside the pixel data, one truncated inside the header, an
    # empty file and a macOS resource fork.
    (root / "README.txt").write_text("scans of the cardiology department\n")
    data = files["cta"][0].read_bytes()
    (root / "ROE" / "broken_pixels.dcm").write_bytes(data[: int(len(data) * 0.6)])
    (root / "ROE" / "broken_header.dcm").write_bytes(data[:300])
    (root / "ROE" / "empty.dcm").write_bytes(b"")
    (root / "ROE" / "._CT00001.dcm").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 200)
    return {"root": root, "files": files, "shape": ct.shape}


@pytest.fixture(scope="module")
def catalog(tree):
    return scan_tree(tree["root"], key=KEY)


def test_tree_counts_and_grouping(tree, catalog):
    # Ground truth: what the fixture wrote.
    assert len(catalog.patients) == 2
    assert len(catalog.studies) == 3
    assert len(catalog.series) == 6
    by_patient = {p.label: sorted(st.study_uid for st in p.studies) for p in catalog.patients}
    assert by_patient == {pseudonym(IDS[0], KEY): sorted([STUDY["a1"], STUDY["a2"]]),
                          pseudonym(IDS[1], KEY): [STUDY["b1"]]}
    _, nj, ni = tree["shape"]
    expect = {  # series: (files, frames, slices, rows, cols)
        "cta": (40, 40, 40, nj, ni), "native": (25, 25, 25, nj, ni),
        "scout": (1, 1, 1, nj, ni), "mpr": (45, 45, 45, nj, ni),
        "multiphase": (80, 80, 8, nj, ni), "oblique": (20, 20, 20, nj, ni)}
    for name, (n_files, n_frames, n_slices, rows, cols) in expect.items():
        se = catalog.get(SERIES[name])
        assert (se.n_files, se.n_frames, se.n_slices, se.rows, se.columns) == (
            n_files, n_frames, n_slices, rows, cols), name
        assert set(se.files) == set(tree["files"][name]), name
    assert catalog.pseudonymised and catalog.dicomdirs == ()
    assert catalog.n_files == sum(len(f) for f in tree["files"].values()) + 5


def test_series_attributes(catalog):
    cta, native, scout = (catalog.get(SERIES[s]) for s in ("cta", "native", "scout"))
    mpr, mp, obl = (catalog.get(SERIES[s]) for s in ("mpr", "multiphase", "oblique"))
    # Spacing (di, dj, dk) as written; dk estimated from the positions (oblique: along the normal).
    for se, sp in ((cta, (3, 3, 3)), (native, (3, 3, 6)), (mp, (3, 3, 3)), (obl, (2.5, 2.0, 1.25))):
        np.testing.assert_allclose(se.spacing_mm, sp, atol=1e-6, rtol=0)
        assert se.uniform_spacing and se.problems == ()
    assert scout.spacing_mm[2] is None and scout.is_localizer and scout.image_kind == (
        "ORIGINAL+LOCALIZER")
    assert (cta.contrast, native.contrast, mpr.contrast, obl.contrast) == (True, False, True, True)
    assert cta.contrast_agent == "Iomeprol 350"
    assert (cta.kernel, native.kernel, obl.kernel) == ("Bv40", "Qr36", "FC43")
    assert cta.is_original and not mpr.is_original and mpr.image_kind == "DERIVED"
    assert mp.phases_pct == tuple(float(p) for p in PHASES) and mp.n_phases == 10
    np.testing.assert_allclose(mp.trigger_times_ms, [p * 10.0 for p in PHASES], atol=1e-9)
    assert mp.rr_interval_ms == RR_MS
    assert obl.trigger_times_ms == (612.0,) and obl.n_phases == 1 and obl.rr_interval_ms == 1000.0
    # The CTA's description says "0.75" (slice thickness) but no "%": no phase invented.
    assert cta.phases_pct == () and cta.n_phases == 1
    assert cta.series_datetime == "2024-01-01T09:00:00" and cta.modality == "CT"


def test_skipped_files_are_listed_not_raised(tree, catalog):
    reasons = {s.path.name: s.reason for s in catalog.skipped}
    assert set(reasons) == {"README.txt", "broken_pixels.dcm", "broken_header.dcm", "empty.dcm",
                            "._CT00001.dcm"}
    assert "no 'DICM' marker" in reasons["README.txt"]
    assert "truncated" in reasons["broken_pixels.dcm"]
    assert "truncated header" in reasons["broken_header.dcm"]


def test_no_patient_identity_anywhere(tree, caplog):
    with caplog.at_level(logging.DEBUG, logger="cardiotwin"):
        cat = scan_tree(tree["root"])
        with pytest.raises(DicomError) as err:
            select_series(cat, rule="uid-prefix=9.9")
    rows = json.dumps(cat.to_rows())
    texts = [repr(cat), cat.to_json(), rows, str(err.value), caplog.text, str(cat.to_dict())]
    for text in texts:
        for secret in (*NAMES, *IDS, "DOE^", "MRN"):
            assert secret not in text
    labels = sorted(p.label for p in cat.patients)
    assert all(lab.startswith("anon-") for lab in labels)
    assert sorted(p.label for p in scan_tree(tree["root"]).patients) == labels  # same process


def test_pseudonyms_are_stable_with_the_key(tree, catalog):
    again = scan_tree(tree["root"], key=KEY)
    assert [p.label for p in again.patients] == [p.label for p in catalog.patients]
    other = scan_tree(tree["root"], key=b"x" * 32)
    assert not {p.label for p in other.patients} & {p.label for p in catalog.patients}


def test_rules_select_the_expected_series(tree, catalog):
    sel = select_series(catalog, rule="largest-contrast-ct")
    assert sel.series_uid == SERIES["cta"]  # ORIGINAL beats the larger DERIVED MPR
    assert sel.files == tuple(sorted(tree["files"]["cta"]))
    vol = read_series(list(sel.files), series_uid=sel.series_uid)
    assert vol.shape == (40, *tree["shape"][1:])
    # largest-ct: the non-contrast series has 25 slices of 6 mm, fewer voxels than the CTA
    assert select_series(catalog, rule="largest-ct").series_uid == SERIES["cta"]

    for rule in ("phase=75", "phase=75%", "phase=72"):
        sel = select_series(catalog, rule=rule)
        assert sel.series_uid == SERIES["multiphase"] and sel.phase_pct == 75.0, rule
        assert len(sel.files) == 8 and all(f.parent.name == "p75" for f in sel.files)
    vol = read_series(list(select_series(catalog, rule="phase=75").files),
                      series_uid=SERIES["multiphase"])
    assert vol.shape[0] == 8
    np.testing.assert_allclose(vol.spacing_mm, (3, 3, 3), atol=1e-6)
    # 61 % of R-R: the oblique series' trigger time 612 ms / R-R 1000 ms (61.2 %) is nearer
    # than the 65 % phase of the cine series.
    sel = select_series(catalog, rule="phase=61")
    assert sel.series_uid == SERIES["oblique"] and sel.trigger_ms == 612.0
    assert select_series(catalog, rule="trigger=610").series_uid == SERIES["oblique"]
    sel = select_series(catalog, rule="trigger=250ms")
    assert sel.series_uid == SERIES["multiphase"] and sel.trigger_ms in (250.0,)
    assert select_series(catalog, rule=f"uid-prefix={SERIES['oblique']}").series_uid == (
        SERIES["oblique"])
    assert select_series(catalog, uid=SERIES["scout"]).files == tuple(tree["files"]["scout"])


def test_selected_series_is_read_without_parsing_headers_again(catalog, monkeypatch):
    """The scan's header records are what read_series needs: a chosen series' files are not
    parsed a second time, the volume is the same, and a file changed since is parsed again."""
    from cardiotwin.imaging.dicom import series as dicom_series

    sel = select_series(catalog, rule="phase=75")
    assert [h.path for h in sel.headers] == sorted(sel.files)
    expected = read_series(list(sel.files), series_uid=sel.series_uid)
    parsed: list[Path] = []
    real = dicom_series.parse_header

    def counting(f, **kw):
        parsed.append(f)
        return real(f, **kw)

    monkeypatch.setattr(dicom_series, "parse_header", counting)
    vol = read_series(list(sel.files), series_uid=sel.series_uid, headers=sel.headers)
    assert parsed == []
    np.testing.assert_array_equal(vol.array, expected.array)
    np.testing.assert_array_equal(vol.affine, expected.affine)
    assert vol.metadata == expected.metadata
    changed = sel.files[0]
    st = changed.stat()
    try:
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        read_series(list(sel.files), series_uid=sel.series_uid, headers=sel.headers)
    finally:
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert parsed == [changed]


def test_selection_errors_list_what_is_there(catalog):
    with pytest.raises(DicomError, match="matches 6") as err:
        select_series(catalog, rule=f"uid-prefix={UID_ROOT}")
    assert pseudonym(IDS[0], KEY) in str(err.value) and "Topogram" in str(err.value)
    with pytest.raises(DicomError, match="6 series found"):
        select_series(catalog)
    with pytest.raises(DicomError, match="no series with UID"):
        select_series(catalog, uid="1.2.3")
    with pytest.raises(InputError, match="unknown selection rule"):
        select_series(catalog, rule="biggest")
    with pytest.raises(InputError, match="not a number"):
        select_series(catalog, rule="phase=late")
    only_native = discovery.SeriesCatalog(
        catalog.root, (discovery.PatientSummary("PT-X", (discovery.StudySummary(
            STUDY["a1"], "", "", (catalog.get(SERIES["native"]),)),)),))
    with pytest.raises(DicomError, match="no contrast-enhanced CT series"):
        select_series(only_native, rule="largest-contrast-ct")
    with pytest.raises(DicomError, match="no series has NominalPercentage"):
        select_series(only_native, rule="phase=40")


def test_dicomdir_is_followed_and_cross_checked(tree, tmp_path):
    fs = FileSet()
    for f in tree["files"]["cta"] + tree["files"]["scout"]:
        fs.add(f)
    media = tmp_path / "media"
    fs.write(media)  # copies the instances to PT000000/ST000000/SE00000x/IM0000xx + DICOMDIR
    cat = scan_tree(media, key=KEY)
    assert cat.dicomdirs == (media / "DICOMDIR",) and cat.problems == ()
    assert cat.get(SERIES["cta"]).dicomdir_files == 40
    assert cat.get(SERIES["scout"]).dicomdir_files == 1
    # A copy to a case-sensitive disk that lower-cased a name is still resolved.
    im = sorted(p for p in media.rglob("IM*"))
    im[0].rename(im[0].with_name(im[0].name.lower()))
    assert scan_tree(media).problems == ()
    # Missing files are problems, never a crash.
    im[1].unlink()
    shutil.rmtree(next(p for p in media.rglob("SE*") if len(list(p.iterdir())) == 1))
    cat = scan_tree(media, key=KEY)
    text = " ".join(cat.problems)
    assert "2 of 41 referenced file(s) are missing" in text
    assert f"series {SERIES['scout']} is listed in a DICOMDIR but none" in text
    cta = cat.get(SERIES["cta"])
    assert cta.n_files == 39 and any("missing file" in p for p in cta.problems)


def test_multiframe_functional_groups(tmp_path):
    # An enhanced-CT-like object: 4 frames, geometry and phase in functional groups
    # (PS3.3 C.7.6.16); frames 2 mm apart along z, two cardiac phases.
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality, ds.ImageType = "X", "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 4
    ds.NumberOfFrames = 4
    ds.BitsAllocated, ds.SamplesPerPixel = 16, 1
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.7, 0.6]
    ds.SharedFunctionalGroupsSequence = [shared]
    per = []
    for z, pct in ((0, 40), (2, 40), (0, 70), (2, 70)):
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = [0, 0, z]
        item.CardiacSynchronizationSequence = [Dataset()]
        item.CardiacSynchronizationSequence[0].NominalPercentageOfCardiacPhase = pct
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = per
    ds.PixelData = b"\x00" * (4 * 4 * 4 * 2)
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    se = scan_tree(tmp_path).series[0]
    assert (se.n_files, se.n_frames, se.n_slices, se.n_phases) == (1, 4, 2, 2)
    np.testing.assert_allclose(se.spacing_mm, (0.6, 0.7, 2.0), atol=1e-9)
    assert se.phases_pct == (40.0, 70.0) and se.problems == ()


def _cine(path: Path, n: int, *, timing: str) -> Path:
    """A 20-frame MR cine at one slice position (8 x 8 pixels), timed by ``timing``:
    ``"trigger"`` (per-frame NominalCardiacTriggerDelayTime and TemporalPositionIndex),
    ``"index"`` (TemporalPositionIndex only) or ``"frame-time"`` (no functional groups; the Cine
    Module's FrameTime, as an MR/US cine file without enhanced groups has)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def item(**kw) -> Dataset:
        d = Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    enhanced = timing != "frame-time"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ("1.2.840.10008.5.1.4.1.1.4.1" if enhanced
                                            else "1.2.840.10008.5.1.4.1.1.4")  # (Enhanced) MR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality, ds.SeriesDescription = "X", "MR", "cine SA"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 8
    ds.NumberOfFrames = n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if enhanced:
        ds.SharedFunctionalGroupsSequence = [item(
            PlaneOrientationSequence=[item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])],
            PixelMeasuresSequence=[item(PixelSpacing=[1.5, 1.5], SliceThickness=8)],
            PlanePositionSequence=[item(ImagePositionPatient=[0, 0, 10])])]
        per = []
        for k in range(n):
            frame = item(FrameContentSequence=[item(TemporalPositionIndex=k + 1)])
            if timing == "trigger":
                frame.CardiacSynchronizationSequence = [
                    item(NominalCardiacTriggerDelayTime=50.0 * k)]
            per.append(frame)
        ds.PerFrameFunctionalGroupsSequence = per
    else:
        ds.ImageOrientationPatient, ds.PixelSpacing = [1, 0, 0, 0, 1, 0], [1.5, 1.5]
        ds.ImagePositionPatient = [0, 0, 10]
        ds.FrameTime = 50.0
        ds.FrameIncrementPointer = 0x00181063  # (0018,1063) FrameTime
    ds.PixelData = np.arange(n * 64, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(("timing", "span"), [("trigger", "(0–950 ms)"),
                                              ("index", "(temporal positions)"),
                                              ("frame-time", "(every 50 ms)")])
def test_multiframe_cine_is_frames_over_time_not_slices(tmp_path, timing, span):
    # Ground truth: 20 frames written at one position (z = 10 mm), in time.
    _cine(tmp_path / "cine.dcm", 20, timing=timing)
    cat = scan_tree(tmp_path)
    se = cat.series[0]
    assert (se.n_files, se.n_frames, se.n_slices, se.n_phases) == (1, 20, 1, 20)
    row = cat.to_rows()[0]  # what `dicom scan` shows
    assert (row["size"], row["phases"]) == ("8x8x1", f"20 frames over time {span}")
    assert se.is_cine and se.problems == ()
    assert se.size_text == "8x8x1"
    assert se.phases_text == f"20 frames over time {span}"
    assert "cine of 20 frames over time" in str(se)
    assert se.to_dict()["cine"] is True
    if timing == "frame-time":
        assert se.frame_time_ms == 50.0
    if timing == "trigger":
        assert se.trigger_times_ms == tuple(50.0 * k for k in range(20))


def test_progress_and_timing(tree):
    calls = []
    t0 = time.process_time()
    scan_tree(tree["root"], progress=lambda f, m: calls.append((f, m)))
    cpu_s = time.process_time() - t0
    assert calls[-1][0] == 1.0 and all(0 <= f <= 1 for f, _ in calls)
    assert [f for f, _ in calls] == sorted(f for f, _ in calls)
    # Headers only: ~2 ms of CPU per file (measured 0.4 s for these ~210 files); CPU time so a
    # loaded machine does not make it flaky.
    assert cpu_s < 3.0


def test_missing_path_is_a_dicom_error(tmp_path):
    with pytest.raises(DicomError, match="does not exist"):
        scan_tree(tmp_path / "nope")
    assert scan_tree(tmp_path).series == ()


# --------------------------------------------------------------------------------------------
# the real corpus (shared/data/dicom, see its README)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(shared_data):
    return scan_tree(shared_data / "dicom", key=KEY)


def test_corpus_transfer_syntax_set_is_one_series_flagged(corpus, shared_data):
    # dcm_qa_ts: one MR image saved 9 times (README), each with its own SeriesNumber 1..9 but the
    # same SeriesInstanceUID and position: one series of 9 files, flagged (dcm2niix splits them
    # by SeriesNumber, Ref/1.json..9.json).
    ts_dir = shared_data / "dicom" / "dcm_qa_ts" / "In"
    se = next(s for s in corpus.series if s.files[0].parent == ts_dir)
    # each file is a Siemens mosaic of 35 tiles of 64 x 64 (dcm2niix's Ref NIfTIs: 64x64x35)
    assert se.n_files == 9 and se.n_slices == 35 and se.modality == "MR"
    assert (se.rows, se.columns) == (64, 64)
    assert len(se.transfer_syntaxes) == 7  # 5/6 both JPEG lossless SV1, 7/8 both JPEG-LS
    assert any("9 SeriesNumber values" in p for p in se.problems)
    assert any("duplicate slices" in p for p in se.problems)
    assert se.description == json.loads((shared_data / "dicom/dcm_qa_ts/Ref/1.json").read_text())[
        "SeriesDescription"]
    names = {s.path.name for s in corpus.skipped}
    assert {"1.nii", "1.json", "README.md", "LICENSE", "labels.nii.gz"} <= names


def test_corpus_ge_tilted_ct(corpus, shared_data):
    ref = json.loads((shared_data / "dicom/dcm_qa_ct_ge/Ref/_2.json").read_text())
    se = next(s for s in corpus.series if s.files[0].parent.name == "GE")
    assert (se.n_files, se.rows, se.columns, se.n_slices) == (28, 512, 512, 28)
    assert se.kernel == ref["ConvolutionKernel"] and se.modality == ref["Modality"]
    assert se.manufacturer.startswith(ref["Manufacturer"]) and se.is_original
    assert not se.uniform_spacing  # README: uneven spacing of about 1-7 mm
    # Tilt from dcm2niix's ImageOrientationPatientDICOM: acos(0.948324) = 18.50 deg.
    tilt = math.degrees(math.acos(ref["ImageOrientationPatientDICOM"][4]))
    tilt_text = next(p for p in se.problems if "tilt" in p)
    assert abs(float(tilt_text.split("tilt ")[1].rstrip("°)")) - tilt) < 0.1


def test_corpus_jpeg2000_ct_and_selection(corpus):
    se = corpus.get(NO_SERIES_UID)  # this anonymised export has no SeriesInstanceUID
    assert (se.n_files, se.rows, se.columns, se.n_slices) == (20, 512, 512, 20)
    np.testing.assert_allclose(se.spacing_mm, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    assert se.transfer_syntaxes == ("1.2.840.10008.1.2.4.90",)  # JPEG 2000 lossless
    assert se.patient == "unknown-patient" and se.problems == ()
    # ContrastBolusAgent = "APPLIED"; the pixels agree (aorta label 52 median 151 HU vs liver
    # 93 HU with TotalSegmentator's labels.nii.gz, checked once with SimpleITK): enhanced.
    assert se.contrast
    # The GE head CT has more voxels but is tilted and uneven: the regular stack wins.
    assert select_series(corpus, rule="largest-ct").series_uid == NO_SERIES_UID
    assert select_series(corpus, rule="largest-contrast-ct").series_uid == NO_SERIES_UID
    with pytest.raises(DicomError, match="no series has NominalPercentage"):
        select_series(corpus, rule="phase=75")


def _repeated_series(root: Path, tags: list[dict]) -> str:
    """One copy of a small volume per item of ``tags``, in one series (as a diffusion, multi-echo
    or repeated acquisition writes it), the telling attributes set with pydicom."""
    uid = UID_ROOT + "3.1"
    base = np.random.default_rng(3).integers(-100, 300, (4, 8, 6)).astype(np.float32)
    for v, attrs in enumerate(tags):
        vol = Volume(base + 50.0 * v, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
        for f in write_ct_series(vol, root / f"v{v}", series_uid=uid, study_uid=STUDY["a1"],
                                 seed=v):
            ds = pydicom.dcmread(f)
            for k, value in attrs.items():
                setattr(ds, k, value)
            ds.save_as(f)
    return uid


def test_multi_volume_series_is_listed_as_its_volumes(tmp_path):
    """Ground truth: three echoes (EchoNumbers 1-3, TE 5/10/15 ms) of 4 slices at the same
    positions: the scan lists three volumes of 4 slices with their selector and echo time, as
    the reader splits them, and each selector reads the volume written."""
    _repeated_series(tmp_path, [{"EchoNumbers": e, "EchoTime": 5.0 * e} for e in (1, 2, 3)])
    cat = scan_tree(tmp_path)
    se = cat.series[0]
    assert (se.n_files, se.n_slices, se.n_phases) == (12, 4, 1)
    assert [(v.index, v.label, v.n_slices, v.details) for v in se.volumes] == [
        (0, "echo=1", 4, "TE 5 ms"), (1, "echo=2", 4, "TE 10 ms"), (2, "echo=3", 4, "TE 15 ms")]
    assert se.volumes_text == ("[0] echo=1, TE 5 ms (4 slices); [1] echo=2, TE 10 ms (4 slices); "
                               "[2] echo=3, TE 15 ms (4 slices)")
    assert not se.is_cine and "3 volumes)" in str(se)
    [problem] = se.problems
    assert "duplicate slices forming 3 volumes" in problem and "--volume echo=3" in problem
    row = cat.to_rows()[0]
    assert (row["size"], row["phases"], row["volumes"]) == ("8x6x4", "1", "3")
    assert se.to_dict()["volumes"][1] == {"index": 1, "label": "echo=2", "n_slices": 4,
                                          "details": "TE 10 ms"}
    # not chosen as a regular 3-D series by the size rules
    assert "not a regular 3-D stack" in select_series(cat, rule="largest-ct").reason
    sel = select_series(cat, uid=se.series_uid)
    vol = read_series(sel.files, series_uid=sel.series_uid, headers=sel.headers, volume="echo=2")
    assert vol.metadata["volume"] == "echo=2" and vol.shape == (4, 8, 6)


def test_diffusion_volumes_told_apart_by_two_attributes_are_listed(tmp_path):
    _repeated_series(tmp_path, [{"DiffusionBValue": 0.0, "AcquisitionNumber": 1},
                                {"DiffusionBValue": 1000.0, "AcquisitionNumber": 2},
                                {"DiffusionBValue": 1000.0, "AcquisitionNumber": 3}])
    se = scan_tree(tmp_path).series[0]
    assert [v.label for v in se.volumes] == ["b=0,acquisition=1", "b=1000,acquisition=2",
                                             "b=1000,acquisition=3"]
    assert {v.details for v in se.volumes} == {""}


def test_copies_without_a_telling_attribute_have_no_volumes(tmp_path):
    _repeated_series(tmp_path, [{}, {}])
    cat = scan_tree(tmp_path)
    se = cat.series[0]
    assert se.volumes == () and se.to_dict()["volumes"] == [] and cat.to_rows()[0]["volumes"] == ""
    assert "duplicate slices (several acquisitions, echoes or copies" in se.problems[0]
