"""What headers say: the values of one file's header the catalogue uses (:class:`FileHeader`), and
the summary of a series of them (:func:`summarise_series`: size, spacing, tilt, contrast, phases).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from cardiotwin.errors import CardiotwinError
from cardiotwin.imaging.dicom.frames import POSITION_TOL_MM, SPACING_REL_TOL
from cardiotwin.imaging.dicom.headers import (
    MR_HEADER_CREATOR,
    FastHeader,
    HeaderRecord,
    private_value,
)
from cardiotwin.imaging.discovery.catalog import (
    PHASE_TOL_PCT,
    TRIGGER_TOL_MS,
    FrameInfo,
    SeriesSummary,
    VolumeInfo,
    distinct_values,
)

__all__ = ["FileHeader", "announced_pixel_bytes", "file_header", "summarise_series"]

_NO_STUDY_UID = "<no StudyInstanceUID>"
#: ContrastBolusAgent values that mean "no contrast" although the attribute is filled in.
_NO_CONTRAST = frozenset({"", "NONE", "NO", "N/A", "NA", "NO CONTRAST", "0"})
#: Phase given in a SeriesDescription, e.g. Siemens "CorCTA 0.75 Bv40 75%".
_DESCRIPTION_PHASE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s*%")


@dataclass
class FileHeader:
    """Plain values of one file's header, and the parsed record they come from."""

    path: Path
    record: HeaderRecord
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
    # per frame: (position xyz or None, phase %, trigger ms, temporal position index or None)
    frames: list[tuple[tuple[float, float, float] | None, float | None, float | None, int | None]]
    cycle_position: str
    rr_ms: float | None
    frame_time_ms: float | None = None  # FrameTime (or 1000 / CineRate) of a cine file


def _str(ds: Dataset | FastHeader, keyword: str) -> str:
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


def _item(ds: Dataset | FastHeader, keyword: str) -> Dataset | None:
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


def _patient_key(ds: Dataset | FastHeader) -> str:
    pid = _str(ds, "PatientID")
    if pid:
        return "id:" + pid
    name = _str(ds, "PatientName")
    return "name:" + name if name else ""


def file_header(record: HeaderRecord) -> FileHeader:
    """Extract the values the catalog needs; raises ValueError/TypeError/KeyError if corrupt."""
    path, ds = record.path, record.ds
    meta = getattr(ds, "file_meta", None)
    n_frames = int(_float(ds.get("NumberOfFrames")) or 1)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence") or []
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    pixel_spacing = _floats(ds.get("PixelSpacing"), 2)
    frames: list[
        tuple[tuple[float, float, float] | None, float | None, float | None, int | None]
    ] = []
    frame_time = _frame_time_ms(ds) if n_frames > 1 else None
    if n_frames > 1 and shared is None and not per_frame_seq:
        # A multi-frame image without functional groups (MR/US/XA cine): every frame is the
        # same plane; with a frame time (PS3.3 C.7.6.5 Cine Module) the frames follow in time.
        pos = _floats(ds.get("ImagePositionPatient"), 3)
        trig = _float(ds.get("TriggerTime"))
        pct = _float(ds.get("NominalPercentageOfCardiacPhase"))
        for i in range(n_frames):
            frames.append((pos, pct, trig, i + 1 if frame_time is not None else None))  # type: ignore[arg-type]
    elif n_frames > 1 or shared is not None or per_frame_seq:
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
            tpi = _float(_functional(shared, pf, "FrameContentSequence", "TemporalPositionIndex"))
            frames.append((pos, pct, trig, None if tpi is None else int(tpi)))  # type: ignore[arg-type]
    else:
        tpi = _float(ds.get("TemporalPositionIdentifier"))
        frames.append((
            _floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
            _float(ds.get("NominalPercentageOfCardiacPhase")),
            _float(ds.get("TriggerTime")),
            None if tpi is None else int(tpi),
        ))
    rr = _float(ds.get("NominalInterval"))
    if rr is None or rr <= 0:
        hr = _float(ds.get("HeartRate"))
        rr = 60000.0 / hr if hr and hr > 0 else None
    acq = _str(ds, "AcquisitionDateTime")
    series_number = _float(ds.get("SeriesNumber"))
    return FileHeader(
        path=path,
        record=record,
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
        frame_time_ms=frame_time,
    )


def _frame_time_ms(ds: Dataset | FastHeader) -> float | None:
    """Time between the frames of a cine file (FrameTime, the median of FrameTimeVector, or
    1000 / CineRate), ms; None when the file says nothing of time."""
    ft = _float(ds.get("FrameTime"))
    if ft is not None and ft > 0:
        return ft
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        try:
            steps = [float(v) for v in vector][1:]  # the first entry is 0 by definition
        except (TypeError, ValueError):
            steps = []
        if steps and all(math.isfinite(v) and v > 0 for v in steps):
            return float(np.median(steps))
    rate = _float(ds.get("CineRate"))
    return 1000.0 / rate if rate is not None and rate > 0 else None


def _mosaic_images(ds: Dataset | FastHeader) -> int:
    """Slices in a Siemens MOSAIC image, from (0019,xx0A) NumberOfImagesInMosaic; else 0."""
    if "MOSAIC" not in _str(ds, "ImageType").upper():
        return 0
    value = private_value(ds, 0x0019, MR_HEADER_CREATOR, 0x0A)
    if isinstance(value, bytes) and len(value) >= 2:  # raw US of the fast header walk
        return struct.unpack("<H", value[:2])[0]
    try:
        return int(_float(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _volumes(hs: list[FileHeader], uid: str) -> tuple[VolumeInfo, ...]:
    """The volumes of a series whose slice positions repeat, as the reader would split them
    (:func:`cardiotwin.imaging.dicom.volumes.split_volumes`), from the headers already parsed;
    () when it cannot split them (copies, or a header the reader would refuse)."""
    from cardiotwin.imaging.dicom.frames import frames_of
    from cardiotwin.imaging.dicom.volumes import split_volumes

    try:
        frames = [fr for h in hs for fr in frames_of(h.record)]
    except CardiotwinError:
        return ()
    found = split_volumes(frames, f"series {uid}") or []
    return tuple(VolumeInfo(v.index, v.label, v.n_slices, v.details) for v in found)


def announced_pixel_bytes(ds: Dataset | FastHeader) -> int:
    """Bytes of uncompressed pixel data the header announces (0 if unknown or compressed)."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None or ts.is_compressed:
        return 0
    try:
        n = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames") or 1)
        return n * int(ds.get("SamplesPerPixel") or 1) * int(ds.BitsAllocated) // 8
    except (AttributeError, TypeError, ValueError):
        return 0


def summarise_series(
    uid: str, hs: list[FileHeader], label: str, dicomdir_files: int | None, problems: list[str]
) -> SeriesSummary:
    """The :class:`SeriesSummary` of the files ``hs`` of series ``uid`` of patient ``label``.

    ``problems`` (already found: DICOMDIR, mixed patients) is extended with what the headers show
    (mixed geometry, uneven spacing, tilt, duplicate slices).
    """
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
        for i, (pos, pct, trig, tpi) in enumerate(h.frames):
            along = None
            if pos is not None and normal is not None:
                xyz.append(np.asarray(pos))
                along = float(np.asarray(pos) @ normal)
            frames.append(FrameInfo(h.path, i + 1 if h.n_frames > 1 else 0, along, pct,
                                    None if trig is None else round(trig, 1), tpi))
    along_all = [f.position_mm for f in frames if f.position_mm is not None]
    positions = distinct_values(along_all, POSITION_TOL_MM)
    n_slices = len(positions) if positions else (len(frames) if frames else 0)
    dk = None
    uniform = True
    if len(positions) >= 2:
        steps = np.diff(positions)
        dk = float(np.median(steps))
        tol = max(POSITION_TOL_MM, SPACING_REL_TOL * dk)
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
        moving = np.abs(delta @ normal) > POSITION_TOL_MM
        if np.any(moving) and float(lateral[moving].max()) > tol:
            i = int(np.argmax(np.where(moving, lateral, -1.0)))
            angle = math.degrees(math.atan2(lateral[i], abs(float(delta[i] @ normal))))
            problems.append(f"slices not stacked along their normal (gantry tilt {angle:.1f}°)")

    pcts = distinct_values((f.phase_pct for f in frames if f.phase_pct is not None), PHASE_TOL_PCT)
    trigs = distinct_values((f.trigger_ms for f in frames if f.trigger_ms is not None), 0.05)
    repeated = bool(positions) and len(along_all) > len(positions)
    tpis = sorted({f.temporal_index for f in frames if f.temporal_index is not None})
    if not pcts:
        m = _DESCRIPTION_PHASE.search(first.series_description)
        if m and float(m.group(1)) <= 100:
            pcts = [float(m.group(1))]
    if len(pcts) > 1 or (pcts and not trigs):
        n_phases = len(pcts)
    elif repeated and trigs:
        n_phases = len(distinct_values(trigs, TRIGGER_TOL_MS))
    elif (repeated or not positions) and len(tpis) > 1 and all(
        f.temporal_index is not None for f in frames
    ):
        # time points by TemporalPositionIndex/Identifier (no trigger times), or the frames of
        # a cine file without positions
        n_phases = len(tpis)
        if not positions:
            n_slices = max(1, len(frames) // n_phases)
    else:
        n_phases = max(1, len(pcts))
    volumes: tuple[VolumeInfo, ...] = ()
    if repeated:
        per_phase = len(along_all) / max(n_phases, 1)
        if n_phases > 1 and per_phase == len(positions):
            pass  # a multi-phase series: each phase covers every position once
        else:
            volumes = _volumes(hs, uid)
            problems.append(
                f"{len(along_all)} images at {len(positions)} position(s): duplicate slices "
                + (f"forming {len(volumes)} volumes (read one with --volume INDEX or "
                   f"--volume {volumes[-1].label})" if volumes
                   else "(several acquisitions, echoes or copies in one series)")
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
        frame_time_ms=next((h.frame_time_ms for h in hs if h.frame_time_ms), None),
        kernel=first.kernel,
        series_datetime=first.series_datetime,
        acquisition_datetime=min(
            (h.acquisition_datetime for h in hs if h.acquisition_datetime), default=""
        ),
        transfer_syntaxes=tuple(sorted({h.transfer_syntax for h in hs if h.transfer_syntax})),
        dicomdir_files=dicomdir_files,
        problems=tuple(problems),
        volumes=volumes,
        frames=tuple(frames),
        headers=tuple(h.record for h in hs),
    )
