"""Real-data tests of the DICOM reader (cardiotwin.imaging.dicom) on the shared corpus.

Data (see ``shared/data/README.md``), found only through the ``shared_data`` fixture:

* ``dicom/dcm_qa_ts`` — one Siemens MR image in nine transfer syntaxes (neurolabusc/dcm_qa_ts).
  Independent references: the uncompressed Explicit VR Little Endian file decoded by pydicom's
  native decoder, SimpleITK (GDCM) ``ReadImage``, and dcm2niix's JSON sidecars in ``Ref/``.
* ``dicom/totalseg_ct_j2k`` — a JPEG 2000 abdominal CT (20 slices) and TotalSegmentator's
  ``labels.nii.gz`` (RAS) of the same patient. References: SimpleITK ``ImageSeriesReader`` and
  the label map, whose organs must land on tissue of the right density.
* ``dicom/dcm_qa_ct_ge`` — a GE head CT with 18.5° gantry tilt and uneven slice spacing.

Tolerances: geometry 1e-3 mm and 1e-5 in direction cosines (DESIGN.md §5 Imaging); pixel values
exactly (all syntaxes here are lossless).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from cardiotwin.errors import DicomError
from cardiotwin.imaging import dicom as dicom_mod
from cardiotwin.imaging.dicom import NO_SERIES_UID, read_series
from cardiotwin.imaging.volume import Volume

#: Transfer syntaxes whose decoding must reproduce the raw pixels bit for bit.
LOSSLESS = {
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
}

# TotalSegmentator "total" task class map (TotalSegmentator/map_to_binary.py, v2).
TS_LIVER, TS_SPLEEN, TS_AORTA, TS_IVC = 5, 1, 52, 63
TS_VERTEBRAE_T12, TS_VERTEBRAE_T11 = 32, 33


def _assert_geometry(vol: Volume, img: sitk.Image) -> None:
    np.testing.assert_allclose(vol.origin_mm, img.GetOrigin(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(vol.spacing_mm, img.GetSpacing(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(
        vol.direction, np.reshape(img.GetDirection(), (3, 3)), atol=1e-5, rtol=0
    )


# ---------------------------------------------------------------------------------------------
# dcm_qa_ts: one image, nine transfer syntaxes
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ts_files(shared_data: Path) -> dict[Path, str]:
    folder = shared_data / "dicom" / "dcm_qa_ts" / "In"
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 9, f"expected the 9 files of dcm_qa_ts in {folder}"
    return {
        f: str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        for f in files
    }


@pytest.fixture(scope="module")
def ts_reference(ts_files) -> np.ndarray:
    """Pixels of the raw Explicit VR Little Endian file, decoded by pydicom's native reader."""
    raw = [f for f, ts in ts_files.items() if ts == ExplicitVRLittleEndian]
    assert len(raw) == 1
    return pydicom.dcmread(raw[0]).pixel_array


def test_corpus_covers_the_lossless_syntaxes(ts_files):
    # The README's list is slightly off (6.dcm is JPEG lossless SV1, not JPEG-LS): go by header.
    assert set(ts_files.values()) == {str(u) for u in LOSSLESS}


def test_every_transfer_syntax_decodes_to_the_raw_pixels(ts_files, ts_reference):
    assert ts_reference.shape == (384, 384) and ts_reference.max() > 0
    for f, ts in ts_files.items():
        vol = read_series(f, min_slices=1)
        assert vol.shape == (1, 384, 384), f.name
        assert vol.metadata["transfer_syntax"] == ts
        # exact equality: lossless syntaxes, no rescale in these MR files
        assert np.array_equal(vol.array[0], ts_reference.astype(np.float32)), f"{f.name} ({ts})"
        # and the same as GDCM's decoder (independent implementation)
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(f))), vol.array), f.name


def test_single_image_geometry_matches_simpleitk_and_dcm2niix(ts_files, shared_data):
    ref_dir = shared_data / "dicom" / "dcm_qa_ts" / "Ref"
    for f in ts_files:
        vol = read_series(f, min_slices=1)
        _assert_geometry(vol, sitk.ReadImage(str(f)))  # slice spacing = SpacingBetweenSlices
        # dcm2niix's sidecar keeps the raw ImageOrientationPatient (row cosine, column cosine)
        iop = json.loads((ref_dir / f"{f.stem}.json").read_text())["ImageOrientationPatientDICOM"]
        np.testing.assert_allclose(vol.direction[:, 0], iop[:3], atol=1e-5, rtol=0)
        np.testing.assert_allclose(vol.direction[:, 1], iop[3:], atol=1e-5, rtol=0)


def test_single_image_needs_min_slices(ts_files):
    with pytest.raises(DicomError, match="single slice.*min_slices=1"):
        read_series(next(iter(ts_files)))


def test_undecodable_syntax_names_file_syntax_and_remedy(ts_files, tmp_path):
    raw = next(f for f, ts in ts_files.items() if ts == ExplicitVRLittleEndian)
    ds = pydicom.dcmread(raw)
    # No pydicom plugin decodes MPEG-2: a real file in that syntax must fail with a clear message.
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    bad = tmp_path / "mpeg2.dcm"
    ds.save_as(bad, enforce_file_format=True)
    with pytest.raises(DicomError) as err:
        read_series(bad, min_slices=1)
    msg = str(err.value)
    assert "mpeg2.dcm" in msg and "MPEG2" in msg and str(MPEG2MPML) in msg
    assert "no pydicom decoder plugin" in msg and "gdcmconv" in msg
    # For a syntax a plugin can decode, the hint names the PyPI packages to install.
    j2k = pydicom.Dataset()
    j2k.file_meta = pydicom.dataset.FileMetaDataset()
    j2k.file_meta.TransferSyntaxUID = JPEG2000Lossless
    assert "pip install pylibjpeg + pylibjpeg-openjpeg" in dicom_mod._decode_hint(j2k)


# ---------------------------------------------------------------------------------------------
# totalseg_ct_j2k: JPEG 2000 CT + TotalSegmentator labels
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def j2k_dir(shared_data: Path) -> Path:
    return shared_data / "dicom" / "totalseg_ct_j2k" / "dicom"


@pytest.fixture(scope="module")
def j2k_volume(j2k_dir) -> Volume:
    return read_series(j2k_dir)


@pytest.fixture(scope="module")
def j2k_sitk(j2k_dir) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(j2k_dir)))
    return reader.Execute()


def test_j2k_ct_matches_simpleitk(j2k_volume, j2k_sitk):
    assert j2k_volume.shape == (20, 512, 512)
    assert j2k_volume.metadata["transfer_syntax"] == JPEG2000Lossless
    # this anonymised series has blank SeriesInstanceUIDs; they are grouped under one key
    assert j2k_volume.metadata["series_uid"] == NO_SERIES_UID
    _assert_geometry(j2k_volume, j2k_sitk)
    np.testing.assert_allclose(j2k_volume.spacing_mm, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    arr = sitk.GetArrayFromImage(j2k_sitk)  # int16 HU (GDCM applies the rescale)
    assert np.array_equal(arr.astype(np.float32), j2k_volume.array)


def _labels_on_ct_grid(labels: sitk.Image, vol: Volume) -> np.ndarray:
    ref = sitk.GetImageFromArray(np.zeros(vol.shape, np.uint8))
    ref.SetOrigin(vol.origin_mm)
    ref.SetSpacing(vol.spacing_mm)
    ref.SetDirection(vol.direction.ravel().tolist())
    out = sitk.Resample(
        labels, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID()
    )
    return sitk.GetArrayFromImage(out)


def _corners(affine: np.ndarray, shape_kji: tuple[int, int, int]) -> np.ndarray:
    nk, nj, ni = shape_kji
    ijk = np.array([[i, j, k, 1] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)])
    pts = ijk @ affine.T
    return pts[np.lexsort(pts[:, :3].T), :3]


def test_totalseg_labels_overlay_the_ct(j2k_volume, shared_data):
    labels = sitk.ReadImage(str(shared_data / "dicom" / "totalseg_ct_j2k" / "labels.nii.gz"))
    # ITK turns the NIfTI's RAS into LPS. The label grid stores rows in the opposite (j flipped)
    # order, so its direction differs from the CT's, but it covers the same voxel centres.
    lab_affine = np.eye(4)
    lab_affine[:3, :3] = np.reshape(labels.GetDirection(), (3, 3)) * np.array(labels.GetSpacing())
    lab_affine[:3, 3] = labels.GetOrigin()
    shape = tuple(reversed(labels.GetSize()))
    assert shape == j2k_volume.shape
    np.testing.assert_allclose(
        _corners(lab_affine, shape), _corners(j2k_volume.affine, shape), atol=1e-3, rtol=0
    )
    on_ct = _labels_on_ct_grid(labels, j2k_volume)
    # voxel-exact: resampling onto our grid is a pure row flip of the label array
    assert np.array_equal(on_ct, sitk.GetArrayFromImage(labels)[:, ::-1, :])

    hu = j2k_volume.array
    # The map has no heart (label 51): these slices are below it. Check organ densities instead;
    # the header says contrast was applied, so vessels are enhanced (Hounsfield-scale ranges
    # for soft tissue, enhanced blood and bone; Kalender, Computed Tomography, 3rd ed.).
    mean = {
        lab: float(hu[on_ct == lab].mean())
        for lab in (TS_LIVER, TS_SPLEEN, TS_AORTA, TS_IVC, TS_VERTEBRAE_T12, TS_VERTEBRAE_T11)
    }
    assert 40 < mean[TS_LIVER] < 150 and 40 < mean[TS_SPLEEN] < 150, mean
    assert 100 < mean[TS_AORTA] < 400 and 40 < mean[TS_IVC] < 300, mean
    assert mean[TS_VERTEBRAE_T12] > 150 and mean[TS_VERTEBRAE_T11] > 150, mean
    # The same check fails with the orientation wrong (labels taken index for index, no flip):
    # it lays the aorta and vertebrae on air/fat.
    naive = sitk.GetArrayFromImage(labels)
    assert float(hu[naive == TS_AORTA].mean()) < 0
    assert float(hu[naive == TS_VERTEBRAE_T12].mean()) < 0


# ---------------------------------------------------------------------------------------------
# dcm_qa_ct_ge: gantry tilt + uneven spacing → refused (resampling is later work)
# ---------------------------------------------------------------------------------------------


def test_tilted_uneven_ge_ct_is_refused(shared_data):
    folder = shared_data / "dicom" / "dcm_qa_ct_ge" / "In" / "GE"
    assert float(
        pydicom.dcmread(folder / "01.dcm", stop_before_pixels=True).GantryDetectorTilt
    ) == pytest.approx(18.5)
    with pytest.raises(DicomError) as err:
        read_series(folder)
    msg = str(err.value)
    assert "gantry tilt" in msg and "uneven slice spacing" in msg
    # the tilt angle reported is the header's GantryDetectorTilt (18.5°) = acos(0.948324)
    assert "18.50°" in msg
