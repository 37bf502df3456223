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


def _hinges(truth, *, tilt_deg: float = 0.0, shift_mm: float = 0.0) -> np.ndarray:
    """Three points on the circle of the true annulus (its plane tilted by ``tilt_deg`` about a
    diameter, moved ``shift_mm`` along the normal): what a planner clicks at the leaflet hinges."""
    c = np.asarray(truth.annulus_centre_mm)
    n = np.asarray(truth.annulus_normal)
    e1 = np.cross(n, [0.0, 1.0, 0.0] if abs(n[1]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    t = np.radians(tilt_deg)
    e2t = np.cos(t) * e2 + np.sin(t) * n  # tilt about e1
    r = truth.annulus_diameter_mm / 2
    a = np.radians([90.0, 210.0, 330.0])
    return c + shift_mm * n + r * (np.cos(a)[:, None] * e1 + np.sin(a)[:, None] * e2t)


def test_hinge_points_set_the_annulus_plane(measured):
    """Hinge points from a planning tool define the annulus (virtual basal ring): the measured
    plane is theirs (centre within a voxel of the hinge centroid's lumen centre, normal exactly
    theirs) and the diameters there match the construction within the automatic tolerances; a
    plane 2 mm higher is measured 2 mm higher, a tilted one along its own normal."""
    ph, seg, auto = measured["seed0"]
    tr = ph.truth.landmarks
    lm = measure_aortic_root(ph.ct, seg, hinge_points_mm=_hinges(tr))
    assert np.linalg.norm(np.subtract(lm.annulus_centre_mm, tr.annulus_centre_mm)) <= 1.5
    assert np.degrees(np.arccos(min(1.0, np.dot(lm.annulus_normal, tr.annulus_normal)))) < 1e-6
    assert lm.annulus_diameter_mm == pytest.approx(tr.annulus_diameter_mm, abs=1.5)
    assert lm.valve_orifice_area_mm2 == pytest.approx(tr.valve_orifice_area_mm2, rel=0.25)
    up = measure_aortic_root(ph.ct, seg, hinge_points_mm=_hinges(tr, shift_mm=2.0))
    h = np.dot(np.subtract(up.annulus_centre_mm, lm.annulus_centre_mm), tr.annulus_normal)
    assert h == pytest.approx(2.0, abs=0.3)
    tilted = measure_aortic_root(ph.ct, seg, hinge_points_mm=_hinges(tr, tilt_deg=10.0))
    angle = np.degrees(np.arccos(np.dot(tilted.annulus_normal, tr.annulus_normal)))
    assert angle == pytest.approx(10.0, abs=1e-6)


def test_hinge_points_of_another_scan_are_refused(measured):
    ph, seg, _ = measured["seed0"]
    far = _hinges(ph.truth.landmarks) + np.array([0.0, 0.0, 80.0])
    with pytest.raises(GeometryError, match="coordinate convention"):
        measure_aortic_root(ph.ct, seg, hinge_points_mm=far)
    line = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    with pytest.raises(GeometryError, match="on one line"):
        measure_aortic_root(ph.ct, seg, hinge_points_mm=line + ph.truth.landmarks.annulus_centre_mm)


def test_planning_files_lps_ras_and_slicer_agree(measured, tmp_path):
    """The same points in cardiotwin's JSON (LPS), in RAS, and as a 3D Slicer markups file read
    to the same LPS points; ostia heights are measured along the annulus normal."""
    import json

    from cardiotwin.errors import InputError
    from cardiotwin.geometry.landmarks import read_planning_landmarks

    ph, _, _ = measured["seed0"]
    tr = ph.truth.landmarks
    pts = _hinges(tr)
    ostium = np.asarray(tr.annulus_centre_mm) + 12.0 * np.asarray(tr.annulus_normal)
    ras = pts * np.array([-1.0, -1.0, 1.0])
    (tmp_path / "lps.json").write_text(json.dumps(
        {"coordinates": "LPS", "annulus_hinge_points_mm": pts.tolist(),
         "coronary_ostia_mm": {"left": ostium.tolist()}}))
    (tmp_path / "ras.json").write_text(json.dumps(
        {"coordinates": "RAS", "annulus_hinge_points_mm": ras.tolist()}))
    (tmp_path / "slicer.mrk.json").write_text(json.dumps({"markups": [{
        "type": "Fiducial", "coordinateSystem": "RAS",
        "controlPoints": [{"label": f"hinge-{i}", "position": p.tolist()}
                          for i, p in enumerate(ras)]
        + [{"label": "LCA", "position": (ostium * [-1, -1, 1]).tolist()}]}]}))
    a = read_planning_landmarks(tmp_path / "lps.json")
    for other in ("ras.json", "slicer.mrk.json"):
        np.testing.assert_allclose(read_planning_landmarks(tmp_path / other).hinge_points_mm,
                                   a.hinge_points_mm, atol=1e-9)
    assert a.ostium_heights_mm(tr)["left"] == pytest.approx(12.0, abs=1e-9)
    (tmp_path / "two.json").write_text(json.dumps({"annulus_hinge_points_mm": pts[:2].tolist()}))
    with pytest.raises(InputError, match="2 hinge points"):
        read_planning_landmarks(tmp_path / "two.json")


# ---------------------------------------------------------------------------------------------
# the annulus diameter at the target (0.5 mm), on the default and the hard phantoms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_annulus_diameter_within_half_a_millimetre(measured, case):
    # Measured: seed0 -0.03 mm, seed1 -0.05 mm (default at 1.0 mm: -0.09 mm; -0.83 mm before the
    # annulus was taken below the leaflet bases with a half-maximum contour).
    ph, _, lm = measured[case]
    assert lm.annulus_diameter_mm == pytest.approx(ph.truth.landmarks.annulus_diameter_mm, abs=0.5)


HARD_SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def hard_measured():
    from cardiotwin.imaging.phantom import variant

    out = {}
    for seed in HARD_SEEDS:
        ph = variant("hard", seed=seed, spacing_mm=(1.5, 1.5, 1.5))
        seg = segment_heart(ph.ct)
        out[seed] = (ph, measure_aortic_root(ph.ct, seg))
    return out


@pytest.mark.parametrize("seed", HARD_SEEDS)
def test_annulus_on_the_hard_variant(hard_measured, seed):
    """Contrast 200-700 HU, noise, blur 0.5-1 mm, neighbouring pools a wall apart. Measured
    area-derived diameter errors on seeds 0-9: -0.45 to +0.23 mm (before: -1.96 to -0.45 mm on
    seeds 0-5); normal within 1.5 degrees; plane within 1.9 mm of the hinges."""
    ph, lm = hard_measured[seed]
    tr = ph.truth.landmarks
    assert lm.annulus_diameter_mm == pytest.approx(tr.annulus_diameter_mm, abs=0.5)
    assert lm.annulus_perimeter_diameter_mm == pytest.approx(tr.annulus_perimeter_diameter_mm, abs=1.0)
    angle = np.degrees(np.arccos(min(1.0, np.dot(lm.annulus_normal, tr.annulus_normal))))
    assert angle <= 5.0
    assert np.linalg.norm(np.subtract(lm.annulus_centre_mm, tr.annulus_centre_mm)) <= 2.0
