"""The image frames of a DICOM file: one per single-frame file, one per frame of an enhanced
multi-frame file, one per tile of a Siemens mosaic; each with its geometry, rescale and time.

Geometry (DICOM PS3.3 C.7.6.2, Image Plane Module; C.7.6.16, Multi-frame Functional Groups)
-----------------------------------------------------------------------------------------
A slice's ``ImageOrientationPatient`` holds the row cosine (direction of increasing column
index, our ``i`` axis) and the column cosine (direction of increasing row index, ``j``);
``PixelSpacing`` is ``[row spacing, column spacing]``, i.e. ``[dj, di]`` — the *reverse* of
:attr:`Volume.spacing_mm`. The frames of an enhanced multi-frame file take their geometry from the
Plane Position / Plane Orientation / Pixel Measures functional groups (per-frame before shared,
then the top-level attributes).

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
exactly.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from cardiotwin.errors import CardiotwinError, DicomError
from cardiotwin.imaging.dicom.headers import (
    CSA_HEADER_CREATOR,
    MR_HEADER_CREATOR,
    HeaderRecord,
    header_number,
    private_value,
)

__all__ = ["POSITION_TOL_MM", "SPACING_REL_TOL", "Frame", "common_plane", "frames_of"]

log = logging.getLogger(__name__)

_ORIENTATION_TOL = 1e-4  # cosines
#: Two slice positions closer than this (mm, along the normal) are the same position.
POSITION_TOL_MM = 0.01
#: A slice step deviating from the median by more than this fraction of it (and more than
#: :data:`POSITION_TOL_MM`) is uneven.
SPACING_REL_TOL = 0.01


@dataclass
class Frame:
    """One image frame: the file it is in, its index there, geometry (LPS mm), rescale and
    temporal position."""

    entry: HeaderRecord
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
    #: what tells apart the volumes of a multi-volume series (see ``dicom.volumes``):
    #: DiffusionBValue (s/mm²), EchoNumbers, AcquisitionNumber
    b_value: float | None = None
    echo_number: int | None = None
    acquisition_number: int | None = None
    #: EchoTime (EffectiveEchoTime of an enhanced MR file), ms: shown beside an echo's volume
    echo_time_ms: float | None = None

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


def frames_of(e: HeaderRecord) -> list[Frame]:
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


def _frames_of_unchecked(e: HeaderRecord) -> list[Frame]:
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
        slope_f = header_number(slope, 1.0, "RescaleSlope", where)
        if slope_f == 0.0:
            slope_f = 1.0  # a zero slope is a writer error; treat as absent (as GDCM does)
        tpi_f = header_number(tpi, None, "TemporalPositionIndex", where)
        bval = _lookup(src, "MRDiffusionSequence", "DiffusionBValue")
        bval = bval if bval is not None else getattr(ds, "DiffusionBValue", None)
        echo = _optional_int(getattr(ds, "EchoNumbers", None))
        te = _lookup(src, "MREchoSequence", "EffectiveEchoTime")
        te = te if te is not None else getattr(ds, "EchoTime", None)
        acq = _optional_int(getattr(ds, "AcquisitionNumber", None))
        frames.append(
            Frame(
                entry=e,
                index=k,
                ipp=_vec(ipp, 3, "ImagePositionPatient", where),
                iop=_vec(iop, 6, "ImageOrientationPatient", where),
                psp=_vec(psp, 2, "PixelSpacing", where),
                rows=rows,
                cols=cols,
                slope=float(slope_f),
                intercept=float(header_number(inter, 0.0, "RescaleIntercept", where) or 0.0),
                trigger_ms=header_number(trig, None, "TriggerTime", where),
                temporal_index=None if tpi_f is None else int(tpi_f),
                percent_rr=header_number(pct, None, "NominalPercentageOfCardiacPhase", where),
                thickness_mm=header_number(thick, None, "SliceThickness", where),
                label=f.name if n == 1 else f"{f.name} frame {k + 1}",
                b_value=_optional_float(bval),
                echo_number=echo,
                acquisition_number=acq,
                echo_time_ms=_optional_float(te),
            )
        )
    if n == 1 and not enhanced:
        mosaic = _mosaic_layout(ds, f)
        if mosaic is not None:
            return _split_mosaic(frames[0], *mosaic)
    return frames


def _optional_float(value: Any) -> float | None:
    """A finite number, or None (absent, empty or unreadable: only used to tell volumes apart)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        out = float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and math.isfinite(out) else None


def _optional_int(value: Any) -> int | None:
    out = _optional_float(value)
    return None if out is None else int(out)


# --------------------------------------------------------------------------------------------
# Siemens mosaics: one MR image file holding n slices as tiles of a grid
# --------------------------------------------------------------------------------------------

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
    tags = _csa_tags(private_value(ds, 0x0029, CSA_HEADER_CREATOR, 0x10), where)
    n: int | None = None
    items = (tags.get("NumberOfImagesInMosaic") or {}).get("items") or []
    if items:
        n = int(items[0])
    normal = None
    vec = (tags.get("SliceNormalVector") or {}).get("items") or []
    if len(vec) == 3 and np.all(np.isfinite(vec)) and np.linalg.norm(vec) > 0.5:
        normal = np.asarray(vec, dtype=float) / np.linalg.norm(vec)
    if n is None:
        value = private_value(ds, 0x0019, MR_HEADER_CREATOR, 0x0A)
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


def _split_mosaic(fr: Frame, n: int, csa_normal: np.ndarray | None) -> list[Frame]:
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


def common_plane(frames: Sequence[Frame], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

