"""Placement of every device kind: poses from landmarks, the lumen check, sites never guessed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import trimesh

from cardiotwin.devices.placement import (
    DEFAULT_VALVE_DEPTH_MM,
    DevicePlacement,
    centreline_point,
    check_pose_in_lumen,
    device_region,
    place_device,
)
from cardiotwin.errors import DeviceError
from tests.devices.placement_fixtures import (
    ARC_RADIUS_MM,
    CATALOG,
    CENTRE,
    arc_point,
    curved_centreline,
    landmarks,
)

BALLOON = "balloon_expandable_thv"


def _lumen(radius_mm: float, *, offset_mm=(0.0, 0.0), ends: str = "capped") -> trimesh.Trimesh:
    """A straight cylindrical lumen along z around the annulus centre (shifted by ``offset_mm``),
    from 20 mm below to 60 mm above the annulus; ``ends`` "capped" or "open", "-inverted" with
    the normals facing into the lumen."""
    m = trimesh.creation.cylinder(radius=radius_mm, height=80.0, sections=256)
    m.apply_translation(CENTRE + [offset_mm[0], offset_mm[1], 20.0])
    faces = m.faces if ends.startswith("capped") else m.faces[np.abs(m.face_normals[:, 2]) < 0.5]
    return trimesh.Trimesh(m.vertices, faces[:, ::-1] if ends.endswith("inverted") else faces)


# ---- valves ---------------------------------------------------------------------------------

def test_valve_pose_is_unchanged_and_the_centreline_is_accepted():
    lms = landmarks(23.0, centreline=curved_centreline())
    pl = place_device(lms, family=BALLOON, nominal_diameter_mm=23.0, depth_mm=4.0)
    np.testing.assert_allclose(pl.inflow_centre_mm, CENTRE - [0, 0, 4.0], atol=1e-12)
    np.testing.assert_allclose(pl.axis, (0, 0, 1), atol=1e-12)
    np.testing.assert_allclose(pl.outflow_centre_mm, CENTRE + [0, 0, 14.0], atol=1e-12)
    assert pl.kind == "transcatheter_aortic_valve" and pl.arc_length_mm is None
    # SAPIEN-3-like 23 mm: inner radius 11.5 − 0.6 mm wall, orifice inner·sqrt(0.65)
    assert pl.inner_radius_mm == pytest.approx(10.9)
    assert pl.orifice_radius_mm == pytest.approx(10.9 * math.sqrt(0.65))


def test_self_expanding_valve_uses_its_inflow_diameter_and_nominal_depth():
    pl = place_device(landmarks(25.0), family="self_thv", nominal_diameter_mm=26.0,
                      catalog=CATALOG)
    assert pl.depth_mm == 4.0
    assert pl.inner_radius_mm == pytest.approx(13.0 - 0.5)
    assert pl.skirt_height_mm == 12.0 and pl.frame_height_mm == 45.0
    assert pl.shape.expansion == "self" and pl.shape.outflow_diameter_mm == 34.0


def test_valve_depth_falls_back_to_the_expansion_default():
    fam = dataclasses.replace(CATALOG.family("self_thv"), nominal_depth_mm=None)
    cat = dataclasses.replace(CATALOG, families={"self_thv": fam})
    pl = place_device(landmarks(25.0), family="self_thv", nominal_diameter_mm=26.0, catalog=cat)
    assert pl.depth_mm == DEFAULT_VALVE_DEPTH_MM["self"] == 4.0


def test_placement_round_trips_through_its_stored_form():
    pl = place_device(landmarks(), family="self_thv", nominal_diameter_mm=26.0, catalog=CATALOG,
                      tilt_deg=5.0, rotation_deg=40.0)
    back = DevicePlacement.from_dict(pl.to_dict())
    assert back == pl
    assert pl.to_dict()["orifice_area_mm2"] == pytest.approx(pl.orifice_area_mm2)


def test_valve_beside_the_centreline_is_refused_naming_the_distance():
    # the measured centreline runs 20 mm to the side of where the valve would sit
    shifted = curved_centreline() + [20.0, 0.0, 0.0]
    lms = landmarks(23.0, centreline=shifted)
    with pytest.raises(DeviceError, match=r"inflow centre lies 20\.0 mm from the aortic "
                       r"centreline, beyond the widest measured lumen radius 16\.0 mm"):
        place_device(lms, family=BALLOON, nominal_diameter_mm=23.0, depth_mm=4.0)


@pytest.mark.parametrize("ends", ["capped", "capped-inverted", "open", "open-inverted"])
def test_valve_outside_the_lumen_surface_is_refused_naming_the_distance(ends):
    lms = landmarks(23.0)
    # inside a 12 mm lumen around the annulus: accepted
    place_device(lms, family=BALLOON, nominal_diameter_mm=23.0, depth_mm=4.0,
                 lumen_surface=_lumen(12.0, ends=ends))
    # a lumen whose axis is 20 mm away: the inflow centre is 20 − 12 = 8 mm outside its wall
    with pytest.raises(DeviceError, match=r"inflow centre \(10\.0, -5\.0, 36\.0\) mm lies 8\.0 mm "
                       "outside the lumen surface"):
        place_device(lms, family=BALLOON, nominal_diameter_mm=23.0, depth_mm=4.0,
                     lumen_surface=_lumen(12.0, offset_mm=(20.0, 0.0), ends=ends))


def test_tilted_valve_leaving_a_narrow_lumen_is_refused_at_its_outflow():
    # 20° tilt over an 18 mm frame moves the outflow centre 18·sin 20° = 6.16 mm off the axis;
    # in a 5 mm lumen that is 1.2 mm outside the wall
    with pytest.raises(DeviceError, match=r"outflow centre .* lies 1\.2 mm outside"):
        place_device(landmarks(), family=BALLOON, nominal_diameter_mm=23.0, depth_mm=0.0,
                     tilt_deg=20.0, lumen_surface=_lumen(5.0))


def test_check_pose_in_lumen_without_any_reference_accepts():
    check_pose_in_lumen({"inflow centre": (1e3, 0, 0)})


# ---- stents ---------------------------------------------------------------------------------

@pytest.mark.parametrize("s", [0.0, 15.0, 30.0])
def test_stent_sits_at_its_arc_length_along_the_centreline(s):
    lms = landmarks(centreline=curved_centreline())
    pl = place_device(lms, family="stent", nominal_diameter_mm=20.0, arc_length_mm=s,
                      catalog=CATALOG)
    # proximal end at arc length s on the 40 mm arc; axis along the chord over the 30 mm stent
    p0, p1 = arc_point(s), arc_point(s + 30.0)
    np.testing.assert_allclose(pl.inflow_centre_mm, p0, atol=1e-4)
    np.testing.assert_allclose(pl.axis, (p1 - p0) / np.linalg.norm(p1 - p0), atol=1e-6)
    # chord of a circular arc: 2R·sin(L / 2R) from the proximal end
    assert np.linalg.norm(p1 - p0) == pytest.approx(2 * ARC_RADIUS_MM * math.sin(30.0 / 80.0))
    assert pl.kind == "aortic_stent" and pl.arc_length_mm == s and pl.depth_mm == 0.0


def test_centreline_point_is_measured_from_the_annulus_plane():
    lms = landmarks(centreline=curved_centreline())
    np.testing.assert_allclose(centreline_point(lms, 0.0), CENTRE, atol=1e-9)
    np.testing.assert_allclose(centreline_point(lms, -6.0), CENTRE - [0, 0, 6.0], atol=1e-9)
    with pytest.raises(DeviceError, match=r"arc length 70 mm .* runs -10\.0 to 62\.8"):
        centreline_point(lms, 70.0)


@pytest.mark.parametrize("kw, msg", [
    ({}, "needs arc_length_mm"),
    ({"arc_length_mm": 40.0}, r"distal end at arc length 70 mm \(40 mm \+ 30 mm stent\) .* "
     r"ends 62\.8 mm .* at most 32\.8 mm along"),
    ({"arc_length_mm": 5.0, "depth_mm": 3.0}, "depth_mm does not apply to aortic stents"),
])
def test_stent_position_errors_name_the_value(kw, msg):
    lms = landmarks(centreline=curved_centreline())
    with pytest.raises(DeviceError, match=msg):
        place_device(lms, family="stent", nominal_diameter_mm=20.0, catalog=CATALOG, **kw)


def test_stent_without_a_centreline_is_refused():
    with pytest.raises(DeviceError, match="no aortic centreline"):
        place_device(landmarks(), family="stent", nominal_diameter_mm=20.0, arc_length_mm=5.0,
                     catalog=CATALOG)


def test_stent_region_is_a_thin_open_tube():
    lms = landmarks(centreline=curved_centreline())
    pl = place_device(lms, family="stent", nominal_diameter_mm=20.0, arc_length_mm=10.0,
                      catalog=CATALOG)
    region = device_region(pl, lms)
    c, a = np.asarray(pl.inflow_centre_mm), np.asarray(pl.axis)
    e = np.cross(a, [0.0, 1.0, 0.0])
    e /= np.linalg.norm(e)
    assert region.indicator(c + 15.0 * a)[0] == 0.0                     # lumen open
    assert region.indicator(c + 15.0 * a + 9.8 * e)[0] == 1.0           # in the 9.5–10 mm wall
    assert region.indicator(c + 15.0 * a + 9.0 * e)[0] == 0.0


# ---- occluders ------------------------------------------------------------------------------

@pytest.mark.parametrize("family, d, args", [
    ("laa", 22.0, "ostium_centre_mm .* ostium_normal"),
    ("septal", 12.0, "defect_centre_mm .* defect_normal"),
])
def test_occluders_without_a_user_site_are_refused_saying_what_to_pass(family, d, args):
    with pytest.raises(DeviceError, match=f"does not measure yet \\(it is not guessed\\): pass "
                       f"{args}"):
        place_device(landmarks(), family=family, nominal_diameter_mm=d, catalog=CATALOG)
    with pytest.raises(DeviceError, match="not guessed"):   # half a site is no site
        place_device(None, family=family, nominal_diameter_mm=d, catalog=CATALOG,
                     **({"ostium_centre_mm": (0, 0, 0)} if family == "laa"
                        else {"defect_centre_mm": (0, 0, 0)}))


def test_laa_occluder_sits_on_the_given_ostium():
    n = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
    pl = place_device(None, family="laa", nominal_diameter_mm=22.0, catalog=CATALOG,
                      ostium_centre_mm=(-30.0, 20.0, 60.0), ostium_normal=(2.0, 2.0, 0.0),
                      depth_mm=3.0)
    np.testing.assert_allclose(pl.inflow_centre_mm, np.array([-30.0, 20.0, 60.0]) + 3.0 * n)
    np.testing.assert_allclose(pl.axis, n, atol=1e-12)
    # far end: the 4 mm waist plus the 7.5 mm lobe into the appendage
    np.testing.assert_allclose(pl.outflow_centre_mm, np.asarray(pl.inflow_centre_mm) + 11.5 * n)
    with pytest.raises(DeviceError, match="not modelled in the flow yet"):
        device_region(pl, landmarks())


def test_laa_occluder_reaching_out_of_the_lumen_is_refused():
    # a 12 mm lumen along z: an occluder pointing sideways leaves it at its lobe end
    with pytest.raises(DeviceError, match=r"far end .* lies 4\.5 mm outside the lumen surface"):
        place_device(None, family="laa", nominal_diameter_mm=22.0, catalog=CATALOG,
                     ostium_centre_mm=tuple(CENTRE + [5.0, 0.0, 10.0]),
                     ostium_normal=(1.0, 0.0, 0.0), lumen_surface=_lumen(12.0))


def test_septal_occluder_is_centred_on_the_defect():
    pl = place_device(None, family="septal", nominal_diameter_mm=12.0, catalog=CATALOG,
                      defect_centre_mm=(0.0, 10.0, 70.0), defect_normal=(0.0, 0.0, -1.0),
                      tilt_deg=10.0, rotation_deg=0.0)
    np.testing.assert_allclose(pl.inflow_centre_mm, (0.0, 10.0, 70.0))
    assert math.degrees(math.acos(-pl.axis[2])) == pytest.approx(10.0)


@pytest.mark.parametrize("family, d, kw, msg", [
    (BALLOON, 23.0, {"ostium_centre_mm": (0, 0, 0)}, "apply to LAA occluders"),
    ("laa", 22.0, {"ostium_centre_mm": (0, 0, 0), "ostium_normal": (0, 0, 1),
                   "defect_normal": (0, 0, 1)}, "apply to septal occluders"),
    (BALLOON, 23.0, {"arc_length_mm": 5.0}, "arc_length_mm applies to aortic stents"),
    ("laa", 22.0, {"ostium_centre_mm": (0, 0, 0), "ostium_normal": (0, 0, 0)},
     "ostium_normal must be a non-zero 3-vector"),
    ("septal", 12.0, {"defect_centre_mm": (0, 0, 0), "defect_normal": (0, 0, 1),
                      "depth_mm": 12.0}, "offset depth_mm 12 mm is outside -10–10 mm"),
    ("laa", 22.0, {"ostium_centre_mm": (0, 0, 0), "ostium_normal": (0, 0, 1),
                   "tilt_deg": 30.0}, "tilt 30°"),
])
def test_site_arguments_for_the_wrong_kind_are_refused(family, d, kw, msg):
    with pytest.raises(DeviceError, match=msg):
        place_device(landmarks(), family=family, nominal_diameter_mm=d,
                     catalog=None if family == BALLOON else CATALOG, **kw)


def test_valve_needs_landmarks():
    with pytest.raises(DeviceError, match="needs the aortic-root landmarks"):
        place_device(None, family=BALLOON, nominal_diameter_mm=23.0)
