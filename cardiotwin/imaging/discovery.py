"""Find and choose DICOM series in a folder tree: patients → studies → series, DICOMDIR aware.

:func:`scan_tree` walks a folder recursively and reads the *headers* of every file (never the
pixel data), groups the instances by patient, study (StudyInstanceUID) and series
(SeriesInstanceUID) and summarises each series: modality, description, image type, number of
files and frames, size, voxel spacing estimated from the slice positions, contrast, cardiac
phases, reconstruction kernel and date-time. Files that are not DICOM or cannot be parsed are
listed in :attr:`SeriesCatalog.skipped`; they never stop the scan.

When the tree holds a ``DICOMDIR`` (DICOM PS3.10 media directory, PS3.3 F.3 Basic Directory
IOD), its directory records are followed (patient → study → series → image records linked by
byte offsets) and every Referenced File ID is resolved; files it lists that are missing on disk,
and files whose headers disagree with their record, are reported in
:attr:`SeriesCatalog.problems`.

:func:`select_series` applies a selection rule (``"largest-contrast-ct"``, ``"largest-ct"``,
``"phase=75"``, ``"trigger=350"``, ``"uid-prefix=1.2.3"``) and returns the files of one series
(or of one cardiac phase of it) in a form :func:`cardiotwin.imaging.dicom.read_series` reads.

Privacy: patients appear only as a label — the keyed pseudonym of
:func:`cardiotwin.imaging.deid.pseudonym` when a key is given, otherwise an opaque hash salted
per process (it cannot be matched against a list of IDs). Patient names and IDs are never stored
in the catalog, never logged and never put in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging.deid import pseudonym
from cardiotwin.imaging.dicom import _MR_CREATOR, NO_SERIES_UID, _private_value

__all__ = [
    "RULES",
    "SeriesCatalog",
    "SeriesSelection",
    "SeriesSummary",
    "SkippedFile",
    "StudySummary",
    "PatientSummary",
    "scan_tree",
    "select_series",
]

log = logging.getLogger(__name__)

#: Called as ``progress(fraction_done, message)`` during a scan (the CLI's progress bar).
ProgressCallback = Callable[[float, str], None]

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR SOP class (PS3.4 Annex I)
_NO_SERIES_UID = NO_SERIES_UID  # the key read_series uses for blank series UIDs
_NO_STUDY_UID = "<no StudyInstanceUID>"
_POSITION_TOL_MM = 0.01  # two slice positions closer than this are the same position
_SPACING_REL_TOL = 0.01  # a step deviating from the median by more than 1 % is uneven
_PHASE_TOL_PCT = 0.5  # nominal percentages closer than this are the same phase
_TRIGGER_TOL_MS = 1.0  # trigger times closer than this are the same phase
#: ContrastBolusAgent values that mean "no contrast" although the attribute is filled in.
_NO_CONTRAST = frozenset({"", "NONE", "NO", "N/A", "NA", "NO CONTRAST", "0"})
#: Phase given in a SeriesDescription, e.g. Siemens "CorCTA 0.75 Bv40 75%".
_DESCRIPTION_PHASE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s*%")
#: Salt of the opaque patient labels when no key is given: fresh for every process.
_PROCESS_SALT = secrets.token_bytes(32)

#: Header elements read by the scan (pydicom ``specific_tags``): everything else is skipped.
_HEADER_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "PatientID", "PatientName",
    "StudyInstanceUID", "StudyDescription", "StudyDate", "StudyTime", "SeriesInstanceUID",
    "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "AcquisitionDateTime", "Modality", "Manufacturer", "ImageType",
    "ConvolutionKernel", "ContrastBolusAgent", "Rows", "Columns", "NumberOfFrames",
    "BitsAllocated", "SamplesPerPixel", "ImageOrientationPatient", "ImagePositionPatient",
    "PixelSpacing", "TriggerTime", "NominalPercentageOfCardiacPhase", "CardiacCyclePosition",
    "NominalInterval", "HeartRate", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
)


# --------------------------------------------------------------------------------------------
# domain types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameInfo:
    """One image (a single-frame file, or one frame of a multi-frame file) of a series.

    Attributes
    ----------
    path : Path
        The file.
    frame : int
        1-based frame number in a multi-frame file; 0 for a single-frame file.
    position_mm : float or None
        Position along the series' slice normal (mm); None without ImagePositionPatient.
    phase_pct : float or None
        NominalPercentageOfCardiacPhase (% of the R-R interval).
    trigger_ms : float or None
        TriggerTime (single-frame) or NominalCardiacTriggerDelayTime (multi-frame), ms.
    """

    path: Path
    frame: int = 0
    position_mm: float | None = None
    phase_pct: float | None = None
    trigger_ms: float | None = None


@dataclass(frozen=True)
class SeriesSummary:
    """What a scan found about one series (headers only; no pixel data read).

    Attributes
    ----------
    series_uid, study_uid : str
        SeriesInstanceUID and StudyInstanceUID.
    patient : str
        The patient's label: keyed pseudonym or opaque hash (never the name or ID).
    modality, description, manufacturer : str
        Modality, SeriesDescription, Manufacturer ("" if absent).
    series_number : int or None
        SeriesNumber of the first file.
    image_type : tuple of str
        ImageType values of the first file (e.g. ``("ORIGINAL", "PRIMARY", "AXIAL")``).
    is_original, is_localizer : bool
        ImageType starts with ORIGINAL; ImageType names a LOCALIZER/SCOUT/TOPOGRAM.
    n_files, n_frames : int
        Files, and images in them (multi-frame files count NumberOfFrames).
    rows, columns, n_slices : int
        Image size and number of distinct slice positions (0 when unknown).
    spacing_mm : tuple of 3 (float or None)
        Voxel size ``(di, dj, dk)`` in :class:`~cardiotwin.imaging.volume.Volume` order: column
        spacing, row spacing (from PixelSpacing) and the median step between distinct slice
        positions along the normal (None for a single position).
    uniform_spacing : bool
        Every step within 1 % (and 0.01 mm) of the median.
    contrast : bool
        ContrastBolusAgent present and not empty/"NONE" in any file.
    contrast_agent : str
        The agent as written (first non-empty value).
    phases_pct : tuple of float
        Distinct nominal percentages of the cardiac phase (or, when no file has the tag, the
        percentage in the SeriesDescription, e.g. "75%").
    trigger_times_ms : tuple of float
        Distinct trigger times (rounded to 0.1 ms).
    n_phases : int
        Number of cardiac phases: distinct percentages, else distinct trigger times when
        positions repeat, else 1.
    cardiac_cycle_positions : tuple of str
        Distinct CardiacCyclePosition values (e.g. END_DIASTOLE).
    rr_interval_ms : float or None
        R-R interval: median NominalInterval, else 60000 / HeartRate.
    kernel : str
        ConvolutionKernel (values joined with ``\\``).
    series_datetime, acquisition_datetime : str
        ``YYYY-MM-DDTHH:MM:SS`` (or a prefix of it) when present, else "".
    transfer_syntaxes : tuple of str
        Distinct TransferSyntaxUIDs.
    dicomdir_files : int or None
        Files of this series referenced by a DICOMDIR (None: not in any DICOMDIR).
    problems : tuple of str
        What would stop a regular 3-D read or looks wrong (duplicate positions, uneven spacing,
        tilt, mixed sizes, DICOMDIR mismatches...).
    frames : tuple of FrameInfo
        Every image, sorted by phase then position.
    """

    series_uid: str
    study_uid: str
    patient: str
    modality: str = ""
    description: str = ""
    manufacturer: str = ""
    series_number: int | None = None
    image_type: tuple[str, ...] = ()
    is_original: bool = False
    is_localizer: bool = False
    n_files: int = 0
    n_frames: int = 0
    rows: int = 0
    columns: int = 0
    n_slices: int = 0
    spacing_mm: tuple[float | None, float | None, float | None] = (None, None, None)
    uniform_spacing: bool = True
    contrast: bool = False
    contrast_agent: str = ""
    phases_pct: tuple[float, ...] = ()
    trigger_times_ms: tuple[float, ...] = ()
    n_phases: int = 1
    cardiac_cycle_positions: tuple[str, ...] = ()
    rr_interval_ms: float | None = None
    kernel: str = ""
    series_datetime: str = ""
    acquisition_datetime: str = ""
    transfer_syntaxes: tuple[str, ...] = ()
    dicomdir_files: int | None = None
    problems: tuple[str, ...] = ()
    frames: tuple[FrameInfo, ...] = field(default=(), repr=False)

    @property
    def files(self) -> tuple[Path, ...]:
        """The series' files, sorted, each once."""
        return tuple(sorted({f.path for f in self.frames}))

    @property
    def n_voxels(self) -> int:
        """Voxels of one phase: rows × columns × distinct slice positions."""
        return self.rows * self.columns * max(self.n_slices, 1 if self.n_frames else 0)

    @property
    def size_text(self) -> str:
        """``rows×columns×slices``."""
        return f"{self.rows}x{self.columns}x{self.n_slices}"

    @property
    def image_kind(self) -> str:
        """ORIGINAL/DERIVED (or "?"), with ``+LOCALIZER`` for scouts."""
        kind = self.image_type[0] if self.image_type else "?"
        return f"{kind}+LOCALIZER" if self.is_localizer else kind

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (files as strings, no per-frame detail)."""
        return {
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "patient": self.patient,
            "modality": self.modality,
            "description": self.description,
            "manufacturer": self.manufacturer,
            "series_number": self.series_number,
            "image_type": list(self.image_type),
            "is_original": self.is_original,
            "is_localizer": self.is_localizer,
            "n_files": self.n_files,
            "n_frames": self.n_frames,
            "rows": self.rows,
            "columns": self.columns,
            "n_slices": self.n_slices,
            "spacing_mm": list(self.spacing_mm),
            "uniform_spacing": self.uniform_spacing,
            "contrast": self.contrast,
            "contrast_agent": self.contrast_agent,
            "phases_pct": list(self.phases_pct),
            "trigger_times_ms": list(self.trigger_times_ms),
            "n_phases": self.n_phases,
            "cardiac_cycle_positions": list(self.cardiac_cycle_positions),
            "rr_interval_ms": self.rr_interval_ms,
            "kernel": self.kernel,
            "series_datetime": self.series_datetime,
            "acquisition_datetime": self.acquisition_datetime,
            "transfer_syntaxes": list(self.transfer_syntaxes),
            "dicomdir_files": self.dicomdir_files,
            "problems": list(self.problems),
            "files": [str(f) for f in self.files],
        }

    def __str__(self) -> str:
        desc = f" '{self.description}'" if self.description else ""
        return (
            f"{self.patient} {self.series_uid} ({self.modality or '?'}{desc}, {self.image_kind}, "
            f"{self.size_text}, contrast {'yes' if self.contrast else 'no'}, "
            f"{self.n_phases} phase(s))"
        )


@dataclass(frozen=True)
class StudySummary:
    """A study of one patient: its UID, description, date and series."""

    study_uid: str
    description: str
    date: str
    series: tuple[SeriesSummary, ...]


@dataclass(frozen=True)
class PatientSummary:
    """A patient, by label only (pseudonym or opaque hash), with their studies."""

    label: str
    studies: tuple[StudySummary, ...]


@dataclass(frozen=True)
class SkippedFile:
    """A file the scan could not use, and why (never contains patient data)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class SeriesCatalog:
    """Result of :func:`scan_tree`: patients → studies → series, plus what was skipped.

    Attributes
    ----------
    root : Path
        The scanned folder.
    patients : tuple of PatientSummary
        Sorted by label.
    skipped : tuple of SkippedFile
        Non-DICOM, truncated or unparsable files.
    problems : tuple of str
        Tree-level problems (DICOMDIR references to missing files, disagreements).
    dicomdirs : tuple of Path
        DICOMDIR files found and followed.
    n_files : int
        Files examined (DICOMDIRs included).
    elapsed_s : float
        Wall time of the scan.
    pseudonymised : bool
        Labels are keyed pseudonyms (True) or per-process opaque hashes (False).
    """

    root: Path
    patients: tuple[PatientSummary, ...]
    skipped: tuple[SkippedFile, ...] = ()
    problems: tuple[str, ...] = ()
    dicomdirs: tuple[Path, ...] = ()
    n_files: int = 0
    elapsed_s: float = 0.0
    pseudonymised: bool = False

    @property
    def series(self) -> tuple[SeriesSummary, ...]:
        """Every series, in patient, study, series order."""
        return tuple(se for p in self.patients for st in p.studies for se in st.series)

    @property
    def studies(self) -> tuple[StudySummary, ...]:
        """Every study."""
        return tuple(st for p in self.patients for st in p.studies)

    def get(self, series_uid: str) -> SeriesSummary:
        """The series with this SeriesInstanceUID.

        Raises
        ------
        DicomError
            If there is no such series (the message lists the series found).
        """
        for se in self.series:
            if se.series_uid == series_uid:
                return se
        raise DicomError(
            f"series {series_uid} not found under {self.root}; found: {self._listing()}"
        )

    def _listing(self, limit: int = 20) -> str:
        items = [str(s) for s in self.series]
        if not items:
            return "no DICOM series"
        more = f"; ... and {len(items) - limit} more" if len(items) > limit else ""
        return "; ".join(items[:limit]) + more

    def to_rows(self) -> list[dict[str, str]]:
        """One row of display strings per series, for a table (CLI, app)."""
        rows = []
        for p in self.patients:
            for st in p.studies:
                for se in st.series:
                    di, dj, dk = se.spacing_mm
                    spacing = "x".join("–" if v is None else f"{v:.3g}" for v in (di, dj, dk))
                    if se.phases_pct:
                        phases = f"{se.n_phases} ({_range_text(se.phases_pct, '%')})"
                    elif se.n_phases > 1:
                        phases = f"{se.n_phases} ({_range_text(se.trigger_times_ms, ' ms')})"
                    else:
                        phases = "1"
                    rows.append({
                        "patient": p.label,
                        "study": _short_uid(st.study_uid),
                        "series_uid": se.series_uid,
                        "modality": se.modality,
                        "description": se.description,
                        "type": se.image_kind,
                        "files": str(se.n_files),
                        "frames": str(se.n_frames),
                        "size": se.size_text,
                        "spacing_mm": spacing,
                        "contrast": "yes" if se.contrast else "no",
                        "phases": phases,
                        "kernel": se.kernel,
                        "datetime": se.acquisition_datetime or se.series_datetime,
                        "problems": "; ".join(se.problems),
                    })
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dictionary (patients by label only)."""
        return {
            "root": str(self.root),
            "pseudonymised": self.pseudonymised,
            "n_files": self.n_files,
            "elapsed_s": round(self.elapsed_s, 3),
            "dicomdirs": [str(d) for d in self.dicomdirs],
            "patients": [
                {
                    "label": p.label,
                    "studies": [
                        {
                            "study_uid": st.study_uid,
                            "description": st.description,
                            "date": st.date,
                            "series": [se.to_dict() for se in st.series],
                        }
                        for st in p.studies
                    ],
                }
                for p in self.patients
            ],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
            "problems": list(self.problems),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)


@dataclass(frozen=True)
class SeriesSelection:
    """The files of one chosen series (or of one cardiac phase of it).

    Read it with ``read_series(selection.files, series_uid=selection.series_uid)``.

    Attributes
    ----------
    series_uid : str
        SeriesInstanceUID.
    files : tuple of Path
        The files to read, sorted.
    series : SeriesSummary
        The whole series the files come from.
    reason : str
        Why this series (and subset) was chosen.
    phase_pct, trigger_ms : float or None
        The cardiac phase selected, when a phase rule was used.
    """

    series_uid: str
    files: tuple[Path, ...]
    series: SeriesSummary
    reason: str
    phase_pct: float | None = None
    trigger_ms: float | None = None


# --------------------------------------------------------------------------------------------
# header extraction
# --------------------------------------------------------------------------------------------


@dataclass
class _Header:
    """Plain values of one file's header (the dataset itself is not kept)."""

    path: Path
    patient_key: str
    study_uid: str
    study_description: str
    study_date: str
    series_uid: str
    series_number: int | None
    series_description: str
    modality: str
    manufacturer: str
    image_type: tuple[str, ...]
    kernel: str
    contrast_agent: str
    series_datetime: str
    acquisition_datetime: str
    transfer_syntax: str
    sop_uid: str
    rows: int
    columns: int
    n_frames: int
    orientation: tuple[float, ...] | None
    mosaic_images: int  # Siemens NumberOfImagesInMosaic (0 when not a mosaic)
    pixel_spacing: tuple[float, float] | None
    # per frame: (position xyz or None, phase %, trigger ms)
    frames: list[tuple[tuple[float, float, float] | None, float | None, float | None]]
    cycle_position: str
    rr_ms: float | None


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def _datetime(date: str, tm: str) -> str:
    """DICOM DA + TM (or DT) as ISO ``YYYY-MM-DDTHH:MM:SS`` (as much of it as is given)."""
    date = date.strip()
    if len(date) < 8 or not date[:8].isdigit():
        return ""
    out = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    tm = tm.strip()
    if len(tm) >= 4 and tm[:4].isdigit():
        out += f"T{tm[:2]}:{tm[2:4]}"
        if len(tm) >= 6 and tm[4:6].isdigit():
            out += f":{tm[4:6]}"
    return out


def _item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _functional(
    shared: Dataset | None, per_frame: Dataset | None, macro: str, keyword: str
) -> Any:
    """Value of ``macro > keyword`` in the per-frame functional group, else the shared one."""
    for group in (per_frame, shared):
        if group is None:
            continue
        item = _item(group, macro)
        if item is not None and keyword in item:
            return item.get(keyword)
    return None


def _patient_key(ds: Dataset) -> str:
    pid = _str(ds, "PatientID")
    if pid:
        return "id:" + pid
    name = _str(ds, "PatientName")
    return "name:" + name if name else ""


def _header(path: Path, ds: Dataset) -> _Header:
    """Extract the values the catalog needs; raises ValueError/TypeError/KeyError if corrupt."""
    meta = getattr(ds, "file_meta", None)
    n_frames = int(_float(ds.get("NumberOfFrames")) or 1)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    pixel_spacing = _floats(ds.get("PixelSpacing"), 2)
    frames: list[tuple[tuple[float, float, float] | None, float | None, float | None]] = []
    if n_frames > 1 or shared is not None or per_frame_seq:
        # Enhanced (multi-frame) objects keep geometry and timing in functional groups
        # (PS3.3 C.7.6.16): per-frame values override shared ones.
        first = per_frame_seq[0] if per_frame_seq else None
        orientation = orientation or _floats(
            _functional(shared, first, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
        )
        pixel_spacing = pixel_spacing or _floats(
            _functional(shared, first, "PixelMeasuresSequence", "PixelSpacing"), 2
        )
        for i in range(n_frames):
            pf = per_frame_seq[i] if i < len(per_frame_seq) else None
            pos = _floats(
                _functional(shared, pf, "PlanePositionSequence", "ImagePositionPatient"), 3
            )
            pct = _float(
                _functional(
                    shared, pf, "CardiacSynchronizationSequence", "NominalPercentageOfCardiacPhase"
                )
            )
            trig = _float(
                _functional(
                    shared, pf, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"
                )
            )
            frames.append((pos, pct, trig))  # type: ignore[arg-type]
    else:
        frames.append((
            _floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[list-item]
            _float(ds.get("NominalPercentageOfCardiacPhase")),
            _float(ds.get("TriggerTime")),
        ))
    rr = _float(ds.get("NominalInterval"))
    if rr is None or rr <= 0:
        hr = _float(ds.get("HeartRate"))
        rr = 60000.0 / hr if hr and hr > 0 else None
    acq = _str(ds, "AcquisitionDateTime")
    series_number = _float(ds.get("SeriesNumber"))
    return _Header(
        path=path,
        patient_key=_patient_key(ds),
        study_uid=_str(ds, "StudyInstanceUID") or _NO_STUDY_UID,
        study_description=_str(ds, "StudyDescription"),
        study_date=_datetime(_str(ds, "StudyDate"), ""),
        series_uid=_str(ds, "SeriesInstanceUID"),
        series_number=None if series_number is None else int(series_number),
        series_description=_str(ds, "SeriesDescription"),
        modality=_str(ds, "Modality"),
        manufacturer=_str(ds, "Manufacturer"),
        image_type=tuple(v.strip().upper() for v in _str(ds, "ImageType").split("\\") if v),
        kernel=_str(ds, "ConvolutionKernel"),
        contrast_agent=_str(ds, "ContrastBolusAgent"),
        series_datetime=_datetime(_str(ds, "SeriesDate"), _str(ds, "SeriesTime")),
        acquisition_datetime=(
            _datetime(acq[:8], acq[8:])
            if acq
            else _datetime(_str(ds, "AcquisitionDate"), _str(ds, "AcquisitionTime"))
        ),
        transfer_syntax=str(getattr(meta, "TransferSyntaxUID", "") or ""),
        sop_uid=_str(ds, "SOPInstanceUID"),
        rows=int(_float(ds.get("Rows")) or 0),
        columns=int(_float(ds.get("Columns")) or 0),
        n_frames=n_frames,
        orientation=orientation,
        mosaic_images=_mosaic_images(ds),
        pixel_spacing=pixel_spacing,  # type: ignore[arg-type]
        frames=frames,
        cycle_position=_str(ds, "CardiacCyclePosition"),
        rr_ms=rr,
    )


def _mosaic_images(ds: Dataset) -> int:
    """Slices in a Siemens MOSAIC image, from (0019,xx0A) NumberOfImagesInMosaic; else 0."""
    if "MOSAIC" not in _str(ds, "ImageType").upper():
        return 0
    value = _private_value(ds, 0x0019, _MR_CREATOR, 0x0A)
    try:
        return int(_float(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _pixel_bytes(ds: Dataset) -> int:
    """Bytes of uncompressed pixel data the header announces (0 if unknown or compressed)."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None or ts.is_compressed:
        return 0
    try:
        n = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames") or 1)
        return n * int(ds.get("SamplesPerPixel") or 1) * int(ds.BitsAllocated) // 8
    except (AttributeError, TypeError, ValueError):
        return 0


# --------------------------------------------------------------------------------------------
# DICOMDIR
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DirRef:
    """One instance listed in a DICOMDIR."""

    path: Path | None  # resolved file, None when missing on disk
    file_id: str  # Referenced File ID as written ("A\\B\\C")
    series_uid: str
    sop_uid: str


def _resolve_file_id(base: Path, components: list[str]) -> Path | None:
    """The file a Referenced File ID names, matching case-insensitively when needed.

    File IDs are upper case on media (PS3.10 8.2, 8.5); copies on case-sensitive file systems
    are often lower case.
    """
    exact = base.joinpath(*components)
    if exact.is_file():
        return exact
    cur = base
    for comp in components:
        try:
            names = {n.lower(): n for n in os.listdir(cur)}
        except OSError:
            return None
        match = names.get(comp.lower())
        if match is None:
            return None
        cur = cur / match
    return cur if cur.is_file() else None


def _read_dicomdir(path: Path) -> tuple[list[_DirRef], list[str]]:
    """The instances listed in a DICOMDIR, following the record offsets (PS3.3 F.3.2.2)."""
    problems: list[str] = []
    try:
        ds = pydicom.dcmread(path)
        records = list(ds.get("DirectoryRecordSequence") or [])
    except Exception as exc:  # noqa: BLE001 - any parser failure means an unusable DICOMDIR
        return [], [f"DICOMDIR {path} cannot be parsed ({type(exc).__name__}); it is ignored"]
    by_offset = {getattr(r, "seq_item_tell", None): r for r in records}
    first = ds.get("OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity")
    ordered: list[tuple[Dataset, dict[str, str]]] = []
    if first in by_offset:
        seen: set[int] = set()
        stack: list[tuple[int, dict[str, str]]] = [(first, {})]
        while stack:
            offset, ctx = stack.pop()
            while offset and offset in by_offset and offset not in seen:
                seen.add(offset)
                rec = by_offset[offset]
                rctx = _record_context(rec, ctx)
                ordered.append((rec, rctx))
                child = rec.get("OffsetOfReferencedLowerLevelDirectoryEntity") or 0
                if child:
                    stack.append((child, rctx))
                offset = rec.get("OffsetOfTheNextDirectoryRecord") or 0
        if len(seen) < len(records):
            problems.append(
                f"DICOMDIR {path}: {len(records) - len(seen)} directory record(s) are not "
                f"linked from the root (orphans); they are ignored"
            )
    else:
        # Offsets unusable (rewritten by a tool that did not update them): the records are
        # then taken in sequence order, which writers use (depth first).
        problems.append(f"DICOMDIR {path}: record offsets do not resolve; read in file order")
        ctx: dict[str, str] = {}
        for rec in records:
            ctx = _record_context(rec, ctx)
            ordered.append((rec, ctx))
    refs = []
    for rec, ctx in ordered:
        file_id = rec.get("ReferencedFileID")
        if not file_id:
            continue
        components = [file_id] if isinstance(file_id, str) else [str(c) for c in file_id]
        refs.append(
            _DirRef(
                path=_resolve_file_id(path.parent, components),
                file_id="\\".join(components),
                series_uid=ctx.get("series", ""),
                sop_uid=str(rec.get("ReferencedSOPInstanceUIDInFile", "") or ""),
            )
        )
    return refs, problems


def _record_context(rec: Dataset, ctx: dict[str, str]) -> dict[str, str]:
    rtype = str(rec.get("DirectoryRecordType", "")).strip().upper()
    out = dict(ctx)
    if rtype == "PATIENT":
        out = {}
    elif rtype == "STUDY":
        out = {k: v for k, v in ctx.items() if k not in ("study", "series")}
        out["study"] = str(rec.get("StudyInstanceUID", "") or "")
    elif rtype == "SERIES":
        out.pop("series", None)
        out["series"] = str(rec.get("SeriesInstanceUID", "") or "")
    return out


# --------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------


def _walk(root: Path) -> list[Path]:
    files = []
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        files.extend(Path(dirpath) / n for n in sorted(names))
    return files


def _label(patient_key: str, key: bytes | None) -> str:
    if not patient_key:
        return "unknown-patient"
    kind, _, value = patient_key.partition(":")
    if key is not None:
        label = pseudonym(value, key)
        return label if kind == "id" else label.replace("PT-", "PTN-", 1)
    digest = hmac.new(_PROCESS_SALT, patient_key.encode(), hashlib.sha256).digest()
    return "anon-" + base64.b32encode(digest).decode()[:8].lower()


def scan_tree(
    path: str | Path,
    *,
    key: bytes | None = None,
    progress: ProgressCallback | None = None,
) -> SeriesCatalog:
    """Catalogue the DICOM series in a folder tree, reading headers only.

    Parameters
    ----------
    path : path
        Folder searched recursively (or a single file). A ``DICOMDIR`` anywhere in it is
        followed and cross-checked against the files on disk.
    key : bytes, optional
        Pseudonymisation key (:func:`cardiotwin.imaging.deid.load_or_create_key`); patients are
        then labelled with their keyed pseudonym ``PT-...``, the one their twin gets. Without a
        key the labels are opaque hashes valid for this process only.
    progress : callable, optional
        ``progress(fraction_done, message)``, called about every 1 % of files.

    Returns
    -------
    SeriesCatalog
        Patients → studies → series, skipped files and tree-level problems.

    Raises
    ------
    DicomError
        If ``path`` does not exist. Unreadable files are listed, not raised.
    """
    t0 = time.perf_counter()
    root = Path(path)
    if root.is_dir():
        files = _walk(root)
    elif root.is_file():
        files = [root]
    else:
        raise DicomError(f"{root} does not exist; give a folder (or file) holding DICOM data")
    headers: list[_Header] = []
    skipped: list[SkippedFile] = []
    dicomdirs: list[Path] = []
    tags: list = list(_HEADER_KEYWORDS) + [0x00190010, 0x0019100A]  # Siemens mosaic count
    step = max(1, len(files) // 100)
    for n, f in enumerate(files):
        if progress is not None and n % step == 0:
            progress(n / max(len(files), 1), f"{n}/{len(files)} files")
        try:
            with open(f, "rb") as fh:
                head = fh.read(132)
            size = f.stat().st_size
        except OSError as exc:
            skipped.append(SkippedFile(f, f"cannot be opened ({exc.strerror})"))
            continue
        if len(head) < 132 or head[128:132] != b"DICM":
            skipped.append(SkippedFile(f, "not a DICOM Part 10 file (no 'DICM' marker)"))
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=tags)
            sop_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "") or "")
            if sop_class == _MEDIA_STORAGE_DIRECTORY:
                dicomdirs.append(f)
                continue
            hdr = _header(f, ds)
            pixel_bytes = _pixel_bytes(ds)
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError,
                AttributeError, IndexError, OverflowError) as exc:
            # The exception text may quote element values (patient data): only its type is kept.
            skipped.append(SkippedFile(f, f"truncated or corrupt header ({type(exc).__name__})"))
            continue
        if pixel_bytes and size < pixel_bytes:
            skipped.append(SkippedFile(
                f, f"truncated: {size} bytes but its header announces {pixel_bytes} bytes of "
                "pixel data"))
            continue
        if not hdr.series_uid:
            if not hdr.rows:
                skipped.append(SkippedFile(
                    f, "truncated header or not an image: no SeriesInstanceUID, no Rows/Columns"))
                continue
            hdr.series_uid = _NO_SERIES_UID
        headers.append(hdr)
    if progress is not None:
        progress(1.0, f"{len(files)}/{len(files)} files")

    problems: list[str] = []
    dir_counts: dict[str, int] = {}
    dir_problems: dict[str, list[str]] = {}
    by_path = {h.path.resolve(): h for h in headers} if dicomdirs else {}
    for dd in dicomdirs:
        refs, dd_problems = _read_dicomdir(dd)
        problems.extend(dd_problems)
        referenced = set()
        missing = [r for r in refs if r.path is None]
        for r in refs:
            dir_counts[r.series_uid] = dir_counts.get(r.series_uid, 0) + 1
            if r.path is None:
                dir_problems.setdefault(r.series_uid, []).append(f"missing file {r.file_id}")
                continue
            referenced.add(r.path.resolve())
            h = by_path.get(r.path.resolve())
            if h is None:
                problems.append(f"DICOMDIR {dd}: {r.file_id} is not a readable DICOM image")
            elif h.series_uid != r.series_uid:
                problems.append(
                    f"DICOMDIR {dd}: {r.file_id} is listed under series {r.series_uid} but its "
                    f"header says {h.series_uid}"
                )
        if missing:
            problems.append(
                f"DICOMDIR {dd}: {len(missing)} of {len(refs)} referenced file(s) are missing, "
                f"e.g. {missing[0].file_id}; copy the whole medium again"
            )
        unlisted = [h for p, h in by_path.items() if p.is_relative_to(dd.parent.resolve())
                    and p not in referenced]
        if unlisted:
            problems.append(
                f"DICOMDIR {dd}: {len(unlisted)} DICOM file(s) under {dd.parent} are not listed "
                f"in it (still catalogued)"
            )
        log.info("DICOMDIR %s: %d instances, %d missing", dd, len(refs), len(missing))

    catalog = _assemble(root, headers, key, dir_counts, dir_problems, problems)
    elapsed = time.perf_counter() - t0
    catalog = SeriesCatalog(
        root=root,
        patients=catalog,
        skipped=tuple(skipped),
        problems=tuple(problems),
        dicomdirs=tuple(dicomdirs),
        n_files=len(files),
        elapsed_s=elapsed,
        pseudonymised=key is not None,
    )
    log.info(
        "scanned %d files in %.2f s: %d patient(s), %d series, %d skipped, %d problem(s)",
        len(files), elapsed, len(catalog.patients), len(catalog.series), len(skipped),
        len(problems),
    )
    return catalog


def _assemble(
    root: Path,
    headers: list[_Header],
    key: bytes | None,
    dir_counts: dict[str, int],
    dir_problems: dict[str, list[str]],
    problems: list[str],
) -> tuple[PatientSummary, ...]:
    by_series: dict[str, list[_Header]] = {}
    for h in headers:
        by_series.setdefault(h.series_uid, []).append(h)
    # patient label -> study uid -> list of series
    tree: dict[str, dict[str, list[SeriesSummary]]] = {}
    study_info: dict[str, tuple[str, str]] = {}
    for uid, hs in by_series.items():
        patient_keys = {h.patient_key for h in hs}
        label = _label(sorted(patient_keys)[0], key)
        extra = []
        if len(patient_keys) > 1:
            extra.append(f"files of {len(patient_keys)} different patients share this series UID")
        study_uids = sorted({h.study_uid for h in hs})
        if len(study_uids) > 1:
            extra.append(f"files name {len(study_uids)} different studies")
        extra.extend(f"DICOMDIR: {p}" for p in dir_problems.pop(uid, [])[:3])
        summary = _summarise(uid, hs, label, dir_counts.get(uid), extra)
        tree.setdefault(label, {}).setdefault(summary.study_uid, []).append(summary)
        study_info.setdefault(summary.study_uid, (hs[0].study_description, hs[0].study_date))
    for uid, missing in dir_problems.items():
        problems.append(
            f"series {uid} is listed in a DICOMDIR but none of its {len(missing)} file(s) "
            f"exist on disk"
        )
    patients = []
    for label in sorted(tree):
        studies = []
        for study_uid in sorted(tree[label]):
            series = sorted(
                tree[label][study_uid], key=lambda s: (s.series_number or 0, s.series_uid)
            )
            desc, date = study_info[study_uid]
            studies.append(StudySummary(study_uid, desc, date, tuple(series)))
        patients.append(PatientSummary(label, tuple(studies)))
    return tuple(patients)


def _distinct(values: Iterable[float], tol: float) -> list[float]:
    out: list[float] = []
    for v in sorted(values):
        if not out or v - out[-1] > tol:
            out.append(v)
    return out


def _summarise(
    uid: str, hs: list[_Header], label: str, dicomdir_files: int | None, problems: list[str]
) -> SeriesSummary:
    first = hs[0]
    orientation = next((h.orientation for h in hs if h.orientation is not None), None)
    spacing = next((h.pixel_spacing for h in hs if h.pixel_spacing is not None), None)
    normal = None
    if orientation is not None:
        normal = np.cross(orientation[:3], orientation[3:])
        nn = float(np.linalg.norm(normal))
        normal = normal / nn if nn > 0.5 else None
    if len({h.orientation for h in hs if h.orientation is not None}) > 1:
        oris = np.array([h.orientation for h in hs if h.orientation is not None])
        if np.any(np.abs(oris - oris[0]) > 1e-4):
            problems.append("mixed orientations (ImageOrientationPatient)")
    if len({(h.rows, h.columns) for h in hs}) > 1:
        problems.append("mixed image sizes (Rows/Columns)")
    if len({h.pixel_spacing for h in hs if h.pixel_spacing is not None}) > 1:
        problems.append("mixed PixelSpacing")
    if len({h.series_number for h in hs}) > 1:
        problems.append(
            f"{len({h.series_number for h in hs})} SeriesNumber values share this series UID"
        )
    sop = [h.sop_uid for h in hs if h.sop_uid]
    if len(set(sop)) < len(sop):
        problems.append(f"{len(sop) - len(set(sop))} duplicate SOPInstanceUID(s) (copied files?)")

    frames: list[FrameInfo] = []
    xyz: list[np.ndarray] = []
    for h in hs:
        for i, (pos, pct, trig) in enumerate(h.frames):
            along = None
            if pos is not None and normal is not None:
                xyz.append(np.asarray(pos))
                along = float(np.asarray(pos) @ normal)
            frames.append(FrameInfo(h.path, i + 1 if h.n_frames > 1 else 0, along, pct,
                                    None if trig is None else round(trig, 1)))
    along_all = [f.position_mm for f in frames if f.position_mm is not None]
    positions = _distinct(along_all, _POSITION_TOL_MM)
    n_slices = len(positions) if positions else (len(frames) if frames else 0)
    dk = None
    uniform = True
    if len(positions) >= 2:
        steps = np.diff(positions)
        dk = float(np.median(steps))
        tol = max(_POSITION_TOL_MM, _SPACING_REL_TOL * dk)
        bad = int(np.sum(np.abs(steps - dk) > tol))
        if bad:
            uniform = False
            problems.append(
                f"uneven slice spacing: steps {steps.min():.3f}–{steps.max():.3f} mm "
                f"(median {dk:.3f}, {bad} irregular)"
            )
        # Tilt: successive (distinct) positions must move along the normal only.
        pts = np.array(xyz)
        order = np.argsort(pts @ normal)
        pts = pts[order]
        delta = np.diff(pts, axis=0)
        lateral = np.linalg.norm(delta - np.outer(delta @ normal, normal), axis=1)
        moving = np.abs(delta @ normal) > _POSITION_TOL_MM
        if np.any(moving) and float(lateral[moving].max()) > tol:
            i = int(np.argmax(np.where(moving, lateral, -1.0)))
            angle = math.degrees(math.atan2(lateral[i], abs(float(delta[i] @ normal))))
            problems.append(f"slices not stacked along their normal (gantry tilt {angle:.1f}°)")

    pcts = _distinct((f.phase_pct for f in frames if f.phase_pct is not None), _PHASE_TOL_PCT)
    trigs = _distinct((f.trigger_ms for f in frames if f.trigger_ms is not None), 0.05)
    repeated = bool(positions) and len(along_all) > len(positions)
    if not pcts:
        m = _DESCRIPTION_PHASE.search(first.series_description)
        if m and float(m.group(1)) <= 100:
            pcts = [float(m.group(1))]
    if len(pcts) > 1 or (pcts and not trigs):
        n_phases = len(pcts)
    elif repeated and trigs:
        n_phases = len(_distinct(trigs, _TRIGGER_TOL_MS))
    else:
        n_phases = max(1, len(pcts))
    if repeated:
        per_phase = len(along_all) / max(n_phases, 1)
        if n_phases > 1 and per_phase == len(positions):
            pass  # a multi-phase series: each phase covers every position once
        else:
            problems.append(
                f"{len(along_all)} images at {len(positions)} position(s): duplicate slices "
                f"(several acquisitions, echoes or copies in one series)"
            )
    frames.sort(key=lambda f: (f.phase_pct if f.phase_pct is not None else -1.0,
                               f.trigger_ms if f.trigger_ms is not None else -1.0,
                               f.position_mm if f.position_mm is not None else 0.0,
                               str(f.path), f.frame))

    agent = next((h.contrast_agent for h in hs if h.contrast_agent), "")
    contrast = any(h.contrast_agent.strip().upper() not in _NO_CONTRAST for h in hs)
    localizer = any(t in ("LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW") for t in first.image_type)
    # a Siemens mosaic holds its slices as tiles of one image (dicom.read_series splits them)
    grid = math.ceil(math.sqrt(first.mosaic_images)) if first.mosaic_images > 1 else 1
    if grid > 1:
        n_slices = first.mosaic_images
    di = dj = None
    if spacing is not None:
        dj, di = spacing  # PixelSpacing = [row spacing (between rows, j), column spacing (i)]
    return SeriesSummary(
        series_uid=uid,
        study_uid=first.study_uid,
        patient=label,
        modality=first.modality,
        description=first.series_description,
        manufacturer=first.manufacturer,
        series_number=first.series_number,
        image_type=first.image_type,
        is_original=bool(first.image_type) and first.image_type[0] == "ORIGINAL",
        is_localizer=localizer,
        n_files=len(hs),
        n_frames=sum(h.n_frames for h in hs),
        rows=first.rows // grid,
        columns=first.columns // grid,
        n_slices=n_slices,
        spacing_mm=(di, dj, dk),
        uniform_spacing=uniform,
        contrast=contrast,
        contrast_agent=agent,
        phases_pct=tuple(pcts),
        trigger_times_ms=tuple(trigs),
        n_phases=n_phases,
        cardiac_cycle_positions=tuple(sorted({h.cycle_position for h in hs if h.cycle_position})),
        rr_interval_ms=(float(np.median(rrs)) if (rrs := [h.rr_ms for h in hs if h.rr_ms]) else None),
        kernel=first.kernel,
        series_datetime=first.series_datetime,
        acquisition_datetime=min(
            (h.acquisition_datetime for h in hs if h.acquisition_datetime), default=""
        ),
        transfer_syntaxes=tuple(sorted({h.transfer_syntax for h in hs if h.transfer_syntax})),
        dicomdir_files=dicomdir_files,
        problems=tuple(problems),
        frames=tuple(frames),
    )


def _short_uid(uid: str, n: int = 12) -> str:
    return uid if len(uid) <= n + 1 else "…" + uid[-n:]


def _range_text(values: tuple[float, ...], unit: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g}{unit}" if lo == hi else f"{lo:g}–{hi:g}{unit}"


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------

#: Selection rules understood by :func:`select_series`.
RULES = ("largest-contrast-ct", "largest-ct", "phase=<percent>", "trigger=<ms>",
         "uid-prefix=<prefix>")


def _readable(se: SeriesSummary) -> bool:
    """No problem that stops a regular single-phase 3-D read."""
    return se.n_frames == se.n_files and se.uniform_spacing and not any(
        "duplicate slices" in p or "tilt" in p or "mixed" in p for p in se.problems
    ) and se.n_phases == 1


def _rank(se: SeriesSummary) -> tuple:
    dk = se.spacing_mm[2] or math.inf
    return (_readable(se), se.is_original, se.n_voxels, -dk, se.series_uid)


def _largest(candidates: list[SeriesSummary], what: str) -> tuple[SeriesSummary, str]:
    best = max(candidates, key=_rank)
    notes = [f"{what}: the largest ({best.size_text}, {best.n_voxels} voxels) of "
             f"{len(candidates)} candidate(s)"]
    if not best.is_original:
        notes.append("no ORIGINAL candidate, a DERIVED series was taken")
    if best.n_phases > 1:
        notes.append(f"it holds {best.n_phases} cardiac phases: choose one with 'phase=<percent>'")
    elif not _readable(best):
        notes.append(f"it is not a regular 3-D stack: {'; '.join(best.problems)}")
        log.warning("selected series %s is not a regular 3-D stack", best.series_uid)
    return best, "; ".join(notes)


def _parse_number(rule: str, text: str, unit: str) -> float:
    text = text.strip().removesuffix(unit).strip()
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"selection rule {rule!r}: {text!r} is not a number; e.g. 'phase=75' or "
            f"'trigger=350'"
        ) from None


def _phase_subset(
    se: SeriesSummary, *, pct: float | None, trigger_ms: float | None
) -> tuple[tuple[Path, ...], float | None, float | None, float] | None:
    """Files of ``se`` at the requested phase, the phase found, and its distance to the target."""
    if pct is not None:
        have = [f for f in se.frames if f.phase_pct is not None]
        if have:
            nearest = min(_distinct((f.phase_pct for f in have), _PHASE_TOL_PCT),
                          key=lambda p: abs(p - pct))
            files = {f.path for f in have if abs(f.phase_pct - nearest) <= _PHASE_TOL_PCT}
            return tuple(sorted(files)), nearest, None, abs(nearest - pct)
        if se.phases_pct and len(se.phases_pct) == 1:  # from the SeriesDescription
            return se.files, se.phases_pct[0], None, abs(se.phases_pct[0] - pct)
        return None
    have = [f for f in se.frames if f.trigger_ms is not None]
    if not have or trigger_ms is None:
        return None
    groups = _distinct((f.trigger_ms for f in have), _TRIGGER_TOL_MS)
    nearest = min(groups, key=lambda t: abs(t - trigger_ms))
    files = {f.path for f in have if abs(f.trigger_ms - nearest) <= _TRIGGER_TOL_MS}
    return tuple(sorted(files)), None, nearest, abs(nearest - trigger_ms)


def select_series(
    catalog: SeriesCatalog, *, uid: str | None = None, rule: str | None = None
) -> SeriesSelection:
    """Choose one series (or one cardiac phase of it) from a catalog.

    Parameters
    ----------
    catalog : SeriesCatalog
        From :func:`scan_tree`.
    uid : str, optional
        SeriesInstanceUID to take (exact).
    rule : str, optional
        One of

        * ``"largest-contrast-ct"``: CT with a contrast agent, not a localizer; among those the
          regular 3-D stacks first, ORIGINAL before DERIVED, then most voxels, then the finest
          slice spacing.
        * ``"largest-ct"``: the same without the contrast condition.
        * ``"phase=75"`` or ``"phase=75%"``: the images at that nominal percentage of the
          cardiac phase (the nearest one present); in series without percentages, the trigger
          time nearest ``75 % × R-R`` (R-R from NominalInterval or HeartRate). Among several
          series the closest phase wins, then the ranking above.
        * ``"trigger=350"`` / ``"trigger=350ms"``: the images whose trigger time is nearest
          350 ms.
        * ``"uid-prefix=1.2.840..."``: the one series whose UID starts so.

        With neither ``uid`` nor ``rule``, the catalog must hold exactly one series.

    Returns
    -------
    SeriesSelection
        ``files`` and ``series_uid`` for :func:`cardiotwin.imaging.dicom.read_series`.

    Raises
    ------
    DicomError
        If nothing matches (the message lists the series found, by patient label only), or a
        UID prefix is ambiguous.
    InputError
        If the rule is not understood, or both ``uid`` and ``rule`` are given.
    """
    series = list(catalog.series)
    if uid is not None and rule is not None:
        raise InputError("give either uid or rule, not both")

    def nothing(why: str) -> DicomError:
        return DicomError(f"{why} under {catalog.root}; found: {catalog._listing()}")

    if uid is not None:
        se = next((s for s in series if s.series_uid == uid.strip()), None)
        if se is None:
            raise nothing(f"no series with UID {uid}")
        return SeriesSelection(se.series_uid, se.files, se, f"series UID {uid}")
    if rule is None:
        if len(series) != 1:
            raise nothing(
                f"{len(series)} series found; choose one with uid=... or a rule "
                f"({', '.join(RULES)})"
            )
        se = series[0]
        return SeriesSelection(se.series_uid, se.files, se, "the only series")

    name, _, arg = rule.strip().partition("=")
    name = name.strip().lower()
    if name in ("largest-contrast-ct", "largest-ct") and not arg:
        candidates = [s for s in series if s.modality == "CT" and not s.is_localizer
                      and s.n_frames > 0 and (s.contrast or name == "largest-ct")]
        if not candidates:
            what = "contrast-enhanced CT series" if name == "largest-contrast-ct" else "CT series"
            raise nothing(f"rule {rule!r}: no {what} (localizers excluded)")
        se, why = _largest(candidates, f"rule {rule!r}")
        return SeriesSelection(se.series_uid, se.files, se, why)
    if name == "uid-prefix" and arg:
        matches = [s for s in series if s.series_uid.startswith(arg.strip())]
        if len(matches) != 1:
            found = "; ".join(str(s) for s in matches) if matches else "none"
            raise nothing(
                f"rule {rule!r} must match exactly one series; it matches "
                f"{len(matches)} ({found})"
            )
        se = matches[0]
        return SeriesSelection(se.series_uid, se.files, se, f"rule {rule!r}")
    if name in ("phase", "trigger") and arg:
        value = _parse_number(rule, arg, "%" if name == "phase" else "ms")
        if name == "phase" and not 0 <= value <= 100:
            raise InputError(f"selection rule {rule!r}: the phase must be in 0..100 %")
        options = []
        for se in series:
            if se.is_localizer:
                continue
            if name == "phase":
                found = _phase_subset(se, pct=value, trigger_ms=None)
                rr = se.rr_interval_ms
                if found is None and rr is not None:
                    found = _phase_subset(se, pct=None, trigger_ms=value / 100 * rr)
                    if found is not None:  # distance in % of R-R, comparable with percentages
                        found = (*found[:3], found[3] / rr * 100)
            else:
                found = _phase_subset(se, pct=None, trigger_ms=value)
            if found is not None:
                options.append((found, se))
        if not options:
            raise nothing(
                f"rule {rule!r}: no series has "
                + ("NominalPercentageOfCardiacPhase, a phase in its description, or trigger "
                   "times with a known R-R interval" if name == "phase" else "TriggerTime")
            )
        (files, pct, trig, dist), se = min(
            options, key=lambda o: (o[0][3], tuple(-float(x) for x in _rank(o[1])[:3]))
        )
        got = f"{pct:g} %" if pct is not None else f"trigger time {trig:g} ms"
        why = f"rule {rule!r}: {got} of series {se.series_uid} ({len(files)} file(s))"
        if dist > 0:
            why += f"; nearest available (off by {dist:.3g} {'%' if name == 'phase' else 'ms'})"
        return SeriesSelection(se.series_uid, files, se, why, phase_pct=pct, trigger_ms=trig)
    raise InputError(f"unknown selection rule {rule!r}; use one of: {', '.join(RULES)}")


