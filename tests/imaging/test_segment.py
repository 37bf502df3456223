"""segment_heart on the CT phantom: Dice against the phantom's exact labels, errors on bad input.

Ground truth: cardiotwin.imaging.phantom (labels evaluated analytically at voxel centres).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from cardiotwin.errors import InputError, SegmentationError
from cardiotwin.imaging.dicom import read_series
from cardiotwin.imaging.metrics import dice, hausdorff_mm
from cardiotwin.imaging.phantom import PhantomParameters, make_phantom, variant
from cardiotwin.imaging.segment import (
    SegmentationSettings,
    descending_aorta_mask,
    estimate_intensities,
    find_descending_aorta,
    segment_heart,
)
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


# ---------------------------------------------------------------------------------------------
# the hard phantom variant: contrast 200–700 HU, neighbouring blood pools, bone, streaks, the
# heart high and off-centre in a field of view reaching into the abdomen
# ---------------------------------------------------------------------------------------------

HARD_SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def hard_segmented():
    out = {}
    for seed in HARD_SEEDS:
        ph = variant("hard", seed=seed, spacing_mm=(1.5, 1.5, 1.5))
        out[seed] = (ph, segment_heart(ph.ct))
    return out


@pytest.mark.parametrize("seed", HARD_SEEDS)
def test_hard_variant_dice(hard_segmented, seed):
    ph, seg = hard_segmented[seed]
    t, s = ph.labels, seg.labels
    # Measured at 1.5 mm (seeds 0-3, blood 420/292/517/210 HU): LV 0.994-0.998,
    # aorta 0.977-0.999, blood pool 0.986-1.000. The histogram peak alone picked 152 HU
    # (the liver) on seeds 0, 1 and 3.
    assert seg.report["intensities"]["method"] == "descending_aorta"
    assert seg.report["blood_component"] == "connected to the descending aorta"
    assert dice(t.mask("lv_blood"), s.mask("lv_blood")) >= 0.95
    assert dice(t.mask("aorta", "branches"), s.mask("aorta")) >= 0.95
    assert dice(t.mask("lv_blood", "aorta", "branches"), s.mask("lv_blood", "aorta")) >= 0.97
    # the labels are in the heart, not in the abdomen below it
    lv_z = ph.ct.index_to_physical(np.argwhere(s.mask("lv_blood"))[:, ::-1].astype(float))[:, 2]
    assert abs(np.median(lv_z) - ph.truth.lv_centre_mm[2]) < 10.0


def test_descending_aorta_found_in_the_benchmark_field_of_view():
    # The 512 x 512 x 300 benchmark's field of view (docs/performance.md, hard variant, seed 0)
    # at 1.5 mm: the scan ends 4 mm below the anatomy, so the descending aorta below the arch is
    # a tube shorter than the sternum (bone, 1151 HU) and the longest-tube rule used to take the
    # sternum for the aorta ("heart not in the field of view"). The SVC (733 HU) is denser than
    # the blood too. The finder now keeps only tubes placed beside the spine.
    ph = variant("hard", seed=0, spacing_mm=(1.5, 1.5, 1.5),
                 fov_extend_mm=(52.0, 35.1, 37.0, 28.5, 3.8, 0.0))
    p = ph.truth.parameters
    assert p.bone_hu > p.svc_hu > 1.5 * p.blood_hu
    track = find_descending_aorta(ph.ct)
    idx = np.rint(ph.ct.physical_to_index(track.centres_mm)).astype(int)
    on = ph.labels.mask("aorta")[idx[:, 2], idx[:, 1], idx[:, 0]]
    assert on.mean() >= 0.9
    assert track.median_hu == pytest.approx(p.blood_hu, abs=15.0)
    seg = segment_heart(ph.ct)
    assert dice(ph.labels.mask("lv_blood"), seg.labels.mask("lv_blood")) >= 0.95
    assert dice(ph.labels.mask("aorta", "branches"), seg.labels.mask("aorta")) >= 0.95


@pytest.mark.parametrize("blood_hu", [200.0, 300.0, 450.0, 600.0, 700.0])
def test_blood_pool_estimate_over_contrasts(blood_hu):
    ph = variant("hard", seed=11, spacing_mm=(1.5, 1.5, 1.5), blood_hu=blood_hu,
                 myocardium_hu=60.0 + 0.15 * blood_hu)
    inten = estimate_intensities(ph.ct)
    assert inten.method == "descending_aorta"
    # Measured errors: within 8 HU (one 4-HU histogram bin plus noise) at 200-700 HU.
    assert inten.blood_peak_hu == pytest.approx(blood_hu, abs=15.0)
    assert inten.aorta.median_hu == pytest.approx(blood_hu, abs=15.0)
    assert 8.0 <= inten.aorta.radius_mm <= 12.0  # inscribed radius of the 22 mm descending aorta
    assert inten.blood_threshold_hu < blood_hu - 2.0 * ph.truth.parameters.noise_hu
    assert inten.calcium_threshold_hu > blood_hu + 3.0 * ph.truth.parameters.noise_hu


def test_histogram_alone_fails_on_the_hard_variant():
    # The failure seen on a real CT angiogram: the largest peak in 150-800 HU is soft tissue.
    ph = variant("hard", seed=0, spacing_mm=(1.5, 1.5, 1.5))
    old = estimate_intensities(ph.ct, settings=SegmentationSettings(find_aorta_first=False))
    new = estimate_intensities(ph.ct)
    assert old.method == "histogram" and old.notes
    assert abs(old.blood_peak_hu - ph.truth.parameters.blood_hu) > 100.0
    assert new.blood_peak_hu == pytest.approx(ph.truth.parameters.blood_hu, abs=15.0)


def test_no_aorta_falls_back_to_the_histogram_and_says_so():
    rng = np.random.default_rng(1)
    a = (40.0 + 18.0 * rng.standard_normal((40, 80, 80))).astype(np.float32)
    a[10:30, 20:60, 20:60] = 300.0  # a bright box: not a round tube
    inten = estimate_intensities(Volume(a, (1.5,) * 3, (0.0,) * 3))
    assert inten.method == "histogram" and inten.aorta is None
    assert "no descending aorta" in inten.notes[0]


# ---------------------------------------------------------------------------------------------
# a real abdominal CT (venous phase, no heart): TotalSegmentator's labels, 52 = aorta
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def abdominal_ct(shared_data):
    nib = pytest.importorskip("nibabel")
    folder = shared_data / "dicom" / "totalseg_ct_j2k"
    ct = read_series(folder / "dicom")
    img = nib.load(folder / "labels.nii.gz")
    lab = np.asarray(img.dataobj)
    nk, nj, ni = ct.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    lps = ct.index_to_physical(np.stack([i, j, k], -1).reshape(-1, 3).astype(float))
    ras = lps * np.array([-1.0, -1.0, 1.0])  # the NIfTI affine maps to RAS
    vox = np.rint(np.c_[ras, np.ones(len(ras))] @ np.linalg.inv(img.affine).T)[:, :3].astype(int)
    aorta = (lab[vox[:, 0], vox[:, 1], vox[:, 2]] == 52).reshape(ct.shape)
    return ct, aorta


def test_real_abdominal_ct_aorta_found(abdominal_ct):
    ct, truth = abdominal_ct
    inten = estimate_intensities(ct)
    assert inten.method == "descending_aorta"
    assert inten.aorta.median_hu == pytest.approx(150.0, abs=20.0)  # venous phase
    found = descending_aorta_mask(ct, inten)
    # Measured Dice 0.857: the label includes the aortic wall (~1.5 mm) and the mask is the
    # lumen; 98 % of the mask lies inside the label.
    assert dice(truth, found) >= 0.82
    assert (found & truth).sum() / found.sum() >= 0.95


def test_real_abdominal_ct_refused_without_a_heart(abdominal_ct):
    ct, _ = abdominal_ct
    with pytest.raises(SegmentationError, match="heart is not in the field of view") as err:
        segment_heart(ct)
    assert "covers the heart" in str(err.value)
