"""segment_heart on the CT phantom: Dice against the phantom's exact labels, errors on bad input.

Ground truth: cardiotwin.imaging.phantom (labels evaluated analytically at voxel centres).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from cardiotwin.errors import InputError, SegmentationError
from cardiotwin.imaging.metrics import dice, hausdorff_mm
from cardiotwin.imaging.phantom import PhantomParameters, make_phantom
from cardiotwin.imaging.segment import SegmentationSettings, segment_heart
from cardiotwin.imaging.volume import Volume

CASES = {
    "seed0_1.5mm": (PhantomParameters(spacing_mm=(1.5, 1.5, 1.5)), 0),
    "seed1_1.5mm": (PhantomParameters(spacing_mm=(1.5, 1.5, 1.5)), 1),
    "wide_annulus_1.5mm": (PhantomParameters(spacing_mm=(1.5, 1.5, 1.5), annulus_diameter_mm=26.0,
                                             valve_orifice_area_mm2=120.0), 2),
    "default_1.0mm": (PhantomParameters(), 0),
}


@pytest.fixture(scope="session")
def segmented():
    out = {}
    for name, (params, seed) in CASES.items():
        ph = make_phantom(params, seed=seed)
        t0 = time.perf_counter()
        seg = segment_heart(ph.ct)
        out[name] = (ph, seg, time.perf_counter() - t0)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_dice_against_phantom_truth(segmented, case):
    ph, seg, _ = segmented[case]
    t, s = ph.labels, seg.labels
    # Required accuracy (task spec): LV >= 0.90, aorta (incl. branches) >= 0.90, blood pool >= 0.93.
    # Measured at 1.0 mm: LV 0.998, aorta 0.981, blood pool 0.989 (calcium 0.88).
    assert dice(t.mask("lv_blood"), s.mask("lv_blood")) >= 0.95
    assert dice(t.mask("aorta", "branches"), s.mask("aorta")) >= 0.95
    blood_t, blood_s = t.mask("lv_blood", "aorta", "branches"), s.mask("lv_blood", "aorta")
    assert dice(blood_t, blood_s) >= 0.97
    # No leak into bone or other structures: every segmented blood voxel within 2 mm of true blood.
    assert hausdorff_mm(blood_t, blood_s, ph.ct.spacing_mm, percentile=100) <= 2.0 * max(ph.ct.spacing_mm)
    # Calcium detected: volume within 30 % of the voxelised truth.
    v_t = t.volume_ml("calcium")
    assert s.volume_ml("calcium") == pytest.approx(v_t, rel=0.30)
    assert dice(t.mask("calcium"), s.mask("calcium")) >= 0.70


def test_bone_not_in_blood_pool(segmented):
    ph, seg, _ = segmented["seed0_1.5mm"]
    # The vertebral body (600 HU, outside any truth label) must not be labelled.
    bone = (ph.labels.array == 0) & (ph.ct.array >= 500)
    assert bone.sum() > 1000
    assert (bone & (seg.labels.array > 0)).sum() == 0


def test_thresholds_and_report(segmented):
    ph, seg, _ = segmented["seed0_1.5mm"]
    p = ph.truth.parameters
    # Midpoint of myocardium (110 HU) and blood (380 HU) = 245 HU, within one 4-HU histogram bin.
    assert seg.blood_threshold_hu == pytest.approx(0.5 * (p.myocardium_hu + p.blood_hu), abs=6.0)
    assert p.blood_hu < seg.calcium_threshold_hu < p.bone_hu
    assert seg.report["split"]["regions_after_merge"] == 2
    assert seg.report["blood_pool_ml"] == pytest.approx(ph.labels.volume_ml("lv_blood", "aorta", "branches"),
                                                        rel=0.03)


def test_speed_1mm(segmented):
    *_, elapsed = segmented["default_1.0mm"]
    # Requirement: < 15 s at 1 mm on one core (measured ~2-5 s on the shared CI machine).
    assert elapsed < 15.0


def test_no_contrast_raises():
    rng = np.random.default_rng(0)
    ct = Volume((40.0 + 18.0 * rng.standard_normal((60, 60, 60))).astype(np.float32), (1.5,) * 3, (0.0,) * 3)
    with pytest.raises(SegmentationError, match="no contrast blood pool"):
        segment_heart(ct)


def test_settings_validation():
    with pytest.raises(InputError, match="neck_ratio"):
        SegmentationSettings(neck_ratio=1.5)
