"""DICOM image series: discovery in a folder tree, reading into a :class:`Volume`, and writing.

Geometry (DICOM PS3.3 C.7.6.2, Image Plane Module; C.7.6.16, Multi-frame Functional Groups)
-----------------------------------------------------------------------------------------
A slice's ``ImageOrientationPatient`` holds the row cosine (direction of increasing column
index, our ``i`` axis) and the column cosine (direction of increasing row index, ``j``);
``PixelSpacing`` is ``[row spacing, column spacing]``, i.e. ``[dj, di]`` — the *reverse* of
:attr:`Volume.spacing_mm`. Slices (files, or frames of an enhanced multi-frame file, whose
geometry comes from the Plane Position / Plane Orientation / Pixel Measures functional groups) are
sorted by the projection of ``ImagePositionPatient`` on the slice normal (row cosine × column
cosine), so the reader returns a volume whose ``k`` axis is that normal, whatever order the files
or frames come in.

Siemens mosaics. An MR image whose ImageType contains ``MOSAIC`` holds ``n`` slices as tiles of a
``g x g`` grid, ``g = ceil(sqrt(n))``, left to right then top to bottom, each ``Rows/g x
Columns/g``; ``n`` is NumberOfImagesInMosaic of the Siemens CSA image header (0029,1010), parsed
with nibabel, else of (0019,100A). Each tile becomes a slice (a frame): the mosaic's
ImagePositionPatient is the corner of the whole image, so tile 0 starts ``(Columns - tile
columns) / 2`` column spacings along the row cosine and ``(Rows - tile rows) / 2`` row spacings
along the column cosine further; tile ``k`` lies ``k`` × SpacingBetweenSlices (else
SliceThickness) along the slice normal, in the direction of the CSA SliceNormalVector (the tiles
are stacked in reverse when it points against row × column). This is dcm2niix's placement: on the
nine transfer syntaxes of dcm_qa_ts the origins agree to 2.4e-5 mm (NIfTI float32) and the voxels
exactly. Several mosaics at the same position (fMRI time points, copies) are refused as duplicate
positions like any other repeated slice: read one file (``read_series([file])``). ``min_slices``
counts the tiles.

Checks. Refused with a :class:`~cardiotwin.errors.DicomError` naming the series (description and
short UID) and the file when one file is at fault: a single slice (unless ``min_slices=1``),
duplicate positions, mixed orientation or image size, colour images, missing pixel data, pixel
data that cannot be decoded, several cardiac phases in one series (use :func:`read_phases`), and —
unless ``resample=True`` — missing slices, uneven slice spacing (a step deviating from the median
by more than 1% of it and more than 0.01 mm) and gantry tilt (slice positions not stacked along
the normal).

Resampling (``resample=True``). A tilted and/or unevenly spaced stack is resampled by linear
interpolation onto an orthogonal grid whose i and j axes are the slices' row and column cosines and
whose k axis is their normal (what dcm2niix writes as ``_Tilt`` / ``_Eq``): every output voxel is
the linear interpolation, along the normal, of the two original slices bracketing it, each sampled
bilinearly at the projection of the voxel's centre on its plane. The in-plane grid is enlarged to
cover the union of the sheared slices (dcm2niix enlarges the rows the same way). The slice step is
the smallest positive step of the original stack, unless that would more than double the slice
count, then the extent divided into ``2 n - 1`` steps (dcm2niix's ``nii_saveNII3Deq`` rule).
Voxels outside every original slice get ``fill_value`` (default: air, −1000 HU, for CT; the series
minimum otherwise). A gap larger than 1.5 × the median step is interpolated across with a warning.

Pixel values. ``stored`` → ``slope · stored + intercept`` per slice/frame (slopes and intercepts
may differ). Signed/unsigned ``PixelRepresentation`` and ``BitsStored < BitsAllocated`` are decoded
as pydicom does (high bits masked, sign extended). ``MONOCHROME1`` images are inverted to the
``MONOCHROME2`` convention (``lo + hi − stored`` over the stored range) except when the values are
quantitative (CT, PT, or ``RescaleType`` HU): PS3.3 C.7.6.3.1.2 makes the photometric
interpretation a display convention, so Hounsfield units are kept as they are.

Unreadable files. Files without the Part 10 ``DICM`` marker are ignored (logged). A DICOM file
that cannot be parsed (truncated, corrupt) does not fail the whole folder: it is listed with a
warning, in :attr:`SeriesInfo.unreadable_files` and in ``metadata["skipped_files"]`` of the volume
read, and fails a read only when it belongs to the requested series — its SeriesInstanceUID is
recovered from the raw bytes when possible; when it cannot be, the file fails the read if it lies in
a folder holding files of the requested series (it could be one of its slices) and is skipped
otherwise.

Compressed transfer syntaxes are decoded by pydicom's pixel-data plugins: RLE and deflate by
pydicom itself (or ``pylibjpeg-rle``), JPEG baseline/lossless and JPEG-LS by ``pylibjpeg`` +
``pylibjpeg-libjpeg``, JPEG 2000 and HTJ2K by ``pylibjpeg`` + ``pylibjpeg-openjpeg``
(``python-gdcm`` covers most of them too). A syntax no installed plugin decodes is refused with a
:class:`~cardiotwin.errors.DicomError` naming the file, the transfer syntax and what to install.

Speed. :func:`read_series` walks the headers of plain little-endian Part 10 files (explicit or
implicit VR, defined lengths, no functional groups, ASCII/Latin-1/UTF-8) with ``struct`` and
decodes only the ~30 top-level values it uses; uncompressed pixel data are then read straight from
the recorded offset. Every other file (big endian, deflate, encapsulated/compressed, enhanced
multi-frame, undefined-length sequences, an element running past the end of the file) is parsed
by pydicom, as :func:`list_series` always does. Trade-off: a corrupt *structure* (lengths,
truncation, out-of-order tags) is still found while scanning and a garbage value of a used element
fails the read naming the file, but a garbage value in an element the reader does not use no
longer makes the file unreadable (the earlier reader converted every value). On a 212-slice
phantom series this is 0.4–0.7 × SimpleITK ``ImageSeriesReader``'s time (was 1.9–2.7 ×).

Patient names are never written to the log and never put in :attr:`Volume.metadata`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    PYDICOM_ROOT_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from cardiotwin import __version__
from cardiotwin.errors import CardiotwinError, DicomError, InputError
from cardiotwin.imaging.volume import Volume

__all__ = [
    "NO_SERIES_UID",
    "SeriesInfo",
    "list_series",
    "read_phases",
    "read_series",
    "write_ct_series",
]

log = logging.getLogger(__name__)

try:  # JPEG 2000 decoded with the GIL released (a dependency; pydicom's plugins are the fallback)
    import imagecodecs as _imagecodecs
except ImportError:  # pragma: no cover - installed with cardiotwin
    _imagecodecs = None

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
_ORIENTATION_TOL = 1e-4  # cosines
_POSITION_TOL_MM = 0.01
_SPACING_REL_TOL = 0.01
_GAP_FACTOR = 1.5  # a step this many times the median is called a missing slice
_DEFAULT_DATETIME = datetime(2024, 1, 1, 9, 0, 0)
#: Air on the Hounsfield scale (by definition of the scale: water 0 HU, air -1000 HU).
_AIR_HU = -1000.0
#: Native (uncompressed, little endian) transfer syntaxes decoded without pydicom's pixel handlers.
_NATIVE_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
_IMPLICIT_LE = "1.2.840.10008.1.2"
#: Compressed (encapsulated) transfer syntaxes: explicit VR little endian headers, read by the
#: fast header walk like the native ones.
_ENCAPSULATED_LE = frozenset(
    str(u) for u in pydicom.uid.AllTransferSyntaxes if u.is_encapsulated and not u.is_deflated
)
#: JPEG 2000 (lossless only, and lossy) transfer syntaxes, decoded by imagecodecs in threads.
_J2K = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
#: Key of the files whose SeriesInstanceUID is empty or absent (some anonymisers blank it).
NO_SERIES_UID = "<no SeriesInstanceUID>"

# Which PyPI packages let pydicom 3 decode a compressed transfer syntax (pydicom.pixels
# decoders). Uncompressed little/big endian, deflate and RLE are decoded by pydicom itself.
_PYLIBJPEG_JPEG = "pylibjpeg + pylibjpeg-libjpeg (or python-gdcm)"
_PYLIBJPEG_J2K = "pylibjpeg + pylibjpeg-openjpeg (or python-gdcm)"
_DECODER_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.5": "pylibjpeg + pylibjpeg-rle (pydicom's own RLE decoder needs numpy)",
    "1.2.840.10008.1.2.4.50": _PYLIBJPEG_JPEG,  # JPEG baseline
    "1.2.840.10008.1.2.4.51": _PYLIBJPEG_JPEG,  # JPEG extended
    "1.2.840.10008.1.2.4.57": _PYLIBJPEG_JPEG,  # JPEG lossless
    "1.2.840.10008.1.2.4.70": _PYLIBJPEG_JPEG,  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg + pylibjpeg-libjpeg (or pyjpegls, python-gdcm)",
    "1.2.840.10008.1.2.4.81": "pylibjpeg + pylibjpeg-libjpeg (or pyjpegls, python-gdcm)",
    "1.2.840.10008.1.2.4.90": _PYLIBJPEG_J2K,
    "1.2.840.10008.1.2.4.91": _PYLIBJPEG_J2K,
    "1.2.840.10008.1.2.4.201": "pylibjpeg + pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.202": "pylibjpeg + pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg + pylibjpeg-openjpeg",
}


@dataclass(frozen=True)
class SeriesInfo:
    """A DICOM series found in a folder tree.

    Attributes
    ----------
    series_uid : str
        SeriesInstanceUID.
    modality : str
        Modality (``"CT"``, ``"MR"``, ...); empty if absent.
    description : str
        SeriesDescription; empty if absent.
    n_files : int
        Number of readable files (instances) of the series.
    size_bytes : int
        Total size of its files.
    study_uid : str
        StudyInstanceUID; empty if absent.
    files : tuple of Path
        Its readable files, sorted by path.
    number_of_frames : int
        Total number of image frames (one per single-frame file, ``NumberOfFrames`` per
        multi-frame file, NumberOfImagesInMosaic per Siemens mosaic).
    n_phases : int
        Number of distinct temporal positions (cardiac phases / time points); 1 for a 3-D series.
    trigger_times_ms : tuple of float
        The distinct trigger times (TriggerTime or NominalCardiacTriggerDelayTime), ms, sorted.
    unreadable_files : tuple of Path
        Files recognised as belonging to this series but truncated or corrupt.
    """

    series_uid: str
    modality: str
    description: str
    n_files: int
    size_bytes: int
    study_uid: str = ""
    files: tuple[Path, ...] = ()
    number_of_frames: int = 0
    n_phases: int = 1
    trigger_times_ms: tuple[float, ...] = ()
    unreadable_files: tuple[Path, ...] = ()

    def __str__(self) -> str:
        desc = f" '{self.description}'" if self.description else ""
        phases = f", {self.n_phases} phases" if self.n_phases > 1 else ""
        return f"{self.series_uid} ({self.modality or '?'}{desc}, {self.n_files} files{phases})"


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _ds(values: Iterable[float]) -> list[str]:
    return [format_number_as_ds(float(v)) for v in values]


def write_ct_series(
    volume: Volume,
    out_dir: str | Path,
    *,
    patient_name: str = "PHANTOM^DEMO",
    patient_id: str = "CT-PHANTOM-0001",
    study_description: str = "cardiotwin synthetic cardiac CT",
    series_description: str = "CTA heart and thoracic aorta (synthetic)",
    seed: int | str = 0,
    uid_root: str = PYDICOM_ROOT_UID,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    study_datetime: datetime = _DEFAULT_DATETIME,
    manufacturer: str = "cardiotwin",
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    overwrite: bool = False,
) -> list[Path]:
    """Write a volume as a CT Image Storage series, one file per slice.

    Files are explicit VR little endian with a file meta header, signed 16-bit pixels with
    ``RescaleSlope``/``RescaleIntercept`` (stored = round((HU - intercept) / slope)), and the
    Patient, General Study, General Series, Frame of Reference, General Equipment, General Image,
    Image Plane, Image Pixel, CT Image, VOI LUT and SOP Common modules. The geometry follows
    ``volume`` exactly (oblique directions included): slice ``k`` is at
    ``origin + k * dk * direction[:, 2]``. (A left-handed ``direction`` is written as given; a
    reader then returns the same geometry with the slice axis flipped to the right-handed
    normal.)

    The series is written into a temporary folder next to ``out_dir`` and then renamed, so a
    failure leaves no half-written series.

    Parameters
    ----------
    volume : Volume
        CT values (HU) on their grid; values are rounded to the nearest stored integer.
    out_dir : path
        Folder to create; it must not exist or be empty unless ``overwrite``.
    patient_name, patient_id : str
        Written as PatientName and PatientID.
    study_description, series_description : str
        StudyDescription and SeriesDescription.
    seed : int or str
        Entropy for the deterministic UIDs (same seed and inputs → same files).
    uid_root : str
        UID prefix (an organisation root ending with ``"."``); pydicom's root by default.
    study_uid, series_uid, frame_of_reference_uid : str, optional
        Use these UIDs instead of deriving them from ``seed`` (e.g. a second series of a study).
    series_number : int
        SeriesNumber.
    study_datetime : datetime
        Study/series/content date and time (fixed by default so outputs are reproducible).
    manufacturer : str
        Manufacturer of the General Equipment module.
    rescale_intercept, rescale_slope : float
        Modality LUT; slope must be > 0.
    overwrite : bool
        Replace an existing non-empty ``out_dir``.

    Returns
    -------
    list of Path
        The written files in slice order (``k`` = 0 first).

    Raises
    ------
    InputError
        If the values do not fit signed 16 bits with this rescale, or ``out_dir`` is not empty
        and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if rescale_slope <= 0:
        raise InputError(f"rescale_slope must be > 0; got {rescale_slope}")
    arr = np.asarray(volume.array, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError("volume contains NaN or infinite values; DICOM CT needs finite HU")
    stored = np.rint((arr - rescale_intercept) / rescale_slope)
    lo, hi = float(stored.min()), float(stored.max())
    if lo < -32768 or hi > 32767:
        raise InputError(
            f"values {arr.min():.1f}..{arr.max():.1f} do not fit signed 16 bits with slope "
            f"{rescale_slope} and intercept {rescale_intercept}; choose a larger slope"
        )
    stored = stored.astype(np.int16)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise InputError(f"{out_dir} exists and is not empty; pass overwrite=True to replace it")

    def uid(kind: str) -> str:
        return generate_uid(prefix=uid_root, entropy_srcs=[str(seed), kind])

    study_uid = study_uid or uid("study")
    series_uid = series_uid or uid(f"series{series_number}")
    for_uid = frame_of_reference_uid or uid("frame-of-reference")
    d = volume.direction
    row_cos, col_cos, kdir = d[:, 0], d[:, 1], d[:, 2]
    normal = np.cross(row_cos, col_cos)
    di, dj, dk = volume.spacing_mm
    origin = np.asarray(volume.origin_mm)
    date, tm = study_datetime.strftime("%Y%m%d"), study_datetime.strftime("%H%M%S")
    nk, nj, ni = volume.shape

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        names = []
        for k in range(nk):
            sop_uid = uid(f"{series_uid}/sop{k}")
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            meta.ImplementationVersionName = f"CARDIOTWIN_{__version__}"[:16]
            ds = Dataset()
            ds.file_meta = meta
            # SOP Common
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = sop_uid
            ds.InstanceCreationDate, ds.InstanceCreationTime = date, tm
            # Patient
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            # General Study
            ds.StudyInstanceUID = study_uid
            ds.StudyDate, ds.StudyTime = date, tm
            ds.ReferringPhysicianName = ""
            ds.StudyID = "1"
            ds.AccessionNumber = ""
            ds.StudyDescription = study_description
            # General Series
            ds.Modality = "CT"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = int(series_number)
            ds.SeriesDate, ds.SeriesTime = date, tm
            ds.SeriesDescription = series_description
            ds.PatientPosition = "HFS"
            # Frame of Reference
            ds.FrameOfReferenceUID = for_uid
            ds.PositionReferenceIndicator = ""
            # General Equipment
            ds.Manufacturer = manufacturer
            ds.ManufacturerModelName = "cardiotwin phantom writer"
            ds.SoftwareVersions = __version__
            # General Image + CT Image
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.InstanceNumber = k + 1
            ds.AcquisitionNumber = 1
            ds.ContentDate, ds.ContentTime = date, tm
            ds.KVP = ""
            ds.ConvolutionKernel = "SYNTHETIC"
            # Image Plane
            pos = origin + k * dk * kdir
            ds.ImagePositionPatient = _ds(pos)
            ds.ImageOrientationPatient = _ds(np.concatenate([row_cos, col_cos]))
            ds.PixelSpacing = _ds([dj, di])  # row spacing (between rows), column spacing
            ds.SliceThickness = format_number_as_ds(float(dk))
            ds.SpacingBetweenSlices = format_number_as_ds(float(dk))
            ds.SliceLocation = format_number_as_ds(float(pos @ normal))
            # Image Pixel
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = nj, ni
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = format_number_as_ds(float(rescale_intercept))
            ds.RescaleSlope = format_number_as_ds(float(rescale_slope))
            ds.RescaleType = "HU"
            # VOI LUT: a cardiac CTA window
            ds.WindowCenter, ds.WindowWidth = "300", "800"
            ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2").tobytes()
            name = f"CT{k + 1:05d}.dcm"
            pydicom.dcmwrite(tmp / name, ds, enforce_file_format=True)
            names.append(name)
        if out_dir.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent)
            )
            out_dir.rename(old / out_dir.name)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote CT series %s: %d slices of %dx%d to %s", series_uid, nk, nj, ni, out_dir)
    return [out_dir / n for n in names]


# --------------------------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    """One readable DICOM file: its header (no pixel data) and where its pixel data start."""

    path: Path
    ds: Dataset
    pixel_offset: int  # file offset of the first element after the header (the pixel data)


@dataclass(frozen=True)
class _Bad:
    """A DICOM file that could not be parsed, with the series it belongs to when recoverable."""

    path: Path
    reason: str
    series_uid: str | None


def _candidate_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        if p.is_dir():
            files = []
            for root, dirs, fnames in os.walk(p):
                dirs.sort()
                files.extend(Path(root) / f for f in sorted(fnames))
            return files
        if p.is_file():
            return [p]
        raise DicomError(f"{p} does not exist; give a DICOM folder, a file or a list of files")
    files = [Path(f) for f in path]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DicomError(f"{len(missing)} file(s) do not exist, e.g. {missing[0]}")
    return files


def _is_dicom_file(f: Path) -> bool:
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DicomError(f"cannot read {f}: {exc.strerror}") from exc
    return len(head) == 132 and head[128:132] == b"DICM"


_UID_RE = re.compile(rb"\x20\x00\x0e\x00(?:UI(..)|(....))", re.DOTALL)


def _salvage_series_uid(f: Path) -> str | None:
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


def _text(ds: Dataset, keyword: str) -> str:
    return str(getattr(ds, keyword, "") or "").strip()


# Fast header path. pydicom builds an element object per header value (~0.6 ms per CT file); the
# reader needs about thirty top-level values. For the common layout — a Part 10 file in explicit or
# implicit VR little endian, defined lengths, no functional-group sequences — the elements are
# walked with struct and only the wanted ones are decoded. Anything else (big endian, deflate,
# undefined lengths, enhanced multi-frame, unusual character sets, a length running past the end of
# the file) returns None and the file is parsed by pydicom instead, so the checks are the same.
_WANTED_KEYWORDS = (
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
_WANTED = {
    int(pydicom.datadict.tag_for_keyword(kw)): (kw, pydicom.datadict.dictionary_VR(kw))
    for kw in _WANTED_KEYWORDS
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


class _FastHeader:
    """Decoded top-level values of one file, read like a pydicom Dataset (``getattr``, ``in``).

    ``private`` holds the raw bytes of the private elements of the Siemens groups 0019 and 0029
    (creators and values), which locate and describe a mosaic (see :func:`_private_value`).
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


def _fast_header(f: Path) -> tuple[_FastHeader, int] | None:
    """(header, pixel data offset) of a little-endian Part 10 file (native or encapsulated pixel
    data), or None (use pydicom)."""
    with open(f, "rb") as fh:
        data = fh.read(1 << 16)
        out = _fast_walk(data)
        if out is None and len(data) == 1 << 16:  # a long header (e.g. Siemens CSA): read more
            data += fh.read((1 << 22) - len(data))
            out = _fast_walk(data)
    return out


def _fast_walk(data: bytes) -> tuple[_FastHeader, int] | None:
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
    if ts not in _NATIVE_LE and ts not in _ENCAPSULATED_LE:
        return None
    implicit = ts == _IMPLICIT_LE
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
    return _FastHeader(values, _Meta(ts, sop_class), private), offset


def _read_header(f: Path, *, fast: bool = False) -> tuple[_Entry | None, str]:
    """Parse ``f`` up to its pixel data: (entry, series key), or (None, why) for a non-image."""
    parsed = _fast_header(f) if fast else None
    if parsed is not None:
        ds, offset = parsed
    else:
        with open(f, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            offset = fh.tell()
    sop_class = str(
        getattr(ds, "SOPClassUID", "")
        or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
    )
    if sop_class == _MEDIA_STORAGE_DIRECTORY:
        return None, "DICOMDIR"
    if "Rows" not in ds or "Columns" not in ds:
        # pydicom stops quietly at the end of a truncated file: an image object whose header
        # ends before Rows/Columns and pixel data is truncated, not a non-image object
        if offset >= os.path.getsize(f) and "Image" in pydicom.uid.UID(sop_class).name:
            raise ValueError(f"the header ends at byte {offset} before Rows/Columns and pixel data")
        if _text(ds, "SeriesInstanceUID"):
            return None, f"not an image instance (SOP class {pydicom.uid.UID(sop_class).name})"
    # every value the reader uses is converted now, so a garbage value (or a VR pydicom cannot
    # decode, e.g. a bit-flipped 'LO' → 'LN') fails here, naming the file, and not deep inside
    # a later read (the fast header holds only values it has already decoded)
    if parsed is None:
        for kw in _WANTED_KEYWORDS:
            getattr(ds, kw, None)
    uid = _text(ds, "SeriesInstanceUID")
    for kw in ("Modality", "SeriesDescription", "StudyInstanceUID"):
        _text(ds, kw)
    int(getattr(ds, "NumberOfFrames", 1) or 1)
    if not uid:
        if "Rows" not in ds or "Columns" not in ds:
            raise ValueError("no SeriesInstanceUID and no Rows/Columns: not an image instance")
        uid = NO_SERIES_UID
    return _Entry(f, ds, offset), uid


def _scan_entries(
    path: str | Path | Sequence[str | Path], *, fast: bool = False
) -> tuple[dict[str, list[_Entry]], list[_Bad]]:
    """Headers of the DICOM files under ``path`` grouped by series UID, and the unreadable ones.

    With ``fast`` the headers of plain little-endian files are :class:`_FastHeader` objects
    holding only the values the reader uses; otherwise (and for every other file) pydicom
    Datasets without pixel data.
    """
    groups: dict[str, list[_Entry]] = {}
    bad: list[_Bad] = []
    ignored = blank = 0
    for f in _candidate_files(path):
        if not _is_dicom_file(f):
            ignored += 1
            log.info("ignoring %s: not a DICOM Part 10 file (no 'DICM' marker)", f)
            continue
        try:
            entry, uid = _read_header(f, fast=fast)
        except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt file
            reason = f"truncated or corrupt ({type(exc).__name__}: {exc})"
            bad.append(_Bad(f, reason, _salvage_series_uid(f)))
            continue
        if entry is None:
            log.info("ignoring %s: %s", f, uid)
            continue
        blank += uid == NO_SERIES_UID
        groups.setdefault(uid, []).append(entry)
    if ignored:
        log.info("%d non-DICOM file(s) ignored", ignored)
    if blank:
        log.warning(
            "%d image file(s) have an empty SeriesInstanceUID (anonymised?); they are grouped "
            "as one series under the key %r",
            blank,
            NO_SERIES_UID,
        )
    if bad:
        log.warning(
            "%d unreadable DICOM file(s) skipped: %s",
            len(bad),
            "; ".join(f"{b.path} ({b.reason})" for b in bad[:5]) + (" ..." if len(bad) > 5 else ""),
        )
    return groups, bad


def _short_uid(uid: str) -> str:
    return uid if len(uid) <= 20 else "…" + uid[-14:]


def _series_name(uid: str, entries: Sequence[_Entry]) -> str:
    desc = _text(entries[0].ds, "SeriesDescription") if entries else ""
    return f"series '{desc}' ({_short_uid(uid)})" if desc else f"series {_short_uid(uid)}"


def _info(uid: str, entries: list[_Entry], bad: Sequence[_Bad] = ()) -> SeriesInfo:
    ds0 = entries[0].ds
    files = tuple(sorted(e.path for e in entries))
    n_frames, n_phases, triggers = len(entries), 1, ()
    try:
        frames = [fr for e in entries for fr in _frames_of(e)]
        n_frames = len(frames)
        phases = _split_phases(frames, uid)
        if phases is not None:
            n_phases = len(phases)
        triggers = tuple(sorted({fr.trigger_ms for fr in frames if fr.trigger_ms is not None}))
    except CardiotwinError as exc:  # a series the reader will refuse is still listed
        log.debug("series %s: frame summary unavailable (%s)", uid, exc)
    return SeriesInfo(
        series_uid=uid,
        modality=_text(ds0, "Modality"),
        description=_text(ds0, "SeriesDescription"),
        n_files=len(files),
        size_bytes=sum(f.stat().st_size for f in files),
        study_uid=_text(ds0, "StudyInstanceUID"),
        files=files,
        number_of_frames=n_frames,
        n_phases=n_phases,
        trigger_times_ms=triggers,
        unreadable_files=tuple(sorted(b.path for b in bad if b.series_uid == uid)),
    )


def list_series(path: str | Path | Sequence[str | Path]) -> list[SeriesInfo]:
    """List the DICOM series in a folder tree (or a list of files).

    Parameters
    ----------
    path : path or sequence of paths
        A folder (searched recursively), one file or a list of files. Files without the DICOM
        Part 10 ``DICM`` marker are ignored (logged); DICOMDIR files are skipped.

    Returns
    -------
    list of SeriesInfo
        Sorted by study UID, then series UID. Truncated/corrupt files are skipped with a warning
        and listed in :attr:`SeriesInfo.unreadable_files` of their series when their
        SeriesInstanceUID can be recovered.

    Raises
    ------
    DicomError
        If the path does not exist or cannot be read.
    """
    groups, bad = _scan_entries(path)
    return sorted(
        (_info(u, es, bad) for u, es in groups.items()), key=lambda s: (s.study_uid, s.series_uid)
    )


# --------------------------------------------------------------------------------------------
# frames: one per single-frame file, NumberOfFrames per enhanced multi-frame file
# --------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    entry: _Entry
    index: int  # frame number in its file, 0-based
    ipp: np.ndarray
    iop: np.ndarray
    psp: np.ndarray  # PixelSpacing: row spacing, column spacing
    rows: int
    cols: int
    slope: float
    intercept: float
    trigger_ms: float | None
    temporal_index: int | None
    percent_rr: float | None
    thickness_mm: float | None = None
    label: str = ""
    along: float = 0.0
    #: a tile of a Siemens mosaic: (first row, first column, mosaic rows, mosaic columns)
    tile: tuple[int, int, int, int] | None = None

    @property
    def temporal_key(self) -> tuple[float, float, float]:
        return (
            -1.0 if self.temporal_index is None else float(self.temporal_index),
            -1.0 if self.trigger_ms is None else self.trigger_ms,
            -1.0 if self.percent_rr is None else self.percent_rr,
        )

    @property
    def has_time(self) -> bool:
        return (self.trigger_ms, self.temporal_index, self.percent_rr) != (None, None, None)


def _seq_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = getattr(ds, keyword, None)
    return seq[0] if seq else None


def _lookup(sources: Sequence[Dataset | None], seq_kw: str | None, keyword: str) -> Any:
    """First value of ``keyword`` in (the ``seq_kw`` item of) the given datasets, or None."""
    for src in sources:
        item = src if seq_kw is None else _seq_item(src, seq_kw)
        if item is not None:
            value = getattr(item, keyword, None)
            if value is not None and value != "":
                return value
    return None


def _vec(value: Any, n: int, keyword: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=float) if value is not None else None
    except (TypeError, ValueError) as exc:
        raise DicomError(f"{where} has an unreadable {keyword} ({value!r})") from exc
    if arr is None or arr.size != n or not np.all(np.isfinite(arr)):
        raise DicomError(
            f"{where} has no valid {keyword} (expected {n} finite numbers, got {value!r}); "
            f"a 3-D volume needs it on every slice"
        )
    return arr


def _num(value: Any, default: float | None, keyword: str, where: str) -> float | None:
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise DicomError(f"{where} has an unreadable {keyword} ({value!r})") from exc
    if not np.isfinite(out):
        raise DicomError(f"{where} has a non-finite {keyword} ({value!r})")
    return out


def _frames_of(e: _Entry) -> list[_Frame]:
    """The frames of one file with their geometry, rescale and temporal position."""
    try:
        return _frames_of_unchecked(e)
    except CardiotwinError:
        raise
    except Exception as exc:  # noqa: BLE001 - lazily converted header values fail in many ways
        raise DicomError(
            f"{e.path} has a corrupt header value ({type(exc).__name__}: {exc}); re-export or "
            f"remove it"
        ) from exc


def _frames_of_unchecked(e: _Entry) -> list[_Frame]:
    ds, f = e.ds, e.path
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    per = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    enhanced = per is not None or shared is not None
    if n < 1:
        raise DicomError(f"{f} has NumberOfFrames {n}")
    if n > 1 and not enhanced:
        raise DicomError(
            f"{f} is a multi-frame file with {n} frames but no per-frame functional groups "
            f"(PlanePositionSequence): its frames cannot be placed in space"
        )
    if per is not None and len(per) != n:
        raise DicomError(
            f"{f} has NumberOfFrames {n} but {len(per)} PerFrameFunctionalGroupsSequence items"
        )
    frames = []
    for k in range(n):
        item = per[k] if per is not None else None
        src = (item, shared)
        where = f"{f}" if n == 1 else f"{f} frame {k + 1}"
        ipp = _lookup(src, "PlanePositionSequence", "ImagePositionPatient")
        iop = _lookup(src, "PlaneOrientationSequence", "ImageOrientationPatient")
        psp = _lookup(src, "PixelMeasuresSequence", "PixelSpacing")
        slope = _lookup(src, "PixelValueTransformationSequence", "RescaleSlope")
        inter = _lookup(src, "PixelValueTransformationSequence", "RescaleIntercept")
        thick = _lookup(src, "PixelMeasuresSequence", "SpacingBetweenSlices")
        thick = (
            thick if thick is not None else _lookup(src, "PixelMeasuresSequence", "SliceThickness")
        )
        trig = _lookup(src, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime")
        pct = _lookup(src, "CardiacSynchronizationSequence", "NominalPercentageOfCardiacPhase")
        tpi = _lookup(src, "FrameContentSequence", "TemporalPositionIndex")
        # single-frame files (and enhanced files missing a macro): the top-level attributes
        ipp = ipp if ipp is not None else getattr(ds, "ImagePositionPatient", None)
        iop = iop if iop is not None else getattr(ds, "ImageOrientationPatient", None)
        psp = psp if psp is not None else getattr(ds, "PixelSpacing", None)
        slope = slope if slope is not None else getattr(ds, "RescaleSlope", None)
        inter = inter if inter is not None else getattr(ds, "RescaleIntercept", None)
        if thick is None:
            thick = getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None)
        trig = trig if trig is not None else getattr(ds, "TriggerTime", None)
        tpi = tpi if tpi is not None else getattr(ds, "TemporalPositionIdentifier", None)
        pct = pct if pct is not None else getattr(ds, "NominalPercentageOfCardiacPhase", None)
        slope_f = _num(slope, 1.0, "RescaleSlope", where)
        if slope_f == 0.0:
            slope_f = 1.0  # a zero slope is a writer error; treat as absent (as GDCM does)
        tpi_f = _num(tpi, None, "TemporalPositionIndex", where)
        frames.append(
            _Frame(
                entry=e,
                index=k,
                ipp=_vec(ipp, 3, "ImagePositionPatient", where),
                iop=_vec(iop, 6, "ImageOrientationPatient", where),
                psp=_vec(psp, 2, "PixelSpacing", where),
                rows=rows,
                cols=cols,
                slope=float(slope_f),
                intercept=float(_num(inter, 0.0, "RescaleIntercept", where) or 0.0),
                trigger_ms=_num(trig, None, "TriggerTime", where),
                temporal_index=None if tpi_f is None else int(tpi_f),
                percent_rr=_num(pct, None, "NominalPercentageOfCardiacPhase", where),
                thickness_mm=_num(thick, None, "SliceThickness", where),
                label=f.name if n == 1 else f"{f.name} frame {k + 1}",
            )
        )
    if n == 1 and not enhanced:
        mosaic = _mosaic_layout(ds, f)
        if mosaic is not None:
            return _split_mosaic(frames[0], *mosaic)
    return frames


# --------------------------------------------------------------------------------------------
# Siemens mosaics: one MR image file holding n slices as tiles of a grid
# --------------------------------------------------------------------------------------------

_CSA_CREATOR = "SIEMENS CSA HEADER"  # (0029,xx10): CSA image header
_MR_CREATOR = "SIEMENS MR HEADER"  # (0019,xx0A): NumberOfImagesInMosaic


def _private_value(ds: Any, group: int, creator: str, element: int) -> Any:
    """Value of private element ``(group, xx<element>)`` of the block reserved by ``creator``.

    Raw bytes from a :class:`_FastHeader`; the pydicom value (bytes, int, ...) otherwise; None
    when the creator or the element is absent.
    """
    if isinstance(ds, _FastHeader):
        for block in range(0x10, 0x100):
            owner = ds.private.get((group << 16) | block)
            if owner is not None and owner.decode("latin-1").strip(" \x00") == creator:
                return ds.private.get((group << 16) | (block << 8) | element)
        return None
    try:
        return ds.private_block(group, creator)[element].value
    except (KeyError, ValueError):
        return None


def _csa_tags(raw: Any, where: Path) -> dict[str, Any]:
    """Tags of a Siemens CSA header (nibabel's parser), or {} when it cannot be parsed."""
    if not isinstance(raw, bytes) or not raw:
        return {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nibabel.nicom's "experimental" notice
        from nibabel.nicom import csareader
    try:
        return dict(csareader.read(raw)["tags"])
    except Exception as exc:  # noqa: BLE001 - a corrupt private header: fall back to (0019,100A)
        log.warning("%s: the Siemens CSA image header cannot be parsed (%s)", where, exc)
        return {}


def _mosaic_layout(ds: Any, where: Path) -> tuple[int, np.ndarray | None] | None:
    """(number of images, CSA slice normal or None) of a Siemens mosaic; None for another image.

    A mosaic is an image whose ImageType contains ``MOSAIC``. Its number of images is the CSA image
    header's NumberOfImagesInMosaic ((0029,1010)), else (0019,100A) of the Siemens MR header.
    """
    image_type = getattr(ds, "ImageType", None)
    values = [image_type] if isinstance(image_type, str) else list(image_type or [])
    if "MOSAIC" not in {str(v).strip().upper() for v in values}:
        return None
    tags = _csa_tags(_private_value(ds, 0x0029, _CSA_CREATOR, 0x10), where)
    n: int | None = None
    items = (tags.get("NumberOfImagesInMosaic") or {}).get("items") or []
    if items:
        n = int(items[0])
    normal = None
    vec = (tags.get("SliceNormalVector") or {}).get("items") or []
    if len(vec) == 3 and np.all(np.isfinite(vec)) and np.linalg.norm(vec) > 0.5:
        normal = np.asarray(vec, dtype=float) / np.linalg.norm(vec)
    if n is None:
        value = _private_value(ds, 0x0019, _MR_CREATOR, 0x0A)
        if isinstance(value, bytes) and len(value) >= 2:
            n = struct.unpack("<H", value[:2])[0]
        elif isinstance(value, (int, float)) or (isinstance(value, list) and value):
            n = int(value[0] if isinstance(value, list) else value)
    if n is None:
        raise DicomError(
            f"{where} is a Siemens mosaic (ImageType MOSAIC) but neither its CSA image header "
            f"(0029,1010) nor (0019,100A) gives NumberOfImagesInMosaic, so its slices cannot be "
            f"cut out; convert it on the scanner without mosaic, or restore the private tags "
            f"(an anonymiser may have removed them)"
        )
    if n < 1:
        raise DicomError(f"{where} is a Siemens mosaic with NumberOfImagesInMosaic {n}")
    return n, normal


def _split_mosaic(fr: _Frame, n: int, csa_normal: np.ndarray | None) -> list[_Frame]:
    """The ``n`` slices of a mosaic image as frames (tiles), each with its true position.

    Tiles fill a ``g x g`` grid, ``g = ceil(sqrt(n))``, left to right then top to bottom; each
    is ``Rows/g x Columns/g``. The mosaic's ImagePositionPatient is the corner of the whole image
    as if it were one slice of that size centred on the tiles, so tile 0's first voxel is
    ``(Columns - tile columns)/2`` column spacings along the row cosine and ``(Rows - tile
    rows)/2`` row spacings along the column cosine further (the rule of dcm2niix and nibabel's
    MosaicWrapper). Tile ``k`` lies ``k`` slice steps (SpacingBetweenSlices, else SliceThickness)
    along the CSA SliceNormalVector: the cross product of the cosines, with its sign.
    """
    rows, cols = fr.rows, fr.cols
    grid = math.ceil(math.sqrt(n))
    if rows % grid or cols % grid:
        raise DicomError(
            f"{fr.entry.path} is a Siemens mosaic of {n} images, {grid}x{grid} tiles, which do "
            f"not divide its {rows}x{cols} pixels: the mosaic header is inconsistent"
        )
    th, tw = rows // grid, cols // grid
    row_cos = fr.iop[:3] / np.linalg.norm(fr.iop[:3])
    col_cos = fr.iop[3:] / np.linalg.norm(fr.iop[3:])
    cross = np.cross(row_cos, col_cos)
    cross /= np.linalg.norm(cross)
    sign = 1.0
    if csa_normal is not None:
        cosine = float(csa_normal @ cross)
        if abs(cosine) < 0.99:
            log.warning(
                "%s: the CSA SliceNormalVector %s is %.1f° from the normal of the image "
                "orientation; slices are stacked along the latter",
                fr.entry.path,
                np.round(csa_normal, 5).tolist(),
                math.degrees(math.acos(min(1.0, abs(cosine)))),
            )
        sign = -1.0 if cosine < 0 else 1.0
    step = fr.thickness_mm if fr.thickness_mm is not None and fr.thickness_mm > 0 else None
    if step is None:
        log.warning("%s: mosaic without SpacingBetweenSlices/SliceThickness; 1 mm", fr.label)
        step = 1.0
    di, dj = float(fr.psp[1]), float(fr.psp[0])
    first = fr.ipp + (cols - tw) / 2 * di * row_cos + (rows - th) / 2 * dj * col_cos
    log.info("%s: Siemens mosaic of %d slices of %dx%d", fr.entry.path, n, th, tw)
    return [
        replace(
            fr,
            ipp=first + sign * k * step * cross,
            rows=th,
            cols=tw,
            label=f"{fr.label} tile {k + 1}/{n}",
            tile=((k // grid) * th, (k % grid) * tw, rows, cols),
        )
        for k in range(n)
    ]


def _plane(frames: Sequence[_Frame], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check that all frames share orientation, spacing and size; return row, col, normal."""
    iop = np.array([fr.iop for fr in frames])
    psp = np.array([fr.psp for fr in frames])
    size = np.array([(fr.rows, fr.cols) for fr in frames])
    for arr, what, tol in (
        (iop, "orientation (ImageOrientationPatient)", _ORIENTATION_TOL),
        (psp, "pixel spacing (PixelSpacing)", 1e-6),
        (size, "image size (Rows/Columns)", 0),
    ):
        bad = np.flatnonzero(np.any(np.abs(arr - arr[0]) > tol, axis=1))
        if bad.size:
            raise DicomError(
                f"{name} mixes {what}: {frames[0].label} has {arr[0].tolist()} but "
                f"{frames[bad[0]].label} has {arr[bad[0]].tolist()}; split the series before "
                f"reading"
            )
    if np.any(size[0] <= 0) or np.any(psp[0] <= 0):
        raise DicomError(
            f"{name}: invalid Rows/Columns {size[0].tolist()} or PixelSpacing "
            f"{psp[0].tolist()} in {frames[0].label}"
        )
    row_cos, col_cos = iop[0, :3].copy(), iop[0, 3:].copy()
    if (
        abs(np.linalg.norm(row_cos) - 1) > 1e-3
        or abs(np.linalg.norm(col_cos) - 1) > 1e-3
        or abs(row_cos @ col_cos) > 1e-3
    ):
        raise DicomError(
            f"{name}: ImageOrientationPatient {iop[0].tolist()} is not two orthonormal "
            f"direction cosines"
        )
    row_cos /= np.linalg.norm(row_cos)
    col_cos = col_cos - (col_cos @ row_cos) * row_cos
    col_cos /= np.linalg.norm(col_cos)
    return row_cos, col_cos, np.cross(row_cos, col_cos)


def _split_phases(
    frames: Sequence[_Frame], name: str
) -> list[tuple[float | int, list[_Frame]]] | None:
    """Split frames that repeat the same positions at several times into phases, or None (3-D).

    Frames are grouped by position along the normal; when every position holds the same number
    ``n > 1`` of frames with distinct temporal positions (TemporalPositionIndex/Identifier,
    trigger time, nominal % of the RR interval), phase ``p`` is the ``p``-th frame in time at every
    position. Labels: the median trigger time (ms) when all frames have one, else the temporal
    index, else the % of RR, else the phase number.
    """
    if len(frames) < 2:
        return None
    try:
        row, col, normal = _plane(frames, name)
    except DicomError:
        return None
    along = np.array([fr.ipp @ normal for fr in frames])
    order = np.argsort(along, kind="stable")
    clusters: list[list[_Frame]] = []
    last = None
    for i in order:
        if last is None or along[i] - last > _POSITION_TOL_MM:
            clusters.append([])
        clusters[-1].append(frames[i])
        last = along[i]
    counts = {len(c) for c in clusters}
    if counts == {1} or len(counts) != 1:
        return None
    n = counts.pop()
    for c in clusters:
        keys = [fr.temporal_key for fr in c]
        if not all(fr.has_time for fr in c) or len(set(keys)) != n:
            return None
        c.sort(key=lambda fr: fr.temporal_key)
    phases = [[c[p] for c in clusters] for p in range(n)]

    def label(ph: list[_Frame], p: int) -> list[float | int]:
        return [
            float(np.round(np.median([fr.trigger_ms for fr in ph]), 3))
            if all(fr.trigger_ms is not None for fr in ph)
            else None,
            ph[0].temporal_index if all(fr.temporal_index is not None for fr in ph) else None,
            ph[0].percent_rr if all(fr.percent_rr is not None for fr in ph) else None,
            p,
        ]

    cand = [label(ph, p) for p, ph in enumerate(phases)]
    for j in range(4):
        labels = [c[j] for c in cand]
        if None not in labels and len(set(labels)) == n:
            return list(zip(labels, phases, strict=True))
    return None  # unreachable: the phase numbers are distinct


# --------------------------------------------------------------------------------------------
# pixels
# --------------------------------------------------------------------------------------------


def _ts_uid(ds: Dataset) -> pydicom.uid.UID | None:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return None if ts is None or not str(ts).strip() else pydicom.uid.UID(str(ts).strip())


def _transfer_syntax(ds: Dataset) -> str:
    ts = _ts_uid(ds)
    if ts is None:
        return "unknown (no TransferSyntaxUID in the file meta header)"
    name = ts.name if ts.is_transfer_syntax else "unknown"
    return f"{name} ({ts})" if name != str(ts) else str(ts)


def _decode_hint(ds: Dataset) -> str:
    """What a user can do when the pixel data of ``ds`` cannot be decoded."""
    ts = _ts_uid(ds)
    if ts is not None and not ts.is_transfer_syntax:
        return (
            f"{ts} is not a DICOM transfer syntax; the file meta header is corrupt: re-export or "
            f"remove the file"
        )
    if ts is None or not ts.is_compressed:
        return "the file is truncated or corrupt; re-export or remove it"
    packages = _DECODER_PACKAGES.get(str(ts))
    if packages is not None:
        return f"install the pydicom decoder plugin for it: pip install {packages}"
    return (
        "no pydicom decoder plugin supports this transfer syntax; convert the files to an "
        "uncompressed or lossless JPEG transfer syntax first (e.g. gdcmconv --raw or dcmdjpeg)"
    )


def _pixel_format(ds: Dataset) -> tuple[int, int, int, int]:
    """BitsAllocated, BitsStored, PixelRepresentation, SamplesPerPixel (validated)."""
    bits = int(ds.BitsAllocated)
    stored = int(getattr(ds, "BitsStored", bits) or bits)
    sign = int(getattr(ds, "PixelRepresentation", 0) or 0)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if bits not in (1, 8, 16, 32, 64) or not 1 <= stored <= bits or sign not in (0, 1):
        raise ValueError(
            f"BitsAllocated {bits}, BitsStored {stored}, PixelRepresentation {sign} are not a "
            f"valid pixel format"
        )
    return bits, stored, sign, spp


def _native_pixels(e: _Entry, n_frames: int, rows: int, cols: int) -> np.ndarray | None:
    """Frames of an uncompressed little-endian file read straight from its bytes, or None.

    Handles one sample per pixel of 8/16/32 bits allocated (BitsStored ≤ BitsAllocated: the high
    bits are masked and the sign extended, as pydicom does). Anything else returns None and goes
    through pydicom's decoders.
    """
    ds = e.ds
    ts = str(_ts_uid(ds) or "")
    if ts not in _NATIVE_LE or e.pixel_offset <= 0:
        return None
    bits, stored, sign, spp = _pixel_format(ds)
    if bits not in (8, 16, 32) or spp != 1:
        return None
    nbytes = n_frames * rows * cols * (bits // 8)
    with open(e.path, "rb") as fh:
        fh.seek(e.pixel_offset)
        head = fh.read(12)
        if len(head) < 8 or head[:4] != b"\xe0\x7f\x10\x00":
            return None  # no (7FE0,0010) here: let pydicom report what is there
        if ts == _IMPLICIT_LE:
            length, start = struct.unpack_from("<I", head, 4)[0], 8
        elif head[4:6] in (b"OB", b"OW", b"UN", b"OV", b"OL"):
            length, start = struct.unpack_from("<I", head, 8)[0] if len(head) == 12 else -1, 12
        else:
            return None
        if length not in (nbytes, nbytes + 1):  # odd lengths are padded to even
            return None
        fh.seek(e.pixel_offset + start)
        data = fh.read(nbytes)
    if len(data) != nbytes:
        raise DicomError(
            f"{e.path} is truncated: its pixel data hold {len(data)} of {nbytes} bytes; "
            f"re-export or remove it"
        )
    arr = np.frombuffer(data, dtype=f"<{'iu'[sign == 0]}{bits // 8}")
    if stored < bits:
        shift = bits - stored
        if sign:
            arr = (arr << shift) >> shift  # sign-extend from bit BitsStored - 1
        else:
            arr = arr & np.array((1 << stored) - 1, dtype=arr.dtype)
    return arr.reshape(n_frames, rows, cols)


def _encapsulated_frames(e: _Entry, n_frames: int) -> list[bytes] | None:
    """The compressed frames of an encapsulated file read straight from its bytes, or None.

    ``e.pixel_offset`` must point at an explicit-VR (7FE0,0010) element of undefined length;
    anything else returns None and the file goes through pydicom.
    """
    if e.pixel_offset <= 0:
        return None
    with open(e.path, "rb") as fh:
        fh.seek(e.pixel_offset)
        data = fh.read()
    if len(data) < 12 or data[:4] != b"\xe0\x7f\x10\x00" or data[4:6] != b"OB":
        return None
    if struct.unpack_from("<I", data, 8)[0] != 0xFFFFFFFF:
        return None
    frames = list(pydicom.encaps.generate_frames(data[12:], number_of_frames=n_frames))
    return frames if len(frames) == n_frames else None


def _j2k_pixels(e: _Entry, n_frames: int, rows: int, cols: int) -> np.ndarray | None:
    """Frames of a JPEG 2000 file decoded by imagecodecs (OpenJPEG), or None.

    imagecodecs releases the GIL while decoding, so :func:`_decode_frames` runs several files
    at once in threads (pydicom's pylibjpeg-openjpeg plugin holds the GIL: one core only). The
    result is used only when it is exactly what pydicom would return: one sample of 8 or 16
    bits, the codestream's signedness equal to PixelRepresentation, the expected frame size.
    Anything else (or any decoding error) returns None, and pydicom decodes the file and
    reports what is wrong with it.
    """
    if _imagecodecs is None:
        return None
    if str(_ts_uid(e.ds) or "") not in _J2K:
        return None
    try:
        bits, _, sign, spp = _pixel_format(e.ds)
        if bits not in (8, 16) or spp != 1:
            return None
        expected = np.dtype(f"<{'iu'[sign == 0]}{bits // 8}")
        frames = _encapsulated_frames(e, n_frames)
        if frames is None:
            return None
        out = np.empty((n_frames, rows, cols), dtype=expected)
        for k, frame in enumerate(frames):
            px = _imagecodecs.jpeg2k_decode(frame, numthreads=1)
            if px.shape != (rows, cols) or px.dtype.newbyteorder("<") != expected:
                return None
            out[k] = px
    except Exception:  # noqa: BLE001 - any failure: pydicom decodes the file and explains
        log.debug("imagecodecs could not decode %s; using pydicom", e.path, exc_info=True)
        return None
    return out


def _decode_workers() -> int:
    """Threads for decoding JPEG 2000 files: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


class _Prefetch:
    """Decodes the JPEG 2000 files of a series ahead of their use, in a thread pool.

    At most ``window`` files are held decoded or in flight, so memory stays a few slices above
    the output volume. :meth:`take` returns the frames of a file; a file it did not decode, or
    whose decoding imagecodecs declined, goes through :func:`_file_pixels` (without a second
    imagecodecs attempt in the latter case).
    """

    def __init__(self, jobs: list[tuple[_Entry, int, int, int]]) -> None:
        self._jobs = iter(jobs)
        self._pending: dict[int, Future[np.ndarray | None]] = {}
        workers = _decode_workers()
        self._window = 2 * workers + 2
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cardiotwin-decode")
        self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self._window:
            job = next(self._jobs, None)
            if job is None:
                return
            self._pending[id(job[0])] = self._pool.submit(_j2k_pixels, *job)

    def take(self, e: _Entry) -> tuple[bool, np.ndarray | None]:
        """(whether ``e`` was decoded here, its frames or None when imagecodecs declined)."""
        fut = self._pending.pop(id(e), None)
        if fut is None:
            return False, None
        self._fill()
        return True, fut.result()

    def close(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        self._pool.shutdown(wait=True)


def _prefetch(frames: Sequence[_Frame]) -> _Prefetch | None:
    """A :class:`_Prefetch` over the JPEG 2000 files of ``frames`` when there are several."""
    if _imagecodecs is None or _decode_workers() < 2:
        return None
    jobs, seen = [], set()
    for fr in frames:
        e = fr.entry
        if id(e) in seen:
            continue
        seen.add(id(e))
        if str(_ts_uid(e.ds) or "") in _J2K:
            jobs.append((e, *_file_shape(fr)))
    return _Prefetch(jobs) if len(jobs) > 1 else None


def _file_shape(fr: _Frame) -> tuple[int, int, int]:
    """(frames, rows, columns) of the pixel data of the file holding ``fr`` (a whole mosaic
    image when ``fr`` is one of its tiles)."""
    rows, cols = (fr.rows, fr.cols) if fr.tile is None else fr.tile[2:]
    return int(getattr(fr.entry.ds, "NumberOfFrames", 1) or 1), rows, cols


def _file_pixels(e: _Entry, n_frames: int, rows: int, cols: int, name: str, *,
                 try_j2k: bool = True) -> np.ndarray:
    """Stored pixel values of every frame of ``e``, shape ``(n_frames, rows, cols)``.

    ``try_j2k=False`` skips the imagecodecs JPEG 2000 path (already tried by the prefetch)."""
    ds, f = e.ds, e.path
    try:
        _, _, _, spp = _pixel_format(ds)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomError(f"{name}: {f} has an invalid pixel format ({exc})") from exc
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if spp != 1 or photometric.startswith(("RGB", "YBR", "PALETTE")):
        modality = _text(ds, "Modality") or "?"
        raise DicomError(
            f"{name}: {f} is a colour image ({photometric or '?'}, {spp} samples per pixel) in a "
            f"{modality} series; {'CT values (HU) are' if modality == 'CT' else 'a volume is'} "
            f"single-sample greyscale — this is a rendered/screen-capture image, not "
            f"reconstructed slices: pick the original greyscale series"
        )
    arr = _native_pixels(e, n_frames, rows, cols)
    if arr is None and try_j2k:
        arr = _j2k_pixels(e, n_frames, rows, cols)
    if arr is not None:
        return arr
    try:
        full = pydicom.dcmread(f)
    except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt file
        raise DicomError(
            f"{name}: {f} is truncated or corrupt ({type(exc).__name__}: {exc}); re-export or "
            f"remove it"
        ) from exc
    if not any(k in full for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomError(f"{name}: {f} has no pixel data; it is not an image slice")
    try:
        px = np.asarray(full.pixel_array)
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean "unreadable"
        raise DicomError(
            f"{name}: cannot decode the pixel data of {f} (transfer syntax "
            f"{_transfer_syntax(full)}): {type(exc).__name__}: {exc}; {_decode_hint(full)}"
        ) from exc
    if px.size != n_frames * rows * cols:
        raise DicomError(
            f"{name}: {f} decodes to pixel array shape {px.shape}, not {n_frames} frame(s) of "
            f"{rows}x{cols}"
        )
    return px.reshape(n_frames, rows, cols)


def _invert_monochrome1(ds: Dataset) -> tuple[float, float] | None:
    """``(lo, hi)`` of the stored range when MONOCHROME1 values must be inverted, else None."""
    if _text(ds, "PhotometricInterpretation").upper() != "MONOCHROME1":
        return None
    if _text(ds, "Modality").upper() in ("CT", "PT") or _text(ds, "RescaleType").upper() == "HU":
        return None  # quantitative values: the photometric interpretation is display only
    _, stored, sign, _ = _pixel_format(ds)
    if sign:
        return -(2.0 ** (stored - 1)), 2.0 ** (stored - 1) - 1
    return 0.0, 2.0**stored - 1


def _decode_frames(frames: Sequence[_Frame], name: str) -> np.ndarray:
    """Rescaled values of the (sorted) frames as float32 ``(n, rows, cols)``."""
    nj, ni = frames[0].rows, frames[0].cols
    out = np.empty((len(frames), nj, ni), dtype=np.float32)
    cache: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for fr in frames:
        counts[id(fr.entry)] = counts.get(id(fr.entry), 0) + 1
    buf = np.empty((nj, ni), dtype=np.float64)  # rescale in float64, then round once to float32
    warned_inversion = False
    prefetch = _prefetch(frames)
    try:
        for k, fr in enumerate(frames):
            e = fr.entry
            key = id(e)
            if key not in cache:
                tried, px_all = (False, None) if prefetch is None else prefetch.take(e)
                if px_all is None:
                    px_all = _file_pixels(e, *_file_shape(fr), name, try_j2k=not tried)
                cache[key] = px_all
            px = cache[key][fr.index]
            if fr.tile is not None:
                px = px[fr.tile[0] : fr.tile[0] + nj, fr.tile[1] : fr.tile[1] + ni]
            try:
                inv = _invert_monochrome1(e.ds)
            except (AttributeError, TypeError, ValueError) as exc:
                raise DicomError(f"{name}: {e.path} has an invalid pixel format ({exc})") from exc
            if (
                inv is None
                and fr.slope == 1.0
                and float(fr.intercept).is_integer()
                and px.dtype.itemsize <= 2
                and abs(fr.intercept) < 2**23
            ):
                # integers below 2**24 are exact in float32: same result as the float64 path
                np.add(px, np.float32(fr.intercept), out=out[k])
            else:
                _rescale(px, fr, inv, buf, name if not warned_inversion else None)
                warned_inversion = warned_inversion or inv is not None
                out[k] = buf
            counts[key] -= 1
            if counts[key] == 0:
                del cache[key]  # the bytes are no longer needed; free them as we go
    finally:
        if prefetch is not None:
            prefetch.close()
    if not np.all(np.isfinite(out)):
        raise DicomError(
            f"{name}: the rescaled values overflow 32-bit floats (RescaleSlope/RescaleIntercept "
            f"out of range); check the header's rescale values"
        )
    return out


def _rescale(
    px: np.ndarray,
    fr: _Frame,
    inv: tuple[float, float] | None,
    buf: np.ndarray,
    log_name: str | None,
) -> None:
    """``buf`` ← slope · stored + intercept in float64 (MONOCHROME1 inverted when ``inv``)."""
    np.multiply(px, fr.slope, out=buf)
    if inv is not None:
        # slope·(lo + hi − s) + b = slope·(lo + hi) + b − slope·s
        np.multiply(buf, -1.0, out=buf)
        buf += fr.slope * (inv[0] + inv[1])
        if log_name is not None:
            log.info("%s: MONOCHROME1 values inverted to the MONOCHROME2 convention", log_name)
    buf += fr.intercept


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _select(
    path: str | Path | Sequence[str | Path], series_uid: str | None
) -> tuple[str, list[_Entry], list[_Bad]]:
    """Scan ``path`` and pick the series to read; apply the unreadable-file policy."""
    groups, bad = _scan_entries(path, fast=True)
    if not groups:
        if bad:
            b = bad[0]
            raise DicomError(f"{b.path} is a {b.reason}; re-export or remove it")
        raise DicomError(f"no DICOM files found in {path}")
    known = set(groups) | {b.series_uid for b in bad if b.series_uid is not None}
    if series_uid is None:
        if len(known) > 1:
            infos = sorted(
                (_info(u, es, bad) for u, es in groups.items()), key=lambda s: s.series_uid
            )
            listing = "; ".join(str(i) for i in infos)
            extra = sorted(known - set(groups))
            if extra:
                listing += "; unreadable only: " + ", ".join(extra)
            raise DicomError(
                f"{len(known)} series found in {path}: {listing}. Choose one with series_uid=..."
            )
        series_uid = next(iter(groups))
    elif series_uid not in groups:
        raise DicomError(
            f"series {series_uid} not found in {path}; available: {', '.join(sorted(groups))}"
        )
    entries = groups[series_uid]
    name = _series_name(series_uid, entries)
    folders = {e.path.parent for e in entries}
    skipped = []
    for b in bad:
        if b.series_uid == series_uid:
            raise DicomError(f"{name}: {b.path} is {b.reason}; re-export or remove it")
        if b.series_uid is None and b.path.parent in folders:
            raise DicomError(
                f"{name}: {b.path} is {b.reason} and its series cannot be determined; it lies "
                f"in a folder of this series and could be one of its slices: re-export or "
                f"remove it"
            )
        skipped.append(b)
    return series_uid, entries, skipped


def _series_frames(entries: Sequence[_Entry], modality: str | None, name: str) -> list[_Frame]:
    if modality is not None:
        found = {_text(e.ds, "Modality") for e in entries}
        if found != {modality}:
            raise DicomError(
                f"{name} is {', '.join(sorted(found)) or 'of unknown modality'}, not {modality}; "
                f"this step needs a {modality} series — pick another series_uid"
            )
    return [fr for e in entries for fr in _frames_of(e)]


def _fill_value(fill_value: float | None, frames: Sequence[_Frame], values: np.ndarray) -> float:
    if fill_value is not None:
        return float(fill_value)
    if _text(frames[0].entry.ds, "Modality").upper() == "CT":
        return _AIR_HU
    return float(values.min())


def _resample_stack(
    stack: np.ndarray,
    ipp: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    di: float,
    dj: float,
    fill: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample a sheared and/or unevenly spaced stack onto an orthogonal regular grid.

    Returns the array, the LPS origin of its voxel (0, 0, 0) and the slice step (mm).
    """
    from scipy.ndimage import map_coordinates

    row, col, normal = axes
    nk0, nj, ni = stack.shape
    rel = ipp - ipp[0]
    s = rel @ normal
    u, v = rel @ row / di, rel @ col / dj  # in-plane offsets of each slice, in pixels
    i0, i1 = int(np.floor(u.min() + 1e-6)), int(np.ceil(u.max() + ni - 1 - 1e-6))
    j0, j1 = int(np.floor(v.min() + 1e-6)), int(np.ceil(v.max() + nj - 1 - 1e-6))
    n_i, n_j = i1 - i0 + 1, j1 - j0 + 1
    steps = np.diff(s)
    median = float(np.median(steps))
    if np.all(np.abs(steps - median) <= max(_POSITION_TOL_MM, _SPACING_REL_TOL * median)):
        dk, nk = median, nk0
    else:
        dk = float(steps[steps > 0].min())
        nk = int(np.floor(s[-1] / dk + 1e-6)) + 1
        if nk > 2 * nk0:  # dcm2niix nii_saveNII3Deq: at most twice the slices
            nk = 2 * nk0
            dk = float(s[-1] / (nk - 1))
    # 1) each slice onto the enlarged orthogonal in-plane grid (bilinear), NaN outside it
    jj, ii = np.mgrid[0:n_j, 0:n_i].astype(np.float64)
    deshear = np.empty((nk0, n_j, n_i), dtype=np.float32)
    for m in range(nk0):
        cj = jj + (j0 - v[m])
        ci = ii + (i0 - u[m])
        for c in (cj, ci):  # snap near-integers so exact edge samples are not lost to NaN
            r = np.rint(c)
            np.copyto(c, r, where=np.abs(c - r) < 1e-6)
        deshear[m] = map_coordinates(
            stack[m].astype(np.float64), [cj, ci], order=1, mode="constant", cval=np.nan
        )
    # 2) linear interpolation along the normal between the bracketing slices
    out = np.empty((nk, n_j, n_i), dtype=np.float32)
    for t in range(nk):
        st = min(t * dk, s[-1])
        m = int(np.clip(np.searchsorted(s, st, side="right") - 1, 0, nk0 - 2)) if nk0 > 1 else 0
        w = 0.0 if nk0 == 1 else float(np.clip((st - s[m]) / (s[m + 1] - s[m]), 0.0, 1.0))
        if w < 1e-9:
            out[t] = deshear[m]
        elif w > 1 - 1e-9:
            out[t] = deshear[m + 1]
        else:
            out[t] = (1.0 - w) * deshear[m] + w * deshear[m + 1]
    np.nan_to_num(out, copy=False, nan=fill)
    origin = ipp[0] + i0 * di * row + j0 * dj * col
    return out, origin, dk


def _assemble(
    frames: list[_Frame],
    sid: str,
    name: str,
    *,
    min_slices: int,
    resample: bool,
    fill_value: float | None,
    skipped: Sequence[_Bad],
) -> Volume:
    """Validate the geometry of the frames of one 3-D volume, decode and assemble them."""
    if len(frames) < min_slices:
        if len(frames) == 1:
            raise DicomError(
                f"{name} has a single slice ({frames[0].entry.path}); a 3-D volume needs at "
                f"least {min_slices} slices (pass min_slices=1 to read a 2-D image)"
            )
        raise DicomError(f"{name} has {len(frames)} slices; at least {min_slices} were required")
    row, col, normal = _plane(frames, name)
    along = np.array([fr.ipp @ normal for fr in frames])
    order = np.argsort(along, kind="stable")
    frames = [frames[i] for i in order]
    along = along[order]
    ipp = np.array([fr.ipp for fr in frames])
    di, dj = float(frames[0].psp[1]), float(frames[0].psp[0])
    resampled: dict[str, Any] | None = None
    problems: list[str] = []
    if len(frames) == 1:
        step = _single_slice_step_mm(frames[0])
    else:
        steps = np.diff(along)
        dup = np.flatnonzero(steps < _POSITION_TOL_MM)
        if dup.size:
            i = int(dup[0])
            timed = frames[i].has_time and frames[i + 1].has_time
            raise DicomError(
                f"{name} has duplicate slice positions: {frames[i].label} and "
                f"{frames[i + 1].label} are both at {along[i]:.3f} mm along the normal "
                + (
                    "with different temporal positions that do not form complete phases; "
                    if timed
                    else "(several acquisitions or phases in one series?); "
                )
                + (
                    "these are Siemens mosaics, one volume per file: read one file, e.g. "
                    f"read_series([{str(frames[i].entry.path)!r}])"
                    if frames[i].tile is not None and frames[i + 1].tile is not None
                    else "select one set of slices"
                )
            )
        step = float(np.median(steps))
        tol = max(_POSITION_TOL_MM, _SPACING_REL_TOL * step)
        # Both defects are reported together: a tilted CT often has uneven steps as well.
        bad = np.flatnonzero(np.abs(steps - step) > tol)
        if bad.size:
            i = int(bad[0])
            kind = "missing slice(s)" if steps[i] > _GAP_FACTOR * step else "uneven slice spacing"
            problems.append(
                f"{kind}: the step between {frames[i].label} and {frames[i + 1].label} is "
                f"{steps[i]:.4f} mm but the median step is {step:.4f} mm ({bad.size} irregular "
                f"step(s))"
            )
        delta = np.diff(ipp, axis=0)
        lateral = np.linalg.norm(delta - np.outer(delta @ normal, normal), axis=1)
        if lateral.max() > tol:
            i = int(np.argmax(lateral))
            angle = float(np.degrees(np.arctan2(lateral[i], steps[i])))
            problems.append(
                f"slices are not stacked along their normal (gantry tilt or sheared series, "
                f"{angle:.2f}° between {frames[i].label} and {frames[i + 1].label})"
            )
        if problems and not resample:
            raise DicomError(
                f"{name}: {'; '.join(problems)}; pass resample=True to resample it onto a "
                f"regular orthogonal grid (linear interpolation), or complete the series"
            )
    values = _decode_frames(frames, name)
    origin = ipp[0]
    if problems:
        if np.any(np.diff(along) > _GAP_FACTOR * np.median(np.diff(along))):
            log.warning("%s: interpolating across missing slice(s) while resampling", name)
        fill = _fill_value(fill_value, frames, values)
        values, origin, step = _resample_stack(values, ipp, (row, col, normal), di, dj, fill)
        resampled = {
            "reason": "; ".join(problems),
            "original_n_slices": len(frames),
            "original_positions_along_normal_mm": [float(a - along[0]) for a in along],
            "slice_step_mm": step,
            "fill_value": fill,
            "method": "linear (bilinear in-plane, linear along the normal)",
        }
        log.warning("%s resampled onto a regular orthogonal grid: %s", name, resampled["reason"])

    ds0 = frames[0].entry.ds
    files = list(dict.fromkeys(str(fr.entry.path) for fr in frames))
    meta: dict[str, Any] = {
        "modality": _text(ds0, "Modality"),
        "series_uid": sid,
        "study_uid": _text(ds0, "StudyInstanceUID"),
        "description": _text(ds0, "SeriesDescription"),
        "study_description": _text(ds0, "StudyDescription"),
        "patient_id": _text(ds0, "PatientID"),
        "manufacturer": _text(ds0, "Manufacturer"),
        "series_number": int(
            _num(getattr(ds0, "SeriesNumber", None), 0, "SeriesNumber", name) or 0
        ),
        "transfer_syntax": str(getattr(getattr(ds0, "file_meta", None), "TransferSyntaxUID", "")),
        "n_slices": int(values.shape[0]),
        "n_frames": len(frames),
        "files": files,
        "resampled": resampled,
        "skipped_files": [{"file": str(b.path), "reason": b.reason} for b in skipped],
    }
    direction = np.stack([row, col, normal], axis=1)
    spacing = (di, dj, float(step))
    log.info(
        "read %s: %d slices of %dx%d, spacing %s mm",
        name,
        values.shape[0],
        values.shape[1],
        values.shape[2],
        tuple(round(s, 4) for s in spacing),
    )
    return Volume(values, spacing, tuple(float(v) for v in origin), direction, meta)


def _single_slice_step_mm(fr: _Frame) -> float:
    if fr.thickness_mm is not None and fr.thickness_mm > 0:
        return float(fr.thickness_mm)
    log.warning(
        "%s has no SpacingBetweenSlices or SliceThickness; slice spacing set to 1 mm", fr.label
    )
    return 1.0


def _check_min_slices(min_slices: int) -> None:
    if int(min_slices) < 1:
        raise InputError(f"min_slices must be >= 1; got {min_slices}")


def _select_phases(
    path: str | Path | Sequence[str | Path],
    series_uid: str | None,
    min_slices: int,
    modality: str | None,
) -> tuple[str, str, list[_Bad], list[_Frame], list[tuple[float | int, list[_Frame]]] | None]:
    """The shared start of :func:`read_series` and :func:`read_phases`: the chosen series' UID,
    display name, skipped files, frames and phases (None for a single 3-D volume)."""
    _check_min_slices(min_slices)
    sid, entries, skipped = _select(path, series_uid)
    name = _series_name(sid, entries)
    frames = _series_frames(entries, modality, name)
    return sid, name, skipped, frames, _split_phases(frames, name)


def read_series(
    path: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    min_slices: int = 2,
    modality: str | None = None,
    resample: bool = False,
    fill_value: float | None = None,
    phase: float | int | None = None,
) -> Volume:
    """Read a DICOM image series (single-frame files, an enhanced multi-frame file, or a Siemens
    mosaic split into its slices).

    Parameters
    ----------
    path : path or sequence of paths
        A folder (searched recursively), one file or a list of files. Non-DICOM files are
        ignored (logged); unreadable DICOM files of other series are skipped (see the module
        docstring).
    series_uid : str, optional
        The SeriesInstanceUID to read; required when several series are present. Files whose
        SeriesInstanceUID is blank (anonymised) are grouped under :data:`NO_SERIES_UID`.
    min_slices : int, default 2
        Fewest slices accepted. ``1`` reads a single 2-D image as a one-slice volume whose slice
        spacing is ``SpacingBetweenSlices``, else ``SliceThickness``, else 1 mm (as ITK does).
    modality : str, optional
        Required Modality (e.g. ``"CT"``); another modality is refused.
    resample : bool, default False
        Resample a tilted and/or unevenly spaced (or gapped) stack onto a regular orthogonal grid
        instead of refusing it (see the module docstring).
    fill_value : float, optional
        Value of resampled voxels outside every original slice; default air (−1000 HU) for CT,
        the series minimum otherwise.
    phase : float or int, optional
        For a multi-phase (4-D) series: the label of the phase to read, as returned by
        :func:`read_phases` (trigger time in ms, else temporal position index).

    Returns
    -------
    Volume
        float32 array ``[k, j, i]`` of rescaled values; ``origin_mm`` = ImagePositionPatient of
        the first slice along the normal (of the resampled grid's corner when resampled);
        ``direction`` columns = row cosine, column cosine, slice normal; ``spacing_mm`` = (column
        spacing, row spacing, median slice step). ``metadata`` holds ``modality``,
        ``series_uid``, ``study_uid``, ``description``, ``study_description``, ``patient_id``,
        ``manufacturer``, ``series_number``, ``transfer_syntax`` (of the first slice),
        ``n_slices``, ``n_frames`` (frames, or mosaic tiles, read), ``files``, ``resampled``
        (None, or what was done),
        ``skipped_files`` (unreadable files of other series) and ``phase`` when one was picked.

    Raises
    ------
    DicomError
        No DICOM series, several series and no ``series_uid`` (the message lists them), an unknown
        ``series_uid``, the wrong modality, a series that is not a regular 3-D stack and
        ``resample`` is false, several phases and no ``phase``, an unreadable file of the series,
        or pixel data that cannot be decoded (the message names the file, the transfer syntax and
        the decoder package to install).
    InputError
        If ``min_slices`` is less than 1.
    """
    sid, name, skipped, frames, phases = _select_phases(path, series_uid, min_slices, modality)
    picked: float | int | None = None
    if phases is not None:
        labels = [lab for lab, _ in phases]
        if phase is None:
            raise DicomError(
                f"{name} holds {len(phases)} phases (labels {labels}: trigger time in ms, else "
                f"temporal position); read them all with read_phases(...) or pick one with "
                f"read_series(..., phase=<label>)"
            )
        match = [fr for lab, fr in phases if lab == phase]
        if not match:
            raise DicomError(f"{name} has no phase {phase!r}; its phases are {labels}")
        frames, picked = match[0], phase
    elif phase is not None:
        raise DicomError(f"{name} is a single 3-D volume; it has no phase {phase!r} to pick")
    vol = _assemble(
        frames,
        sid,
        name,
        min_slices=min_slices,
        resample=resample,
        fill_value=fill_value,
        skipped=skipped,
    )
    if picked is not None:
        vol.metadata["phase"] = picked
    return vol


def read_phases(
    path: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    min_slices: int = 2,
    modality: str | None = None,
    resample: bool = False,
    fill_value: float | None = None,
) -> list[tuple[float | int, Volume]]:
    """Read every phase of a multi-phase (4-D) series: cine MR, multi-phase cardiac CT.

    The phases are the same slice positions repeated at several temporal positions, as
    single-frame files (TriggerTime, TemporalPositionIdentifier, NominalPercentageOfCardiacPhase)
    or as one enhanced multi-frame file (FrameContentSequence TemporalPositionIndex,
    CardiacSynchronizationSequence NominalCardiacTriggerDelayTime).

    Parameters
    ----------
    path, series_uid, min_slices, modality, resample, fill_value
        As for :func:`read_series`.

    Returns
    -------
    list of (label, Volume)
        Sorted in time. ``label`` is the phase's trigger time in ms (median over its slices) when
        every frame has one, else its temporal position index, else its nominal % of the RR
        interval, else its number; ``Volume.metadata["phase"]`` holds it too. A 3-D series gives
        one item labelled 0.

    Raises
    ------
    DicomError
        As for :func:`read_series`, or when positions repeat without forming complete phases.
    """
    sid, name, skipped, frames, phases = _select_phases(path, series_uid, min_slices, modality)
    phases = phases or [(0, frames)]
    out = []
    for label, fr in phases:
        vol = _assemble(
            fr,
            sid,
            f"{name} phase {label}",
            min_slices=min_slices,
            resample=resample,
            fill_value=fill_value,
            skipped=skipped,
        )
        vol.metadata["phase"] = label
        out.append((label, vol))
    log.info("read %s: %d phase(s)", name, len(out))
    return out
