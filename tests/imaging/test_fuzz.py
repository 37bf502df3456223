"""Fuzz test of the DICOM reader (cardiotwin.imaging.dicom): bad input raises only cardiotwin errors.

Real files are mutated — byte flips, truncations, insertions, and header values set to garbage
(image size, bits, pixel representation, spacings, orientation, position, rescale, frames,
transfer syntax) — and put in a folder next to the untouched slices of their series.
:func:`list_series` and :func:`read_series` must then either succeed (with finite values) or raise
a :class:`~cardiotwin.errors.CardiotwinError` subclass: never a raw pydicom / numpy / OS error.

Seeds: a small phantom series (3 slices), a 3-phase Enhanced CT multi-frame file (built as in
test_multiframe.py) and, from the shared corpus (``shared_data`` fixture), the raw and JPEG-LS
files of dcm_qa_ts (Siemens MR) and one slice of the JPEG 2000 CT.
Hypothesis runs derandomised (fixed examples) so CI is reproducible.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

from cardiotwin.errors import CardiotwinError
from cardiotwin.imaging.dicom import list_series, read_series, write_ct_series
from cardiotwin.imaging.volume import Volume

from .test_multiframe import _enhanced_ct, _phase_volumes

N_EXAMPLES_PER_KIND = 40  # x 4 kinds = 160 examples
OUTCOMES: dict[str, int] = {}

GARBAGE_NUMBERS = ["abc", "", "nan", "inf", "-inf", "1e309", "0", "-1", "1\\2", "1\\2\\3\\4\\5\\6\\7",
                   "99999999999", "0.0\\0.0", " ", "1e-300", "-0"]
US_VALUES = [0, 1, 2, 3, 7, 12, 15, 17, 31, 64, 255, 65535]
#: keyword -> value strategy (DS/IS/CS/UI keywords take strings, US ones integers)
HEADER_FIELDS = {
    "Rows": st.sampled_from(US_VALUES),
    "Columns": st.sampled_from(US_VALUES),
    "BitsAllocated": st.sampled_from(US_VALUES),
    "BitsStored": st.sampled_from(US_VALUES),
    "HighBit": st.sampled_from(US_VALUES),
    "PixelRepresentation": st.sampled_from(US_VALUES),
    "SamplesPerPixel": st.sampled_from(US_VALUES),
    "PixelSpacing": st.sampled_from(GARBAGE_NUMBERS),
    "ImageOrientationPatient": st.sampled_from(
        [*GARBAGE_NUMBERS, "0\\0\\0\\0\\0\\0", "1\\0\\0\\1\\0\\0", "1\\0\\0\\0\\1"]),
    "ImagePositionPatient": st.sampled_from([*GARBAGE_NUMBERS, "1e308\\1e308\\1e308"]),
    "RescaleSlope": st.sampled_from([*GARBAGE_NUMBERS, "1e38", "1e300"]),
    "RescaleIntercept": st.sampled_from(GARBAGE_NUMBERS),
    "NumberOfFrames": st.sampled_from(["0", "2", "-3", "abc", "100000"]),
    "PhotometricInterpretation": st.sampled_from(["RGB", "MONOCHROME1", "PALETTE COLOR", "", "X"]),
    "SliceThickness": st.sampled_from(GARBAGE_NUMBERS),
    "SeriesInstanceUID": st.sampled_from(["", "1.2.3", "abc", "1." * 40]),
    "Modality": st.sampled_from(["", "MR", "CT", "\\"]),
    "TransferSyntaxUID": st.sampled_from(
        ["1.2.3", "", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5"]),
}


@pytest.fixture(scope="module")
def seeds(shared_data, small_phantom, tmp_path_factory) -> list[list[Path]]:
    """Seed series: lists of files; the first file of each is the one mutated."""
    root = tmp_path_factory.mktemp("fuzz_seeds")
    ct = small_phantom.ct
    crop = Volume(ct.array[30:33, 20:44, 10:30].copy(), ct.spacing_mm,
                  tuple(ct.index_to_physical(np.array([10, 20, 30]))), ct.direction)
    phantom = write_ct_series(crop, root / "phantom")
    ts = shared_data / "dicom" / "dcm_qa_ts" / "In"
    by_ts = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID): f
             for f in sorted(ts.glob("*.dcm"))}
    j2k = sorted((shared_data / "dicom" / "totalseg_ct_j2k" / "dicom").iterdir())[0]
    enhanced = _enhanced_ct(_phase_volumes(ct), root / "enhanced.dcm")  # 3 phases x 14 frames
    return [phantom, [by_ts[ExplicitVRLittleEndian]], [by_ts[JPEGLSLossless]], [j2k], [enhanced]]


def _mutate_header(data: bytes, keyword: str, value) -> bytes | None:
    from io import BytesIO

    ds = pydicom.dcmread(BytesIO(data))
    target = ds.file_meta if keyword == "TransferSyntaxUID" else ds
    try:
        setattr(target, keyword, value)
        out = BytesIO()
        ds.save_as(out, enforce_file_format=False)
    except Exception:  # noqa: BLE001 - pydicom refuses to write some garbage: not an example
        return None
    return out.getvalue()


_BY_KIND = {
    "header": st.sampled_from(sorted(HEADER_FIELDS)).flatmap(
        lambda k: st.tuples(st.just(k), HEADER_FIELDS[k])),
    "flip": st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8),
    "truncate": st.floats(0, 1),
    "insert": st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16)),
}

def _apply(data: bytes, mutation) -> bytes | None:
    kind, arg = mutation
    header_end = min(len(data), 2048)  # most changes hit the header, where structure lives
    if kind == "flip":
        buf = bytearray(data)
        for frac, x in arg:
            buf[min(int(frac * header_end), len(buf) - 1)] ^= x
        return bytes(buf)
    if kind == "truncate":
        return data[: int(arg * len(data))]
    if kind == "insert":
        pos = int(arg[0] * header_end)
        return data[:pos] + arg[1] + data[pos:]
    keyword, value = arg
    return _mutate_header(data, keyword, value)


@pytest.mark.parametrize("kind", sorted(_BY_KIND))
@settings(max_examples=N_EXAMPLES_PER_KIND, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(which=st.integers(0, 4), data=st.data(), resample=st.booleans())
def test_mutated_files_raise_only_cardiotwin_errors(seeds, kind, which, data, resample):
    files = seeds[which]
    mutation = (kind, data.draw(_BY_KIND[kind], label="mutation"))
    mutated = _apply(files[0].read_bytes(), mutation)
    if mutated is None:
        OUTCOMES["not writable"] = OUTCOMES.get("not writable", 0) + 1
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "victim.dcm").write_bytes(mutated)
        for f in files[1:]:
            shutil.copy(f, folder / f.name)
        outcome = []
        for call in (lambda: list_series(folder),
                     lambda: read_series(folder, min_slices=1, resample=resample)):
            try:
                result = call()
            except CardiotwinError as exc:
                outcome.append(type(exc).__name__)
                continue
            if hasattr(result, "array"):
                assert np.all(np.isfinite(result.array))  # no inf/NaN escapes as "values"
            outcome.append("ok")
    key = f"{mutation[0]}: list {outcome[0]}, read {outcome[1]}"
    OUTCOMES[key] = OUTCOMES.get(key, 0) + 1


def test_fuzz_outcomes_summary(shared_data):
    """Runs after the fuzz tests (file order): both outcomes occur, among >= 150 examples.
    (Takes ``shared_data`` so that without the corpus it stops with the fixture's message.)"""
    total = sum(OUTCOMES.values())
    print("fuzz outcomes:", dict(sorted(OUTCOMES.items())))
    assert total >= 150
    assert any("read ok" in k for k in OUTCOMES) and any("read DicomError" in k for k in OUTCOMES)
