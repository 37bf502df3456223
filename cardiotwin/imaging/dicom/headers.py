"""One DICOM file's header, read up to its pixel data into a :class:`HeaderRecord`.

This is the one header reader of :mod:`cardiotwin.imaging`: the series reader
(:func:`~cardiotwin.imaging.dicom.read_series`, :func:`~cardiotwin.imaging.dicom.list_series`) and
the folder catalogue (:func:`cardiotwin.imaging.discovery.scan_tree`) both parse files with
:func:`parse_header`, so a series chosen from a catalogue is read without parsing its headers a
second time (pass the catalogue's records to ``read_series(..., headers=...)``).

Speed. :func:`parse_header` with ``fast=True`` walks the headers of plain little-endian Part 10
files (explicit or implicit VR, defined lengths, no functional groups, ASCII/Latin-1/UTF-8) with
``struct`` and decodes only the top-level values the reader and the catalogue use; uncompressed
pixel data are then read straight from the recorded offset. Every other file (big endian, deflate,
encapsulated/compressed with an unusual layout, enhanced multi-frame, undefined-length sequences,
an element running past the end of the file) is parsed by pydicom. Trade-off: a corrupt
*structure* (lengths, truncation, out-of-order tags) is still found while scanning and a garbage
value of a used element fails the read naming the file (:func:`check_header`), but a garbage value
in an element the reader does not use does not make the file unreadable.

Patient names are never written to the log.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from cardiotwin.errors import DicomError

__all__ = [
    "CSA_HEADER_CREATOR",
    "IMPLICIT_VR_LE",
    "MEDIA_STORAGE_DIRECTORY",
    "MR_HEADER_CREATOR",
    "NATIVE_LE_SYNTAXES",
    "NO_SERIES_UID",
    "FastHeader",
    "HeaderRecord",
    "check_header",
    "header_number",
    "header_text",
    "is_dicom_file",
    "parse_header",
    "private_value",
    "read_header",
    "salvage_series_uid",
]

#: SOP class of a DICOMDIR (Media Storage Directory Storage, PS3.4 Annex I).
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: Native (uncompressed, little endian) transfer syntaxes decoded without pydicom's pixel handlers.
NATIVE_LE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
#: Implicit VR Little Endian, the default transfer syntax.
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
#: Compressed (encapsulated) transfer syntaxes: explicit VR little endian headers, read by the
#: fast header walk like the native ones.
_ENCAPSULATED_LE = frozenset(
    str(u) for u in pydicom.uid.AllTransferSyntaxes if u.is_encapsulated and not u.is_deflated
)
#: Key of the files whose SeriesInstanceUID is empty or absent (some anonymisers blank it).
NO_SERIES_UID = "<no SeriesInstanceUID>"
#: Creators of the Siemens private blocks that describe a mosaic: (0029,xx10) CSA image header,
#: (0019,xx0A) NumberOfImagesInMosaic.
CSA_HEADER_CREATOR = "SIEMENS CSA HEADER"
MR_HEADER_CREATOR = "SIEMENS MR HEADER"


@dataclass(frozen=True, eq=False)
class HeaderRecord:
    """One readable DICOM file: its header (no pixel data) and where its pixel data start.

    Attributes
    ----------
    path : Path
        The file.
    ds : pydicom.Dataset or FastHeader
        Its header: a pydicom Dataset read up to the pixel data, or the decoded top-level values
        of the fast walk (read like a Dataset).
    pixel_offset : int
        File offset (bytes) of the first element after the header (the pixel data).
    size_bytes, mtime_ns : int
        Size and modification time of the file when it was parsed (-1: unknown); a record whose
        file has changed since is not reused (:meth:`is_current`).
    """

    path: Path
    ds: Dataset | FastHeader
    pixel_offset: int
    size_bytes: int = -1
    mtime_ns: int = -1

    def is_current(self) -> bool:
        """True when the file still has the size and modification time it was parsed with."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == (self.size_bytes, self.mtime_ns)


def is_dicom_file(f: Path) -> bool:
    """True when ``f`` has the DICOM Part 10 ``DICM`` marker at byte 128.

    Raises
    ------
    DicomError
        If the file cannot be read.
    """
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DicomError(f"cannot read {f}: {exc.strerror}") from exc
    return len(head) == 132 and head[128:132] == b"DICM"


_UID_RE = re.compile(rb"\x20\x00\x0e\x00(?:UI(..)|(....))", re.DOTALL)


def salvage_series_uid(f: Path) -> str | None:
    """SeriesInstanceUID (0020,000E) found in the raw bytes of a file pydicom cannot parse."""
    try:
        with open(f, "rb") as fh:
            data = fh.read(1 << 20)
    except OSError:
        return None
    for m in _UID_RE.finditer(data, 132):
        n = struct.unpack("<H", m.group(1))[0] if m.group(1) else struct.unpack("<I", m.group(2))[0]
        if not 0 < n <= 64:
            continue
        raw = data[m.end() : m.end() + n]
        uid = raw.rstrip(b"\x00 ").decode("ascii", "replace")
        if len(raw) == n and re.fullmatch(r"[0-9]+(\.[0-9]+)+", uid):
            return uid
    return None


def header_text(ds: Dataset | FastHeader, keyword: str) -> str:
    """The value of ``keyword`` as stripped text ("" when absent or empty)."""
    return str(getattr(ds, keyword, "") or "").strip()

# Fast header path. pydicom builds an element object per header value (~0.6 ms per CT file); the
# reader and the catalogue need about fifty top-level values. For the common layout — a Part 10
# file in explicit or implicit VR little endian, defined lengths, no functional-group sequences —
# the elements are walked with struct and only the wanted ones are decoded. Anything else (big
# endian, deflate, undefined lengths, enhanced multi-frame, unusual character sets, a length running
# past the end of the file) returns None and the file is parsed by pydicom instead, so the checks
# are the same.

#: Values the series reader uses (converted, i.e. checked, by :func:`check_header`).
_READER_KEYWORDS = (
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "StudyDate",
    "Modality",
    "Manufacturer",
    "StudyDescription",
    "SeriesDescription",
    "PatientID",
    "SliceThickness",
    "SpacingBetweenSlices",
    "TriggerTime",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "FrameOfReferenceUID",
    "TemporalPositionIdentifier",
    "NominalPercentageOfCardiacPhase",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "PixelSpacing",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
)
#: Further values the catalogue (:mod:`cardiotwin.imaging.discovery`) uses; decoded by the fast walk
#: but not checked for the reader.
_CATALOG_KEYWORDS = (
    "SOPInstanceUID",
    "PatientName",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "ConvolutionKernel",
    "ContrastBolusAgent",
    "CardiacCyclePosition",
    "NominalInterval",
    "HeartRate",
    "FrameTime",
    "FrameTimeVector",
    "CineRate",
    "DiffusionBValue",
    "EchoNumbers",
    "EchoTime",
    "AcquisitionNumber",
)
_WANTED = {
    int(pydicom.datadict.tag_for_keyword(kw)): (kw, pydicom.datadict.dictionary_VR(kw))
    for kw in _READER_KEYWORDS + _CATALOG_KEYWORDS
}
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ENHANCED_TAGS = frozenset({0x52009229, 0x52009230})  # Shared/PerFrame Functional Groups
_PIXEL_DATA = 0x7FE00010
_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
#: Private groups of the Siemens headers a mosaic is described by, and the low byte of the element
#: used in each: (0019,xx0A) NumberOfImagesInMosaic, (0029,xx10) CSA image header.
_MOSAIC_GROUPS = {0x0019: 0x0A, 0x0029: 0x10}


class _Meta:
    """The file meta values the reader uses (TransferSyntaxUID, MediaStorageSOPClassUID)."""

    def __init__(self, ts: str, sop_class: str) -> None:
        self.TransferSyntaxUID = pydicom.uid.UID(ts)
        self.MediaStorageSOPClassUID = pydicom.uid.UID(sop_class)


class FastHeader:
    """Decoded top-level values of one file, read like a pydicom Dataset (``getattr``, ``in``).

    ``private`` holds the raw bytes of the private elements of the Siemens groups 0019 and 0029
    (creators and values), which locate and describe a mosaic (see :func:`private_value`).
    """

    def __init__(
        self, values: dict[str, Any], meta: _Meta, private: dict[int, bytes] | None = None
    ) -> None:
        self._values = values
        self.file_meta = meta
        self.private = private or {}

    def __getattr__(self, keyword: str) -> Any:
        try:
            return self.__dict__["_values"][keyword]
        except KeyError:
            raise AttributeError(keyword) from None

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._values

    def get(self, keyword: str, default: Any = None) -> Any:
        """The value of ``keyword``, or ``default`` (as :meth:`pydicom.Dataset.get`)."""
        return self._values.get(keyword, default)


def _fast_value(vr: str, raw: bytes, codec: str) -> Any:
    if vr in _BINARY:
        fmt = _BINARY[vr]
        n = len(raw) // struct.calcsize(fmt)
        vals = struct.unpack(f"<{n}{fmt}", raw[: n * struct.calcsize(fmt)])
        return vals[0] if n == 1 else list(vals)
    text = raw.decode(codec, "replace").rstrip("\x00 ")
    if vr in ("DS", "IS", "CS", "UI", "AS", "DA", "TM"):
        text = text.strip(" \x00")
    if vr in ("LT", "ST", "UT"):
        return text
    parts = [p.strip() if vr in ("DS", "IS", "CS") else p for p in text.split("\\")]
    return parts[0] if len(parts) == 1 else parts


def _fast_header(f: Path) -> tuple[FastHeader, int] | None:
    """(header, pixel data offset) of a little-endian Part 10 file (native or encapsulated pixel
    data), or None (use pydicom)."""
    with open(f, "rb") as fh:
        data = fh.read(1 << 16)
        out = _fast_walk(data)
        if out is None and len(data) == 1 << 16:  # a long header (e.g. Siemens CSA): read more
            data += fh.read((1 << 22) - len(data))
            out = _fast_walk(data)
    return out


def _fast_walk(data: bytes) -> tuple[FastHeader, int] | None:
    size = len(data)
    if size < 144 or data[128:132] != b"DICM":
        return None
    unpack = struct.unpack_from
    pos, ts, sop_class = 132, "", ""
    while pos + 8 <= size:  # file meta group: explicit VR little endian
        group, elem = unpack("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > size:
                return None
            length, start = unpack("<I", data, pos + 8)[0], pos + 12
        else:
            length, start = unpack("<H", data, pos + 6)[0], pos + 8
        if length == 0xFFFFFFFF or start + length > size:
            return None
        if elem == 0x0010:
            ts = data[start : start + length].decode("ascii", "replace").strip("\x00 ")
        elif elem == 0x0002:
            sop_class = data[start : start + length].decode("ascii", "replace").strip("\x00 ")
        pos = start + length
    if ts not in NATIVE_LE_SYNTAXES and ts not in _ENCAPSULATED_LE:
        return None
    implicit = ts == IMPLICIT_VR_LE
    raw: dict[str, tuple[str, bytes]] = {}
    private: dict[int, bytes] = {}
    last_tag = -1
    offset = -1
    while pos + 8 <= size:
        group, elem = unpack("<HH", data, pos)
        tag = (group << 16) | elem
        if tag <= last_tag or tag in _ENHANCED_TAGS:
            return None
        last_tag = tag
        if tag == _PIXEL_DATA:
            offset = pos
            break
        if implicit:
            vr_b, length, start = b"", unpack("<I", data, pos + 4)[0], pos + 8
        else:
            vr_b = data[pos + 4 : pos + 6]
            if vr_b in _LONG_VRS:
                if pos + 12 > size:
                    return None
                length, start = unpack("<I", data, pos + 8)[0], pos + 12
            elif vr_b.isalpha() and vr_b.isupper():
                length, start = unpack("<H", data, pos + 6)[0], pos + 8
            else:
                return None
        if length == 0xFFFFFFFF or start + length > size:
            return None
        wanted = _WANTED.get(tag)
        if wanted is not None:
            if not implicit and vr_b.decode() != wanted[1]:
                return None  # an unexpected VR: let pydicom interpret it
            raw[wanted[0]] = (wanted[1], data[start : start + length])
        elif (
            group in _MOSAIC_GROUPS
            and (elem < 0x0100 or (elem & 0xFF) == _MOSAIC_GROUPS[group])
            and b"MOSAIC" in raw.get("ImageType", ("", b""))[1].upper()
        ):  # only a mosaic's private creators and the two values used (not e.g. 100 kB of CSA
            # series header per slice of a Siemens CT)
            private[tag] = data[start : start + length]
        pos = start + length
    if offset < 0:
        return None  # no pixel data in this buffer (or at all): pydicom decides
    charset = raw.get("SpecificCharacterSet", ("CS", b""))[1].decode("latin-1").strip(" \x00")
    codec = _CODECS.get(charset)
    if codec is None:
        return None
    values = {kw: _fast_value(vr, b, codec) for kw, (vr, b) in raw.items() if b}
    return FastHeader(values, _Meta(ts, sop_class), private), offset


def parse_header(f: Path, *, fast: bool = False) -> HeaderRecord:
    """Parse ``f`` up to its pixel data (no value is checked; see :func:`check_header`).

    Parameters
    ----------
    f : Path
        A DICOM Part 10 file.
    fast : bool, default False
        Walk plain little-endian files with ``struct`` (see the module docstring); other files,
        and every file when false, are parsed by pydicom.

    Returns
    -------
    HeaderRecord

    Raises
    ------
    Exception
        Whatever the parser raises for a truncated or corrupt file (pydicom raises many types).
    """
    st = f.stat()
    parsed = _fast_header(f) if fast else None
    if parsed is not None:
        ds, offset = parsed
    else:
        with open(f, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            offset = fh.tell()
    return HeaderRecord(f, ds, offset, st.st_size, st.st_mtime_ns)


def check_header(record: HeaderRecord) -> tuple[HeaderRecord | None, str]:
    """What the series reader makes of a parsed header: (record, series key), or (None, why).

    ``None`` comes with the reason a file is not read (a DICOMDIR, a non-image instance). The
    series key is the SeriesInstanceUID, or :data:`NO_SERIES_UID` when it is blank. Every value
    the reader uses is converted here, so a garbage value fails now, naming the file.

    Raises
    ------
    ValueError, TypeError, ...
        For a truncated header or a value that cannot be converted (any parser error).
    """
    f, ds, offset = record.path, record.ds, record.pixel_offset
    sop_class = str(
        getattr(ds, "SOPClassUID", "")
        or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
    )
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return None, "DICOMDIR"
    if "Rows" not in ds or "Columns" not in ds:
        # pydicom stops quietly at the end of a truncated file: an image object whose header
        # ends before Rows/Columns and pixel data is truncated, not a non-image object
        if offset >= os.path.getsize(f) and "Image" in pydicom.uid.UID(sop_class).name:
            raise ValueError(f"the header ends at byte {offset} before Rows/Columns and pixel data")
        if header_text(ds, "SeriesInstanceUID"):
            return None, f"not an image instance (SOP class {pydicom.uid.UID(sop_class).name})"
    # every value the reader uses is converted now, so a garbage value (or a VR pydicom cannot
    # decode, e.g. a bit-flipped 'LO' → 'LN') fails here, naming the file, and not deep inside
    # a later read (the fast header holds only values it has already decoded)
    if not isinstance(ds, FastHeader):
        for kw in _READER_KEYWORDS:
            getattr(ds, kw, None)
    uid = header_text(ds, "SeriesInstanceUID")
    for kw in ("Modality", "SeriesDescription", "StudyInstanceUID"):
        header_text(ds, kw)
    int(getattr(ds, "NumberOfFrames", 1) or 1)
    if not uid:
        if "Rows" not in ds or "Columns" not in ds:
            raise ValueError("no SeriesInstanceUID and no Rows/Columns: not an image instance")
        uid = NO_SERIES_UID
    return record, uid


def read_header(f: Path, *, fast: bool = False) -> tuple[HeaderRecord | None, str]:
    """:func:`parse_header` then :func:`check_header`: (record, series key), or (None, why)."""
    return check_header(parse_header(f, fast=fast))


def private_value(ds: Any, group: int, creator: str, element: int) -> Any:
    """Value of private element ``(group, xx<element>)`` of the block reserved by ``creator``.

    Raw bytes from a :class:`FastHeader`; the pydicom value (bytes, int, ...) otherwise; None
    when the creator or the element is absent.
    """
    if isinstance(ds, FastHeader):
        for block in range(0x10, 0x100):
            owner = ds.private.get((group << 16) | block)
            if owner is not None and owner.decode("latin-1").strip(" \x00") == creator:
                return ds.private.get((group << 16) | (block << 8) | element)
        return None
    try:
        return ds.private_block(group, creator)[element].value
    except (KeyError, ValueError):
        return None


def header_number(value: Any, default: float | None, keyword: str, where: str) -> float | None:
    """``value`` as a finite float, ``default`` when absent or empty.

    Raises
    ------
    DicomError
        If the value is not a number or not finite (the message names ``keyword`` and ``where``).
    """
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise DicomError(f"{where} has an unreadable {keyword} ({value!r})") from exc
    if not np.isfinite(out):
        raise DicomError(f"{where} has a non-finite {keyword} ({value!r})")
    return out

