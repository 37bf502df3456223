"""DICOMDIR (PS3.10 media directory, PS3.3 F.3 Basic Directory IOD): the instances it lists.

The directory records are followed (patient → study → series → image records linked by byte
offsets) and every Referenced File ID is resolved on disk, case-insensitively when needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

__all__ = ["DirectoryReference", "read_dicomdir"]


@dataclass(frozen=True)
class DirectoryReference:
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


def read_dicomdir(path: Path) -> tuple[list[DirectoryReference], list[str]]:
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
            DirectoryReference(
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
