"""Real-data tests of the DICOM reader (cardiotwin.imaging.dicom) on the shared corpus.

Data (see ``shared/data/README.md``), found only through the ``shared_data`` fixture:

* ``dicom/dcm_qa_ts`` — one Siemens MR mosaic (35 slices) in nine transfer syntaxes
  (neurolabusc/dcm_qa_ts).
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
from cardiotwin.imaging.dicom import NO_SERIES_UID, read_series
from cardiotwin.imaging.dicom import frames as dicom_frames
from cardiotwin.imaging.dicom import headers as dicom_headers
from cardiotwin.imaging.dicom import pixels as dicom_pixels
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


def _tiles(mosaic: np.ndarray, n: int = 35, size: int = 64) -> np.ndarray:
    """The first ``n`` ``size`` x ``size`` tiles of a mosaic, left to right, top to bottom."""
    g = mosaic.shape[-1] // size
    return mosaic.reshape(g, size, g, size).transpose(0, 2, 1, 3).reshape(g * g, size, size)[:n]


def test_every_transfer_syntax_decodes_to_the_raw_pixels(ts_files, ts_reference):
    # The image is a Siemens mosaic (ImageType MOSAIC, 35 slices of 64 x 64 in 384 x 384, Ref/
    # JSON of dcm2niix): the reader splits it into a 35-slice volume.
    assert ts_reference.shape == (384, 384) and ts_reference.max() > 0
    for f, ts in ts_files.items():
        vol = read_series(f)
        assert vol.shape == (35, 64, 64), f.name
        assert vol.metadata["transfer_syntax"] == ts and vol.metadata["n_slices"] == 35
        # exact equality: lossless syntaxes, no rescale in these MR files
        assert np.array_equal(vol.array, _tiles(ts_reference).astype(np.float32)), f.name
        # and the same as GDCM's decoder (independent implementation)
        gdcm = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))[0]
        assert np.array_equal(_tiles(gdcm), vol.array), f.name


def test_mosaic_geometry_matches_simpleitk_and_dcm2niix(ts_files, shared_data):
    ref_dir = shared_data / "dicom" / "dcm_qa_ts" / "Ref"
    for f in ts_files:
        vol = read_series(f)
        img = sitk.ReadImage(str(f))  # GDCM: the mosaic as one 384 x 384 image
        # same in-plane axes and spacing; slice step = SpacingBetweenSlices (3.6 mm, Ref/ JSON)
        np.testing.assert_allclose(vol.spacing_mm[:2], img.GetSpacing()[:2], atol=1e-3, rtol=0)
        np.testing.assert_allclose(vol.direction, np.reshape(img.GetDirection(), (3, 3)),
                                   atol=1e-5, rtol=0)
        ref = json.loads((ref_dir / f"{f.stem}.json").read_text())
        assert abs(vol.spacing_mm[2] - ref["SpacingBetweenSlices"]) < 1e-3
        # tile 0 starts (384 - 64) / 2 pixels along the row and column cosines from the mosaic's
        # ImagePositionPatient (dcm2niix / nibabel MosaicWrapper rule; the full comparison with
        # dcm2niix's NIfTI is in test_agreement.py)
        d, (di, dj, _) = vol.direction, vol.spacing_mm
        expect = np.asarray(img.GetOrigin()) + 160 * di * d[:, 0] + 160 * dj * d[:, 1]
        np.testing.assert_allclose(vol.origin_mm, expect, atol=1e-3, rtol=0)
        # dcm2niix's sidecar keeps the raw ImageOrientationPatient (row cosine, column cosine)
        iop = ref["ImageOrientationPatientDICOM"]
        np.testing.assert_allclose(vol.direction[:, 0], iop[:3], atol=1e-5, rtol=0)
        np.testing.assert_allclose(vol.direction[:, 1], iop[3:], atol=1e-5, rtol=0)


def test_mosaics_at_one_position_are_refused_and_min_slices_counts_tiles(ts_files):
    files = list(ts_files)
    assert read_series([files[0]]).shape == (35, 64, 64)  # one file of the folder: fine
    # the folder holds the same mosaic 9 times (one series UID): duplicate positions
    with pytest.raises(DicomError, match="duplicate slice positions.*tile 1/35"):
        read_series(files[0].parent)
    with pytest.raises(DicomError, match="35 slices; at least 36"):
        read_series(files[0], min_slices=36)


def test_mosaic_without_private_headers(ts_files, tmp_path):
    raw = next(f for f, ts in ts_files.items() if ts == ExplicitVRLittleEndian)
    ds = pydicom.dcmread(raw)
    del ds[0x00291010]  # no CSA image header: (0019,100A) NumberOfImagesInMosaic = 35 is used
    ds.save_as(tmp_path / "no_csa.dcm", enforce_file_format=True)
    vol = read_series(tmp_path / "no_csa.dcm")
    ref = read_series(raw)
    assert vol.shape == ref.shape and np.array_equal(vol.array, ref.array)
    assert np.allclose(vol.affine, ref.affine, atol=1e-9)  # CSA normal = row x column here
    del ds[0x0019100A]
    ds.save_as(tmp_path / "no_count.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="no_count.dcm is a Siemens mosaic.*NumberOfImagesIn"):
        read_series(tmp_path / "no_count.dcm")


def test_single_image_needs_min_slices(shared_data):
    one = sorted((shared_data / "dicom" / "totalseg_ct_j2k" / "dicom").iterdir())[0]
    with pytest.raises(DicomError, match="single slice.*min_slices=1"):
        read_series(one)
    assert read_series(one, min_slices=1).shape == (1, 512, 512)


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
    assert "pip install pylibjpeg + pylibjpeg-openjpeg" in dicom_pixels._decode_hint(j2k)


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
# dcm_qa_ct_ge: gantry tilt + uneven spacing → refused, or resampled with resample=True
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


def _bilinear(img: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of a 2-D image at continuous (column i, row j); NaN-free + validity."""
    nj, ni = img.shape
    ok = (i >= -1e-6) & (i <= ni - 1 + 1e-6) & (j >= -1e-6) & (j <= nj - 1 + 1e-6)
    i, j = np.clip(i, 0, ni - 1), np.clip(j, 0, nj - 1)
    i0, j0 = np.minimum(np.floor(i).astype(int), ni - 2), np.minimum(np.floor(j).astype(int), nj - 2)
    fi, fj = i - i0, j - j0
    val = (
        img[j0, i0] * (1 - fi) * (1 - fj)
        + img[j0, i0 + 1] * fi * (1 - fj)
        + img[j0 + 1, i0] * (1 - fi) * fj
        + img[j0 + 1, i0 + 1] * fi * fj
    )
    return val, ok


def test_tilted_uneven_ge_ct_resampled(shared_data):
    folder = shared_data / "dicom" / "dcm_qa_ct_ge" / "In" / "GE"
    vol = read_series(folder, resample=True)
    # Geometry as dcm2niix's tilt correction + equalisation (_Tilt_Eq_1) produces it: dcm2niix
    # v1.0.20220720 on these files writes 512 x 611 x 56 voxels, slice step 2.619787 mm (its
    # nii_saveNII3Deq rule: smallest step 1.081 mm would exceed 2 x 28 slices, so 56 slices over
    # the 144.09 mm extent), in-plane axes = the sidecar's ImageOrientationPatientDICOM.
    assert vol.shape == (56, 611, 512)
    np.testing.assert_allclose(vol.spacing_mm, (0.4882812, 0.4882812, 2.619787), atol=1e-5)
    iop = json.loads((shared_data / "dicom" / "dcm_qa_ct_ge" / "Ref" / "_2.json").read_text())[
        "ImageOrientationPatientDICOM"
    ]
    np.testing.assert_allclose(vol.direction[:, 0], iop[:3], atol=1e-5, rtol=0)
    np.testing.assert_allclose(vol.direction[:, 1], iop[3:], atol=1e-5, rtol=0)
    np.testing.assert_allclose(vol.direction.T @ vol.direction, np.eye(3), atol=1e-9)
    # Physical-point check, independent of the reader: for random voxels, the value at the voxel
    # centre's LPS position interpolated from the original slices (decoded by pydicom, bilinear
    # in the two slices bracketing it along the normal, linear between them).
    dss = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in dss])
    # the files' own cosines (7 digits): the sidecar's 6-digit ones move bone edges (~4000 HU/mm)
    # by up to 0.3 HU
    cos = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    r, c = cos[:3] / np.linalg.norm(cos[:3]), cos[3:] / np.linalg.norm(cos[3:])
    n = np.cross(r, c)
    s = ipp @ n
    order = np.argsort(s)
    s, ipp = s[order], ipp[order]
    imgs = [dss[k].pixel_array * float(dss[k].RescaleSlope) + float(dss[k].RescaleIntercept)
            for k in order]
    di, dj = (float(v) for v in reversed(dss[0].PixelSpacing))
    rng = np.random.default_rng(0)
    kji = np.stack([rng.integers(0, m, 4000) for m in vol.shape], axis=1)
    xyz = vol.index_to_physical(kji[:, ::-1])
    sx = xyz @ n
    m = np.clip(np.searchsorted(s, sx, side="right") - 1, 0, len(s) - 2)
    w = np.clip((sx - s[m]) / (s[m + 1] - s[m]), 0, 1)
    ref, ok = np.zeros(len(xyz)), np.ones(len(xyz), bool)
    for side, weight in ((m, 1 - w), (m + 1, w)):
        for k in np.unique(side):
            sel = side == k
            rel = xyz[sel] - ipp[k]
            val, inside = _bilinear(imgs[k], rel @ r / di, rel @ c / dj)
            ref[sel] += weight[sel] * val
            ok[sel] &= inside | (weight[sel] < 1e-9)
    ours = vol.array[tuple(kji.T)]
    assert ok.mean() > 0.5
    np.testing.assert_allclose(ours[ok], ref[ok], atol=1e-2, rtol=1e-6)
    # outside every original slice: air (-1000 HU), the CT fill value
    assert np.all(ours[~ok] == -1000.0)


def test_fast_header_path_agrees_with_pydicom(ts_files, shared_data):
    # The reader's struct-based header walk (little-endian files) must decode the same
    # values as pydicom's parser, which handles every other file.
    ge = sorted((shared_data / "dicom" / "dcm_qa_ct_ge" / "In" / "GE").glob("*.dcm"))[:3]
    j2k = sorted((shared_data / "dicom" / "totalseg_ct_j2k" / "dicom").iterdir())[:2]
    n_fast = 0
    for f in [*ts_files, *ge, *j2k]:
        fast, _ = dicom_headers.read_header(f, fast=True)
        slow, _ = dicom_headers.read_header(f, fast=False)
        n_fast += isinstance(fast.ds, dicom_headers.FastHeader)
        assert fast.pixel_offset == slow.pixel_offset, f.name
        fa, fb = dicom_frames.frames_of(fast), dicom_frames.frames_of(slow)
        assert len(fa) == len(fb) == (35 if f in ts_files else 1), f.name  # mosaic tiles
        for a, b in zip(fa, fb, strict=True):
            for attr in ("ipp", "iop", "psp"):
                np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=f.name)
            for attr in ("rows", "cols", "slope", "intercept", "trigger_ms", "temporal_index",
                         "thickness_mm", "tile"):
                assert getattr(a, attr) == getattr(b, attr), (f.name, attr)
        for kw in ("Modality", "SeriesInstanceUID", "SeriesDescription", "StudyInstanceUID",
                   "PatientID", "Manufacturer", "PhotometricInterpretation"):
            assert dicom_headers.header_text(fast.ds, kw) == dicom_headers.header_text(slow.ds, kw), (f.name, kw)
        assert dicom_pixels._pixel_format(fast.ds) == dicom_pixels._pixel_format(slow.ds), f.name
    # every little-endian file takes the fast path (native and encapsulated: 8 of the 9
    # dcm_qa_ts syntaxes, the GE CT, the JPEG 2000 CT); only big endian goes through pydicom
    assert n_fast == 8 + len(ge) + len(j2k)
