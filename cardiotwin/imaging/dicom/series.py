"""The DICOM series in a folder tree (or a list of files): grouping files by SeriesInstanceUID,
the unreadable-file policy, :func:`list_series` and the choice of the series to read.

Unreadable files. Files without the Part 10 ``DICM`` marker are ignored (logged). A DICOM file
that cannot be parsed (truncated, corrupt) does not fail the whole folder: it is listed with a
warning, in :attr:`SeriesInfo.unreadable_files` and in ``metadata["skipped_files"]`` of the volume
read, and fails a read only when it belongs to the requested series — its SeriesInstanceUID is
recovered from the raw bytes when possible; when it cannot be, the file fails the read if it lies in
a folder holding files of the requested series (it could be one of its slices) and is skipped
otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cardiotwin.errors import CardiotwinError, DicomError
from cardiotwin.imaging.dicom.frames import frames_of
from cardiotwin.imaging.dicom.headers import (
    NO_SERIES_UID,
    HeaderRecord,
    check_header,
    header_text,
    is_dicom_file,
    parse_header,
    salvage_series_uid,
)
from cardiotwin.imaging.dicom.phases import split_phases

__all__ = [
    "SeriesInfo",
    "UnreadableFile",
    "candidate_files",
    "choose_series",
    "list_series",
    "scan_series",
    "series_name",
]

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class UnreadableFile:
    """A DICOM file that could not be parsed, with the series it belongs to when recoverable."""

    path: Path
    reason: str
    series_uid: str | None


def candidate_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files under a folder (recursively, sorted), one file, or a list of files.

    Raises
    ------
    DicomError
        If the path, or a listed file, does not exist.
    """
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


def scan_series(
    path: str | Path | Sequence[str | Path],
    *,
    fast: bool = False,
    headers: Iterable[HeaderRecord] = (),
) -> tuple[dict[str, list[HeaderRecord]], list[UnreadableFile]]:
    """Headers of the DICOM files under ``path`` grouped by series UID, and the unreadable ones.

    Parameters
    ----------
    path : path or sequence of paths
        A folder (searched recursively), one file or a list of files.
    fast : bool, default False
        With ``fast`` the headers of plain little-endian files are
        :class:`~cardiotwin.imaging.dicom.headers.FastHeader` objects holding only the decoded
        values used; otherwise (and for every other file) pydicom Datasets without pixel data.
    headers : iterable of HeaderRecord, optional
        Records already parsed (e.g. by :func:`cardiotwin.imaging.discovery.scan_tree`): a file
        with a record here whose size and modification time have not changed is not parsed
        again; its record is checked (:func:`~cardiotwin.imaging.dicom.headers.check_header`)
        as a freshly parsed one would be.
    """
    known = {h.path: h for h in headers}
    groups: dict[str, list[HeaderRecord]] = {}
    bad: list[UnreadableFile] = []
    ignored = blank = 0
    for f in candidate_files(path):
        record = known.get(f)
        if record is not None and not record.is_current():
            record = None
        if record is None and not is_dicom_file(f):
            ignored += 1
            log.info("ignoring %s: not a DICOM Part 10 file (no 'DICM' marker)", f)
            continue
        try:
            if record is None:
                record = parse_header(f, fast=fast)
            entry, uid = check_header(record)
        except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt file
            reason = f"truncated or corrupt ({type(exc).__name__}: {exc})"
            bad.append(UnreadableFile(f, reason, salvage_series_uid(f)))
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


def series_name(uid: str, entries: Sequence[HeaderRecord]) -> str:
    """How messages name a series: its description and short UID."""
    desc = header_text(entries[0].ds, "SeriesDescription") if entries else ""
    return f"series '{desc}' ({_short_uid(uid)})" if desc else f"series {_short_uid(uid)}"


def _info(
    uid: str, entries: list[HeaderRecord], bad: Sequence[UnreadableFile] = ()
) -> SeriesInfo:
    ds0 = entries[0].ds
    files = tuple(sorted(e.path for e in entries))
    n_frames, n_phases, triggers = len(entries), 1, ()
    try:
        frames = [fr for e in entries for fr in frames_of(e)]
        n_frames = len(frames)
        phases = split_phases(frames, uid)
        if phases is not None:
            n_phases = len(phases)
        triggers = tuple(sorted({fr.trigger_ms for fr in frames if fr.trigger_ms is not None}))
    except CardiotwinError as exc:  # a series the reader will refuse is still listed
        log.debug("series %s: frame summary unavailable (%s)", uid, exc)
    return SeriesInfo(
        series_uid=uid,
        modality=header_text(ds0, "Modality"),
        description=header_text(ds0, "SeriesDescription"),
        n_files=len(files),
        size_bytes=sum(f.stat().st_size for f in files),
        study_uid=header_text(ds0, "StudyInstanceUID"),
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
    groups, bad = scan_series(path)
    return sorted(
        (_info(u, es, bad) for u, es in groups.items()), key=lambda s: (s.study_uid, s.series_uid)
    )


def choose_series(
    path: str | Path | Sequence[str | Path],
    series_uid: str | None,
    *,
    headers: Iterable[HeaderRecord] = (),
) -> tuple[str, list[HeaderRecord], list[UnreadableFile]]:
    """Scan ``path`` and pick the series to read; apply the unreadable-file policy.

    Returns the series key, its header records and the unreadable files of other series (skipped).
    ``headers`` are records already parsed (see :func:`scan_series`).

    Raises
    ------
    DicomError
        No DICOM file, several series and no ``series_uid``, an unknown ``series_uid``, or an
        unreadable file that belongs (or may belong) to the chosen series.
    """
    groups, bad = scan_series(path, fast=True, headers=headers)
    if not groups:
        if bad:
            b = bad[0]
            raise DicomError(f"{b.path} is {b.reason}; re-export or remove it")
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
    name = series_name(series_uid, entries)
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

