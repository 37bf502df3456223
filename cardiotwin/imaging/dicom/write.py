"""Writing a :class:`~cardiotwin.imaging.volume.Volume` as a DICOM CT image series."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    PYDICOM_ROOT_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from cardiotwin import __version__
from cardiotwin.errors import InputError
from cardiotwin.imaging.volume import Volume

__all__ = ["write_ct_series"]

log = logging.getLogger(__name__)

_DEFAULT_DATETIME = datetime(2024, 1, 1, 9, 0, 0)


def _ds(values: Iterable[float]) -> list[str]:
    return [format_number_as_ds(float(v)) for v in values]


def write_ct_series(
    volume: Volume,
    out_dir: str | Path,
    *,
    patient_name: str = "PHANTOM^DEMO",
    patient_id: str = "CT-PHANTOM-0001",
    study_description: str = "cardiotwin synthetic cardiac CT",
    series_description: str = "CTA heart and thoracic aorta (synthetic)",
    seed: int | str = 0,
    uid_root: str = PYDICOM_ROOT_UID,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    study_datetime: datetime = _DEFAULT_DATETIME,
    manufacturer: str = "cardiotwin",
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    overwrite: bool = False,
) -> list[Path]:
    """Write a volume as a CT Image Storage series, one file per slice.

    Files are explicit VR little endian with a file meta header, signed 16-bit pixels with
    ``RescaleSlope``/``RescaleIntercept`` (stored = round((HU - intercept) / slope)), and the
    Patient, General Study, General Series, Frame of Reference, General Equipment, General Image,
    Image Plane, Image Pixel, CT Image, VOI LUT and SOP Common modules. The geometry follows
    ``volume`` exactly (oblique directions included): slice ``k`` is at
    ``origin + k * dk * direction[:, 2]``. (A left-handed ``direction`` is written as given; a
    reader then returns the same geometry with the slice axis flipped to the right-handed
    normal.)

    The series is written into a temporary folder next to ``out_dir`` and then renamed, so a
    failure leaves no half-written series.

    Parameters
    ----------
    volume : Volume
        CT values (HU) on their grid; values are rounded to the nearest stored integer.
    out_dir : path
        Folder to create; it must not exist or be empty unless ``overwrite``.
    patient_name, patient_id : str
        Written as PatientName and PatientID.
    study_description, series_description : str
        StudyDescription and SeriesDescription.
    seed : int or str
        Entropy for the deterministic UIDs (same seed and inputs → same files).
    uid_root : str
        UID prefix (an organisation root ending with ``"."``); pydicom's root by default.
    study_uid, series_uid, frame_of_reference_uid : str, optional
        Use these UIDs instead of deriving them from ``seed`` (e.g. a second series of a study).
    series_number : int
        SeriesNumber.
    study_datetime : datetime
        Study/series/content date and time (fixed by default so outputs are reproducible).
    manufacturer : str
        Manufacturer of the General Equipment module.
    rescale_intercept, rescale_slope : float
        Modality LUT; slope must be > 0.
    overwrite : bool
        Replace an existing non-empty ``out_dir``.

    Returns
    -------
    list of Path
        The written files in slice order (``k`` = 0 first).

    Raises
    ------
    InputError
        If the values do not fit signed 16 bits with this rescale, or ``out_dir`` is not empty
        and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if rescale_slope <= 0:
        raise InputError(f"rescale_slope must be > 0; got {rescale_slope}")
    arr = np.asarray(volume.array, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError("volume contains NaN or infinite values; DICOM CT needs finite HU")
    stored = np.rint((arr - rescale_intercept) / rescale_slope)
    lo, hi = float(stored.min()), float(stored.max())
    if lo < -32768 or hi > 32767:
        raise InputError(
            f"values {arr.min():.1f}..{arr.max():.1f} do not fit signed 16 bits with slope "
            f"{rescale_slope} and intercept {rescale_intercept}; choose a larger slope"
        )
    stored = stored.astype(np.int16)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise InputError(f"{out_dir} exists and is not empty; pass overwrite=True to replace it")

    def uid(kind: str) -> str:
        return generate_uid(prefix=uid_root, entropy_srcs=[str(seed), kind])

    study_uid = study_uid or uid("study")
    series_uid = series_uid or uid(f"series{series_number}")
    for_uid = frame_of_reference_uid or uid("frame-of-reference")
    d = volume.direction
    row_cos, col_cos, kdir = d[:, 0], d[:, 1], d[:, 2]
    normal = np.cross(row_cos, col_cos)
    di, dj, dk = volume.spacing_mm
    origin = np.asarray(volume.origin_mm)
    date, tm = study_datetime.strftime("%Y%m%d"), study_datetime.strftime("%H%M%S")
    nk, nj, ni = volume.shape

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        names = []
        for k in range(nk):
            sop_uid = uid(f"{series_uid}/sop{k}")
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            meta.ImplementationVersionName = f"CARDIOTWIN_{__version__}"[:16]
            ds = Dataset()
            ds.file_meta = meta
            # SOP Common
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = sop_uid
            ds.InstanceCreationDate, ds.InstanceCreationTime = date, tm
            # Patient
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = ""
            # General Study
            ds.StudyInstanceUID = study_uid
            ds.StudyDate, ds.StudyTime = date, tm
            ds.ReferringPhysicianName = ""
            ds.StudyID = "1"
            ds.AccessionNumber = ""
            ds.StudyDescription = study_description
            # General Series
            ds.Modality = "CT"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = int(series_number)
            ds.SeriesDate, ds.SeriesTime = date, tm
            ds.SeriesDescription = series_description
            ds.PatientPosition = "HFS"
            # Frame of Reference
            ds.FrameOfReferenceUID = for_uid
            ds.PositionReferenceIndicator = ""
            # General Equipment
            ds.Manufacturer = manufacturer
            ds.ManufacturerModelName = "cardiotwin phantom writer"
            ds.SoftwareVersions = __version__
            # General Image + CT Image
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.InstanceNumber = k + 1
            ds.AcquisitionNumber = 1
            ds.ContentDate, ds.ContentTime = date, tm
            ds.KVP = ""
            ds.ConvolutionKernel = "SYNTHETIC"
            # Image Plane
            pos = origin + k * dk * kdir
            ds.ImagePositionPatient = _ds(pos)
            ds.ImageOrientationPatient = _ds(np.concatenate([row_cos, col_cos]))
            ds.PixelSpacing = _ds([dj, di])  # row spacing (between rows), column spacing
            ds.SliceThickness = format_number_as_ds(float(dk))
            ds.SpacingBetweenSlices = format_number_as_ds(float(dk))
            ds.SliceLocation = format_number_as_ds(float(pos @ normal))
            # Image Pixel
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = nj, ni
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = format_number_as_ds(float(rescale_intercept))
            ds.RescaleSlope = format_number_as_ds(float(rescale_slope))
            ds.RescaleType = "HU"
            # VOI LUT: a cardiac CTA window
            ds.WindowCenter, ds.WindowWidth = "300", "800"
            ds.PixelData = np.ascontiguousarray(stored[k]).astype("<i2").tobytes()
            name = f"CT{k + 1:05d}.dcm"
            pydicom.dcmwrite(tmp / name, ds, enforce_file_format=True)
            names.append(name)
        if out_dir.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent)
            )
            out_dir.rename(old / out_dir.name)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote CT series %s: %d slices of %dx%d to %s", series_uid, nk, nj, ni, out_dir)
    return [out_dir / n for n in names]

