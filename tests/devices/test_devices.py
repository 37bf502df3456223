"""Device catalog, sizing and placement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cardiotwin.devices.catalog import load_catalog
from cardiotwin.devices.placement import device_region, place_device
from cardiotwin.devices.sizing import assess_sizes
from cardiotwin.errors import ConfigError, DeviceError
from cardiotwin.geometry.landmarks import AorticRootLandmarks

FAMILY = "balloon_expandable_thv"


def _landmarks(diameter_mm: float = 23.0) -> AorticRootLandmarks:
    area = math.pi * (diameter_mm / 2) ** 2
    return AorticRootLandmarks(
        annulus_centre_mm=(10.0, -5.0, 40.0), annulus_normal=(0.0, 0.0, 1.0),
        annulus_area_mm2=area, annulus_perimeter_mm=math.pi * diameter_mm,
        annulus_diameter_mm=diameter_mm, annulus_perimeter_diameter_mm=diameter_mm,
        annulus_min_diameter_mm=diameter_mm, annulus_max_diameter_mm=diameter_mm,
        lvot_diameter_mm=diameter_mm - 2, sinus_diameter_mm=diameter_mm + 9,
        valve_orifice_area_mm2=80.0, valve_orifice_centre_mm=(10.0, -5.0, 50.0),
        valve_orifice_height_mm=10.0, calcium_volume_mm3=300.0)


def test_catalog_sizes_and_sources():
    fam = load_catalog().family(FAMILY)
    # SAPIEN 3 sizing chart (IFU): 20/23/26/29 mm over 273–683 mm² of CT annulus area.
    assert [s.nominal_diameter_mm for s in fam.sizes] == [20, 23, 26, 29]
    assert fam.sizes[0].annulus_area_min_mm2 == 273 and fam.sizes[-1].annulus_area_max_mm2 == 683
    assert "SAPIEN 3" in fam.sizing_source


def test_unknown_family_and_size_are_refused_with_the_alternatives():
    cat = load_catalog()
    with pytest.raises(DeviceError, match="known families: balloon_expandable_thv"):
        cat.family("nonexistent")
    with pytest.raises(DeviceError, match="available sizes: 20, 23, 26, 29"):
        cat.family(FAMILY).size(24)


def test_bad_catalog_file_names_the_key(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[families.x]\nlabel='x'\n")
    with pytest.raises(ConfigError, match="families.x.kind"):
        load_catalog(p)


@pytest.mark.parametrize("diameter, expected", [(19.5, 20.0), (22.0, 23.0), (25.0, 26.0), (28.0, 29.0)])
def test_recommended_size_follows_the_area_chart(diameter, expected):
    rep = assess_sizes(_landmarks(diameter), load_catalog().family(FAMILY))
    assert rep.recommended_mm == expected
    row = rep.assessment(expected)
    # area oversizing by definition: (π(d/2)² / A − 1)·100
    assert row.area_oversizing_pct == pytest.approx(((expected / diameter) ** 2 - 1) * 100, rel=1e-9)


def test_annulus_outside_every_size_gets_no_recommendation():
    rep = assess_sizes(_landmarks(32.0), load_catalog().family(FAMILY))
    assert rep.recommended_mm is None and "outside every size" in rep.warnings[0]
    small = rep.assessment(20.0)
    assert any("undersized" in w for w in small.warnings) and small.gap_area_mm2 > 0


def test_placement_pose_and_region():
    lms = _landmarks(23.0)
    pl = place_device(lms, family=FAMILY, nominal_diameter_mm=23.0, depth_mm=4.0)
    np.testing.assert_allclose(pl.inflow_centre_mm, (10.0, -5.0, 36.0), atol=1e-12)
    np.testing.assert_allclose(pl.axis, (0, 0, 1), atol=1e-12)
    region = device_region(pl, lms)
    c = np.array([10.0, -5.0, 36.0])
    # on the axis inside the frame: open; in the sealing ring just inside the wall: blocked
    assert region.indicator(c + [0, 0, 5.0])[0] == 0.0
    assert region.indicator(c + [11.3, 0, 5.0])[0] == 1.0
    # at the leaflet level, inside the orifice open and outside it closed
    z_leaf = pl.frame_height_mm - 4.0  # leaflet plate centre (4 mm thick)
    assert region.indicator(c + [0.5 * pl.orifice_radius_mm, 0, z_leaf])[0] == 0.0
    assert region.indicator(c + [0.5 * (pl.orifice_radius_mm + pl.inner_radius_mm), 0, z_leaf])[0] == 1.0
    # larger valve → larger orifice
    pl26 = place_device(lms, family=FAMILY, nominal_diameter_mm=26.0)
    assert pl26.orifice_area_mm2 > pl.orifice_area_mm2


def test_tilt_rotates_the_axis_by_the_requested_angle():
    pl = place_device(_landmarks(), family=FAMILY, nominal_diameter_mm=23.0, tilt_deg=10.0,
                      rotation_deg=90.0)
    assert math.degrees(math.acos(np.dot(pl.axis, (0, 0, 1)))) == pytest.approx(10.0, abs=1e-9)


@pytest.mark.parametrize("kw, msg", [({"depth_mm": 25.0}, "depth"), ({"tilt_deg": 45.0}, "tilt")])
def test_pose_outside_the_landing_zone_is_refused(kw, msg):
    with pytest.raises(DeviceError, match=msg):
        place_device(_landmarks(), family=FAMILY, nominal_diameter_mm=23.0, **kw)
