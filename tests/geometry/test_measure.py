"""TAVR-planner measurements (cardiotwin.geometry.measure) against the phantom's exact truth.

Phantoms at 1.5 mm: the default anatomy with coronary arteries (nothing else differs from the
demo phantom), and two 'hard' variants (contrast 200-700 HU, noise, blur, neighbouring bright
pools, streaks, an abdomen in the field of view). They are measured from their own truth labels
with the thresholds cardiotwin estimates from the CT (the errors are those of the measurement,
not of the segmentation), and the default one also through the built-in segmentation. Issue 20's targets: annulus diameter error ≤ 0.5 mm, heights ≤ 1 mm.
"""

from __future__ import annotations

import numpy as np
import pytest

from cardiotwin.errors import GeometryError
from cardiotwin.geometry.landmarks import PlanningLandmarks
from cardiotwin.geometry.measure import (
    AnatomyMeasurements,
    Measurement,
    agatston_like_score,
    measure_anatomy,
)
from cardiotwin.imaging.phantom import PhantomParameters, make_phantom, variant
from cardiotwin.imaging.segment import Segmentation, estimate_intensities
from cardiotwin.imaging.volume import Volume

SPACING = (1.5, 1.5, 1.5)


def _seg(ph) -> Segmentation:
    inten = estimate_intensities(ph.ct)
    return Segmentation(ph.labels, inten.blood_threshold_hu, inten.calcium_threshold_hu)


def _hinges(truth) -> PlanningLandmarks:
    """Three points of the truth annulus plane, one towards each cusp (as a planner's hinges)."""
    c = np.asarray(truth.landmarks.annulus_centre_mm)
    return PlanningLandmarks(tuple(tuple(c + 10.0 * truth.cusp_directions[k])
                                   for k in ("non_coronary", "right_coronary", "left_coronary")))


def _truth_diameter(truth, point) -> float:
    """Truth lumen diameter at the truth centreline point nearest ``point``."""
    j = int(np.argmin(np.linalg.norm(truth.aorta_centreline_mm - np.asarray(point), axis=1)))
    return 2.0 * float(truth.aorta_radius_mm[j])


@pytest.fixture(scope="module")
def default_case():
    """The default phantom measured twice: from its truth labels with the automatic annulus, and
    through the whole chain (CT → segment_heart → measure) with the truth hinge points; the
    built-in segmentation leaves the coronaries out of the aorta label, so they are found from
    the CT there."""
    from cardiotwin.imaging.segment import segment_heart

    ph = make_phantom(PhantomParameters(spacing_mm=SPACING, coronary_arteries=True), seed=0)
    return (ph, measure_anatomy(ph.ct, _seg(ph)),
            measure_anatomy(ph.ct, segment_heart(ph.ct), landmarks=_hinges(ph.truth)))


@pytest.fixture(scope="module")
def hard1():
    ph = variant("hard", seed=1, spacing_mm=SPACING, coronary_arteries=True)
    return ph, measure_anatomy(ph.ct, _seg(ph), landmarks=_hinges(ph.truth))


@pytest.fixture(scope="module")
def hard2():
    ph = variant("hard", seed=2, spacing_mm=SPACING)  # no coronary arteries
    return ph, measure_anatomy(ph.ct, _seg(ph))


def _errors(ph, m: AnatomyMeasurements) -> dict[str, float]:
    t, p = ph.truth.landmarks, ph.truth.parameters
    lv = m.level_points_mm
    return {
        "annulus_area_diameter": m.annulus_area_diameter_mm.value - t.annulus_diameter_mm,
        "annulus_perimeter_diameter": (m.annulus_perimeter_diameter_mm.value
                                       - t.annulus_perimeter_diameter_mm),
        "annulus_max": m.annulus_max_diameter_mm.value - t.annulus_max_diameter_mm,
        "annulus_min": m.annulus_min_diameter_mm.value - t.annulus_min_diameter_mm,
        "lvot": m.lvot_diameter_mm.value - p.lvot_diameter_mm,
        "sinus": m.sinus_diameter_mm.value - t.sinus_diameter_mm,
        "stj": m.stj_diameter_mm.value - p.stj_diameter_mm,
        "stj_height": m.stj_height_mm.value - p.stj_height_mm,
        "ascending": m.ascending_diameter_mm.value - p.ascending_diameter_mm,
        "proximal_arch": (m.proximal_arch_diameter_mm.value
                          - _truth_diameter(ph.truth, lv["proximal_arch"])),
        "mid_arch": m.mid_arch_diameter_mm.value - _truth_diameter(ph.truth, lv["mid_arch"]),
        "proximal_descending": (m.proximal_descending_diameter_mm.value
                                - _truth_diameter(ph.truth, lv["proximal_descending"])),
        "calcium_rel": m.calcium_volume_mm3.value / t.calcium_volume_mm3 - 1.0,
    }


# Tolerances (mm; calcium relative). The largest errors measured on these phantoms (default
# automatic annulus, default segmented with hinge points, hard seed 1 with hinge points, hard seed 2 automatic, and the
# same seeds the other way round) are in the comments; issue 20's targets are 0.5 mm for the
# annulus diameter and 1 mm for heights.
TOL = {
    "annulus_area_diameter": 0.5,  # 0.48 (hard 2 auto); target 0.5 met
    "annulus_perimeter_diameter": 0.5,  # 0.41
    "annulus_max": 0.5,  # 0.40
    "annulus_min": 1.0,  # 0.83 (hard 2 auto): leaflet bases blur into the minor axis
    "lvot": 0.5,  # 0.33
    "sinus": 0.75,  # 0.53 (hard 1)
    "stj": 0.5,  # 0.17
    "stj_height": 1.0,  # 0.68 (hard 2 auto); target 1 mm met
    "ascending": 1.25,  # 1.20 (hard 1: streak artefacts lie along the lumen edge); 0.37 otherwise
    "proximal_arch": 0.5,  # 0.42
    "mid_arch": 0.5,  # 0.34
    "proximal_descending": 0.5,  # 0.34
    "calcium_rel": 0.25,  # -0.18 (hard 2: blood 517 HU puts the calcium threshold at 0.6 × peak)
}


def _check(ph, m, name, tol=TOL):
    errs = _errors(ph, m)
    print(name, {k: round(v, 2) for k, v in errs.items()})
    bad = {k: round(v, 2) for k, v in errs.items() if abs(v) > tol[k]}
    assert not bad, f"{name}: errors beyond tolerance {bad}"


def test_default_phantom_automatic_annulus(default_case):
    ph, m, _ = default_case
    assert m.annulus_source == "automatic"
    _check(ph, m, "default auto")


def test_default_phantom_hinge_points(default_case):
    ph, _, m = default_case
    assert m.annulus_source == "hinge points"
    np.testing.assert_allclose(m.annulus_normal, ph.truth.landmarks.annulus_normal, atol=1e-9)
    _check(ph, m, "default, segment_heart, hinges")


def test_hard_variants(hard1, hard2):
    _check(*hard1, "hard 1 hinges")
    _check(*hard2, "hard 2 auto")


def test_coronary_ostia_heights_within_1_mm(default_case, hard1):
    for ph, m in ((default_case[0], default_case[1]), (default_case[0], default_case[2]), hard1):
        truth = ph.truth.coronary_ostium_heights_mm
        assert {o.name for o in m.coronary_ostia} == {"left", "right"}, m.coronary_note
        for o in m.coronary_ostia:
            assert abs(o.height.value - truth[o.name]) <= 1.0, (o, truth)
            assert np.linalg.norm(np.subtract(o.position_mm, ph.truth.coronary_ostia_mm[o.name])
                                  ) <= 2.0


def test_no_coronaries_are_reported_not_visible(hard2):
    _, m = hard2
    assert m.coronary_ostia == () and m.coronary_note.startswith("not visible")
    row = dict(m.rows())["left coronary ostium height"]
    assert row.value is None and "not measured" in row.text()


def test_uncertainties_cover_the_voxel_floor_and_the_result_round_trips(default_case):
    _, m, _ = default_case
    floor = 1.5 / np.sqrt(12.0)
    for label, meas in m.rows():
        if meas.value is not None and meas.unit == "mm":
            assert meas.uncertainty >= floor - 1e-9, label
    assert m.blood_threshold_hu > 0 and m.threshold_delta_hu >= 10.0
    # the centreline runs from the annulus through the arch down the descending aorta
    cl = m.centreline_mm
    assert len(cl) > 100 and cl[:, 2].max() > m.annulus_centre_mm[2] + 60.0
    assert cl[-1, 2] < m.annulus_centre_mm[2] - 40.0
    assert len(m.branch_origins_mm) == 3
    back = AnatomyMeasurements.from_dict(m.to_dict())
    assert back.to_dict() == m.to_dict()
    table = m.table()
    assert "annulus diameter (area-derived)" in table and "± " in table and " mm" in table
    assert m.to_csv().splitlines()[0] == "measurement,value,uncertainty,unit,level,note"


def test_agatston_like_score_against_a_hand_computation():
    """Two lesions in 0.5 × 0.5 × 1.5 mm voxels (Agatston AS et al., JACC 1990: area × weight
    of the peak HU per slice, × slice thickness / 3 mm; lesions < 1 mm² not counted)."""
    a = np.zeros((3, 20, 20), dtype=np.float32)
    mask = np.zeros(a.shape, dtype=bool)
    # lesion A in slice 0: 3 × 4 pixels = 12 × 0.25 = 3 mm², peak 250 HU → weight 2
    a[0, 2:5, 2:6] = 180.0
    a[0, 3, 3] = 250.0
    mask[0, 2:5, 2:6] = True
    # lesion B in slices 1 and 2: 4 × 4 = 4 mm² each, peak 520 HU → weight 4
    a[1:3, 10:14, 10:14] = 450.0
    a[2, 11, 12] = 520.0
    mask[1:3, 10:14, 10:14] = True
    # a 2-pixel speck (0.5 mm²) is below the 1 mm² minimum; a 140 HU lesion weighs 1
    a[1, 0, 0:2] = 900.0
    mask[1, 0, 0:2] = True
    a[2, 17:19, 0:4] = 140.0  # 8 pixels = 2 mm², weight 1
    mask[2, 17:19, 0:4] = True
    ct = Volume(a, (0.5, 0.5, 1.5), (0.0, 0.0, 0.0), np.eye(3))
    hand = (3.0 * 2 + 4.0 * 4 + 4.0 * 4 + 2.0 * 1) * 1.5 / 3.0
    assert agatston_like_score(ct, mask) == pytest.approx(hand)
    assert agatston_like_score(ct, np.zeros_like(mask)) == 0.0
    with pytest.raises(GeometryError):
        agatston_like_score(ct, mask[:2])


def test_measurement_is_validated():
    assert Measurement(23.04, 0.43, "mm").text() == "23.0 ± 0.4 mm"
    with pytest.raises(GeometryError):
        Measurement(float("nan"), 0.1, "mm")
    with pytest.raises(GeometryError):
        Measurement(1.0, -0.1, "mm")


def test_phantom_coronary_arteries_are_where_the_truth_says():
    """The coronary option only adds 'aorta' voxels (two tubes of ~3.5 mm over ~40 mm each),
    inside the field of view, and the truth ostia lie on the sinus wall at the stated heights."""
    p = PhantomParameters(spacing_mm=SPACING)
    plain = make_phantom(p, seed=0)
    cor = make_phantom(PhantomParameters(spacing_mm=SPACING, coronary_arteries=True), seed=0)
    added = cor.labels.array != plain.labels.array
    assert set(np.unique(cor.labels.array[added])) == {cor.labels.names["aorta"]}
    assert set(np.unique(plain.labels.array[added])) == {0}
    t = cor.truth
    assert plain.truth.coronary_ostia_mm == {} and t.coronary_radius_mm == 1.75
    length = sum(float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum())
                 for c in t.coronary_centrelines_mm.values())
    tube_mm3 = np.pi * t.coronary_radius_mm**2 * length
    assert added.sum() * 1.5**3 == pytest.approx(tube_mm3, rel=0.2)
    lo = cor.ct.index_to_physical(np.zeros(3))
    hi = cor.ct.index_to_physical(np.array(cor.ct.array.shape[::-1]) - 1)
    c = np.asarray(t.landmarks.annulus_centre_mm)
    n = np.asarray(t.landmarks.annulus_normal)
    for name, h in (("left", 14.0), ("right", 16.5)):
        assert t.coronary_ostium_heights_mm[name] == h
        assert float((t.coronary_ostia_mm[name] - c) @ n) == pytest.approx(h, abs=1e-9)
        cl = t.coronary_centrelines_mm[name]
        assert np.all((cl >= lo) & (cl <= hi))
    # the left ostium is to the patient's left (+x) of the right one
    assert t.coronary_ostia_mm["left"][0] > t.coronary_ostia_mm["right"][0]
