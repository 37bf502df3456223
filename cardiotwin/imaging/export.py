"""Volumes and label maps to and from NIfTI and NRRD, and label maps to DICOM Segmentation.

Geometry conventions
--------------------
A :class:`~cardiotwin.imaging.volume.Volume` lives in DICOM patient coordinates (LPS, mm) with its
array indexed ``[k, j, i]``. The file formats store the same grid as follows:

* **NIfTI-1** (nibabel; affine in float32, see :func:`write_nifti`): voxel ``[x, y, z]`` = ``[i, j, k]``; the sform and the qform both map it
  to **RAS** mm (``RAS = diag(-1, -1, 1) LPS``) with code 1 ("scanner anatomical"), so FSL,
  ANTs, ITK/SimpleITK, nibabel, FreeSurfer and 3D Slicer all place it the same way. Units are
  ``mm``. A label map carries ``intent_code`` 1002 (NIFTI_INTENT_LABEL) and its label names as a
  JSON comment extension (ecode 6).
* **NRRD** (pynrrd): ``space: left-posterior-superior``, ``space directions`` = the i, j, k axes
  scaled by the spacing, ``space origin`` = centre of voxel ``(0, 0, 0)``, ``kinds: domain
  domain domain``; label names in the custom field ``cardiotwin_labels`` (JSON).
* **DICOM Segmentation** (highdicom): a SEG instance on the frame of reference of the source CT,
  one frame per source slice and segment, with the source SOP instances in
  ``ReferencedSeriesSequence`` and each frame's ``DerivationImageSequence``.

Every writer writes a temporary file next to the target and renames it, so a failure never
leaves a half-written file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cardiotwin import __version__
from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging.volume import LABELS, LabelMap, Volume

__all__ = [
    "SEGMENT_CODES",
    "SEGMENT_COLOURS_RGB",
    "read_nifti",
    "read_nifti_labels",
    "read_nrrd",
    "read_nrrd_labels",
    "write_dicom_seg",
    "write_nifti",
    "write_nrrd",
]

log = logging.getLogger(__name__)

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_NIFTI_INTENT_LABEL = 1002  # NIfTI-1 nifti1.h: NIFTI_INTENT_LABEL
_NIFTI_ECODE_COMMENT = 6  # NIfTI-1 extension code for plain-text comments
_NRRD_LABELS_FIELD = "cardiotwin_labels"

#: Coded concepts of the cardiotwin labels for DICOM SEG segment descriptions:
#: ``name -> (segment label, category (code, meaning), type (code, meaning))``, all SNOMED CT
#: ("SCT"). Categories from DICOM PS3.16 CID 7150 "Segmentation Property Categories"
#: (91723000 Anatomical structure, 49755003 Morphologically abnormal structure); types from
#: CID 7151 "Segmentation Property Types" (87878005 Left ventricle, 15825003 Aorta, 51114001
#: Artery), CID 3630 "Cardiovascular Anatomic Locations" (34202007 Aortic valve), CID 12305
#: "Basic Echo Anatomic Sites" (49848007 Left ventricle myocardium) and SNOMED CT 18115005
#: "Pathologic calcification, calcified structure" (morphologic abnormality). The codes are the
#: ones in pydicom's ``pydicom.sr.codedict`` (generated from PS3.16).
SEGMENT_CODES: dict[str, tuple[str, tuple[str, str], tuple[str, str]]] = {
    "lv_blood": ("LV blood pool", ("91723000", "Anatomical Structure"),
                 ("87878005", "Left ventricle")),
    "myocardium": ("Myocardium", ("91723000", "Anatomical Structure"),
                   ("49848007", "Left ventricle myocardium")),
    "aorta": ("Aorta", ("91723000", "Anatomical Structure"), ("15825003", "Aorta")),
    "branches": ("Aortic arch branches", ("91723000", "Anatomical Structure"),
                 ("51114001", "Artery")),
    "calcium": ("Calcium", ("49755003", "Morphologically Abnormal Structure"),
                ("18115005", "Pathologic calcification")),
    "valve": ("Aortic valve", ("91723000", "Anatomical Structure"), ("34202007", "Aortic valve")),
    # The neighbouring structures (volume.NEIGHBOUR_LABELS): SNOMED CT codes as in pydicom's
    # codedict. ``right_heart`` (right atrium, right ventricle, pulmonary trunk and arteries
    # together) has no single concept; it is coded as 80891009 "Heart" with a label saying so.
    "la": ("Left atrium", ("91723000", "Anatomical Structure"), ("82471001", "Left atrium")),
    "right_heart": ("Right heart (RA, RV, pulmonary arteries)",
                    ("91723000", "Anatomical Structure"), ("80891009", "Heart")),
    "svc": ("Superior vena cava", ("91723000", "Anatomical Structure"),
            ("48345005", "Superior vena cava")),
    "ivc": ("Inferior vena cava", ("91723000", "Anatomical Structure"),
            ("64131007", "Inferior vena cava")),
}

#: Display colours (sRGB 0-255) written as RecommendedDisplayCIELabValue, which 3D Slicer uses.
SEGMENT_COLOURS_RGB: dict[str, tuple[int, int, int]] = {
    "lv_blood": (216, 60, 60),
    "myocardium": (190, 125, 100),
    "aorta": (255, 120, 90),
    "branches": (230, 160, 120),
    "calcium": (250, 250, 225),
    "valve": (110, 170, 225),
    "la": (200, 110, 160),
    "right_heart": (80, 110, 200),
    "svc": (70, 150, 200),
    "ivc": (60, 120, 170),
}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _split(image: Volume | LabelMap) -> tuple[Volume, dict[str, int] | None]:
    if isinstance(image, LabelMap):
        return image.volume, dict(image.names)
    if isinstance(image, Volume):
        return image, None
    raise InputError(f"expected a Volume or a LabelMap; got {type(image).__name__}")


def _label_dtype(array: np.ndarray) -> np.dtype:
    lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
    for dt in (np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise InputError(f"label values {lo}..{hi} do not fit 32-bit integers")


def _atomic_target(path: str | Path, suffixes: tuple[str, ...], what: str) -> Path:
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(suffixes):
        raise InputError(f"{what} file name must end with {' or '.join(suffixes)}; got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp_path)`` for a temporary file next to ``path``, then rename it."""
    suffix = "".join(path.suffixes[-2:]) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _volume_from_index_affine(
    array_ijk: np.ndarray, affine_lps: np.ndarray, metadata: dict[str, Any], source: Path
) -> Volume:
    """A Volume from an ``[i, j, k]`` array and its 4x4 voxel-to-LPS affine."""
    m = np.asarray(affine_lps, dtype=float)[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"{source}: degenerate voxel axes {m.tolist()}")
    direction = m / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise InputError(
            f"{source}: the voxel axes are not orthogonal (sheared grid, e.g. an uncorrected "
            f"gantry tilt); resample it to an orthogonal grid first")
    arr = np.ascontiguousarray(np.transpose(array_ijk, (2, 1, 0)))
    return Volume(arr, tuple(spacing), tuple(np.asarray(affine_lps)[:3, 3]), direction, metadata)


# ---------------------------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------------------------


def write_nifti(image: Volume | LabelMap, path: str | Path) -> Path:
    """Write a volume or a label map as NIfTI-1 (``.nii`` or ``.nii.gz``).

    NIfTI-1 stores the affine in float32: positions are exact to half a float32 ulp,
    ``|x| * 2**-24`` (6e-6 mm at 100 mm from the scanner origin; far below any voxel size). NIfTI-2
    would store float64 but ITK/SimpleITK 2.5 (hence 3D Slicer) cannot read it; use
    :func:`write_nrrd` when the geometry must survive to 1e-6 mm.

    Parameters
    ----------
    image : Volume or LabelMap
        A CT volume is written as float32; a label map as the smallest integer type holding its
        values (uint8 for the cardiotwin labels), with ``intent_code`` NIFTI_INTENT_LABEL and its
        label names in a JSON comment extension.
    path : path
        Target file; ``.nii.gz`` is gzip-compressed. Replaced if it exists.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InputError
        For another file suffix or an object that is neither a Volume nor a LabelMap.
    """
    import nibabel as nib

    path = _atomic_target(path, (".nii", ".nii.gz"), "NIfTI")
    vol, names = _split(image)
    if names is None:
        data = np.asarray(vol.array, dtype=np.float32)
    else:
        data = np.asarray(vol.array).astype(_label_dtype(vol.array), copy=False)
    affine = _LPS_TO_RAS @ vol.affine
    img = nib.Nifti1Image(np.transpose(data, (2, 1, 0)), affine)
    hdr = img.header
    img.set_sform(affine, code=1)  # 1 = NIFTI_XFORM_SCANNER_ANAT
    img.set_qform(affine, code=1)
    hdr.set_xyzt_units(xyz="mm", t="sec")
    hdr.set_slope_inter(1.0, 0.0)
    if names is not None:
        hdr.set_intent(_NIFTI_INTENT_LABEL)
        hdr.extensions.append(nib.nifti1.Nifti1Extension(
            _NIFTI_ECODE_COMMENT, json.dumps({"cardiotwin_labels": names}).encode()))
        hdr["descrip"] = b"cardiotwin label map"
    else:
        hdr["descrip"] = f"cardiotwin {vol.metadata.get('modality', '')} volume".encode()[:79]

    _replace_atomically(path, lambda tmp: nib.save(img, str(tmp)))
    log.info("wrote NIfTI %s (%s, shape %s)", path, data.dtype, vol.shape)
    return path


def _read_nifti(path: str | Path) -> tuple[Volume, dict[str, int] | None, int]:
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except (OSError, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"cannot read NIfTI {path}: {exc}") from exc
    if img.ndim != 3 and not (img.ndim == 4 and img.shape[3] == 1):
        raise InputError(f"{path} has shape {img.shape}; only 3-D images are supported")
    hdr = img.header
    sform, scode = img.get_sform(coded=True)
    qform, qcode = img.get_qform(coded=True)
    affine = sform if scode and scode > 0 else qform if qcode and qcode > 0 else None
    if affine is None:
        raise InputError(
            f"{path} has neither an sform nor a qform (both codes 0): its orientation is "
            f"unknown; re-export it with a spatial transform")
    names = None
    for ext in hdr.extensions:
        if ext.get_code() == _NIFTI_ECODE_COMMENT:
            try:
                names = json.loads(ext.get_content()).get("cardiotwin_labels")
            except (ValueError, AttributeError):
                continue
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    vol = _volume_from_index_affine(
        data, _LPS_TO_RAS @ affine, {"source": str(path), "format": "nifti"}, path)
    return vol, names, int(hdr["intent_code"])


def read_nifti(path: str | Path) -> Volume:
    """Read a 3-D NIfTI-1/2 image into a :class:`Volume` (LPS, mm; scl_slope/inter applied).

    The sform is used when its code is non-zero, else the qform.

    Raises
    ------
    InputError
        Unreadable file, not 3-D, no spatial transform, or a sheared (non-orthogonal) grid.
    """
    vol, _, _ = _read_nifti(path)
    if not np.issubdtype(vol.array.dtype, np.floating):
        vol = vol.with_array(vol.array.astype(np.float32))
    return vol


def read_nifti_labels(path: str | Path, *, names: Mapping[str, int] | None = None) -> LabelMap:
    """Read an integer NIfTI-1 label image into a :class:`LabelMap`.

    Parameters
    ----------
    path : path
        ``.nii`` / ``.nii.gz`` with integer voxels.
    names : mapping, optional
        Label names; default: those stored by :func:`write_nifti`, else :data:`LABELS`.

    Raises
    ------
    InputError
        As :func:`read_nifti`, or non-integer voxel values.
    """
    vol, stored, _ = _read_nifti(path)
    arr = vol.array
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InputError(f"{path} holds non-integer values; it is not a label map")
        arr = arr.astype(_label_dtype(arr))
        vol = vol.with_array(arr)
    return LabelMap(vol, dict(names or stored or LABELS))


# ---------------------------------------------------------------------------------------------
# NRRD
# ---------------------------------------------------------------------------------------------


def write_nrrd(image: Volume | LabelMap, path: str | Path, *, encoding: str = "gzip") -> Path:
    """Write a volume or a label map as NRRD (``.nrrd``; Slicer's volume format).

    Parameters
    ----------
    image : Volume or LabelMap
        float32 for a volume; the smallest integer type for a label map (names in the
        ``cardiotwin_labels`` field).
    path : path
        Target ``.nrrd`` file (header and data in one file). Replaced if it exists.
    encoding : {"gzip", "raw"}
        Data encoding.

    Returns
    -------
    Path
        The written file.
    """
    import nrrd

    if encoding not in ("gzip", "raw"):
        raise InputError(f"encoding must be 'gzip' or 'raw'; got {encoding!r}")
    path = _atomic_target(path, (".nrrd",), "NRRD")
    vol, names = _split(image)
    if names is None:
        data = np.asarray(vol.array, dtype=np.float32)
    else:
        data = np.asarray(vol.array).astype(_label_dtype(vol.array), copy=False)
    header: dict[str, Any] = {
        "space": "left-posterior-superior",
        # one row per array axis (i, j, k): the axis vector in LPS mm
        "space directions": (vol.direction * np.asarray(vol.spacing_mm)[None, :]).T,
        "space origin": np.asarray(vol.origin_mm, dtype=float),
        "kinds": ["domain", "domain", "domain"],
        "encoding": encoding,
    }
    if names is not None:
        header[_NRRD_LABELS_FIELD] = json.dumps(names)
    custom = {_NRRD_LABELS_FIELD: "string"} if names is not None else None
    _replace_atomically(path, lambda tmp: nrrd.write(
        str(tmp), np.transpose(data, (2, 1, 0)), header, index_order="F",
        custom_field_map=custom, compression_level=1))  # level 9: ~20x slower, ~20% smaller
    log.info("wrote NRRD %s (%s, shape %s)", path, data.dtype, vol.shape)
    return path


def _read_nrrd(path: str | Path) -> tuple[Volume, dict[str, int] | None]:
    import nrrd

    path = Path(path)
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except (OSError, nrrd.NRRDError) as exc:
        raise InputError(f"cannot read NRRD {path}: {exc}") from exc
    if data.ndim != 3:
        raise InputError(f"{path} has {data.ndim} axes; only 3-D images are supported")
    space = str(header.get("space", "")).lower()
    flip = {"left-posterior-superior": (1, 1, 1), "lps": (1, 1, 1),
            "right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1)}.get(space)
    if flip is None or "space directions" not in header:
        raise InputError(
            f"{path}: space {space or '(none)'} is not LPS or RAS, or 'space directions' is "
            f"missing; cardiotwin needs a 3-D image in patient space")
    dirs = np.asarray(header["space directions"], dtype=float)  # rows = axes
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(flip) @ dirs.T
    affine[:3, 3] = np.diag(flip) @ origin
    names = None
    if _NRRD_LABELS_FIELD in header:
        names = json.loads(header[_NRRD_LABELS_FIELD])
    vol = _volume_from_index_affine(data, affine, {"source": str(path), "format": "nrrd"}, path)
    return vol, names


def read_nrrd(path: str | Path) -> Volume:
    """Read a 3-D NRRD image (LPS or RAS space) into a :class:`Volume` (float32, LPS mm)."""
    vol, _ = _read_nrrd(path)
    if not np.issubdtype(vol.array.dtype, np.floating):
        vol = vol.with_array(vol.array.astype(np.float32))
    return vol


def read_nrrd_labels(path: str | Path, *, names: Mapping[str, int] | None = None) -> LabelMap:
    """Read an integer NRRD label image into a :class:`LabelMap` (names as :func:`read_nifti_labels`)."""
    vol, stored = _read_nrrd(path)
    if not np.issubdtype(vol.array.dtype, np.integer):
        raise InputError(f"{path} holds {vol.array.dtype} voxels; a label map needs integers")
    return LabelMap(vol, dict(names or stored or LABELS))


# ---------------------------------------------------------------------------------------------
# DICOM Segmentation
# ---------------------------------------------------------------------------------------------


def _slice_order(datasets: Sequence[Any], vol: Volume, files: Sequence[Path]) -> list[int]:
    """Index ``k`` of the label map's slice that each source image covers (validated)."""
    nk, nj, ni = vol.shape
    inv = np.linalg.inv(vol.affine)
    ks = []
    for f, ds in zip(files, datasets, strict=True):
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
            ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            psp = np.asarray([float(v) for v in ds.PixelSpacing])
        except (AttributeError, TypeError, ValueError) as exc:
            raise DicomError(f"{f} lacks the Image Plane module needed to reference it") from exc
        if (rows, cols) != (nj, ni):
            raise InputError(f"{f} is {rows}x{cols} but the label map slices are {nj}x{ni}")
        if not (np.allclose(iop[:3], vol.direction[:, 0], atol=1e-4)
                and np.allclose(iop[3:], vol.direction[:, 1], atol=1e-4)
                and np.allclose(psp[::-1], vol.spacing_mm[:2], atol=1e-4)):
            raise InputError(
                f"{f} has orientation {iop.tolist()} / spacing {psp.tolist()} but the label "
                f"map has {vol.direction[:, :2].T.ravel().round(5).tolist()} / "
                f"{vol.spacing_mm[:2]}: the label map is not on this series' grid")
        ijk = (inv @ np.append(ipp, 1.0))[:3]
        k = int(round(ijk[2]))
        if np.abs(ijk - (0, 0, k)).max() > 1e-2 or not 0 <= k < nk:
            raise InputError(
                f"{f} at {ipp.round(3).tolist()} mm is not on a slice of the label map "
                f"(continuous index {ijk.round(3).tolist()}); resample the labels to the series")
        ks.append(k)
    if sorted(ks) != list(range(nk)):
        raise InputError(
            f"the {len(files)} source images cover slices {sorted(set(ks))} but the label map "
            f"has {nk}: give exactly the series the labels were computed on")
    return ks


def write_dicom_seg(
    labels: LabelMap,
    source_series_files: Sequence[str | Path],
    path: str | Path,
    *,
    segments: Sequence[str] | None = None,
    segmentation_type: str = "BINARY",
    series_number: int = 300,
    series_description: str = "cardiotwin segmentation",
    seed: int | str = 0,
    algorithm_family: str = "MorphologicalOperations",
) -> Path:
    """Write a label map as a DICOM Segmentation instance referencing its source CT series.

    Parameters
    ----------
    labels : LabelMap
        On the grid of the source series (as :func:`~cardiotwin.imaging.dicom.read_series`
        returns it).
    source_series_files : sequence of paths
        The files of the CT series the labels were computed on (any order); each becomes a
        referenced instance and supplies patient/study attributes and the frame of reference.
    path : path
        Target ``.dcm`` file. Replaced if it exists.
    segments : sequence of str, optional
        Label names to export (default: every non-background name of ``labels.names`` with a
        code in :data:`SEGMENT_CODES`); each becomes one segment, numbered 1, 2, ... in this
        order. Names without a SNOMED code are refused.
    segmentation_type : {"BINARY", "LABELMAP"}
        ``BINARY`` (one bit-packed frame per segment and slice; what 3D Slicer/dcmqi read) or
        ``LABELMAP`` (Label Map Segmentation Storage, DICOM 2024b: one 8/16-bit frame per slice).
    series_number : int
        SeriesNumber of the SEG.
    series_description : str
        SeriesDescription of the SEG.
    seed : int or str
        Entropy for the deterministic SEG series/instance UIDs.
    algorithm_family : str
        Keyword of DICOM CID 7162 "Algorithm Family" (``codes.cid7162``), e.g.
        ``"MorphologicalOperations"`` (cardiotwin's classical segmentation) or
        ``"ArtificialIntelligence"`` for a deep model.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InputError
        Unknown segment name, a label map not on the series' grid, or an empty segment list.
    DicomError
        A source file that cannot be read or lacks the geometry to reference it.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

    path = _atomic_target(path, (".dcm",), "DICOM SEG")
    if segmentation_type not in ("BINARY", "LABELMAP"):
        raise InputError(f"segmentation_type must be BINARY or LABELMAP; got {segmentation_type!r}")
    names = list(segments) if segments is not None else [
        n for n, v in sorted(labels.names.items(), key=lambda kv: kv[1])
        if v != 0 and n in SEGMENT_CODES]
    if not names:
        raise InputError("no segment to export: the label map has no coded label names")
    unknown = [n for n in names if n not in labels.names or n not in SEGMENT_CODES]
    if unknown:
        raise InputError(
            f"segment(s) {unknown} have no label value in this map or no SNOMED code in "
            f"SEGMENT_CODES ({sorted(SEGMENT_CODES)}); add a code before exporting them")
    try:
        family = getattr(codes.cid7162, algorithm_family)
    except AttributeError as exc:
        raise InputError(
            f"algorithm_family {algorithm_family!r} is not in DICOM CID 7162; choose one of "
            f"{codes.cid7162.dir()}") from exc

    files = [Path(f) for f in source_series_files]
    if not files:
        raise InputError("source_series_files is empty: give the files of the source CT series")
    try:
        datasets = [pydicom.dcmread(f) for f in files]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise DicomError(f"cannot read a source image of the segmentation: {exc}") from exc
    series = {str(ds.SeriesInstanceUID) for ds in datasets}
    fors = {str(getattr(ds, "FrameOfReferenceUID", "")) for ds in datasets}
    if len(series) != 1 or len(fors) != 1 or "" in fors:
        raise DicomError(
            f"the source files span series {sorted(series)} and frames of reference "
            f"{sorted(fors)}; give the files of one series with a FrameOfReferenceUID")
    ks = _slice_order(datasets, labels.volume, files)
    order = np.argsort(ks)
    datasets = [datasets[i] for i in order]  # now datasets[k] covers slice k

    arr = np.asarray(labels.array)
    if segmentation_type == "BINARY":
        pixel = np.stack([arr == labels.names[n] for n in names], axis=-1)
    else:
        pixel = np.zeros(arr.shape, dtype=np.uint16 if len(names) > 255 else np.uint8)
        for number, n in enumerate(names, start=1):
            pixel[arr == labels.names[n]] = number

    algorithm = hd.AlgorithmIdentificationSequence(
        name="cardiotwin", version=__version__, family=family)
    descriptions = []
    for number, n in enumerate(names, start=1):
        label, (cat_code, cat_meaning), (type_code, type_meaning) = SEGMENT_CODES[n]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=hd.sr.CodedConcept(cat_code, "SCT", cat_meaning),
            segmented_property_type=hd.sr.CodedConcept(type_code, "SCT", type_meaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=generate_uid(
                prefix=PYDICOM_ROOT_UID, entropy_srcs=[str(seed), "track", n]),
            tracking_id=f"cardiotwin {n}",
            display_color=hd.color.CIELabColor.from_rgb(
                *SEGMENT_COLOURS_RGB.get(n, (128, 174, 128))),
        ))

    def uid(kind: str) -> str:
        return generate_uid(prefix=PYDICOM_ROOT_UID,
                            entropy_srcs=[str(seed), str(next(iter(series))), kind])

    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixel,
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=uid("seg-series"),
        series_number=int(series_number),
        sop_instance_uid=uid("seg-instance"),
        instance_number=1,
        manufacturer="cardiotwin",
        manufacturer_model_name="cardiotwin",
        software_versions=__version__,
        device_serial_number="0",
        content_label="CARDIOTWIN",
        content_description="cardiotwin cardiac segmentation",
        omit_empty_frames=True,  # frames without any voxel of their segment are left out
    )
    seg.SeriesDescription = series_description
    _replace_atomically(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))
    log.info("wrote DICOM SEG %s: %d segment(s) on %d source slices (%s)",
             path, len(names), len(datasets), segmentation_type)
    return path
