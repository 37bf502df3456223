"""Labels a user brings (imaging.labels): reading, mapping, resampling onto the CT, scoring."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.imaging import dicom, export, labels
from cardiotwin.imaging.volume import LABELS, NEIGHBOUR_LABELS, LabelMap, Volume


def test_parse_label_map_and_its_errors():
    assert labels.parse_label_map("aorta=52, lv_blood=3+5;myocardium=2") == {
        "aorta": (52,), "lv_blood": (3, 5), "myocardium": (2,)}
    for bad, says in [("", "empty"), ("aorta", "name=value"), ("heart=51", "unknown structure"),
                      ("aorta=0", "positive integer"), ("aorta=x", "positive integer"),
                      ("aorta=52,aorta=53", "given twice"), ("aorta=52,lv_blood=52", "already")]:
        with pytest.raises(InputError, match=says):
            labels.parse_label_map(bad)


def test_neighbouring_structures_can_be_named_and_keep_their_values():
    # TotalSegmentator-like values for the left atrium and the pulmonary artery.
    spec = labels.parse_label_map("la=61,right_heart=55+56,aorta=52")
    assert spec == {"la": (61,), "right_heart": (55, 56), "aorta": (52,)}
    arr = np.zeros((4, 5, 6), dtype=np.int16)
    arr[0, :2] = 61
    arr[1, :3] = 55
    arr[2, :1] = 56
    arr[3] = 52
    mapped = labels.relabel(LabelMap(Volume(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))), spec)
    assert mapped.names == {"background": 0, "la": NEIGHBOUR_LABELS["la"],
                            "right_heart": NEIGHBOUR_LABELS["right_heart"], "aorta": LABELS["aorta"]}
    assert int(mapped.mask("la").sum()) == 2 * 6
    assert int(mapped.mask("right_heart").sum()) == 3 * 6 + 6
    assert int(mapped.mask("aorta").sum()) == 5 * 6


def _tool_values(phantom_labels: LabelMap) -> np.ndarray:
    """The phantom's labels with another tool's values (TotalSegmentator: aorta 52, heart 51)."""
    out = np.zeros(phantom_labels.array.shape, dtype=np.int16)
    out[phantom_labels.mask("aorta")] = 52
    out[phantom_labels.mask("lv_blood")] = 51
    return out


def test_a_ras_nifti_of_another_tool_lands_on_the_ct_grid(coarse_phantom, tmp_path):
    """A label file written by nibabel in RAS (as TotalSegmentator and Slicer write NIfTI), on
    another grid (the image flipped and at 3 mm), maps back onto the phantom's own labels."""
    ct = coarse_phantom.ct
    truth = coarse_phantom.labels
    arr = _tool_values(truth)
    # LPS → RAS: negate the first two rows of the voxel-to-world matrix
    affine = ct.affine.copy()
    affine[:2, :] *= -1
    # nibabel indexes (i, j, k); cardiotwin arrays are [k, j, i]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), affine),
             tmp_path / "tool.nii.gz")
    read = labels.read_labels(tmp_path / "tool.nii.gz")
    mapped = labels.relabel(read, labels.parse_label_map("aorta=52,lv_blood=51"))
    on_ct = labels.resample_labels(mapped, ct)
    assert on_ct.volume.same_grid(ct)
    for name in ("aorta", "lv_blood"):
        np.testing.assert_array_equal(on_ct.mask(name), truth.mask(name))
    # the same labels on a coarser, z-flipped grid: Dice against the truth stays high
    coarse = arr[::-2, ::2, ::2]
    flip = ct.affine @ np.diag([2.0, 2.0, -2.0, 1.0])
    flip[:3, 3] = ct.index_to_physical(np.array([0.0, 0.0, 2.0 * (coarse.shape[0] - 1)]))
    flip[:2, :] *= -1
    nib.save(nib.Nifti1Image(np.ascontiguousarray(coarse.transpose(2, 1, 0)), flip),
             tmp_path / "coarse.nii.gz")
    q = labels.evaluate_labels(
        truth, labels.read_labels(tmp_path / "coarse.nii.gz"),
        reference_structures={"aorta": (52,), "lv_blood": (51,)})
    # 3 mm labels against 1.5 mm truth: the boundary layer of half a voxel differs
    assert q.score("aorta").dice > 0.85 and q.score("lv_blood").dice > 0.9
    assert q.score("aorta").hd95_mm <= 3.0 + 1e-9


def test_labels_of_another_scan_are_refused(coarse_phantom):
    ct = coarse_phantom.ct
    far = Volume(coarse_phantom.labels.array, ct.spacing_mm,
                 tuple(np.asarray(ct.origin_mm) + 400.0), ct.direction)
    with pytest.raises(InputError, match="inside the CT"):
        labels.resample_labels(LabelMap(far, dict(LABELS)), ct)
    with pytest.raises(InputError, match="no voxel with value 77"):
        labels.relabel(coarse_phantom.labels, {"aorta": (77,)})


def test_dicom_seg_round_trip(small_phantom, tmp_path):
    files = dicom.write_ct_series(small_phantom.ct, tmp_path / "ct")
    path = export.write_dicom_seg(small_phantom.labels, files, tmp_path / "seg.dcm",
                                  segments=["lv_blood", "aorta"])
    read = labels.read_labels(path)
    on_ct = labels.resample_labels(read, dicom.read_series(tmp_path / "ct"))
    # segment numbers in the order written: lv_blood 1, aorta 2
    np.testing.assert_array_equal(on_ct.array == read.names["lv_blood"],
                                  small_phantom.labels.mask("lv_blood"))
    np.testing.assert_array_equal(on_ct.array == read.names["aorta"],
                                  small_phantom.labels.mask("aorta"))


def test_totalsegmentator_labels_on_the_real_abdominal_ct(shared_data):
    """TotalSegmentator's RAS NIfTI over the JPEG 2000 DICOM (LPS): the aorta label (52) must
    land on contrast-filled lumen. shared/data/README.md gives its median 151 HU (venous phase)
    and 93 HU in the liver (5); a mis-oriented overlay would put the aorta in soft tissue."""
    case = shared_data / "dicom" / "totalseg_ct_j2k"
    ct = dicom.read_series(case / "dicom")
    lab = labels.resample_labels(
        labels.relabel(labels.read_labels(case / "labels.nii.gz"), {"aorta": (52,)}), ct)
    aorta = ct.array[lab.mask("aorta")]
    assert aorta.size > 1000
    assert np.median(aorta) == pytest.approx(151.0, abs=10.0)


def test_scores_of_two_offset_balls_match_geometry():
    """Two balls of radius r whose centres are d apart: Dice = V(lens)/V(ball) with the lens
    volume π(4r + d)(2r − d)²/12; HD95 between d/2 and d (+ a voxel)."""
    r, d, h = 12.0, 4.0, 0.5
    n = int(2 * (r + d) / h) + 4
    c = (n - 1) / 2 * h
    z, y, x = np.indices((n, n, n)) * h
    a = (x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2 <= r * r
    b = (x - c - d) ** 2 + (y - c) ** 2 + (z - c) ** 2 <= r * r
    grid = Volume(np.zeros((n, n, n), np.int16), (h, h, h), (0.0, 0.0, 0.0))
    la = LabelMap(grid.with_array(a.astype(np.uint8) * LABELS["aorta"]), {"aorta": LABELS["aorta"]})
    lb = LabelMap(grid.with_array(b.astype(np.uint8) * LABELS["aorta"]), {"aorta": LABELS["aorta"]})
    s = labels.evaluate_labels(la, lb).score("aorta")
    lens = math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    ball = 4 / 3 * math.pi * r**3
    assert s.dice == pytest.approx(lens / ball, rel=0.01)
    assert d / 2 <= s.hd95_mm <= d + h
    assert 0 < s.mean_surface_distance_mm < d
    assert s.volume_ml == pytest.approx(ball * 1e-3, rel=0.01)


def test_user_label_spec_checks_the_request_before_any_work(tmp_path):
    assert labels.user_label_spec(None, None) is None
    assert labels.user_label_spec(tmp_path / "seg.nii.gz", "aorta=52,lv_blood=3") == {
        "aorta": (52,), "lv_blood": (3,)}
    assert labels.user_label_spec("seg.nrrd", {"aorta": (1,), "lv_blood": (2,)}) == {
        "aorta": (1,), "lv_blood": (2,)}
    for file, label_map, says in [(None, "aorta=52", "without a label file"),
                                  ("seg.nii.gz", None, "say which values of seg.nii.gz"),
                                  ("seg.nii.gz", "aorta=52", "needs lv_blood"),
                                  ("seg.nii.gz", "myocardium=2", "needs lv_blood and aorta")]:
        with pytest.raises(InputError, match=says):
            labels.user_label_spec(file, label_map)


def test_twin_segmentation_from_a_user_label_file(coarse_phantom, tmp_path):
    """The user's file, in another tool's values, becomes the segmentation on the CT grid, and
    the record names its hash and the map."""
    from cardiotwin.provenance import sha256_file

    ct = coarse_phantom.ct
    path = tmp_path / "tool.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(
        _tool_values(coarse_phantom.labels).transpose(2, 1, 0)), _ras(ct.affine)), path)
    spec = labels.user_label_spec(path, "aorta=52,lv_blood=51")
    seg, record = labels.twin_segmentation(ct, labels=path, spec=spec)
    for name in ("aorta", "lv_blood"):
        np.testing.assert_array_equal(seg.labels.mask(name), coarse_phantom.labels.mask(name))
    assert seg.report == {"source": "user labels"}
    assert record["source"] == "user labels" and record["labels_sha256"] == sha256_file(path)
    assert record["label_map"] == {"aorta": [52], "lv_blood": [51]}
    assert record["blood_threshold_hu"] == seg.blood_threshold_hu
    with pytest.raises(InputError, match="say which values"):
        labels.twin_segmentation(ct, labels=path)


def _ras(affine: np.ndarray) -> np.ndarray:
    out = affine.copy()
    out[:2, :] *= -1
    return out
