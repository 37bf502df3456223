"""Pixel data of DICOM files: decoding (native and compressed transfer syntaxes) and rescale.

Pixel values. ``stored`` → ``slope · stored + intercept`` per slice/frame (slopes and intercepts
may differ). Signed/unsigned ``PixelRepresentation`` and ``BitsStored < BitsAllocated`` are decoded
as pydicom does (high bits masked, sign extended). ``MONOCHROME1`` images are inverted to the
``MONOCHROME2`` convention (``lo + hi − stored`` over the stored range) except when the values are
quantitative (CT, PT, or ``RescaleType`` HU): PS3.3 C.7.6.3.1.2 makes the photometric
interpretation a display convention, so Hounsfield units are kept as they are.

Compressed transfer syntaxes are decoded by pydicom's pixel-data plugins: RLE and deflate by
pydicom itself (or ``pylibjpeg-rle``), JPEG baseline/lossless and JPEG-LS by ``pylibjpeg`` +
``pylibjpeg-libjpeg``, JPEG 2000 and HTJ2K by ``pylibjpeg`` + ``pylibjpeg-openjpeg``
(``python-gdcm`` covers most of them too). A syntax no installed plugin decodes is refused with a
:class:`~cardiotwin.errors.DicomError` naming the file, the transfer syntax and what to install.
Uncompressed little-endian pixel data are read straight from the offset the header reader
recorded, and JPEG 2000 files are decoded by imagecodecs in threads (it releases the GIL).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from cardiotwin.errors import DicomError
from cardiotwin.imaging.dicom.frames import Frame
from cardiotwin.imaging.dicom.headers import (
    IMPLICIT_VR_LE,
    NATIVE_LE_SYNTAXES,
    HeaderRecord,
    header_text,
)

__all__ = ["decode_frames"]

log = logging.getLogger(__name__)

try:  # JPEG 2000 decoded with the GIL released (a dependency; pydicom's plugins are the fallback)
    import imagecodecs as _imagecodecs
except ImportError:  # pragma: no cover - installed with cardiotwin
    _imagecodecs = None

#: JPEG 2000 (lossless only, and lossy) transfer syntaxes, decoded by imagecodecs in threads.
_J2K = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})

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


def _native_pixels(e: HeaderRecord, n_frames: int, rows: int, cols: int) -> np.ndarray | None:
    """Frames of an uncompressed little-endian file read straight from its bytes, or None.

    Handles one sample per pixel of 8/16/32 bits allocated (BitsStored ≤ BitsAllocated: the high
    bits are masked and the sign extended, as pydicom does). Anything else returns None and goes
    through pydicom's decoders.
    """
    ds = e.ds
    ts = str(_ts_uid(ds) or "")
    if ts not in NATIVE_LE_SYNTAXES or e.pixel_offset <= 0:
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
        if ts == IMPLICIT_VR_LE:
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


def _encapsulated_frames(e: HeaderRecord, n_frames: int) -> list[bytes] | None:
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


def _j2k_pixels(e: HeaderRecord, n_frames: int, rows: int, cols: int) -> np.ndarray | None:
    """Frames of a JPEG 2000 file decoded by imagecodecs (OpenJPEG), or None.

    imagecodecs releases the GIL while decoding, so :func:`decode_frames` runs several files
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

    def __init__(self, jobs: list[tuple[HeaderRecord, int, int, int]]) -> None:
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

    def take(self, e: HeaderRecord) -> tuple[bool, np.ndarray | None]:
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


def _prefetch(frames: Sequence[Frame]) -> _Prefetch | None:
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


def _file_shape(fr: Frame) -> tuple[int, int, int]:
    """(frames, rows, columns) of the pixel data of the file holding ``fr`` (a whole mosaic
    image when ``fr`` is one of its tiles)."""
    rows, cols = (fr.rows, fr.cols) if fr.tile is None else fr.tile[2:]
    return int(getattr(fr.entry.ds, "NumberOfFrames", 1) or 1), rows, cols


def _file_pixels(e: HeaderRecord, n_frames: int, rows: int, cols: int, name: str, *,
                 try_j2k: bool = True) -> np.ndarray:
    """Stored pixel values of every frame of ``e``, shape ``(n_frames, rows, cols)``.

    ``try_j2k=False`` skips the imagecodecs JPEG 2000 path (already tried by the prefetch)."""
    ds, f = e.ds, e.path
    try:
        _, _, _, spp = _pixel_format(ds)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomError(f"{name}: {f} has an invalid pixel format ({exc})") from exc
    photometric = header_text(ds, "PhotometricInterpretation").upper()
    if spp != 1 or photometric.startswith(("RGB", "YBR", "PALETTE")):
        modality = header_text(ds, "Modality") or "?"
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
    if header_text(ds, "PhotometricInterpretation").upper() != "MONOCHROME1":
        return None
    modality, rescale_type = header_text(ds, "Modality"), header_text(ds, "RescaleType")
    if modality.upper() in ("CT", "PT") or rescale_type.upper() == "HU":
        return None  # quantitative values: the photometric interpretation is display only
    _, stored, sign, _ = _pixel_format(ds)
    if sign:
        return -(2.0 ** (stored - 1)), 2.0 ** (stored - 1) - 1
    return 0.0, 2.0**stored - 1


def decode_frames(frames: Sequence[Frame], name: str) -> np.ndarray:
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
    fr: Frame,
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
