"""Multi-frame (enhanced) and multi-phase (4-D) DICOM reading (cardiotwin.imaging.dicom).

Test data are built here from the phantom:

* an Enhanced/Legacy Converted Enhanced CT made by highdicom's ``LegacyConvertedEnhancedCTImage``
  (an independent writer of the Multi-frame Functional Groups, DICOM PS3.3 C.7.6.16) from the
  phantom's single-frame series;
* a hand-built Enhanced CT Image Storage file (pydicom) with three cardiac phases, per-frame
  rescale (PixelValueTransformationSequence), FrameContentSequence TemporalPositionIndex and
  CardiacSynchronizationSequence NominalCardiacTriggerDelayTime, its frames in shuffled order;
* a cine-like series of single-frame files repeating the positions at three TriggerTimes.

Oracle: the volumes the phases were made from (exact values; affine to 1e-6 mm).
"""

from __future__ import annotations

import random
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cardiotwin.errors import DicomError
from cardiotwin.imaging.dicom import list_series, read_phases, read_series, write_ct_series
from cardiotwin.imaging.volume import Volume

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage (PS3.4 B.5)
TRIGGERS_MS = (0.0, 300.0, 600.0)


def _crop(ct: Volume) -> Volume:
    """A 14 x 30 x 26 block of the phantom through the heart (keeps the tests fast)."""
    k0, j0, i0 = 25, 20, 12
    origin = ct.index_to_physical(np.array([i0, j0, k0]))
    return Volume(ct.array[k0 : k0 + 14, j0 : j0 + 30, i0 : i0 + 26].copy(), ct.spacing_mm,
                  tuple(origin), ct.direction)


def _phase_volumes(ct: Volume) -> list[Volume]:
    """Three 'phases': the cropped phantom with a different constant added (integer HU)."""
    ct = _crop(ct)
    return [ct.with_array(ct.array + 15.0 * p) for p in range(len(TRIGGERS_MS))]


def _item(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _enhanced_ct(phases: list[Volume], path: Path, *, seed: int = 0) -> Path:
    """Write the phases as one Enhanced CT file, frames shuffled, per-frame rescale."""
    v0 = phases[0]
    nk, nj, ni = v0.shape
    di, dj, dk = v0.spacing_mm
    d = v0.direction
    frames = [(p, k) for p in range(len(phases)) for k in range(nk)]
    random.Random(seed).shuffle(frames)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_CT
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(seed), "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(seed), "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(seed), "series"])
    ds.SeriesDescription = "enhanced 4-D test"
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[str(seed), "for"])
    ds.Rows, ds.Columns = nj, ni
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SharedFunctionalGroupsSequence = DicomSequence([
        _item(
            PlaneOrientationSequence=DicomSequence(
                [_item(ImageOrientationPatient=[f"{x:.10g}" for x in (*d[:, 0], *d[:, 1])])]
            ),
            PixelMeasuresSequence=DicomSequence(
                [_item(PixelSpacing=[f"{dj:.10g}", f"{di:.10g}"], SliceThickness=f"{dk:.10g}")]
            ),
        )
    ])
    per, data = [], []
    for n, (p, k) in enumerate(frames):
        # alternate slope 1 and 0.5 and vary the intercept: per-frame rescale must be honoured
        slope, inter = (1.0, -1024.0 - 3 * n) if n % 2 else (0.5, -1000.0 - n)
        stored = np.rint((phases[p].array[k] - inter) / slope).astype("<i2")
        data.append(stored.tobytes())
        pos = np.asarray(v0.origin_mm) + k * dk * d[:, 2]
        per.append(
            _item(
                PlanePositionSequence=DicomSequence(
                    [_item(ImagePositionPatient=[f"{x:.10g}" for x in pos])]
                ),
                PixelValueTransformationSequence=DicomSequence(
                    [_item(RescaleSlope=f"{slope:g}", RescaleIntercept=f"{inter:g}",
                           RescaleType="HU")]
                ),
                FrameContentSequence=DicomSequence([_item(TemporalPositionIndex=p + 1)]),
                CardiacSynchronizationSequence=DicomSequence(
                    [_item(NominalCardiacTriggerDelayTime=float(TRIGGERS_MS[p]))]
                ),
            )
        )
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per)
    ds.PixelData = b"".join(data)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def single_dir(small_phantom, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mf") / "single"
    write_ct_series(_crop(small_phantom.ct), out, seed=3)
    return out


def test_legacy_converted_enhanced_ct_reads_like_the_single_frame_series(single_dir, tmp_path):
    ref = read_series(single_dir)
    dss = [pydicom.dcmread(f) for f in sorted(single_dir.iterdir())]
    random.Random(1).shuffle(dss)  # the frames' order must not matter
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        dss, series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(),
        instance_number=1)
    mf.save_as(tmp_path / "mf.dcm")
    assert int(pydicom.dcmread(tmp_path / "mf.dcm").NumberOfFrames) == ref.shape[0]
    vol = read_series(tmp_path / "mf.dcm")
    assert np.array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6, rtol=0)
    info = list_series(tmp_path)[0]
    assert (info.n_files, info.number_of_frames, info.n_phases) == (1, ref.shape[0], 1)


@pytest.fixture(scope="module")
def enhanced_4d(small_phantom, tmp_path_factory) -> tuple[Path, list[Volume]]:
    phases = _phase_volumes(small_phantom.ct)
    path = _enhanced_ct(phases, tmp_path_factory.mktemp("mf4d") / "enh.dcm")
    return path, phases


def test_enhanced_ct_phases_per_frame_rescale(enhanced_4d):
    path, phases = enhanced_4d
    with pytest.raises(DicomError, match=r"3 phases.*read_phases"):
        read_series(path)
    out = read_phases(path)
    assert [lab for lab, _ in out] == list(TRIGGERS_MS)  # labels = trigger delay in ms
    for (lab, vol), ref in zip(out, phases, strict=True):
        assert np.array_equal(vol.array, ref.array), lab
        np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6, rtol=0)
        assert vol.metadata["phase"] == lab and vol.metadata["n_frames"] == ref.shape[0]
    one = read_series(path, phase=300.0)
    assert np.array_equal(one.array, phases[1].array)
    with pytest.raises(DicomError, match="no phase 123"):
        read_series(path, phase=123)
    info = list_series(path)[0]
    assert info.n_phases == 3 and info.trigger_times_ms == TRIGGERS_MS
    assert info.number_of_frames == 3 * phases[0].shape[0]


def test_single_frame_cine_series_phases(small_phantom, tmp_path):
    phases = _phase_volumes(small_phantom.ct)
    series_uid = generate_uid(entropy_srcs=["cine"])
    for p, vol in enumerate(phases):
        files = write_ct_series(vol, tmp_path / f"p{p}", seed=p, series_uid=series_uid,
                                study_uid=generate_uid(entropy_srcs=["cine-study"]))
        for k, f in enumerate(files):
            ds = pydicom.dcmread(f)
            # real cine series jitter the trigger time from slice to slice (0, 1 or 2 ms here)
            ds.TriggerTime = f"{TRIGGERS_MS[p] + k % 3:g}"
            ds.TemporalPositionIdentifier = p + 1
            ds.save_as(f)
    with pytest.raises(DicomError, match="read_phases"):
        read_series(tmp_path)
    out = read_phases(tmp_path)
    # label = median trigger time of the phase's 14 slices (k % 3 jitter: median 1 ms)
    assert [lab for lab, _ in out] == [t + 1.0 for t in TRIGGERS_MS]
    for (_, vol), ref in zip(out, phases, strict=True):
        assert np.array_equal(vol.array, ref.array)
        np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6, rtol=0)
    # without any temporal attribute, repeated positions are duplicates, not phases
    for f in (tmp_path / "p1").iterdir():
        ds = pydicom.dcmread(f)
        del ds.TriggerTime, ds.TemporalPositionIdentifier
        ds.save_as(f)
    with pytest.raises(DicomError, match="duplicate slice positions"):
        read_phases(tmp_path)


def test_multiframe_without_positions_is_refused(single_dir, tmp_path):
    ds = pydicom.dcmread(sorted(single_dir.iterdir())[0])
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.save_as(tmp_path / "mf.dcm")
    with pytest.raises(DicomError, match="no per-frame functional groups"):
        read_series(tmp_path / "mf.dcm")
