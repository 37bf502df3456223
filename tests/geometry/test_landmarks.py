"""measure_aortic_root on the CT phantom against its exact construction landmarks.

Ground truth: cardiotwin.imaging.phantom PhantomTruth.landmarks (analytic values).
Tolerances (task spec): annulus centre 2 mm, normal 8°, area-derived annulus diameter 1.5 mm,
LVOT diameter 2 mm, orifice area 25 %.
"""

from __future__ import annotations

import numpy as np
import pytest

from cardiotwin.errors import GeometryError
from cardiotwin.geometry.landmarks import measure_aortic_root
from cardiotwin.imaging.phantom import PhantomParameters, make_phantom
from cardiotwin.imaging.segment import segment_heart
from cardiotwin.imaging.volume import LabelMap

CASES = {
    "seed0": (PhantomParameters(spacing_mm=(1.5, 1.5, 1.5)), 0),
    "seed1": (PhantomParameters(spacing_mm=(1.5, 1.5, 1.5)), 1),
    "wide_annulus": (PhantomParameters(spacing_mm=(1.5, 1.5, 1.5), annulus_diameter_mm=26.0,
                                       valve_orifice_area_mm2=120.0), 2),
}


@pytest.fixture(scope="session")
def measured():
    out = {}
    for name, (params, seed) in CASES.items():
        ph = make_phantom(params, seed=seed)
        seg = segment_heart(ph.ct)
        out[name] = (ph, seg, measure_aortic_root(ph.ct, seg))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_landmarks_against_truth(measured, case):
    ph, _, lm = measured[case]
    tr = ph.truth.landmarks
    n_t = np.asarray(tr.annulus_normal)
    assert np.linalg.norm(np.subtract(lm.annulus_centre_mm, tr.annulus_centre_mm)) <= 2.0
    angle = np.degrees(np.arccos(np.clip(np.dot(lm.annulus_normal, n_t), -1.0, 1.0)))
    assert angle <= 8.0
    assert lm.annulus_diameter_mm == pytest.approx(tr.annulus_diameter_mm, abs=1.5)
    assert lm.annulus_perimeter_diameter_mm == pytest.approx(tr.annulus_perimeter_diameter_mm, abs=2.0)
    assert lm.lvot_diameter_mm == pytest.approx(tr.lvot_diameter_mm, abs=2.0)
    assert lm.sinus_diameter_mm == pytest.approx(tr.sinus_diameter_mm, abs=2.0)
    assert lm.valve_orifice_area_mm2 == pytest.approx(tr.valve_orifice_area_mm2, rel=0.25)
    assert lm.valve_orifice_height_mm == pytest.approx(tr.valve_orifice_height_mm, abs=2.5)
    assert np.linalg.norm(np.subtract(lm.valve_orifice_centre_mm, tr.valve_orifice_centre_mm)) <= 2.5
    assert lm.calcium_volume_mm3 == pytest.approx(tr.calcium_volume_mm3, rel=0.30)
    # Centreline starts in the LVOT and follows the truth centreline within 3 mm (first 40 points).
    cl = lm.centreline_mm
    assert cl.shape[0] >= 20 and cl.shape[1] == 3
    d = np.min(np.linalg.norm(cl[:, None, :] - ph.truth.aorta_centreline_mm[None], axis=2), axis=1)
    assert np.max(d[:20]) <= 3.0


def test_truth_labels_as_input(measured):
    # The landmark code also accepts a LabelMap (here the truth), estimating thresholds itself.
    ph, _, _ = measured["seed0"]
    lm = measure_aortic_root(ph.ct, ph.labels)
    assert lm.annulus_diameter_mm == pytest.approx(ph.truth.landmarks.annulus_diameter_mm, abs=1.5)


def test_no_interface_raises(measured):
    ph, seg, _ = measured["seed0"]
    arr = seg.labels.array.copy()
    arr[arr == seg.labels.names["aorta"]] = 0
    with pytest.raises(GeometryError, match="interface"):
        measure_aortic_root(ph.ct, LabelMap(seg.labels.volume.with_array(arr), seg.labels.names))
