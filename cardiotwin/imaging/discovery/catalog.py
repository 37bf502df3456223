"""What a folder scan found: patients → studies → series (:class:`SeriesCatalog`), and the
series (or cardiac phase) chosen from it (:class:`SeriesSelection`).

Patients appear only as a label (keyed pseudonym or opaque hash); see
:mod:`cardiotwin.imaging.discovery`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardiotwin.errors import DicomError
from cardiotwin.imaging.dicom.headers import HeaderRecord

__all__ = [
    "PHASE_TOL_PCT",
    "TRIGGER_TOL_MS",
    "FrameInfo",
    "PatientSummary",
    "SeriesCatalog",
    "SeriesSelection",
    "SeriesSummary",
    "SkippedFile",
    "StudySummary",
    "VolumeInfo",
    "distinct_values",
]

#: Nominal percentages of the cardiac phase closer than this (%) are the same phase.
PHASE_TOL_PCT = 0.5
#: Trigger times closer than this (ms) are the same phase.
TRIGGER_TOL_MS = 1.0


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
    temporal_index : int or None
        TemporalPositionIdentifier (single-frame) or TemporalPositionIndex (enhanced
        multi-frame); for a cine file without functional groups, the frame number when the
        file gives a frame time.
    """

    path: Path
    frame: int = 0
    position_mm: float | None = None
    phase_pct: float | None = None
    trigger_ms: float | None = None
    temporal_index: int | None = None


@dataclass(frozen=True)
class VolumeInfo:
    """One volume of a multi-volume series (the same slice positions repeated with another
    b-value, echo, acquisition or temporal position; :mod:`cardiotwin.imaging.dicom.volumes`).

    Attributes
    ----------
    index : int
        0-based index, as ``read_series(..., volume=index)`` and ``--volume INDEX`` take it.
    label : str
        Its selector, e.g. ``"b=1000"``, ``"echo=2"``, ``"acquisition=3"``, ``"t=5"`` or
        ``"b=1000,acquisition=4"`` (also accepted by ``volume=`` / ``--volume``).
    n_slices : int
        Slices of the volume.
    details : str
        What else tells it apart (``"TE 20 ms"``), or "".
    """

    index: int
    label: str
    n_slices: int
    details: str = ""

    def __str__(self) -> str:
        extra = f", {self.details}" if self.details else ""
        return f"[{self.index}] {self.label}{extra} ({self.n_slices} slices)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"index": self.index, "label": self.label, "n_slices": self.n_slices,
                "details": self.details}


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
        Number of cardiac phases or time points: distinct percentages, else distinct trigger
        times when positions repeat, else distinct temporal position indices, else 1. A cine
        at one position (:attr:`is_cine`) has one per frame.
    cardiac_cycle_positions : tuple of str
        Distinct CardiacCyclePosition values (e.g. END_DIASTOLE).
    rr_interval_ms : float or None
        R-R interval: median NominalInterval, else 60000 / HeartRate.
    frame_time_ms : float or None
        Time between the frames of a cine file (FrameTime, FrameTimeVector or CineRate), ms.
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
    volumes : tuple of VolumeInfo
        The volumes of a multi-volume series (its slice positions repeated with another
        DiffusionBValue, EchoNumbers, AcquisitionNumber or temporal position), each read with
        ``volume=`` (``--volume``); empty for any other series.
    frames : tuple of FrameInfo
        Every image, sorted by phase then position.
    headers : tuple of HeaderRecord
        The parsed header of each file, in file order, for
        :func:`~cardiotwin.imaging.dicom.read_series` (``headers=``); not shown, compared or
        exported.
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
    frame_time_ms: float | None = None
    kernel: str = ""
    series_datetime: str = ""
    acquisition_datetime: str = ""
    transfer_syntaxes: tuple[str, ...] = ()
    dicomdir_files: int | None = None
    problems: tuple[str, ...] = ()
    volumes: tuple[VolumeInfo, ...] = ()
    frames: tuple[FrameInfo, ...] = field(default=(), repr=False)
    headers: tuple[HeaderRecord, ...] = field(default=(), repr=False, compare=False)

    @property
    def files(self) -> tuple[Path, ...]:
        """The series' files, sorted, each once."""
        return tuple(sorted({f.path for f in self.frames}))

    @property
    def n_voxels(self) -> int:
        """Voxels of one phase: rows × columns × distinct slice positions."""
        return self.rows * self.columns * max(self.n_slices, 1 if self.n_frames else 0)

    @property
    def is_cine(self) -> bool:
        """Frames over time at one slice position (a cine), not a stack of slices."""
        return self.n_phases > 1 and self.n_slices <= 1

    @property
    def phases_text(self) -> str:
        """The time points for a table: ``"20 frames over time (0–950 ms)"`` for a cine,
        ``"10 (5–95%)"`` for a multi-phase volume, ``"1"`` for a 3-D series."""
        if self.trigger_times_ms and self.n_phases > 1:
            span = f" ({_range_text(self.trigger_times_ms, ' ms')})"
        elif self.frame_time_ms:
            span = f" (every {self.frame_time_ms:g} ms)"
        else:
            span = " (temporal positions)" if self.n_phases > 1 else ""
        if self.is_cine:
            return f"{self.n_phases} frames over time{span}"
        if self.phases_pct:
            return f"{self.n_phases} ({_range_text(self.phases_pct, '%')})"
        return f"{self.n_phases}{span}" if self.n_phases > 1 else "1"

    @property
    def volumes_text(self) -> str:
        """The volumes for a table: ``"[0] b=0 (5 slices); [1] b=1000 (5 slices)"``; "" for
        a series that is not a multi-volume series."""
        return "; ".join(str(v) for v in self.volumes)

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
            "cine": self.is_cine,
            "frame_time_ms": self.frame_time_ms,
            "kernel": self.kernel,
            "series_datetime": self.series_datetime,
            "acquisition_datetime": self.acquisition_datetime,
            "transfer_syntaxes": list(self.transfer_syntaxes),
            "dicomdir_files": self.dicomdir_files,
            "problems": list(self.problems),
            "volumes": [v.to_dict() for v in self.volumes],
            "files": [str(f) for f in self.files],
        }

    def __str__(self) -> str:
        desc = f" '{self.description}'" if self.description else ""
        return (
            f"{self.patient} {self.series_uid} ({self.modality or '?'}{desc}, {self.image_kind}, "
            f"{self.size_text}, contrast {'yes' if self.contrast else 'no'}, "
            + (f"cine of {self.n_phases} frames over time)" if self.is_cine
               else f"{len(self.volumes)} volumes)" if self.volumes
               else f"{self.n_phases} phase(s))")
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
    """A file the scan could not use, and why (never contains patient data).

    Attributes
    ----------
    path : Path
        The file.
    reason : str
        Why it was skipped (e.g. ``"truncated: pixel data shorter than its header announces
        (212 of 512 bytes)"``).
    is_dicom : bool
        The file has the DICOM Part 10 marker (a damaged DICOM file, not some other file).
    series_uid : str or None
        SeriesInstanceUID recovered from its raw bytes, when it could be.
    """

    path: Path
    reason: str
    is_dicom: bool = False
    series_uid: str | None = None


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
            f"series {series_uid} not found under {self.root}; found: {self.listing()}"
        )

    def relative(self, path: Path) -> str:
        """``path`` relative to the scanned folder (as the user gave it), for messages."""
        base = self.root if self.root.is_dir() else self.root.parent
        try:
            return str(Path(path).relative_to(base))
        except ValueError:
            return str(path)

    def skipped_text(self, files: Iterable[SkippedFile] | None = None, *, limit: int = 3) -> str:
        """The damaged DICOM files skipped (or ``files``), for messages: how many, the first
        ``limit`` with their path relative to the scanned folder and the reason; "" if none.
        Files that are not DICOM at all (no 'DICM' marker) are only counted."""
        chosen = [s for s in self.skipped if s.is_dicom] if files is None else list(files)
        others = 0 if files is not None else len(self.skipped) - len(chosen)
        parts = []
        if chosen:
            shown = "; ".join(f"{self.relative(s.path)} ({s.reason})" for s in chosen[:limit])
            more = f"; ... and {len(chosen) - limit} more" if len(chosen) > limit else ""
            parts.append(f"{len(chosen)} DICOM file(s) skipped: {shown}{more}")
        if others:
            parts.append(f"{others} non-DICOM file(s) ignored")
        return "; ".join(parts)

    def listing(self, *, limit: int = 20) -> str:
        """The series found, one ``str(series)`` each (patient label only), for messages."""
        items = [str(s) for s in self.series]
        if not items:
            skipped = self.skipped_text()
            return "no readable DICOM series" + (f" ({skipped})" if skipped else "")
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
                    phases = se.phases_text
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
                        "volumes": str(len(se.volumes)) if se.volumes else "",
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
            "skipped": [{"path": str(s.path), "reason": s.reason, "dicom": s.is_dicom,
                         "series_uid": s.series_uid} for s in self.skipped],
            "problems": list(self.problems),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)


@dataclass(frozen=True)
class SeriesSelection:
    """The files of one chosen series (or of one cardiac phase of it).

    Read it with ``read_series(selection.files, series_uid=selection.series_uid,
    headers=selection.headers)`` (the headers are then not parsed again).

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
    headers : tuple of HeaderRecord
        The parsed headers of ``files`` (from the scan); not shown, compared or exported.
    """

    series_uid: str
    files: tuple[Path, ...]
    series: SeriesSummary
    reason: str
    phase_pct: float | None = None
    trigger_ms: float | None = None
    headers: tuple[HeaderRecord, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.headers and self.series.headers:
            wanted = set(self.files)
            object.__setattr__(
                self, "headers", tuple(h for h in self.series.headers if h.path in wanted)
            )


def distinct_values(values: Iterable[float], tol: float) -> list[float]:
    """The sorted values, each one more than ``tol`` above the previous one kept."""
    out: list[float] = []
    for v in sorted(values):
        if not out or v - out[-1] > tol:
            out.append(v)
    return out


def _short_uid(uid: str, n: int = 12) -> str:
    return uid if len(uid) <= n + 1 else "…" + uid[-n:]


def _range_text(values: tuple[float, ...], unit: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g}{unit}" if lo == hi else f"{lo:g}–{hi:g}{unit}"
