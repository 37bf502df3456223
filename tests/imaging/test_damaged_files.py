"""Damaged DICOM files met while scanning and building (issue 20 item 9).

A small CT series is written with :func:`cardiotwin.imaging.dicom.write_ct_series` (6 slices of
16 × 16, int16 pixels: 512 bytes of pixel data per file) and then damaged by cutting bytes off
its files; the ground truth is how many bytes were cut.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from cardiotwin import workflows
from cardiotwin.errors import DicomError
from cardiotwin.imaging.dicom import write_ct_series
from cardiotwin.imaging.discovery import check_skipped, scan_tree, select_series
from cardiotwin.imaging.volume import Volume
from cardiotwin.provenance import Provenance
from cardiotwin.workflows._common import read_ct

PIXEL_BYTES = 16 * 16 * 2


def _series(out: Path, series_uid: str, *, contrast_shift: float = 0.0) -> list[Path]:
    arr = np.random.default_rng(0).normal(contrast_shift, 50.0, (6, 16, 16)).astype(np.float32)
    vol = Volume(arr, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3), {})
    return write_ct_series(vol, out, series_uid=series_uid)


def _cut(f: Path, n_bytes: int) -> None:
    data = f.read_bytes()
    f.write_bytes(data[:-n_bytes])


def test_pixel_data_cut_short_is_skipped_with_the_byte_counts(tmp_path):
    files = _series(tmp_path / "ct" / "s1", "1.2.3.1")
    _cut(files[2], 100)  # the header is intact; only the end of the pixel data is missing
    cat = scan_tree(tmp_path)
    assert [s.path for s in cat.skipped] == [files[2]]
    skipped = cat.skipped[0]
    assert skipped.reason == (f"truncated: pixel data shorter than its header announces "
                              f"({PIXEL_BYTES - 100} of {PIXEL_BYTES} bytes)")
    assert skipped.is_dicom and skipped.series_uid == "1.2.3.1"
    # named relative to the folder the user gave
    assert cat.skipped_text().startswith("1 DICOM file(s) skipped: ct/s1/CT00003.dcm (truncated")


def test_folder_of_broken_files_names_them_not_zero_series(tmp_path):
    files = _series(tmp_path / "s1", "1.2.3.1")
    for f in files:
        _cut(f, 300)
    (tmp_path / "notes.txt").write_text("not DICOM")
    cat = scan_tree(tmp_path)
    assert cat.series == ()
    with pytest.raises(DicomError) as err:
        select_series(cat)
    msg = str(err.value)
    assert "0 series found" not in msg
    assert "no readable DICOM series" in msg and "6 DICOM file(s) skipped" in msg
    assert "s1/CT00001.dcm (truncated: pixel data shorter" in msg
    assert "1 non-DICOM file(s) ignored" in msg
    with pytest.raises(DicomError, match="no readable DICOM series.*s1/CT00001.dcm"):
        select_series(cat, rule="largest-ct")


def test_folder_without_dicom_says_so(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DicomError, match=r"1 file\(s\) examined, none of them a DICOM image"):
        select_series(scan_tree(tmp_path))


def test_damaged_file_of_the_chosen_series_is_refused_by_name(tmp_path):
    files = _series(tmp_path / "s1", "1.2.3.1")
    _cut(files[3], 100)
    cat = scan_tree(tmp_path)
    sel = select_series(cat)
    with pytest.raises(DicomError, match=r"s1/CT00004.dcm \(truncated: pixel data shorter.*"
                       r"belong\(s\) to it"):
        check_skipped(cat, sel)


def test_header_cut_in_the_series_folder_may_be_a_slice(tmp_path):
    files = _series(tmp_path / "s1", "1.2.3.1")
    files[3].write_bytes(files[3].read_bytes()[:300])  # UID not recoverable
    cat = scan_tree(tmp_path)
    assert cat.skipped[0].series_uid is None
    with pytest.raises(DicomError, match="s1/CT00004.dcm.*could be among its slices"):
        check_skipped(cat, select_series(cat))


def test_build_reads_the_intact_series_and_warns_about_the_damaged_one(tmp_path, caplog):
    _series(tmp_path / "good", "1.2.3.1")
    bad = _series(tmp_path / "other", "1.2.3.2")
    for f in bad:
        _cut(f, 100)
    store = workflows.open_store(tmp_path / "store")
    with caplog.at_level(logging.WARNING, logger="cardiotwin"):
        ct = read_ct(tmp_path, store=store, series=None, resample=False,
                     prov=Provenance("test"))
    assert ct.shape == (6, 16, 16)
    warned = [r.getMessage() for r in caplog.records if "damaged files of other series" in
              r.getMessage()]
    assert len(warned) == 1 and "6 DICOM file(s) skipped: other/CT00001.dcm (truncated" in \
        warned[0]


def test_build_refuses_a_series_with_a_damaged_slice_naming_it(tmp_path):
    files = _series(tmp_path / "ct", "1.2.3.1")
    _cut(files[1], 100)
    store = workflows.open_store(tmp_path / "store")
    with pytest.raises(DicomError, match=r"skipped: CT00002.dcm \(truncated: pixel data shorter than "
                       r"its header announces \(412 of 512 bytes\)\)"):
        read_ct(tmp_path / "ct", store=store, series=None, resample=False,
                prov=Provenance("test"))
