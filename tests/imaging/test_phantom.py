"""Tests of the CT phantom against its analytic construction (cardiotwin.imaging.phantom)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from cardiotwin.errors import InputError
from cardiotwin.imaging.phantom import (
    BRANCH_NAMES,
    PhantomParameters,
    make_phantom,
    variant,
    variant_parameters,
)
from cardiotwin.imaging.volume import LABELS, NEIGHBOUR_LABELS

LUMEN = (LABELS["lv_blood"], LABELS["aorta"])


def _frame(truth):
    lm = truth.landmarks
    centre = np.asarray(lm.annulus_centre_mm)
    n = np.asarray(lm.annulus_normal)
    e1 = np.cross(n, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return centre, n, e1, np.cross(n, e1)


def _lumen_area_mm2(phantom, height_mm: float, *, res: float = 0.1, half: float = 22.0) -> float:
    """Area of the lumen connected to the valve axis in the plane ``height_mm`` above the annulus.

    The plane is sampled at ``res`` mm by nearest-neighbour lookup of the labels.
    """
    centre, n, e1, e2 = _frame(phantom.truth)
    s = np.arange(-half, half + res / 2, res)
    pts = centre + height_mm * n + s[:, None, None] * e1 + s[None, :, None] * e2
    idx = np.rint(phantom.labels.volume.physical_to_index(pts)).astype(int)
    lab = phantom.labels.array[idx[..., 2], idx[..., 1], idx[..., 0]]
    cc, _ = ndimage.label(np.isin(lab, LUMEN))
    c = cc[len(s) // 2, len(s) // 2]
    return float((cc == c).sum()) * res * res if c else 0.0


def _physical_points(vol):
    nk, nj, ni = vol.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    return vol.index_to_physical(np.stack([i, j, k], axis=-1).astype(float))


def _lv_q(truth, xyz, extra=0.0):
    a, b, _ = truth.lv_semi_axes_mm
    d = xyz - truth.lv_centre_mm
    along = d @ truth.lv_long_axis
    perp2 = (d * d).sum(-1) - along**2
    return (along / (a + extra)) ** 2 + perp2 / (b + extra) ** 2


def test_same_seed_same_arrays_other_seed_differs():
    p = PhantomParameters(spacing_mm=(2.0, 2.0, 2.0))
    a, b, c = make_phantom(p, seed=3), make_phantom(p, seed=3), make_phantom(p, seed=4)
    assert np.array_equal(a.ct.array, b.ct.array)
    assert np.array_equal(a.labels.array, b.labels.array)
    assert a.truth.landmarks.calcium_volume_mm3 == b.truth.landmarks.calcium_volume_mm3
    assert not np.array_equal(a.ct.array, c.ct.array)
    # the anatomy apart from calcium does not depend on the seed
    keep = ~np.isin(a.labels.array, [LABELS["calcium"], LABELS["valve"]])
    keep &= ~np.isin(c.labels.array, [LABELS["calcium"], LABELS["valve"]])
    assert np.array_equal(a.labels.array[keep], c.labels.array[keep])


def test_types_and_grid(coarse_phantom):
    ct, labels = coarse_phantom.ct, coarse_phantom.labels
    assert ct.array.dtype == np.float32 and labels.array.dtype == np.uint8
    assert np.array_equal(ct.array, np.rint(ct.array))  # integer HU
    assert ct.same_grid(labels.volume, tol_mm=0.0)
    assert np.allclose(ct.direction, np.eye(3))
    assert ct.spacing_mm == (1.5, 1.5, 1.5)
    assert set(np.unique(labels.array)) == set(LABELS.values())


def test_lv_cavity_matches_ellipsoid(coarse_phantom):
    # Analytic: prolate ellipsoid volume 4/3·π·a·b²; voxelisation error at 1.5 mm < 2%.
    truth, vol = coarse_phantom.truth, coarse_phantom.labels.volume
    xyz = _physical_points(vol)
    lv = coarse_phantom.labels.mask("lv_blood")
    inside = _lv_q(truth, xyz) <= 1.0
    a, b, _ = truth.lv_semi_axes_mm
    v_analytic = 4.0 / 3.0 * math.pi * a * b * b
    v_vox = float((lv & inside).sum()) * vol.voxel_volume_mm3
    assert v_vox == pytest.approx(v_analytic, rel=0.02)
    assert float(inside.sum()) * vol.voxel_volume_mm3 == pytest.approx(v_analytic, rel=0.02)
    # every LV blood voxel outside the ellipsoid belongs to the LVOT tube below the annulus
    centre, n, _, _ = _frame(truth)
    p = truth.parameters
    d = xyz[lv & ~inside] - centre
    h = d @ n
    r = np.linalg.norm(d - h[:, None] * n, axis=1)
    assert h.max() < 0.0
    assert h.min() > -(p.lvot_length_mm + 10.0) - 1e-9
    assert r.max() <= truth.landmarks.annulus_max_diameter_mm / 2 + 1e-9
    # the LVOT adds a little, not a lot: < 10 mL
    assert 0 < (lv & ~inside).sum() * vol.voxel_volume_mm3 < 10_000.0


def test_myocardium_is_a_shell_of_the_given_thickness(coarse_phantom):
    # Along a short-axis ray from the LV centre (away from the root) the myocardium spans
    # myocardium_thickness_mm, within one voxel (1.5 mm).
    truth = coarse_phantom.truth
    u = truth.lv_long_axis
    _, n, _, _ = _frame(truth)
    away = -(n - (n @ u) * u)
    away /= np.linalg.norm(away)
    t = np.arange(0.0, 60.0, 0.05)
    pts = truth.lv_centre_mm + t[:, None] * away
    idx = np.rint(coarse_phantom.labels.volume.physical_to_index(pts)).astype(int)
    lab = coarse_phantom.labels.array[idx[:, 2], idx[:, 1], idx[:, 0]]
    myo = t[lab == LABELS["myocardium"]]
    b = truth.lv_semi_axes_mm[1]
    assert myo.min() == pytest.approx(b, abs=1.5)
    assert myo.max() - myo.min() == pytest.approx(truth.parameters.myocardium_thickness_mm, abs=1.5)


def test_blood_hu_statistics_in_lv_core(coarse_phantom):
    # Far from edges the image is blood_hu + N(0, noise_hu) rounded: mean within 1 HU, std within
    # 3% (rounding adds 1/12 HU² of variance; > 5000 voxels).
    truth, ct = coarse_phantom.truth, coarse_phantom.ct
    core = _lv_q(truth, _physical_points(ct)) <= 0.5
    vals = ct.array[core]
    assert vals.size > 5000
    p = truth.parameters
    assert vals.mean() == pytest.approx(p.blood_hu, abs=1.0)
    assert vals.std() == pytest.approx(p.noise_hu, rel=0.03)


def test_noise_free_image_has_the_label_values():
    p = PhantomParameters(spacing_mm=(2.0, 2.0, 2.0), noise_hu=0.0, blur_sigma_mm=0.0)
    ph = make_phantom(p)
    for name, hu in (
        ("lv_blood", p.blood_hu),
        ("aorta", p.blood_hu),
        ("branches", p.blood_hu),
        ("myocardium", p.myocardium_hu),
        ("valve", p.valve_hu),
        ("calcium", p.calcium_hu),
    ):
        assert np.all(ph.ct.array[ph.labels.mask(name)] == hu), name


def test_vessels_leave_through_the_right_faces(coarse_phantom):
    lab = coarse_phantom.labels.array
    sides = [lab[:, :, 0], lab[:, :, -1], lab[:, 0, :], lab[:, -1, :]]
    assert all(not s.any() for s in sides)  # nothing touches the lateral/AP faces
    assert set(np.unique(lab[0])) == {0, LABELS["aorta"]}  # descending aorta, inferior face
    assert set(np.unique(lab[-1])) == {0, LABELS["branches"]}  # three branches, superior face
    _, n_top = ndimage.label(lab[-1] == LABELS["branches"])
    assert n_top == 3
    _, n_bottom = ndimage.label(lab[0] == LABELS["aorta"])
    assert n_bottom == 1
    # cross-section of the descending aorta at the inferior face ≈ π r² (voxel error < 8%)
    r = coarse_phantom.truth.parameters.descending_diameter_mm / 2
    sp = coarse_phantom.ct.spacing_mm
    assert (lab[0] == LABELS["aorta"]).sum() * sp[0] * sp[1] == pytest.approx(
        math.pi * r * r, rel=0.08
    )
    assert coarse_phantom.truth.outlet_faces == {
        "descending_aorta": "inferior",
        **{b: "superior" for b in BRANCH_NAMES},
    }


def test_contained_anatomy_keeps_a_margin(coarse_phantom):
    lab, sp = coarse_phantom.labels.array, coarse_phantom.ct.spacing_mm
    for name in ("lv_blood", "myocardium", "valve", "calcium"):
        k, j, i = np.nonzero(lab == LABELS[name])
        for idx, n, s in (
            (i, lab.shape[2], sp[0]),
            (j, lab.shape[1], sp[1]),
            (k, lab.shape[0], sp[2]),
        ):
            assert idx.min() * s >= 8.0 and (n - 1 - idx.max()) * s >= 8.0, name


def test_branches_and_aortic_segments_are_separated(coarse_phantom):
    lab, vol = coarse_phantom.labels.array, coarse_phantom.labels.volume
    sampling = vol.spacing_mm[::-1]
    cc, n = ndimage.label(lab == LABELS["branches"])
    assert n == 3
    for a in range(1, 4):
        d = ndimage.distance_transform_edt(cc != a, sampling=sampling)
        for b in range(a + 1, 4):
            assert d[cc == b].min() >= 4.0
    # below the arch, the aorta splits in the ascending part (with the root) and the descending part
    z = vol.origin_mm[2] + vol.spacing_mm[2] * np.arange(lab.shape[0])
    cut = coarse_phantom.truth.aorta_centreline_mm[:, 2].max() - 30.0
    below = (lab == LABELS["aorta"]) & (z[:, None, None] < cut)
    cc, n = ndimage.label(below)
    sizes = np.bincount(cc.ravel())[1:]
    big = np.flatnonzero(sizes > 8) + 1  # ignore voxel-sized pockets trapped by the leaflets
    assert len(big) == 2 and sizes[big - 1].sum() > 0.999 * sizes.sum()
    d = ndimage.distance_transform_edt(cc != big[0], sampling=sampling)
    assert d[cc == big[1]].min() >= 4.0


def test_threshold_separates_blood_pool_from_the_spine(coarse_phantom):
    # A 200 HU threshold must not connect the vertebral bone (bone_hu) to the blood pool.
    ct, lab = coarse_phantom.ct.array, coarse_phantom.labels.array
    cc, _ = ndimage.label(ct > 200.0)
    blood_ids = set(np.unique(cc[lab == LABELS["lv_blood"]])) - {0}
    bone = (ct > 450.0) & (lab == 0)
    assert bone.sum() > 1000
    bone_ids = set(np.unique(cc[bone])) - {0}
    assert blood_ids and bone_ids and not (blood_ids & bone_ids)


def test_orifice_and_root_truth_match_the_labels(coarse_phantom):
    truth = coarse_phantom.truth
    lm, p = truth.landmarks, truth.parameters
    assert lm.valve_orifice_area_mm2 == pytest.approx(p.valve_orifice_area_mm2, rel=1e-12)
    assert lm.valve_orifice_height_mm == p.valve_orifice_height_mm
    centre, n, _, _ = _frame(truth)
    np.testing.assert_allclose(lm.valve_orifice_centre_mm, centre + p.valve_orifice_height_mm * n)
    heights = np.arange(0.5, p.stj_height_mm, 0.25)
    areas = np.array([_lumen_area_mm2(coarse_phantom, h) for h in heights])
    # the narrowest lumen section is the orifice, at its height (± 1 voxel), area within 10%
    k = int(np.argmin(areas))
    assert areas[k] == pytest.approx(p.valve_orifice_area_mm2, rel=0.10)
    assert heights[k] == pytest.approx(p.valve_orifice_height_mm, abs=1.5)
    # the widest section of the root (sinuses) matches the sinus diameter within 3%
    assert 2.0 * math.sqrt(areas.max() / math.pi) == pytest.approx(p.sinus_diameter_mm, rel=0.03)
    assert lm.sinus_diameter_mm == pytest.approx(p.sinus_diameter_mm, abs=1e-4)


def test_orifice_area_follows_the_parameter():
    p = PhantomParameters(spacing_mm=(1.5, 1.5, 1.5), valve_orifice_area_mm2=150.0)
    ph = make_phantom(p, seed=2)
    heights = np.arange(0.5, p.stj_height_mm, 0.25)
    a_min = min(_lumen_area_mm2(ph, h) for h in heights)
    assert a_min == pytest.approx(150.0, rel=0.10)


def test_annulus_truth_is_the_hinge_plane(coarse_phantom):
    truth = coarse_phantom.truth
    lm, p = truth.landmarks, truth.parameters
    # ellipse: area = π·a·b with a·b = (D/2)², min/max = aspect ratio; perimeter by Ramanujan II
    assert lm.annulus_area_mm2 == pytest.approx(math.pi * p.annulus_diameter_mm**2 / 4, rel=1e-12)
    assert lm.annulus_diameter_mm == pytest.approx(p.annulus_diameter_mm, rel=1e-12)
    a, b = lm.annulus_max_diameter_mm / 2, lm.annulus_min_diameter_mm / 2
    assert b / a == pytest.approx(p.annulus_aspect_ratio, rel=1e-12)
    hh = 3 * (a - b) ** 2 / (a + b) ** 2
    ramanujan = math.pi * (a + b) * (1 + hh / (10 + math.sqrt(4 - hh)))
    assert lm.annulus_perimeter_mm == pytest.approx(ramanujan, rel=1e-6)
    assert lm.annulus_perimeter_diameter_mm >= lm.annulus_diameter_mm
    assert np.linalg.norm(lm.annulus_normal) == pytest.approx(1.0)
    assert math.degrees(math.acos(lm.annulus_normal[2])) == pytest.approx(p.valve_axis_tilt_deg)
    # LV blood lies below the annulus plane; valve tissue and calcium above it
    xyz = _physical_points(coarse_phantom.labels.volume)
    centre, n, _, _ = _frame(truth)
    h = (xyz - centre) @ n
    labels = coarse_phantom.labels
    assert h[labels.mask("lv_blood")].max() < 0.0
    assert h[labels.mask("valve", "calcium")].min() >= 0.0
    # the lumen section 1 mm below the hinge plane is the annulus ellipse (voxel error < 6%)
    assert _lumen_area_mm2(coarse_phantom, -1.0) == pytest.approx(lm.annulus_area_mm2, rel=0.06)
    # and the LVOT 8 mm below is a circle of lvot_diameter_mm
    d_lvot = 2 * math.sqrt(_lumen_area_mm2(coarse_phantom, -8.0) / math.pi)
    assert d_lvot == pytest.approx(lm.lvot_diameter_mm, rel=0.04)


def test_calcium_volume_and_centreline(coarse_phantom):
    truth, labels = coarse_phantom.truth, coarse_phantom.labels
    lm, p = truth.landmarks, truth.parameters
    v = labels.mask("calcium").sum() * labels.volume.voxel_volume_mm3
    assert lm.calcium_volume_mm3 == pytest.approx(v)
    # nodules are clipped to the lumen and leaflets, so the voxelised volume is 40-110% of target
    assert 0.4 * p.calcium_volume_mm3 <= v <= 1.1 * p.calcium_volume_mm3
    ct = coarse_phantom.ct.array[labels.mask("calcium")]
    assert np.median(ct) > 500.0  # calcium stays bright after the PSF
    # the centreline runs inside the lumen from the LVOT to the inferior face, 1 mm apart
    cl = lm.centreline_mm
    step = np.linalg.norm(np.diff(cl, axis=0), axis=1)
    assert 0.98 < step.min() and step.max() <= 1.0 + 1e-9  # uniform in arc length, chords ≤ 1 mm
    idx = np.rint(labels.volume.physical_to_index(cl)).astype(int)
    lab = labels.array[idx[:, 2], idx[:, 1], idx[:, 0]]
    assert np.isin(lab, LUMEN).mean() > 0.99
    assert lab[0] == LABELS["lv_blood"] and lab[-1] == LABELS["aorta"]
    assert cl[-1, 2] - coarse_phantom.ct.origin_mm[2] < 2.0  # ends at the inferior face
    assert len(truth.branch_centrelines_mm) == 3
    for bcl, r in zip(truth.branch_centrelines_mm, truth.branch_radii_mm, strict=True):
        assert 2 * r in p.branch_diameters_mm
        idx = np.rint(labels.volume.physical_to_index(bcl[-5:])).astype(int)
        assert np.all(labels.array[idx[:, 2], idx[:, 1], idx[:, 0]] == LABELS["branches"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sinus_diameter_mm", 26.0),
        ("spacing_mm", (0.0, 1.0, 1.0)),
        ("valve_orifice_area_mm2", 400.0),
        ("noise_hu", -1.0),
        ("lvot_diameter_mm", 30.0),
        ("valve_axis_tilt_deg", 80.0),
    ],
)
def test_invalid_parameters_are_refused(field, value):
    with pytest.raises(InputError, match=field):
        PhantomParameters(**{field: value})



# ---------------------------------------------------------------------------------------------
# named variants (cardiotwin.imaging.phantom.variant): as hard as a real chest CT angiogram
# ---------------------------------------------------------------------------------------------


def test_default_variant_is_the_default_phantom():
    p = PhantomParameters(spacing_mm=(2.0, 2.0, 2.0))
    a = make_phantom(p, seed=5)
    b = variant("default", seed=5, spacing_mm=(2.0, 2.0, 2.0))
    assert np.array_equal(a.ct.array, b.ct.array)
    assert np.array_equal(a.labels.array, b.labels.array)


def test_hard_variant_parameters_are_seeded_and_in_range():
    drawn = [variant_parameters("hard", seed=s) for s in range(12)]
    assert variant_parameters("hard", seed=3) == drawn[3]
    assert len({p.blood_hu for p in drawn}) == len(drawn)
    for p in drawn:
        assert 200.0 <= p.blood_hu <= 700.0
        assert 700.0 <= p.bone_hu <= 1200.0
        assert p.neighbours and p.body and p.streak_hu > 0
        assert 100.0 <= p.fov_extend_mm[4] <= 160.0  # into the abdomen
        assert p.myocardium_hu < p.blood_hu - 60.0
    p = variant_parameters("hard", seed=3, blood_hu=250.0, spacing_mm=(2.0, 2.0, 2.0))
    assert p.blood_hu == 250.0 and p.spacing_mm == (2.0, 2.0, 2.0)
    with pytest.raises(InputError, match="unknown phantom variant"):
        variant_parameters("easy")
    with pytest.raises(InputError, match="unknown PhantomParameters field"):
        variant_parameters("hard", contrast=300.0)
    with pytest.raises(InputError, match="fov_extend_mm"):
        PhantomParameters(fov_extend_mm=(0.0, 0.0, 0.0, 0.0, -5.0, 0.0))


@pytest.fixture(scope="module")
def clean_hard():
    """The hard variant without noise, blur or streaks, so every CT value is exact."""
    return variant("hard", seed=2, spacing_mm=(2.0, 2.0, 2.0), noise_hu=0.0, blur_sigma_mm=0.0,
                   streak_hu=0.0)


def test_hard_variant_neighbours_are_background_and_a_wall_apart(clean_hard):
    ph = clean_hard
    p = ph.truth.parameters
    ct, lab = ph.ct.array, ph.labels.array
    background = np.isin(lab, [0, *NEIGHBOUR_LABELS.values()])  # no left-heart/aorta label
    lv_ao = np.isin(lab, [LABELS["lv_blood"], LABELS["aorta"], LABELS["branches"]])
    d = ndimage.distance_transform_edt(~lv_ao, sampling=ph.ct.spacing_mm[::-1])
    for value in (p.right_heart_hu, p.left_atrium_hu, p.svc_hu):
        pool = background & (ct == value)
        assert pool.sum() * ph.ct.voxel_volume_mm3 * 1e-3 > 5.0  # at least 5 mL in view
        assert d[pool].min() > p.neighbour_gap_mm - 1e-6
    # bone (spine, ribs, sternum), air around the body, liver and kidneys below the heart
    assert (ct == p.bone_hu).sum() * ph.ct.voxel_volume_mm3 * 1e-3 > 50.0
    assert (ct == -1000.0).any()
    assert (ct == p.abdomen_hu).sum() > (ct == p.blood_hu).sum()
    assert (ct == p.kidney_hu).any()


def test_hard_variant_puts_the_heart_high_and_off_centre(clean_hard):
    ph = clean_hard
    ct = ph.ct
    lo = ct.index_to_physical(np.zeros(3))
    hi = ct.index_to_physical(np.array(ct.shape[::-1], dtype=float) - 1.0)
    centre = np.asarray(ph.truth.landmarks.annulus_centre_mm)
    frac = (centre - lo) / (hi - lo)
    assert frac[2] > 0.6  # the annulus is in the upper 40 % of the slices
    assert np.abs(frac[:2] - 0.5).max() > 0.08  # and not in the middle of the slices
    # the ground truth follows the FOV: the descending aorta reaches its inferior face
    assert ph.truth.aorta_centreline_mm[-1, 2] == pytest.approx(lo[2], abs=3.0)


def test_streaks_change_the_image_only_where_asked():
    kw = {"spacing_mm": (2.0, 2.0, 2.0), "noise_hu": 0.0}
    a = variant("hard", seed=1, streak_hu=0.0, **kw)
    b = variant("hard", seed=1, **kw)
    diff = b.ct.array - a.ct.array
    assert np.abs(diff).max() > 20.0
    assert np.array_equal(a.labels.array, b.labels.array)
