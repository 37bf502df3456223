"""Pathology phantom variants: their truth, segment_heart's Dice and the automatic annulus on them.

Each pathology variant (cardiotwin.imaging.phantom.variant: "dilated", "bicuspid", "dissection",
"heavy_calcium") is the "hard" draw of the same seed plus the pathology. Targets (issue 20,
item 8): aorta (with branches) and LV blood pool Dice ≥ 0.95 against the exact labels; annulus
area-derived diameter within 0.5 mm of the construction value (measure_aortic_root).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from cardiotwin.errors import InputError
from cardiotwin.geometry.landmarks import measure_aortic_root
from cardiotwin.imaging.metrics import dice
from cardiotwin.imaging.phantom import (
    PATHOLOGY_VARIANTS,
    VARIANTS,
    PhantomParameters,
    variant,
    variant_parameters,
)
from cardiotwin.imaging.segment import find_descending_aorta, segment_heart

SEEDS = (0, 1)
CASES = [(name, seed) for name in PATHOLOGY_VARIANTS for seed in SEEDS]


@pytest.fixture(scope="module")
def measured():
    """Each case built at 1.5 mm, segmented and measured once for the module."""
    out = {}
    for name, seed in CASES:
        ph = variant(name, seed=seed, spacing_mm=(1.5, 1.5, 1.5))
        seg = segment_heart(ph.ct)
        out[(name, seed)] = (ph, seg, measure_aortic_root(ph.ct, seg))
    return out


# ---------------------------------------------------------------------------------------------
# parameters and truth
# ---------------------------------------------------------------------------------------------


def test_pathology_variants_are_the_hard_draw_plus_the_pathology():
    assert set(PATHOLOGY_VARIANTS) <= set(VARIANTS)
    for seed in range(6):
        hard = variant_parameters("hard", seed=seed)
        p = {name: variant_parameters(name, seed=seed) for name in PATHOLOGY_VARIANTS}
        for q in p.values():  # same contrast, noise, body and field of view as "hard"
            assert (q.blood_hu, q.noise_hu, q.fov_extend_mm, q.neighbours, q.body) == (
                hard.blood_hu, hard.noise_hu, hard.fov_extend_mm, hard.neighbours, hard.body)
        assert 45.0 <= p["dilated"].ascending_diameter_mm <= 55.0
        b = p["bicuspid"]
        assert b.valve_cusps == 2 and 25.0 <= b.annulus_diameter_mm <= 29.0
        assert 0.65 <= b.annulus_aspect_ratio <= 0.78 and 0.3 <= b.orifice_aspect_ratio <= 0.5
        d = p["dissection"]
        assert d.dissection in ("stanford_a", "stanford_b") and 1.0 <= d.flap_thickness_mm <= 2.0
        assert 0.7 * d.blood_hu - 1 <= d.false_lumen_hu <= d.blood_hu + 1
        assert 0.15 <= p["heavy_calcium"].annulus_calcium_fraction <= 0.3
        assert variant_parameters("dilated", seed=seed) == p["dilated"]  # seeded
    assert {variant_parameters("dissection", seed=s).dissection for s in SEEDS} == {
        "stanford_a", "stanford_b"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("valve_cusps", 1), ("orifice_aspect_ratio", 0.1), ("dissection", "type_c"),
     ("flap_thickness_mm", 5.0), ("annulus_calcium_fraction", 0.9), ("ascending_diameter_mm", 65.0),
     ("ascending_taper_mm", 2.0)],
)
def test_invalid_pathology_parameters_are_refused(field, value):
    with pytest.raises(InputError, match=field):
        PhantomParameters(**{field: value})


def test_orifice_must_fit_inside_the_annulus():
    with pytest.raises(InputError, match="orifice_aspect_ratio"):
        PhantomParameters(orifice_aspect_ratio=0.2, valve_orifice_area_mm2=150.0)


def _clean(name: str, seed: int):
    """The variant at 2 mm without noise, blur or streaks, so every CT value is exact."""
    return variant(name, seed=seed, spacing_mm=(2.0, 2.0, 2.0), noise_hu=0.0, blur_sigma_mm=0.0,
                   streak_hu=0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_dissection_flap_is_tissue_and_the_false_lumen_is_aorta(seed):
    ph = _clean("dissection", seed)
    p = ph.truth.parameters
    plain = _clean("hard", seed)
    lab, hu = ph.labels.array, ph.ct.array
    aorta_before = plain.labels.array == 3
    flap = aorta_before & (lab == 0)
    # the flap: background voxels at the soft-tissue value inside the former lumen
    assert flap.sum() > 100
    assert np.all(hu[flap] == p.tissue_hu)
    # a thin membrane: a few % of the lumen, every flap voxel beside lumen on two sides
    assert flap.sum() < 0.1 * aorta_before.sum()
    # the false lumen keeps the aorta label at its own contrast; labels elsewhere unchanged
    false_lumen = (lab == 3) & (hu == p.false_lumen_hu)
    assert false_lumen.sum() > 1000
    assert np.array_equal(lab[~flap], plain.labels.array[~flap])
    # Stanford A involves the ascending aorta (above the annulus, anterior-right of the
    # descending aorta), B only the descending aorta (below the arch)
    z = ph.ct.index_to_physical(np.argwhere(flap)[:, ::-1].astype(float))[:, 2]
    a_z = ph.truth.landmarks.annulus_centre_mm[2]
    if p.dissection == "stanford_a":
        assert z.min() < a_z + 60.0
    else:
        assert z.min() < a_z - 20.0 and z.max() < a_z + 80.0


def test_heavy_calcium_volume_and_annular_extension(measured):
    for seed in SEEDS:
        ph = measured[("heavy_calcium", seed)][0]
        tr = ph.truth.landmarks
        assert 500.0 <= tr.calcium_volume_mm3 <= 1500.0
        ca = ph.labels.array == 5
        pts = ph.ct.index_to_physical(np.argwhere(ca)[:, ::-1].astype(float))
        h = (pts - np.asarray(tr.annulus_centre_mm)) @ np.asarray(tr.annulus_normal)
        # part of the calcium lies at or below the annulus plane (annulus and LVOT)
        assert (h < 0.0).sum() * ph.ct.voxel_volume_mm3 >= 50.0


def test_bicuspid_valve_has_a_fish_mouth_orifice_and_a_raphe(measured):
    ph = measured[("bicuspid", 0)][0]
    tr, p = ph.truth.landmarks, ph.truth.parameters
    assert tr.annulus_max_diameter_mm / tr.annulus_min_diameter_mm == pytest.approx(
        1.0 / p.annulus_aspect_ratio, rel=1e-6)
    assert tr.valve_orifice_area_mm2 == pytest.approx(p.valve_orifice_area_mm2)
    # the blood between the leaflets just below their tips: an elongated slit
    n = np.asarray(tr.annulus_normal)
    c = np.asarray(tr.valve_orifice_centre_mm) - 1.5 * n
    lab = ph.labels.array
    idx = np.argwhere(lab == 3)
    pts = ph.ct.index_to_physical(idx[:, ::-1].astype(float)) - c
    slab = np.abs(pts @ n) <= 1.0
    mask = np.zeros(lab.shape, dtype=bool)
    mask[tuple(idx[slab].T)] = True
    comp, _ = ndimage.label(mask)
    k = idx[slab][np.argmin(np.linalg.norm(pts[slab], axis=1))]
    jet = pts[comp[tuple(idx.T)] == comp[tuple(k)]]
    flat = jet - np.outer(jet @ n, n)
    ev = np.sort(np.linalg.eigvalsh(np.cov(flat.T)))[::-1]
    assert math.sqrt(ev[1] / ev[0]) < 0.7  # round orifice: 1
    # the raphe (a thickened ridge, often calcified) along the fused leaflet's midline, opposite
    # the non-coronary leaflet's: more leaflet tissue and calcium there than along that midline
    vt = ph.ct.index_to_physical(np.argwhere(np.isin(lab, (5, 6)))[:, ::-1].astype(float))
    d = vt - np.asarray(tr.annulus_centre_mm)
    d -= np.outer(d @ n, n)
    nc = ph.truth.cusp_directions["non_coronary"]
    cos = (d @ nc) / np.linalg.norm(d, axis=1)
    wedge = math.cos(math.radians(20.0))
    assert (cos < -wedge).sum() > 1.3 * (cos > wedge).sum()


# ---------------------------------------------------------------------------------------------
# segmentation and annulus on the noisy 1.5 mm phantoms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_pathology_dice(measured, case):
    # Measured (seeds 0/1): LV 0.996-0.999, aorta 0.968-0.999.
    ph, seg, _ = measured[case]
    t, s = ph.labels, seg.labels
    assert dice(t.mask("lv_blood"), s.mask("lv_blood")) >= 0.95
    assert dice(t.mask("aorta", "branches"), s.mask("aorta")) >= 0.95


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_pathology_annulus_diameter(measured, case):
    ph, _, lm = measured[case]
    tr = ph.truth.landmarks
    assert lm.annulus_diameter_mm == pytest.approx(tr.annulus_diameter_mm, abs=0.5)
    assert np.degrees(np.arccos(min(1.0, np.dot(lm.annulus_normal, tr.annulus_normal)))) <= 5.0


#: Measured plane heights (annulus centre along the true normal, mm) at seeds 0/1: dilated
#: −0.13/−0.44, bicuspid +0.37/−0.14, dissection −0.29/−0.69, heavy_calcium −2.31/−0.83.
HEIGHT_GAPS = {("heavy_calcium", 0): "annulus plane 2.3 mm below the hinges (measured −2.31 mm): "
               "annular calcium nodules make the lumen profile bumpy and the hinge level is "
               "taken at the bottom of the annulus plateau"}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=HEIGHT_GAPS[c]))
     if c in HEIGHT_GAPS else c for c in CASES],
    ids=[f"{n}-{s}" for n, s in CASES],
)
def test_pathology_annulus_plane_height(measured, case):
    ph, _, lm = measured[case]
    tr = ph.truth.landmarks
    h = np.dot(np.subtract(lm.annulus_centre_mm, tr.annulus_centre_mm), tr.annulus_normal)
    assert abs(h) <= 1.0


@pytest.fixture(scope="module")
def faint_dissection():
    ph = variant("dissection", seed=3, spacing_mm=(1.5, 1.5, 1.5))
    return ph, segment_heart(ph.ct)


def test_faint_dissection_aorta_found_beside_the_spine(faint_dissection):
    # Dissection seed 3 (Stanford A, blood 210 HU, false lumen 166 HU, bone 751 HU): the flap
    # splits the faint descending aorta into two non-round lumina. The finder used to follow the
    # sternum and the series was refused as "heart not in the field of view"; it now takes
    # the tube beside the spine, its brighter (true) lumen for the blood value and the fainter
    # one for the threshold.
    ph, seg = faint_dissection
    p = ph.truth.parameters
    tr = find_descending_aorta(ph.ct)
    idx = np.rint(ph.ct.physical_to_index(tr.centres_mm)).astype(int)
    assert ph.labels.mask("aorta")[idx[:, 2], idx[:, 1], idx[:, 0]].mean() >= 0.8
    assert tr.median_hu == pytest.approx(p.blood_hu, abs=15.0)
    assert tr.false_lumen_hu == pytest.approx(p.false_lumen_hu, abs=15.0)
    assert dice(ph.labels.mask("lv_blood"), seg.labels.mask("lv_blood")) >= 0.95


@pytest.mark.xfail(
    strict=True,
    reason="known gap (measured): dissection seed 3 (Stanford A, blood 210 HU, false lumen 166 HU) "
    "is segmented now (LV 0.992) but the aorta Dice is 0.949: the blood threshold (138 HU, the "
    "midpoint between the false lumen and the tissue reference, 108 HU: liver) leaves the "
    "partial-volume voxels beside the flap (about 115 HU) out of the pool",
)
def test_dissection_with_faint_contrast_is_segmented(faint_dissection):
    ph, seg = faint_dissection
    assert dice(ph.labels.mask("aorta", "branches"), seg.labels.mask("aorta")) >= 0.95
