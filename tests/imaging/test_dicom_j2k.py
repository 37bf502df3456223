"""JPEG 2000 fast path of the DICOM reader (cardiotwin.imaging.dicom, imagecodecs in threads).

The reference is pydicom's own decoding (``Dataset.pixel_array`` through the
pylibjpeg-openjpeg plugin): JPEG 2000 Lossless must reproduce it bit for bit, and every case the
fast path does not handle exactly (signedness differing from PixelRepresentation, corrupt
codestreams) must fall back to pydicom and give pydicom's result or its error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from cardiotwin.errors import DicomError
from cardiotwin.imaging.dicom import headers as dicom_headers
from cardiotwin.imaging.dicom import pixels as dicom_pixels
from cardiotwin.imaging.dicom import read_series, write_ct_series
from cardiotwin.imaging.dicom.series import scan_series


def _transcode(files: list[Path], out_dir: Path, *, edit=None) -> list[Path]:
    """Copies of ``files`` in JPEG 2000 Lossless (pydicom's pylibjpeg-openjpeg encoder)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        if edit is not None:
            edit(ds)
        ds.compress(JPEG2000Lossless)
        target = out_dir / f.name
        ds.save_as(target, enforce_file_format=True)
        out.append(target)
    return out


def _entries(folder: Path) -> list:
    groups, bad = scan_series(folder, fast=True)
    assert not bad
    (entries,) = groups.values()
    return sorted(entries, key=lambda e: e.path.name)


@pytest.fixture(scope="module")
def phantom_series(small_phantom, tmp_path_factory) -> tuple[Path, Path]:
    """(uncompressed folder, JPEG 2000 Lossless folder) of the small phantom CT."""
    root = tmp_path_factory.mktemp("j2k")
    files = write_ct_series(small_phantom.ct, root / "raw")
    _transcode(files, root / "j2k")
    return root / "raw", root / "j2k"


def test_jpeg2000_series_reads_exactly_like_the_uncompressed_one(phantom_series):
    raw, j2k = phantom_series
    a, b = read_series(raw), read_series(j2k)
    assert b.array.shape == a.array.shape
    np.testing.assert_array_equal(b.array, a.array)  # lossless: bit for bit
    np.testing.assert_allclose(b.origin_mm, a.origin_mm, atol=0, rtol=0)


def test_fast_path_decodes_every_file_exactly_like_pydicom(phantom_series):
    _, j2k = phantom_series
    entries = _entries(j2k)
    assert all(isinstance(e.ds, dicom_headers.FastHeader) for e in entries)  # header fast path too
    for e in entries:
        px = dicom_pixels._j2k_pixels(e, 1, int(e.ds.Rows), int(e.ds.Columns))
        assert px is not None, f"{e.path}: the fast path refused a plain signed 16-bit file"
        ref = pydicom.dcmread(e.path).pixel_array
        assert px.dtype == ref.dtype == np.int16
        np.testing.assert_array_equal(px[0], ref)


def test_unsigned_12_bit_mr_like_pixels(tmp_path, small_phantom):
    """BitsStored 12, PixelRepresentation 0 (as most MR): same values as pydicom."""
    files = write_ct_series(small_phantom.ct, tmp_path / "raw")[:3]

    def unsigned12(ds):
        px = ds.pixel_array.astype(np.int32)
        px = np.clip(px - px.min(), 0, 4095).astype(np.uint16)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
        ds.PixelData = px.tobytes()

    out = _transcode(files, tmp_path / "j2k", edit=unsigned12)
    for e in _entries(out[0].parent):
        px = dicom_pixels._j2k_pixels(e, 1, int(e.ds.Rows), int(e.ds.Columns))
        ref = pydicom.dcmread(e.path).pixel_array
        assert px is not None and px.dtype == ref.dtype == np.uint16
        np.testing.assert_array_equal(px[0], ref)


def test_multiframe_jpeg2000(tmp_path, small_phantom):
    """Three frames in one encapsulated file: each frame in order."""
    (f,) = write_ct_series(small_phantom.ct, tmp_path / "raw")[:1]
    ds = pydicom.dcmread(f)
    frames = np.stack([ds.pixel_array + 100 * k for k in range(3)]).astype(np.int16)
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    ds.compress(JPEG2000Lossless)
    target = tmp_path / "multi.dcm"
    ds.save_as(target, enforce_file_format=True)
    (e,) = _entries(tmp_path / "multi.dcm")
    px = dicom_pixels._j2k_pixels(e, 3, int(ds.Rows), int(ds.Columns))
    assert px is not None
    np.testing.assert_array_equal(px, frames)


def test_signedness_mismatch_falls_back_to_pydicom(tmp_path, small_phantom):
    """A codestream encoded unsigned in a file that says PixelRepresentation 1: imagecodecs
    returns uint16, which is not what the header declares, so pydicom decides (its J2K sign
    correction) and the reader returns pydicom's values."""
    files = write_ct_series(small_phantom.ct, tmp_path / "raw")[:2]

    def unsigned(ds):
        px = np.clip(ds.pixel_array.astype(np.int32) + 1024, 0, 4095).astype(np.uint16)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
        ds.PixelData = px.tobytes()

    out = _transcode(files, tmp_path / "j2k", edit=unsigned)
    for f in out:  # the header now claims signed pixels; the codestream stays unsigned
        ds = pydicom.dcmread(f)
        ds.PixelRepresentation = 1
        ds.save_as(f, enforce_file_format=True)
    for e in _entries(tmp_path / "j2k"):
        assert dicom_pixels._j2k_pixels(e, 1, int(e.ds.Rows), int(e.ds.Columns)) is None
        ref = pydicom.dcmread(e.path).pixel_array
        got = dicom_pixels._file_pixels(e, 1, int(e.ds.Rows), int(e.ds.Columns), "test")
        np.testing.assert_array_equal(got[0], ref)


@pytest.mark.parametrize("damage", ["zeroed", "truncated"])
def test_corrupt_codestream_is_a_dicom_error_naming_the_file(phantom_series, tmp_path, damage):
    _, j2k = phantom_series
    folder = tmp_path / "bad"
    folder.mkdir()
    for f in sorted(j2k.iterdir()):
        (folder / f.name).write_bytes(f.read_bytes())
    victim = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(victim)
    (frame,) = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)
    if damage == "zeroed":
        broken = frame[:40] + bytes(len(frame) - 40)  # header kept, code blocks zeroed
    else:
        broken = frame[: len(frame) // 2]
    ds.PixelData = pydicom.encaps.encapsulate([broken])
    ds.save_as(victim, enforce_file_format=True)
    with pytest.raises(DicomError, match=victim.name) as info:
        read_series(folder)
    assert "decode" in str(info.value) or "corrupt" in str(info.value)


def test_corpus_jpeg2000_ct_fast_path_equals_pydicom(shared_data):
    """Every file of the real JPEG 2000 CT (totalseg_ct_j2k) decodes to pydicom's pixels."""
    folder = shared_data / "dicom" / "totalseg_ct_j2k" / "dicom"
    entries = _entries(folder)
    assert len(entries) == 20
    for e in entries:
        px = dicom_pixels._j2k_pixels(e, 1, int(e.ds.Rows), int(e.ds.Columns))
        assert px is not None, e.path
        np.testing.assert_array_equal(px[0], pydicom.dcmread(e.path).pixel_array)
