"""DICOM CT series: discovery in a folder tree, reading into a :class:`Volume`, and writing.

Geometry (DICOM PS3.3 C.7.6.2, Image Plane Module)
--------------------------------------------------
A slice's ``ImageOrientationPatient`` holds the row cosine (direction of increasing column
index, our ``i`` axis) and the column cosine (direction of increasing row index, ``j``);
``PixelSpacing`` is ``[row spacing, column spacing]``, i.e. ``[dj, di]`` — the *reverse* of
:attr:`Volume.spacing_mm`. Slices are sorted by the projection of ``ImagePositionPatient`` on the
slice normal (row cosine × column cosine), so the reader returns a volume whose ``k`` axis is that
normal, whatever order the files come in.

Refused with a :class:`~cardiotwin.errors.DicomError` naming the series (and the file when one
file is at fault): a single slice (unless ``min_slices=1``), duplicate or missing positions, uneven slice spacing (a step
deviating from the median by more than 1% of it and more than 0.01 mm), gantry tilt (slice
positions not stacked along the normal), mixed orientation or image size, missing pixel data,
truncated or corrupt files, multi-frame (enhanced) objects (not supported yet).

Compressed transfer syntaxes are decoded by pydicom's pixel-data plugins: RLE and deflate by
pydicom itself (or ``pylibjpeg-rle``), JPEG baseline/lossless and JPEG-LS by ``pylibjpeg`` +
``pylibjpeg-libjpeg``, JPEG 2000 and HTJ2K by ``pylibjpeg`` + ``pylibjpeg-openjpeg``
(``python-gdcm`` covers most of them too). A syntax no installed plugin decodes is refused with a
:class:`~cardiotwin.errors.DicomError` naming the file, the transfer syntax and what to install.

Patient names are never written to the log and never put in :attr:`Volume.metadata`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging.volume import Volume

__all__ = ["NO_SERIES_UID", "SeriesInfo", "list_series", "read_series", "write_ct_series"]

log = logging.getLogger(__name__)

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR
_ORIENTATION_TOL = 1e-4  # cosines
_POSITION_TOL_MM = 0.01
_SPACING_REL_TOL = 0.01
_DEFAULT_DATETIME = datetime(2024, 1, 1, 9, 0, 0)
#: Pixel data elements: not decoded during a scan (read lazily, decoded once per file).
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
#: Values larger than this are read from the file only when accessed (pixel data).
_DEFER_SIZE = 1024
#: Native (uncompressed, little endian) transfer syntaxes decoded without pydicom's pixel handlers.
_NATIVE_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
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
        Number of files (instances) of the series.
    size_bytes : int
        Total size of its files.
    study_uid : str
        StudyInstanceUID; empty if absent.
    files : tuple of Path
        Its files, sorted by path.
    """

    series_uid: str
    modality: str
    description: str
    n_files: int
    size_bytes: int
    study_uid: str = ""
    files: tuple[Path, ...] = ()

    def __str__(self) -> str:
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.series_uid} ({self.modality or '?'}{desc}, {self.n_files} files)"


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


def _decode_header(ds: Dataset) -> None:
    """Convert every raw header value of ``ds`` (recursing into sequences), except pixel data.

    pydicom parses lazily; converting now makes a corrupt value fail during the scan, where the
    file is named. The (deferred) pixel data elements are left for :func:`_pixels` to read.
    """
    for tag in ds.keys():
        if tag in _PIXEL_TAGS:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_header(item)


def _scan(
    path: str | Path | Sequence[str | Path], *, with_pixels: bool = False
) -> dict[str, list[tuple[Path, Dataset]]]:
    """Headers of the DICOM files under ``path``, grouped by series UID.

    Without ``with_pixels`` the files are read up to their pixel data. With it they are read in
    full in this single pass, but the large pixel data values are deferred: pydicom reads them
    from the file (at the offset recorded now) only when :func:`_pixels` asks for them.
    """
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    ignored = blank = 0
    for f in _candidate_files(path):
        if not _is_dicom_file(f):
            ignored += 1
            log.info("ignoring %s: not a DICOM Part 10 file (no 'DICM' marker)", f)
            continue
        try:
            if with_pixels:
                ds = pydicom.dcmread(f, defer_size=_DEFER_SIZE)
            else:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            _decode_header(ds)  # pydicom parses lazily: decode every header value now
        except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt file
            raise DicomError(
                f"{f} is a truncated or corrupt DICOM file "
                f"({type(exc).__name__}: {exc}); re-export or remove it"
            ) from exc
        sop_class = str(
            getattr(ds, "SOPClassUID", "")
            or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
        )
        if sop_class == _MEDIA_STORAGE_DIRECTORY:
            log.info("ignoring DICOMDIR %s", f)
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "").strip()
        if not uid:
            if "Rows" not in ds or "Columns" not in ds:
                raise DicomError(
                    f"{f} has no SeriesInstanceUID: it is truncated or not an image "
                    f"instance; re-export or remove it"
                )
            # Anonymisers sometimes blank the UIDs; such files are one series, under a fixed key.
            uid = NO_SERIES_UID
            blank += 1
        groups.setdefault(uid, []).append((f, ds))
    if ignored:
        log.info("%d non-DICOM file(s) ignored", ignored)
    if blank:
        log.warning(
            "%d image file(s) have an empty SeriesInstanceUID (anonymised?); they are grouped "
            "as one series under the key %r",
            blank,
            NO_SERIES_UID,
        )
    return groups


def _info(uid: str, items: list[tuple[Path, Dataset]]) -> SeriesInfo:
    ds0 = items[0][1]
    files = tuple(sorted(f for f, _ in items))
    return SeriesInfo(
        series_uid=uid,
        modality=str(getattr(ds0, "Modality", "") or ""),
        description=str(getattr(ds0, "SeriesDescription", "") or ""),
        n_files=len(files),
        size_bytes=sum(f.stat().st_size for f in files),
        study_uid=str(getattr(ds0, "StudyInstanceUID", "") or ""),
        files=files,
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
        Sorted by study UID, then series UID.

    Raises
    ------
    DicomError
        If the path does not exist or a DICOM file is truncated/corrupt.
    """
    groups = _scan(path)
    return sorted(
        (_info(u, it) for u, it in groups.items()), key=lambda s: (s.study_uid, s.series_uid)
    )


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _floats(ds: Dataset, keyword: str, n: int, f: Path, series: str) -> np.ndarray:
    val = getattr(ds, keyword, None)
    try:
        arr = np.asarray([float(v) for v in val], dtype=float) if val is not None else None
    except (TypeError, ValueError) as exc:
        raise DicomError(f"series {series}: {f} has an unreadable {keyword} ({val!r})") from exc
    if arr is None or arr.size != n:
        raise DicomError(
            f"series {series}: {f} has no valid {keyword} (expected {n} numbers, "
            f"got {val!r}); a 3-D volume needs it on every slice"
        )
    return arr


def _transfer_syntax(ds: Dataset) -> str:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None:
        return "unknown (no TransferSyntaxUID in the file meta header)"
    name = ts.name if ts.is_transfer_syntax else "unknown"
    return f"{name} ({ts})" if name != str(ts) else str(ts)


def _decode_hint(ds: Dataset) -> str:
    """What a user can do when the pixel data of ``ds`` cannot be decoded."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None or not ts.is_compressed:
        return "the file is truncated or corrupt; re-export or remove it"
    packages = _DECODER_PACKAGES.get(str(ts))
    if packages is not None:
        return f"install the pydicom decoder plugin for it: pip install {packages}"
    return (
        "no pydicom decoder plugin supports this transfer syntax; convert the files to an "
        "uncompressed or lossless JPEG transfer syntax first (e.g. gdcmconv --raw or dcmdjpeg)"
    )


def _native_pixels(ds: Dataset, rows: int, cols: int) -> np.ndarray | None:
    """The slice of a plain uncompressed little-endian file as a view of its bytes, or None.

    Only the layout whose decoding is a reinterpretation of the bytes (one sample, one frame,
    BitsStored == BitsAllocated of 8/16/32, exact length) is handled here; it gives exactly
    what ``ds.pixel_array`` gives. Anything else returns None and goes through pydicom.
    """
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts not in _NATIVE_LE or rows <= 0 or cols <= 0:
        return None
    try:
        bits = int(ds.BitsAllocated)
        stored = int(ds.BitsStored)
        sign = int(ds.PixelRepresentation)
        spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if bits not in (8, 16, 32) or stored != bits or sign not in (0, 1) or spp != 1 or frames != 1:
        return None
    data = ds.PixelData
    n = rows * cols * (bits // 8)
    if not isinstance(data, bytes) or len(data) not in (n, n + n % 2):  # odd n: one pad byte
        return None
    dtype = np.dtype(f"<{'iu'[sign == 0]}{bits // 8}")
    return np.frombuffer(data, dtype=dtype, count=rows * cols).reshape(rows, cols)


def _pixels(f: Path, ds: Dataset, series: str, rows: int, cols: int) -> np.ndarray:
    """Decode the pixel data of ``ds`` (read in full, pixel data deferred, by :func:`_scan`)."""
    if "PixelData" not in ds:
        raise DicomError(f"series {series}: {f} has no pixel data; it is not an image slice")
    try:
        ds.PixelData  # noqa: B018 - reads the deferred value from the file
    except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt file
        raise DicomError(
            f"series {series}: {f} is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    arr = _native_pixels(ds, rows, cols)
    if arr is not None:
        return arr
    try:
        return ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean "unreadable"
        raise DicomError(
            f"series {series}: cannot decode the pixel data of {f} (transfer syntax "
            f"{_transfer_syntax(ds)}): {type(exc).__name__}: {exc}; {_decode_hint(ds)}"
        ) from exc


def read_series(
    path: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    min_slices: int = 2,
) -> Volume:
    """Read a single-frame DICOM image series into a :class:`Volume` (values after rescale).

    Parameters
    ----------
    path : path or sequence of paths
        A folder (searched recursively), one file or a list of files. Non-DICOM files are
        ignored (logged).
    series_uid : str, optional
        The SeriesInstanceUID to read; required when several series are present. Files whose
        SeriesInstanceUID is blank (anonymised) are grouped under :data:`NO_SERIES_UID`.
    min_slices : int, default 2
        Fewest slices accepted. ``1`` reads a single 2-D image as a one-slice volume whose slice
        spacing is ``SpacingBetweenSlices``, else ``SliceThickness``, else 1 mm (as ITK does).

    Returns
    -------
    Volume
        float32 array ``[k, j, i]``; ``origin_mm`` = ImagePositionPatient of the first slice
        along the normal; ``direction`` columns = row cosine, column cosine, slice normal;
        ``spacing_mm`` = (column spacing, row spacing, median slice step). ``metadata`` holds
        ``transfer_syntax`` (UID of the first slice) and
        ``modality``, ``series_uid``, ``study_uid``, ``description``, ``study_description``,
        ``patient_id``, ``manufacturer``, ``n_slices``, ``series_number``, ``files``.

    Raises
    ------
    DicomError
        No DICOM series, several series and no ``series_uid`` (the message lists them), an unknown
        ``series_uid``, a series that is not a regular 3-D stack (see the module docstring), or
        pixel data that cannot be decoded (the message names the file, the transfer syntax and the
        decoder package to install).
    InputError
        If ``min_slices`` is less than 1.
    """
    if int(min_slices) < 1:
        raise InputError(f"min_slices must be >= 1; got {min_slices}")
    groups = _scan(path, with_pixels=True)
    if not groups:
        raise DicomError(f"no DICOM files found in {path}")
    if series_uid is None:
        if len(groups) > 1:
            infos = sorted((_info(u, it) for u, it in groups.items()), key=lambda s: s.series_uid)
            listing = "; ".join(str(i) for i in infos)
            raise DicomError(
                f"{len(groups)} series found in {path}: {listing}. Choose one with series_uid=..."
            )
        series_uid = next(iter(groups))
    elif series_uid not in groups:
        raise DicomError(
            f"series {series_uid} not found in {path}; available: {', '.join(sorted(groups))}"
        )
    items = groups[series_uid]
    sid = series_uid

    for f, ds in items:
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if frames > 1:
            raise DicomError(
                f"series {sid}: {f} is a multi-frame (enhanced) object with {frames} "
                f"frames; only single-frame series are supported for now"
            )
    if len(items) < min_slices:
        if len(items) == 1:
            raise DicomError(
                f"series {sid} has a single slice ({items[0][0]}); a 3-D volume needs "
                f"at least {min_slices} slices (pass min_slices=1 to read a 2-D image)"
            )
        raise DicomError(
            f"series {sid} has {len(items)} slices; at least {min_slices} were required"
        )

    iop = np.array([_floats(ds, "ImageOrientationPatient", 6, f, sid) for f, ds in items])
    ipp = np.array([_floats(ds, "ImagePositionPatient", 3, f, sid) for f, ds in items])
    psp = np.array([_floats(ds, "PixelSpacing", 2, f, sid) for f, ds in items])
    size = np.array(
        [(int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)) for _, ds in items]
    )
    for arr, what, tol in (
        (iop, "orientation (ImageOrientationPatient)", _ORIENTATION_TOL),
        (psp, "pixel spacing (PixelSpacing)", 1e-6),
        (size, "image size (Rows/Columns)", 0),
    ):
        bad = np.flatnonzero(np.any(np.abs(arr - arr[0]) > tol, axis=1))
        if bad.size:
            raise DicomError(
                f"series {sid} mixes {what}: {items[0][0].name} has "
                f"{arr[0].tolist()} but {items[bad[0]][0].name} has "
                f"{arr[bad[0]].tolist()}; split the series before reading"
            )
    if np.any(size[0] <= 0) or np.any(psp[0] <= 0):
        raise DicomError(
            f"series {sid}: invalid Rows/Columns {size[0].tolist()} or "
            f"PixelSpacing {psp[0].tolist()}"
        )
    row_cos, col_cos = iop[0, :3], iop[0, 3:]
    if (
        abs(np.linalg.norm(row_cos) - 1) > 1e-3
        or abs(np.linalg.norm(col_cos) - 1) > 1e-3
        or abs(row_cos @ col_cos) > 1e-3
    ):
        raise DicomError(
            f"series {sid}: ImageOrientationPatient {iop[0].tolist()} is not two "
            f"orthonormal direction cosines"
        )
    row_cos /= np.linalg.norm(row_cos)
    col_cos = col_cos - (col_cos @ row_cos) * row_cos
    col_cos /= np.linalg.norm(col_cos)
    normal = np.cross(row_cos, col_cos)

    along = ipp @ normal
    order = np.argsort(along, kind="stable")
    along, ipp = along[order], ipp[order]
    items = [items[i] for i in order]
    if len(items) == 1:
        return _read_slices(
            items, ipp, psp, size, row_cos, col_cos, normal, _single_slice_step_mm(items[0]), sid
        )
    steps = np.diff(along)
    dup = np.flatnonzero(steps < _POSITION_TOL_MM)
    if dup.size:
        i = int(dup[0])
        raise DicomError(
            f"series {sid} has duplicate slice positions: {items[i][0].name} and "
            f"{items[i + 1][0].name} are both at {along[i]:.3f} mm along the normal "
            f"(several acquisitions or phases in one series?); select one set of slices"
        )
    step = float(np.median(steps))
    tol = max(_POSITION_TOL_MM, _SPACING_REL_TOL * step)
    # Both defects are reported together: a tilted CT often has uneven steps as well.
    problems = []
    bad = np.flatnonzero(np.abs(steps - step) > tol)
    if bad.size:
        i = int(bad[0])
        kind = "missing slice(s)" if steps[i] > 1.5 * step else "uneven slice spacing"
        problems.append(
            f"{kind}: the step between {items[i][0].name} and "
            f"{items[i + 1][0].name} is {steps[i]:.4f} mm but the median step is {step:.4f} mm "
            f"({bad.size} irregular step(s))"
        )
    delta = np.diff(ipp, axis=0)
    lateral = np.linalg.norm(delta - np.outer(delta @ normal, normal), axis=1)
    if lateral.max() > tol:
        i = int(np.argmax(lateral))
        angle = float(np.degrees(np.arctan2(lateral[i], steps[i])))
        problems.append(
            f"slices are not stacked along their normal (gantry tilt or sheared "
            f"series, {angle:.2f}° between {items[i][0].name} and {items[i + 1][0].name})"
        )
    if problems:
        raise DicomError(
            f"series {sid}: {'; '.join(problems)}; resample to a regular orthogonal grid or "
            f"complete the series before use"
        )
    return _read_slices(items, ipp, psp, size, row_cos, col_cos, normal, step, sid)


def _single_slice_step_mm(item: tuple[Path, Dataset]) -> float:
    f, ds = item
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(getattr(ds, keyword, None) or 0.0)
        except (TypeError, ValueError):
            value = 0.0
        if value > 0:
            return value
    log.warning("%s has no SpacingBetweenSlices or SliceThickness; slice spacing set to 1 mm", f)
    return 1.0


def _read_slices(
    items: list[tuple[Path, Dataset]],
    ipp: np.ndarray,
    psp: np.ndarray,
    size: np.ndarray,
    row_cos: np.ndarray,
    col_cos: np.ndarray,
    normal: np.ndarray,
    step: float,
    sid: str,
) -> Volume:
    """Decode the (validated, sorted) slices and assemble the volume."""
    nk, (nj, ni) = len(items), (int(size[0, 0]), int(size[0, 1]))
    out = np.empty((nk, nj, ni), dtype=np.float32)
    buf = np.empty((nj, ni), dtype=np.float64)  # rescale in float64, then round once to float32
    for k, (f, ds) in enumerate(items):
        px = _pixels(f, ds, sid, nj, ni)
        if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1 or px.shape != (nj, ni):
            raise DicomError(
                f"series {sid}: {f} is not a {nj}x{ni} single-sample image "
                f"(pixel array shape {px.shape})"
            )
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        inter = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        np.multiply(px, slope, out=buf)
        buf += inter
        out[k] = buf
        if "PixelData" in ds:
            del ds.PixelData  # the bytes are no longer needed; free them as we go

    ds0 = items[0][1]
    meta: dict[str, Any] = {
        "modality": str(getattr(ds0, "Modality", "") or ""),
        "series_uid": sid,
        "study_uid": str(getattr(ds0, "StudyInstanceUID", "") or ""),
        "description": str(getattr(ds0, "SeriesDescription", "") or ""),
        "study_description": str(getattr(ds0, "StudyDescription", "") or ""),
        "patient_id": str(getattr(ds0, "PatientID", "") or ""),
        "manufacturer": str(getattr(ds0, "Manufacturer", "") or ""),
        "series_number": int(getattr(ds0, "SeriesNumber", 0) or 0),
        "transfer_syntax": str(getattr(getattr(ds0, "file_meta", None), "TransferSyntaxUID", "")),
        "n_slices": nk,
        "files": [str(f) for f, _ in items],
    }
    direction = np.stack([row_cos, col_cos, normal], axis=1)
    spacing = (float(psp[0, 1]), float(psp[0, 0]), step)
    log.info(
        "read series %s: %d slices of %dx%d, spacing %s mm",
        sid,
        nk,
        nj,
        ni,
        tuple(round(s, 4) for s in spacing),
    )
    return Volume(out, spacing, tuple(float(v) for v in ipp[0]), direction, meta)
