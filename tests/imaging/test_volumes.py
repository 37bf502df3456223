"""Multi-volume series (cardiotwin.imaging.dicom.volumes): the same slice positions repeated with
another DiffusionBValue, AcquisitionNumber or EchoNumbers, read one volume at a time.

Test data: a small volume written with :func:`write_ct_series` once per "volume" into one series
(the same SeriesInstanceUID, each copy's values shifted so the volumes differ), the telling
attribute then set with pydicom. Oracle: the arrays written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging.dicom import read_series, write_ct_series
from cardiotwin.imaging.volume import Volume


def _arrays(n: int) -> list[np.ndarray]:
    base = np.random.default_rng(1).integers(-100, 300, (5, 12, 10)).astype(np.float32)
    return [base + 50.0 * v for v in range(n)]


def _multi_volume(root: Path, tags: list[dict]) -> list[np.ndarray]:
    """One copy of the series per item of ``tags`` (attributes set on each of its files)."""
    arrays = _arrays(len(tags))
    uid, study = generate_uid(entropy_srcs=[str(root)]), generate_uid(entropy_srcs=["s"])
    for v, (arr, attrs) in enumerate(zip(arrays, tags, strict=True)):
        vol = Volume(arr, (0.9, 0.8, 2.5), (-5.0, 3.0, 20.0), np.eye(3))
        for f in write_ct_series(vol, root / f"v{v}", series_uid=uid, study_uid=study, seed=v):
            ds = pydicom.dcmread(f)
            for k, value in attrs.items():
                setattr(ds, k, value)
            ds.save_as(f)
    return arrays


def test_diffusion_series_is_refused_with_its_volumes_then_read_by_b_value(tmp_path):
    arrays = _multi_volume(tmp_path, [{"DiffusionBValue": 0.0}, {"DiffusionBValue": 1000.0}])
    with pytest.raises(DicomError) as err:
        read_series(tmp_path)
    msg = str(err.value)
    assert "2 volumes at the same slice positions, told apart by DiffusionBValue" in msg
    assert "[0] b=0 (5 slices); [1] b=1000 (5 slices)" in msg
    assert "volume=1 or volume='b=1000'" in msg and "--volume b=1000" in msg
    b1000 = read_series(tmp_path, volume="b=1000")
    assert np.array_equal(b1000.array, arrays[1]) and b1000.metadata["volume"] == "b=1000"
    b0 = read_series(tmp_path, volume=0)
    assert np.array_equal(b0.array, arrays[0]) and b0.metadata["volume"] == "b=0"
    assert np.array_equal(read_series(tmp_path, volume="1").array, arrays[1])
    np.testing.assert_allclose(b0.affine, b1000.affine, atol=1e-9)
    with pytest.raises(DicomError, match=r"no volume 2; its volumes are \[0\] b=0"):
        read_series(tmp_path, volume=2)
    with pytest.raises(DicomError, match="'b=500' matches 0 volume"):
        read_series(tmp_path, volume="b=500")
    with pytest.raises(InputError, match="0-based index or b=<value>"):
        read_series(tmp_path, volume="size=3")


def test_acquisitions_and_echoes_are_volumes_too(tmp_path):
    arrays = _multi_volume(tmp_path / "acq", [{"AcquisitionNumber": 3}, {"AcquisitionNumber": 7}])
    with pytest.raises(DicomError, match=r"AcquisitionNumber: \[0\] acquisition=3"):
        read_series(tmp_path / "acq")
    assert np.array_equal(read_series(tmp_path / "acq", volume="acquisition=7").array, arrays[1])
    arrays = _multi_volume(tmp_path / "echo", [{"EchoNumbers": 1}, {"EchoNumbers": 2},
                                               {"EchoNumbers": 3}])
    assert np.array_equal(read_series(tmp_path / "echo", volume="echo=2").array, arrays[1])


def test_diffusion_directions_are_told_apart_by_two_attributes(tmp_path):
    # b=1000 twice (two directions, acquisitions 2 and 3): the b-value alone repeats positions
    arrays = _multi_volume(tmp_path, [
        {"DiffusionBValue": 0.0, "AcquisitionNumber": 1},
        {"DiffusionBValue": 1000.0, "AcquisitionNumber": 2},
        {"DiffusionBValue": 1000.0, "AcquisitionNumber": 3},
    ])
    with pytest.raises(DicomError, match="told apart by DiffusionBValue and AcquisitionNumber"):
        read_series(tmp_path)
    vol = read_series(tmp_path, volume="b=1000,acquisition=3")
    assert np.array_equal(vol.array, arrays[2])
    with pytest.raises(DicomError, match="'b=1000' matches 2 volume"):
        read_series(tmp_path, volume="b=1000")


def test_volume_of_a_single_volume_series_is_refused(tmp_path):
    vol = Volume(_arrays(1)[0], (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    write_ct_series(vol, tmp_path)
    with pytest.raises(DicomError, match="not a multi-volume series"):
        read_series(tmp_path, volume=0)
    assert read_series(tmp_path).metadata.get("volume") is None


def test_copies_without_a_telling_attribute_stay_duplicates(tmp_path):
    _multi_volume(tmp_path, [{}, {}])
    with pytest.raises(DicomError, match="duplicate slice positions"):
        read_series(tmp_path)


def test_echoes_are_listed_with_their_echo_time_and_the_command_line_option(tmp_path):
    arrays = _multi_volume(tmp_path, [{"EchoNumbers": 1, "EchoTime": 4.5},
                                      {"EchoNumbers": 2, "EchoTime": 9.0}])
    with pytest.raises(DicomError) as err:
        read_series(tmp_path)
    msg = str(err.value)
    assert "[0] echo=1, TE 4.5 ms (5 slices); [1] echo=2, TE 9 ms (5 slices)" in msg
    assert ("--volume 1 or --volume echo=2 of cardiotwin dicom convert, twin build, segment"
            in msg)
    assert np.array_equal(read_series(tmp_path, volume="echo=2").array, arrays[1])


def test_copies_name_why_the_volume_option_cannot_pick_one(tmp_path):
    _multi_volume(tmp_path, [{}, {}])
    with pytest.raises(DicomError, match=r"so volume= \(--volume\) cannot pick one"):
        read_series(tmp_path)
