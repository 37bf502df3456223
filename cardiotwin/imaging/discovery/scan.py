"""Walking a folder tree: every file's header (never its pixel data), DICOMDIRs cross-checked,
instances grouped into patients → studies → series (:func:`scan_tree`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.errors import InvalidDicomError

from cardiotwin.errors import DicomError
from cardiotwin.imaging.deid import pseudonym
from cardiotwin.imaging.dicom.headers import (
    IMPLICIT_VR_LE,
    MEDIA_STORAGE_DIRECTORY,
    NO_SERIES_UID,
    parse_header,
    salvage_series_uid,
)
from cardiotwin.imaging.discovery.catalog import (
    PatientSummary,
    SeriesCatalog,
    SeriesSummary,
    SkippedFile,
    StudySummary,
)
from cardiotwin.imaging.discovery.dicomdir import read_dicomdir
from cardiotwin.imaging.discovery.summary import (
    FileHeader,
    announced_pixel_bytes,
    file_header,
    summarise_series,
)

__all__ = ["ProgressCallback", "scan_tree"]

log = logging.getLogger(__name__)

#: Called as ``progress(fraction_done, message)`` during a scan (the CLI's progress bar).
ProgressCallback = Callable[[float, str], None]
#: Salt of the opaque patient labels when no key is given: fresh for every process.
_PROCESS_SALT = secrets.token_bytes(32)


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
    headers: list[FileHeader] = []
    skipped: list[SkippedFile] = []
    dicomdirs: list[Path] = []
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
            record = parse_header(f, fast=True)
            ds = record.ds
            sop_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "") or "")
            if sop_class == MEDIA_STORAGE_DIRECTORY:
                dicomdirs.append(f)
                continue
            hdr = file_header(record)
            pixel_bytes = announced_pixel_bytes(ds)
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError,
                AttributeError, IndexError, OverflowError) as exc:
            # The exception text may quote element values (patient data): only its type is kept.
            skipped.append(SkippedFile(f, f"truncated or corrupt header ({type(exc).__name__})",
                                       True, salvage_series_uid(f)))
            continue
        if pixel_bytes:
            # the pixel data element starts at the offset: tag, (VR,) length, then the values
            ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
            have = size - record.pixel_offset - (8 if ts == IMPLICIT_VR_LE else 12)
            if have < pixel_bytes:
                skipped.append(SkippedFile(
                    f, f"truncated: pixel data shorter than its header announces "
                    f"({max(have, 0)} of {pixel_bytes} bytes)", True, hdr.series_uid or None))
                continue
        if not hdr.series_uid:
            if not hdr.rows:
                skipped.append(SkippedFile(
                    f, "truncated header or not an image: no SeriesInstanceUID, no Rows/Columns",
                    True, salvage_series_uid(f)))
                continue
            hdr.series_uid = NO_SERIES_UID
        headers.append(hdr)
    if progress is not None:
        progress(1.0, f"{len(files)}/{len(files)} files")

    problems: list[str] = []
    dir_counts: dict[str, int] = {}
    dir_problems: dict[str, list[str]] = {}
    by_path = {h.path.resolve(): h for h in headers} if dicomdirs else {}
    for dd in dicomdirs:
        refs, dd_problems = read_dicomdir(dd)
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
    damaged = [s for s in skipped if s.is_dicom]
    if damaged:
        log.warning("%s", catalog.skipped_text(damaged))
    log.info(
        "scanned %d files in %.2f s: %d patient(s), %d series, %d skipped, %d problem(s)",
        len(files), elapsed, len(catalog.patients), len(catalog.series), len(skipped),
        len(problems),
    )
    return catalog


def _assemble(
    root: Path,
    headers: list[FileHeader],
    key: bytes | None,
    dir_counts: dict[str, int],
    dir_problems: dict[str, list[str]],
    problems: list[str],
) -> tuple[PatientSummary, ...]:
    by_series: dict[str, list[FileHeader]] = {}
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
        summary = summarise_series(uid, hs, label, dir_counts.get(uid), extra)
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
