"""Porous regions: geometry of the indicator."""

import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.physics.brinkman import AnnularCylinder, BrinkmanRegion, native_valve_region


def test_native_plate_hole_has_the_requested_area():
    r = native_valve_region(orifice_centre_mm=(0, 0, 0), axis=(0, 0, 2), orifice_area_mm2=80.0,
                            outer_radius_mm=20.0)
    # Monte-Carlo area of the open part of the plate's mid-plane within the disc r < 20
    rng = np.random.default_rng(0)
    pts = rng.uniform(-20, 20, size=(200_000, 3))
    pts[:, 2] = 0.0
    inside_disc = np.hypot(pts[:, 0], pts[:, 1]) <= 20
    open_frac = 1 - r.indicator(pts[inside_disc]).mean()
    assert open_frac * np.pi * 400 == pytest.approx(80.0, rel=0.03)
    assert r.indicator(np.array([[0, 0, 1.5]]))[0] == 0.0  # outside the 2-mm thick plate
    assert r.indicator(np.array([[10, 0, 0.9]]))[0] == 1.0


def test_region_round_trip_and_validation():
    part = AnnularCylinder((1, 2, 3), (0, 1, 0), 2.0, 5.0, -1.0, 1.0)
    reg = BrinkmanRegion("x", (part,), 1e-9)
    assert BrinkmanRegion.from_dict(reg.to_dict()) == reg
    with pytest.raises(InputError):
        AnnularCylinder((0, 0, 0), (0, 0, 0), 0, 1, 0, 1)
    with pytest.raises(InputError):
        BrinkmanRegion("x", (part,), -1.0)
