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

Headers are parsed by the one header reader of the DICOM package
(:func:`cardiotwin.imaging.dicom.headers.parse_header`); each series keeps its parsed records
(:attr:`SeriesSummary.headers`, :attr:`SeriesSelection.headers`) so that the chosen series is read
without parsing its headers again: ``read_series(selection.files, series_uid=...,
headers=selection.headers)``.

Privacy: patients appear only as a label — the keyed pseudonym of
:func:`cardiotwin.imaging.deid.pseudonym` when a key is given, otherwise an opaque hash salted
per process (it cannot be matched against a list of IDs). Patient names and IDs are never in the
catalog's summaries, tables, dictionaries or JSON, never logged and never put in an error message;
the header records kept for reading hold them as the files do, and are left out of ``repr``,
comparisons and every export.
"""

from cardiotwin.imaging.discovery.catalog import (
    FrameInfo,
    PatientSummary,
    SeriesCatalog,
    SeriesSelection,
    SeriesSummary,
    SkippedFile,
    StudySummary,
    VolumeInfo,
)
from cardiotwin.imaging.discovery.scan import ProgressCallback, scan_tree
from cardiotwin.imaging.discovery.select import RULES, check_skipped, select_series

__all__ = [
    "RULES",
    "FrameInfo",
    "PatientSummary",
    "ProgressCallback",
    "SeriesCatalog",
    "SeriesSelection",
    "SeriesSummary",
    "SkippedFile",
    "StudySummary",
    "VolumeInfo",
    "check_skipped",
    "scan_tree",
    "select_series",
]
