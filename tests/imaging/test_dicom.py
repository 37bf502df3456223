"""Tests of DICOM CT series writing and reading (cardiotwin.imaging.dicom).

The independent reference is SimpleITK's ImageSeriesReader (GDCM): geometry must agree to
1e-3 mm / 1e-5 (DESIGN.md §5 Imaging) and the pixel values exactly.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging.dicom import list_series, read_series, write_ct_series
from cardiotwin.imaging.dicom import write as dicom_write
from cardiotwin.imaging.volume import Volume
from tests.imaging.conftest import rotation


def _sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _assert_matches_sitk(vol: Volume, folder: Path) -> None:
    img = _sitk_read(folder)
    np.testing.assert_allclose(img.GetOrigin(), vol.origin_mm, atol=1e-3, rtol=0)
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing_mm, atol=1e-3, rtol=0)
    np.testing.assert_allclose(
        np.reshape(img.GetDirection(), (3, 3)), vol.direction, atol=1e-5, rtol=0
    )
    arr = sitk.GetArrayFromImage(img)
    assert arr.shape == vol.shape
    assert np.array_equal(arr.astype(np.float64), np.rint(vol.array).astype(np.float64))


@pytest.fixture(scope="module")
def series_dir(small_phantom, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dicom") / "phantom"
    write_ct_series(small_phantom.ct, out, patient_name="DOE^JANE", patient_id="PID-42", seed=5)
    return out


@pytest.fixture()
def series_copy(series_dir, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(series_dir, out)
    return out


def test_written_series_matches_simpleitk(small_phantom, series_dir):
    _assert_matches_sitk(small_phantom.ct, series_dir)


def test_files_are_valid_ct_image_storage(small_phantom, series_dir):
    files = sorted(series_dir.iterdir())
    assert len(files) == small_phantom.ct.shape[0]
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == CTImageStorage == ds.file_meta.MediaStorageSOPClassUID
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    di, dj, dk = small_phantom.ct.spacing_mm
    assert [float(v) for v in ds.PixelSpacing] == [dj, di]  # row spacing \ column spacing
    assert (ds.Rows, ds.Columns) == small_phantom.ct.shape[1:]
    assert float(ds.SliceThickness) == dk == float(ds.SpacingBetweenSlices)
    assert str(ds.PatientName) == "DOE^JANE" and ds.PatientID == "PID-42"
    for kw in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "StudyDate",
        "Manufacturer",
        "ImageType",
        "RescaleIntercept",
        "RescaleSlope",
        "PatientPosition",
        "SliceLocation",
        "InstanceNumber",
        "PhotometricInterpretation",
    ):
        assert kw in ds, kw
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(uids) == len(files)
    # ImagePositionPatient of slice k = origin + k·dk·direction[:, 2] (here axial: z steps of dk)
    last = pydicom.dcmread(files[-1], stop_before_pixels=True)
    expected = np.asarray(small_phantom.ct.origin_mm) + (len(files) - 1) * dk * np.array([0, 0, 1])
    np.testing.assert_allclose([float(v) for v in last.ImagePositionPatient], expected, atol=1e-6)


def test_round_trip_with_our_reader(small_phantom, series_dir):
    vol = read_series(series_dir)
    assert np.array_equal(vol.array, small_phantom.ct.array)
    np.testing.assert_allclose(vol.affine, small_phantom.ct.affine, atol=1e-4, rtol=0)
    assert vol.array.dtype == np.float32
    md = vol.metadata
    assert md["modality"] == "CT" and md["patient_id"] == "PID-42"
    assert md["n_slices"] == small_phantom.ct.shape[0]
    assert md["manufacturer"] == "cardiotwin"
    assert md["series_uid"] == pydicom.dcmread(next(series_dir.iterdir())).SeriesInstanceUID
    assert "DOE" not in repr(md)


def test_writing_is_deterministic(small_phantom, series_dir, tmp_path):
    again = write_ct_series(
        small_phantom.ct, tmp_path / "again", patient_name="DOE^JANE", patient_id="PID-42", seed=5
    )
    for f in again:
        assert f.read_bytes() == (series_dir / f.name).read_bytes()
    other = write_ct_series(small_phantom.ct, tmp_path / "other", seed=6)
    assert (
        pydicom.dcmread(other[0]).SeriesInstanceUID != pydicom.dcmread(again[0]).SeriesInstanceUID
    )


def test_oblique_volume_agrees_with_simpleitk(tmp_path):
    rng = np.random.default_rng(0)
    direction = rotation(20.0, -15.0, 35.0)
    vol = Volume(
        rng.integers(-1000, 1500, size=(9, 14, 11)).astype(np.float32),
        (0.7, 0.9, 1.3),
        (-12.5, 40.25, 101.0),
        direction,
    )
    out = tmp_path / "oblique"
    write_ct_series(vol, out)
    _assert_matches_sitk(vol, out)
    back = read_series(out)
    assert np.array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4, rtol=0)


def test_file_order_and_names_do_not_matter(small_phantom, series_dir, tmp_path):
    files = sorted(series_dir.iterdir())
    random.Random(3).shuffle(files)
    vol = read_series(files)  # an explicit, shuffled file list
    assert np.array_equal(vol.array, small_phantom.ct.array)
    # and a folder whose file names are in a random order, with a nested sub-folder
    out = tmp_path / "renamed"
    (out / "sub").mkdir(parents=True)
    for n, f in enumerate(files):
        shutil.copy(f, out / ("sub" if n % 2 else "") / f"img_{random.Random(n).random():.6f}")
    vol2 = read_series(out)
    assert np.array_equal(vol2.array, small_phantom.ct.array)
    np.testing.assert_allclose(vol2.affine, small_phantom.ct.affine, atol=1e-4, rtol=0)


def test_non_dicom_files_are_ignored(small_phantom, series_copy, caplog):
    (series_copy / "README.txt").write_text("not a DICOM file\n")
    (series_copy / "notes.dcm").write_bytes(b"\x00" * 300)
    with caplog.at_level(logging.INFO, logger="cardiotwin.imaging.dicom"):
        vol = read_series(series_copy)
    assert np.array_equal(vol.array, small_phantom.ct.array)
    assert "README.txt" in caplog.text


def test_patient_name_never_logged(small_phantom, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        write_ct_series(small_phantom.ct, tmp_path / "s", patient_name="SECRET^NAME")
        read_series(tmp_path / "s")
        list_series(tmp_path)
    assert "SECRET" not in caplog.text
    assert caplog.text  # something was logged


def test_header_value_pydicom_cannot_decode_is_a_dicom_error(series_copy):
    # Found by the fuzz test: one flipped bit turns PatientID's VR 'LO' into 'LN', which
    # pydicom raises NotImplementedError for when the value is first used. The header is not on
    # the fast path (VR mismatch), so pydicom parses it; every value the reader uses must be
    # decoded while the file is scanned, so the file is reported by name, not crash the read.
    victim = sorted(series_copy.iterdir())[4]
    data = victim.read_bytes()
    patient_id = b"\x10\x00\x20\x00LO"  # (0010,0020) explicit VR little endian
    assert data.count(patient_id) == 1
    victim.write_bytes(data.replace(patient_id, b"\x10\x00\x20\x00LN"))
    (info,) = list_series(series_copy)
    assert info.unreadable_files == (victim,)
    with pytest.raises(DicomError, match=victim.name):
        read_series(series_copy)


def test_truncated_file_is_named(series_copy):
    victim = sorted(series_copy.iterdir())[4]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(DicomError, match=victim.name):
        read_series(series_copy)
    victim.write_bytes(data[:200])  # cut inside the header
    with pytest.raises(DicomError, match=victim.name):
        read_series(series_copy)


def test_single_slice_is_refused(series_dir):
    one = sorted(series_dir.iterdir())[0]
    with pytest.raises(DicomError, match="single slice"):
        read_series(one)


def _edit(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(path)


def _ipp(path: Path) -> np.ndarray:
    return np.array([float(v) for v in pydicom.dcmread(path).ImagePositionPatient])


def test_duplicate_position_is_refused(series_copy):
    files = sorted(series_copy.iterdir())
    _edit(files[6], ImagePositionPatient=[str(v) for v in _ipp(files[5])])
    with pytest.raises(DicomError, match="duplicate slice positions"):
        read_series(series_copy)


def test_uneven_spacing_and_missing_slice_are_refused(series_copy):
    files = sorted(series_copy.iterdir())
    ipp = _ipp(files[6]) + np.array([0.0, 0.0, 0.4])  # 0.4 mm off a 3 mm step
    _edit(files[6], ImagePositionPatient=[f"{v:.6f}" for v in ipp])
    with pytest.raises(DicomError, match="uneven slice spacing") as err:
        read_series(series_copy)
    # the message names the series by description and short UID, and the remedy
    uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
    assert "'CTA heart and thoracic aorta (synthetic)'" in str(err.value)
    assert uid[-14:] in str(err.value) and "resample=True" in str(err.value)
    files[6].unlink()
    with pytest.raises(DicomError, match="missing slice"):
        read_series(series_copy)


def test_gantry_tilt_is_refused(series_copy):
    # shear: each slice shifted 0.5 mm posterior per slice ≈ 9.5° tilt at 3 mm steps
    for k, f in enumerate(sorted(series_copy.iterdir())):
        _edit(f, ImagePositionPatient=[f"{v:.6f}" for v in _ipp(f) + [0.0, 0.5 * k, 0.0]])
    with pytest.raises(DicomError, match="gantry tilt"):
        read_series(series_copy)


def test_mixed_orientation_and_missing_pixels_are_refused(series_copy):
    files = sorted(series_copy.iterdir())
    _edit(files[2], ImageOrientationPatient=["1", "0", "0", "0", "0.9998", "0.02"])
    with pytest.raises(DicomError, match="mixes orientation"):
        read_series(series_copy)
    _edit(files[2], ImageOrientationPatient=["1", "0", "0", "0", "1", "0"])
    ds = pydicom.dcmread(files[-1])
    ds.Rows = ds.Rows - 1
    ds.PixelData = ds.PixelData[: ds.Rows * ds.Columns * 2]
    ds.save_as(files[-1])
    with pytest.raises(DicomError, match=rf"mixes image size.*{files[-1].name}"):
        read_series(series_copy)
    files[-1].unlink()  # the last slice: no gap left behind
    _edit(files[2], PixelData=None)
    with pytest.raises(DicomError, match=f"{files[2].name} has no pixel data"):
        read_series(series_copy)


def test_two_series_need_a_uid(small_phantom, tmp_path):
    write_ct_series(small_phantom.ct, tmp_path / "a", seed=1, series_number=1)
    shifted = small_phantom.ct.with_array(small_phantom.ct.array + 10.0)
    write_ct_series(shifted, tmp_path / "b", seed=1, series_number=2, series_description="second")
    infos = list_series(tmp_path)
    assert len(infos) == 2 and {i.n_files for i in infos} == {small_phantom.ct.shape[0]}
    assert len({i.study_uid for i in infos}) == 1  # same seed → same study
    assert all(i.size_bytes > 0 and i.modality == "CT" for i in infos)
    with pytest.raises(DicomError, match="2 series found") as err:
        read_series(tmp_path)
    for i in infos:
        assert i.series_uid in str(err.value)
    second = next(i for i in infos if i.description == "second")
    vol = read_series(tmp_path, series_uid=second.series_uid)
    assert np.array_equal(vol.array, shifted.array)
    with pytest.raises(DicomError, match="not found"):
        read_series(tmp_path, series_uid="1.2.3")


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DicomError, match="does not exist"):
        read_series(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomError, match="no DICOM files"):
        read_series(tmp_path / "empty")


def test_writer_refuses_non_empty_folder_and_is_atomic(small_phantom, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="not empty"):
        write_ct_series(small_phantom.ct, out)
    assert (out / "keep.txt").read_text() == "precious"
    # values that do not fit 16 bits are refused before anything is written
    big = small_phantom.ct.with_array(small_phantom.ct.array * 100.0)
    with pytest.raises(InputError, match="16 bits"):
        write_ct_series(big, tmp_path / "big")
    assert not (tmp_path / "big").exists()
    # fault injection: the disk "fills up" at the 5th slice → nothing is left behind
    real = dicom_write.pydicom.dcmwrite
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(dicom_write.pydicom, "dcmwrite", failing)
    with pytest.raises(OSError):
        write_ct_series(small_phantom.ct, tmp_path / "partial")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # overwrite replaces the folder as a whole
    files = write_ct_series(small_phantom.ct, out, overwrite=True)
    assert sorted(out.iterdir()) == sorted(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------------------------------
# resampling of tilted / unevenly spaced stacks (read_series(..., resample=True))
# ---------------------------------------------------------------------------------------------


def _field_hu(xyz: np.ndarray) -> np.ndarray:
    """A linear field of LPS mm: linear interpolation reproduces it exactly (the oracle)."""
    return 0.8 * xyz[..., 0] - 0.5 * xyz[..., 1] + 1.1 * xyz[..., 2] + 20.0


def _write_stack(folder: Path, along_mm, shear_j_per_mm: float, shape_ji=(20, 16)) -> dict:
    """Axial slices at ``along_mm`` on z, shifted by ``shear_j_per_mm · z`` along +y (tilt)."""
    nj, ni = shape_ji
    di, dj = 1.0, 1.2
    origin = np.array([-20.0, -15.0, 0.0])
    vol = Volume(np.zeros((len(along_mm), nj, ni), np.float32), (di, dj, 1.0), tuple(origin))
    files = write_ct_series(vol, folder, rescale_slope=0.1)  # 0.05 HU quantisation
    jj, ii = np.mgrid[0:nj, 0:ni]
    for f, z in zip(files, along_mm, strict=True):
        ipp = origin + np.array([0.0, shear_j_per_mm * z, z])
        xyz = ipp + np.stack([ii * di, jj * dj, np.zeros_like(ii, float)], axis=-1)
        stored = np.rint((_field_hu(xyz) + 1024.0) / 0.1).astype("<i2")
        _edit(f, ImagePositionPatient=[f"{v:.6f}" for v in ipp], PixelData=stored.tobytes())
    return {"di": di, "dj": dj, "nj": nj, "ni": ni}


@pytest.mark.parametrize(
    ("along", "shear", "nk", "dk"),
    [
        (np.arange(8) * 3.0, 0.3, 8, 3.0),  # gantry tilt only (16.7°): k grid unchanged
        (np.array([0, 2, 4, 5, 8, 10, 12, 13.0]), 0.0, 14, 1.0),  # uneven: smallest step, 1 mm
        (np.array([0, 2, 4, 5, 8, 10, 12, 13.0]), -0.25, 14, 1.0),  # both
        (np.array([0, 0.5, 1, 9, 17, 25.0]), 0.0, 12, 25 / 11),  # capped at 2n slices (dcm2niix)
    ],
)
def test_resample_reproduces_a_linear_field(tmp_path, along, shear, nk, dk):
    g = _write_stack(tmp_path / "s", along, shear)
    with pytest.raises(DicomError, match="resample=True"):
        read_series(tmp_path / "s")
    vol = read_series(tmp_path / "s", resample=True)
    assert vol.shape[0] == nk
    np.testing.assert_allclose(vol.spacing_mm, (g["di"], g["dj"], dk), rtol=0, atol=1e-9)
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-12)
    # enlarged rows: the union of the sheared slices (|shear| · extent / dj more rows)
    assert vol.shape[2] == g["ni"]
    assert vol.shape[1] == g["nj"] + int(np.ceil(abs(shear) * along[-1] / g["dj"] - 1e-6))
    kk, jj, ii = np.indices(vol.shape)
    xyz = vol.index_to_physical(np.stack([ii, jj, kk], axis=-1))
    inside = vol.array != -1000.0  # fill value: air for CT
    assert inside.mean() > 0.7 and inside[0].any() and inside[-1].any()
    err = np.abs(vol.array - _field_hu(xyz))[inside]
    assert err.max() < 0.06, err.max()  # 0.05 HU quantisation + float32
    md = vol.metadata["resampled"]
    assert md["original_n_slices"] == len(along) and md["slice_step_mm"] == pytest.approx(dk)


def test_resample_fill_value_and_regular_series_untouched(series_dir, small_phantom, tmp_path):
    vol = read_series(series_dir, resample=True)  # regular: nothing to resample
    assert vol.metadata["resampled"] is None
    assert np.array_equal(vol.array, small_phantom.ct.array)
    _write_stack(tmp_path / "s", np.arange(6) * 2.0, 0.5)
    filled = read_series(tmp_path / "s", resample=True, fill_value=-3024.0)
    assert filled.array.min() == -3024.0 and filled.metadata["resampled"]["fill_value"] == -3024.0


# ---------------------------------------------------------------------------------------------
# pixel handling: rescale per slice, bits stored, sign, MONOCHROME1, colour
# ---------------------------------------------------------------------------------------------


def test_rescale_may_differ_per_slice(small_phantom, series_copy):
    files = sorted(series_copy.iterdir())
    for n, f in enumerate(files[::5]):
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slope, inter = (0.5, -1500.0 + n) if n % 2 else (0.25, -1024.0 - 3 * n)
        ds.PixelData = np.rint((hu - inter) / slope).astype("<i2").tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{inter:g}"
        ds.save_as(f)
    vol = read_series(series_copy)
    assert np.array_equal(vol.array, small_phantom.ct.array)


def _one_slice(series_dir: Path, tmp_path: Path, name: str, **changes) -> Path:
    ds = pydicom.dcmread(sorted(series_dir.iterdir())[0])
    for k, v in changes.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    out = tmp_path / name
    ds.save_as(out)
    return out


@pytest.mark.parametrize("signed", [0, 1])
def test_bits_stored_masking_and_sign_extension(series_dir, tmp_path, signed):
    rng = np.random.default_rng(signed)
    ds0 = pydicom.dcmread(sorted(series_dir.iterdir())[0])
    shape = (ds0.Rows, ds0.Columns)
    low12 = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    junk = rng.integers(0, 16, size=shape, dtype=np.uint16) << 12  # garbage above BitsStored
    raw = (low12 | junk).astype("<u2")
    f = _one_slice(
        series_dir, tmp_path, "b12.dcm", BitsStored=12, HighBit=11, PixelRepresentation=signed,
        RescaleSlope="1", RescaleIntercept="0",
        PixelData=(raw.view("<i2") if signed else raw).tobytes(),
    )
    vol = read_series(f, min_slices=1)
    # analytic: the 12 low bits, as unsigned or as 12-bit two's complement
    expected = np.where(low12 >= 2048, low12.astype(int) - 4096, low12) if signed else low12
    assert np.array_equal(vol.array[0], expected.astype(np.float32))
    assert np.array_equal(vol.array[0], pydicom.dcmread(f).pixel_array.astype(np.float32))


def test_monochrome1_inverted_except_quantitative_ct(series_dir, tmp_path):
    ds0 = pydicom.dcmread(sorted(series_dir.iterdir())[0])
    stored = np.arange(ds0.Rows * ds0.Columns, dtype="<u2").reshape(ds0.Rows, ds0.Columns) % 4096
    common = dict(PhotometricInterpretation="MONOCHROME1", BitsStored=12, HighBit=11,
                  PixelRepresentation=0, PixelData=stored.tobytes())
    mr = _one_slice(series_dir, tmp_path, "mr.dcm", Modality="MR", RescaleSlope="2",
                    RescaleIntercept="5", RescaleType=None, **common)
    # inverted over the 12-bit range then rescaled: 2 · (4095 − s) + 5
    assert np.array_equal(read_series(mr, min_slices=1).array[0], 2.0 * (4095 - stored) + 5)
    ct = _one_slice(series_dir, tmp_path, "ct.dcm", RescaleSlope="1", RescaleIntercept="-1024",
                    **common)
    assert np.array_equal(read_series(ct, min_slices=1).array[0], stored - 1024.0)


def test_colour_ct_and_wrong_modality_are_refused(series_dir, tmp_path):
    ds0 = pydicom.dcmread(sorted(series_dir.iterdir())[0])
    rgb = np.zeros((ds0.Rows, ds0.Columns, 3), np.uint8)
    f = _one_slice(series_dir, tmp_path, "rgb.dcm", SamplesPerPixel=3, PlanarConfiguration=0,
                   PhotometricInterpretation="RGB", BitsAllocated=8, BitsStored=8, HighBit=7,
                   PixelRepresentation=0, PixelData=rgb.tobytes())
    with pytest.raises(DicomError, match=r"colour image \(RGB, 3 samples.*CT values"):
        read_series(f, min_slices=1)
    with pytest.raises(DicomError, match="is CT, not MR"):
        read_series(series_dir, modality="MR")
    assert read_series(series_dir, modality="CT").metadata["modality"] == "CT"


# ---------------------------------------------------------------------------------------------
# unreadable files: reported, and fatal only for the requested series
# ---------------------------------------------------------------------------------------------


def test_corrupt_file_of_another_series_is_skipped(small_phantom, tmp_path, caplog):
    a = write_ct_series(small_phantom.ct, tmp_path / "a", seed=1, series_number=1)
    b = write_ct_series(small_phantom.ct, tmp_path / "b", seed=1, series_number=2)
    uid_a = pydicom.dcmread(a[0], stop_before_pixels=True).SeriesInstanceUID
    uid_b = pydicom.dcmread(b[0], stop_before_pixels=True).SeriesInstanceUID
    data = b[3].read_bytes()
    b[3].write_bytes(data[: len(data) // 2])  # truncated in the pixel data: header readable
    b[4].write_bytes(data[:1100])  # cut inside the header, after its SeriesInstanceUID
    (tmp_path / "b" / "lost.dcm").write_bytes(data[:200])  # cut before it: series unknown
    with caplog.at_level(logging.WARNING, logger="cardiotwin.imaging.dicom"):
        vol = read_series(tmp_path, series_uid=uid_a)
    assert np.array_equal(vol.array, small_phantom.ct.array)
    skipped = {Path(s["file"]).name for s in vol.metadata["skipped_files"]}
    assert skipped == {b[4].name, "lost.dcm"} and "unreadable" in caplog.text
    infos = {i.series_uid: i for i in list_series(tmp_path)}
    assert infos[uid_b].unreadable_files == (b[4],) and infos[uid_a].unreadable_files == ()
    # the corrupt files fail the series they belong (or may belong) to, naming the file
    with pytest.raises(DicomError, match=b[4].name):
        read_series(tmp_path / "b", series_uid=uid_b)
    b[4].write_bytes(data)
    with pytest.raises(DicomError, match="lost.dcm.*could be one of its slices"):
        read_series(tmp_path / "b", series_uid=uid_b)
    (tmp_path / "b" / "lost.dcm").unlink()
    with pytest.raises(DicomError, match=b[3].name):
        read_series(tmp_path / "b", series_uid=uid_b)
