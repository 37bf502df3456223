"""Corpus agreement: cardiotwin's DICOM reader against dcm2niix and SimpleITK, series by series.

Independent references, run live in each test:

* **dcm2niix** (Rorden; ``-z n -b y``, the PyPI wheel installed by
  ``scripts/install-test-tools.sh``). Its NIfTI sform maps voxel ``(x, y, z)`` to RAS mm; we turn it
  into LPS (negate the first two rows) and undo dcm2niix's row flip and any axis permutation (it
  stores rows bottom-up so the image looks "RAS-ish"). For ``dcm_qa_ts`` (a Siemens mosaic,
  which cardiotwin splits into its 35 slices itself) also the NIfTIs shipped in ``Ref/`` (made
  by the upstream authors).
* **SimpleITK** (GDCM) ``ImageSeriesReader`` / ``ReadImage``.

Tolerances (DESIGN.md §5 Imaging): origin and spacing 1e-3 mm, direction cosines 1e-5. Voxels
exactly equal for every series read as stored (all corpus syntaxes are lossless; dcm2niix's
scl_slope/scl_inter are applied by nibabel). For the resampled series (gantry tilt, uneven or
missing slices) exact equality is impossible: dcm2niix shifts rows and blends slices with linear
weights and rounds each of its two passes to an integer (``nii_saveNII3Dtilt`` then
``nii_saveNII3Deq``), so on voxels whose interpolation stencils stay inside the data the two
readers can differ by up to 0.5 + 0.5 HU; next to the field-of-view padding dcm2niix switches to
nearest neighbour (rordenlab/dcm2niix issue 262) and outside the data it fills with the darkest
value, so voxels within two voxels of padding or of the data's edge are left out of the value
comparison (and at least a third of the grid must remain).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from cardiotwin.imaging.dicom import read_series, write_ct_series
from cardiotwin.imaging.volume import Volume
from tests.imaging.conftest import (
    affine_parts,
    read_nifti_lps,
    reorient_like,
    rotation,
    run_dcm2niix,
)

ORIGIN_TOL_MM = 1e-3
SPACING_TOL_MM = 1e-3
DIRECTION_TOL = 1e-5
#: dcm2niix rounds each of its two interpolation passes (tilt, equalise) to an integer: <= 0.5 +
#: 0.5 HU, plus float32 rounding of values up to ~3000 HU (ulp 2.4e-4) in either reader.
RESAMPLED_VALUE_TOL = 1.01
#: Gantry tilt of the sheared phantom, degrees (the GE corpus series has 18.5°).
PHANTOM_TILT_DEG = 15.0

TS_FILES = [f"{n}.dcm" for n in range(1, 10)]
#: Siemens mosaic of the dcm_qa_ts image: 35 tiles of 64 x 64 in a 384 x 384 image (header
#: NumberOfImagesInMosaic = 35, (0019,100A)); tiles run left to right, top to bottom.
MOSAIC_TILES, MOSAIC_TILE = 35, 64
#: geometry deviations from dcm2niix of every mosaic comparison, filled by the tests below
MOSAIC_DEVIATIONS: dict[str, dict[str, float]] = {}


def _assert_geometry(affine: np.ndarray, vol: Volume, what: str, *, axes: int = 3
                     ) -> dict[str, float]:
    """Compare a 4x4 voxel-to-LPS affine with the volume's (spacing of the first ``axes`` axes)."""
    o, s, d = affine_parts(affine)
    o2, s2, d2 = affine_parts(vol.affine)
    s, s2 = s[:axes], s2[:axes]
    dev = {"origin_mm": float(np.abs(o - o2).max()), "spacing_mm": float(np.abs(s - s2).max()),
           "direction": float(np.abs(d - d2).max())}
    assert dev["origin_mm"] <= ORIGIN_TOL_MM, (what, dev, o, o2)
    assert dev["spacing_mm"] <= SPACING_TOL_MM, (what, dev, s, s2)
    assert dev["direction"] <= DIRECTION_TOL, (what, dev, d, d2)
    return dev


def _sitk_affine(img: sitk.Image) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.reshape(img.GetDirection(), (3, 3)) * np.asarray(img.GetSpacing())
    a[:3, 3] = img.GetOrigin()
    return a


def _sitk_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _dcm2niix_as_volume_grid(nii: Path, vol: Volume) -> tuple[np.ndarray, np.ndarray]:
    data, affine = read_nifti_lps(nii)
    return reorient_like(data, affine, vol.direction)


# ---------------------------------------------------------------------------------------------
# phantom series written by cardiotwin, in four geometries
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory, small_phantom) -> dict[str, Path]:
    """Folders of the small phantom's CT written as: axial, oblique, gantry-tilted, gappy."""
    root = tmp_path_factory.mktemp("agreement_phantoms")
    ct = small_phantom.ct
    out = {}
    out["axial"] = root / "axial"
    write_ct_series(ct, out["axial"], seed="axial")
    oblique = Volume(ct.array, ct.spacing_mm, (-123.4567, 87.6543, -432.1098),
                     rotation(20.0, -15.0, 10.0))
    out["oblique"] = root / "oblique"
    write_ct_series(oblique, out["oblique"], seed="oblique")

    # Gantry tilt as a CT scanner makes it: slice planes tilted by t about the L-R axis, the table
    # moving along z, so slice k sits at IPP_0 + k * (dk / cos t) * z: sheared, dk apart along
    # the normal, shifted by dk * tan t in-plane from one slice to the next.
    t = np.radians(PHANTOM_TILT_DEG)
    tilted_dir = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)],
                           [0.0, np.sin(t), np.cos(t)]]).T  # columns: row, column, normal cosines
    files = write_ct_series(Volume(ct.array, ct.spacing_mm, (-60.0, -80.0, -50.0), tilted_dir),
                            root / "tilted", seed="tilted")
    dk = ct.spacing_mm[2]
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ipp = np.array([-60.0, -80.0, -50.0]) + k * dk / np.cos(t) * np.array([0.0, 0.0, 1.0])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.SliceLocation = f"{ipp[2]:.6f}"
        ds.GantryDetectorTilt = f"{PHANTOM_TILT_DEG:g}"
        ds.save_as(f, enforce_file_format=True)
    out["tilted"] = root / "tilted"

    # Missing slices (uneven steps 3, 6 and 9 mm): dcm2niix equalises (``_Eq``), we resample.
    files = write_ct_series(ct, root / "gappy", seed="gappy")
    for k in (20, 40, 41):
        files[k].unlink()
    out["gappy"] = root / "gappy"
    return out


@pytest.mark.parametrize("kind", ["axial", "oblique"])
def test_phantom_series_agree_exactly_with_dcm2niix_and_simpleitk(
    kind, phantom_series, dcm2niix, tmp_path
):
    vol = read_series(phantom_series[kind])
    (nii,) = run_dcm2niix(dcm2niix, phantom_series[kind], tmp_path, kind)
    arr, affine = _dcm2niix_as_volume_grid(nii, vol)
    _assert_geometry(affine, vol, f"dcm2niix {kind}")
    assert np.array_equal(arr, vol.array), kind  # integers in HU (slope 1, intercept -1024)
    img = _sitk_series(phantom_series[kind])
    _assert_geometry(_sitk_affine(img), vol, f"SimpleITK {kind}")
    assert np.array_equal(sitk.GetArrayFromImage(img).astype(np.float32), vol.array)


def _assert_resampled_values_agree(ref: np.ndarray, ours: np.ndarray, pad_hu: float) -> float:
    """Compare values away from the data's edge and from padding; return the max deviation."""
    outside = np.isnan(ours) | (ours <= pad_hu) | (ref <= pad_hu)
    margin = ndimage.binary_dilation(outside, np.ones((3, 3, 3), bool), iterations=2)
    keep = ~margin
    assert keep.mean() > 1 / 3, f"only {keep.mean():.1%} of the grid compared"
    dev = np.abs(ref[keep] - ours[keep])
    assert dev.max() <= RESAMPLED_VALUE_TOL, (dev.max(), np.argwhere(keep)[np.argmax(dev)])
    return float(dev.max())


@pytest.mark.parametrize("kind, suffix", [("tilted", "_Tilt_1"), ("gappy", "_Eq_1")])
def test_resampled_phantom_agrees_with_dcm2niix(kind, suffix, phantom_series, dcm2niix,
                                                tmp_path):
    # NaN fill marks the voxels no original slice covers (excluded from the value comparison).
    vol = read_series(phantom_series[kind], resample=True, fill_value=np.nan)
    outputs = run_dcm2niix(dcm2niix, phantom_series[kind], tmp_path, kind)
    nii = next(p for p in outputs if p.name.endswith(f"{suffix}.nii"))
    arr, affine = _dcm2niix_as_volume_grid(nii, vol)
    if kind == "gappy":
        # dcm2niix v1.0.20260724 equalises this stack to 72 slices of 210/71 = 2.958 mm; we
        # resample to the smallest step (71 slices of 3 mm). Same origin, axes and extent: compare
        # the geometry with the k spacing left out, the extents, and the values at dcm2niix's slice
        # positions. Linear interpolation of our grid along k is exact there, because our slices
        # are linear between the original ones whose positions are all on our grid.
        _assert_geometry(affine, vol, f"dcm2niix {nii.name}", axes=2)
        dk_ref = affine_parts(affine)[1][2]
        extent = (arr.shape[0] - 1) * dk_ref, (vol.shape[0] - 1) * vol.spacing_mm[2]
        assert abs(extent[0] - extent[1]) <= SPACING_TOL_MM, extent
        t = np.minimum(np.arange(arr.shape[0]) * dk_ref / vol.spacing_mm[2], vol.shape[0] - 1)
        lo = np.minimum(np.floor(t).astype(int), vol.shape[0] - 2)
        w = (t - lo)[:, None, None]
        ours = (1 - w) * vol.array[lo] + w * vol.array[lo + 1]
    else:
        _assert_geometry(affine, vol, f"dcm2niix {nii.name}")
        assert arr.shape == vol.shape
        ours = vol.array
    # the phantom's air is -1000 HU: nothing below it is data (dcm2niix pads with the minimum)
    _assert_resampled_values_agree(arr, ours, pad_hu=-1000.5)


def test_tilted_ge_ct_agrees_with_dcm2niix_tilt_and_equalised(shared_data, dcm2niix, tmp_path):
    folder = shared_data / "dicom" / "dcm_qa_ct_ge" / "In" / "GE"
    vol = read_series(folder, resample=True, fill_value=np.nan)
    outputs = run_dcm2niix(dcm2niix, folder, tmp_path, "ge")
    # 18.5° tilt and uneven steps: dcm2niix writes the raw (sheared) ge.nii and ge_Tilt_Eq_1.nii
    nii = next(p for p in outputs if p.name.endswith("_Tilt_Eq_1.nii"))
    arr, affine = _dcm2niix_as_volume_grid(nii, vol)
    _assert_geometry(affine, vol, "dcm2niix GE _Tilt_Eq_1")
    assert arr.shape == vol.shape == (56, 611, 512)  # rows padded for the shear; 2 x 28 slices
    # This GE series pads outside its circular field of view with PixelPaddingValue -1500 HU;
    # below -1010 HU a voxel has mixed with padding (air is -1000 HU).
    _assert_resampled_values_agree(arr, vol.array, pad_hu=-1010.0)


# ---------------------------------------------------------------------------------------------
# real corpus, read as stored
# ---------------------------------------------------------------------------------------------


def test_jpeg2000_ct_agrees_with_dcm2niix_and_simpleitk(shared_data, dcm2niix, tmp_path):
    folder = shared_data / "dicom" / "totalseg_ct_j2k" / "dicom"
    vol = read_series(folder)
    (nii,) = run_dcm2niix(dcm2niix, folder, tmp_path, "j2k")
    arr, affine = _dcm2niix_as_volume_grid(nii, vol)
    _assert_geometry(affine, vol, "dcm2niix j2k")
    assert np.array_equal(arr, vol.array)
    img = _sitk_series(folder)
    _assert_geometry(_sitk_affine(img), vol, "SimpleITK j2k")
    assert np.array_equal(sitk.GetArrayFromImage(img).astype(np.float32), vol.array)


@pytest.mark.parametrize("name", TS_FILES)
def test_transfer_syntax_mosaic_agrees_with_dcm2niix_live_and_reference(
    name, shared_data, dcm2niix, tmp_path
):
    # cardiotwin splits the Siemens mosaic itself (CSA NumberOfImagesInMosaic = 35 tiles of 64 x 64
    # in the 384 x 384 image); dcm2niix's NIfTI (live, and upstream's Ref/) is the reference.
    folder = shared_data / "dicom" / "dcm_qa_ts"
    vol = read_series(folder / "In" / name)
    assert vol.shape == (MOSAIC_TILES, MOSAIC_TILE, MOSAIC_TILE)
    (live,) = run_dcm2niix(dcm2niix, folder / "In" / name, tmp_path, Path(name).stem)
    for nii in (live, folder / "Ref" / f"{Path(name).stem}.nii"):
        arr, nii_affine = _dcm2niix_as_volume_grid(nii, vol)
        dev = _assert_geometry(nii_affine, vol, f"dcm2niix {nii}")
        assert np.array_equal(arr, vol.array), nii
        MOSAIC_DEVIATIONS[f"{name} {'live' if nii == live else 'Ref'}"] = dev
    # SimpleITK (GDCM) decodes the file as the 384 x 384 mosaic: its tiles are our slices
    # (tiles left to right, top to bottom; the 36th tile of the 6 x 6 grid is empty).
    mosaic = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "In" / name)))[0]
    grid = mosaic.shape[0] // MOSAIC_TILE
    tiles = mosaic.reshape(grid, MOSAIC_TILE, grid, MOSAIC_TILE).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(grid * grid, MOSAIC_TILE, MOSAIC_TILE)
    assert np.array_equal(tiles[:MOSAIC_TILES].astype(np.float32), vol.array)
    assert not tiles[MOSAIC_TILES:].any()


def test_mosaic_with_reversed_slice_order_agrees_with_dcm2niix(shared_data, dcm2niix, tmp_path):
    # Negating the column cosine makes the CSA SliceNormalVector point against row x column:
    # the tiles then run against the normal of our volume (we stack them in reverse). dcm2niix
    # is the reference for the sign convention.
    ds = pydicom.dcmread(shared_data / "dicom" / "dcm_qa_ts" / "In" / "1.dcm")
    iop = [float(v) for v in ds.ImageOrientationPatient]
    ds.ImageOrientationPatient = [f"{v:.10g}" for v in iop[:3] + [-v for v in iop[3:]]]
    f = tmp_path / "flipped.dcm"
    ds.save_as(f, enforce_file_format=True)
    vol = read_series(f)
    (nii,) = run_dcm2niix(dcm2niix, f, tmp_path / "out", "flipped")
    arr, nii_affine = _dcm2niix_as_volume_grid(nii, vol)
    MOSAIC_DEVIATIONS["1.dcm column cosine negated"] = _assert_geometry(
        nii_affine, vol, "dcm2niix flipped")
    assert np.array_equal(arr, vol.array)
    original = read_series(shared_data / "dicom" / "dcm_qa_ts" / "In" / "1.dcm")
    assert np.array_equal(vol.array[::-1], original.array)  # the same tiles in reverse order


#: What the Debian 12 dcm2niix (v1.0.20220720) can be compared on: it has no JPEG-LS decoder
#: (dcm_qa_ts 7 and 8) and writes a wrong sform for gantry-tilted CT (rordenlab/dcm2niix#697,
#: fixed in v1.0.20230411), so the tilted series are compared with the PyPI build above only.
DEBIAN_CASES = ["phantom-axial", "phantom-oblique", "totalseg_ct_j2k",
                *(f"dcm_qa_ts/{n}.dcm" for n in (1, 2, 3, 4, 5, 6, 9))]


@pytest.mark.parametrize("case", DEBIAN_CASES)
def test_debian_dcm2niix_agrees_where_it_can(case, phantom_series, shared_data,
                                             dcm2niix_debian, tmp_path):
    # The Debian package the issue names (installed by scripts/install-test-tools.sh as root):
    # same geometry tolerances and exact voxels as with the PyPI build.
    if case.startswith("phantom-"):
        source = phantom_series[case.removeprefix("phantom-")]
    elif case == "totalseg_ct_j2k":
        source = shared_data / "dicom" / "totalseg_ct_j2k" / "dicom"
    else:
        source = shared_data / "dicom" / case.replace("/", "/In/")
    vol = read_series(source)
    (nii,) = run_dcm2niix(dcm2niix_debian, source, tmp_path, "debian")
    arr, affine = _dcm2niix_as_volume_grid(nii, vol)
    _assert_geometry(affine, vol, f"Debian dcm2niix {case}")
    assert np.array_equal(arr, vol.array), case


def test_mosaic_geometry_summary(shared_data):
    """Runs after the mosaic tests (file order): the worst deviations from dcm2niix. (Takes
    ``shared_data`` so that without the corpus it stops with the fixture's message.)"""
    assert len(MOSAIC_DEVIATIONS) == 2 * len(TS_FILES) + 1
    worst = {k: max(d[k] for d in MOSAIC_DEVIATIONS.values()) for k in ("origin_mm",
                                                                         "spacing_mm",
                                                                         "direction")}
    print("mosaic vs dcm2niix, worst deviation:", worst)
    assert worst["origin_mm"] <= ORIGIN_TOL_MM
