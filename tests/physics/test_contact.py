"""Frame–wall contact (cardiotwin.physics.contact): shrink fit, no contact, ovalisation, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cardiotwin.errors import InputError, SolverError
from cardiotwin.physics.contact import ExpandingFrame, solve_frame_expansion
from cardiotwin.physics.solid import Material
from cardiotwin.physics.solid_verification import shrink_fit_case, tube_mesh

TISSUE = {"tissue": Material(2e6, 0.45, "tissue")}


def _frame(radius_mm: float, *, k0: float = 5.0, k2: float | None = None,
           z=(2.0, 8.0)) -> ExpandingFrame:
    return ExpandingFrame(axis_origin_mm=(0.0, 0.0, 0.0), axis=(0.0, 0.0, 1.0), z_min_mm=z[0],
                          z_max_mm=z[1], nominal_radius_mm=radius_mm,
                          radial_stiffness_n_per_mm=k0, ovalisation_stiffness_n_per_mm=k2)


@pytest.fixture(scope="module")
def tube():
    """Wall 12–14.5 mm, 10 mm long, 2.5 mm cells."""
    return tube_mesh(0.012, 0.0145, 0.010, h_m=2.5e-3)


@pytest.fixture(scope="module")
def oval_tube():
    return tube_mesh(0.012, 0.0145, 0.010, h_m=2.5e-3, ellipticity=0.12)


def test_shrink_fit_pressure_within_two_percent():
    r = shrink_fit_case(1.5e-3, penalty=10.0)
    assert r.error < 0.02
    assert r.wall_solves <= 6


def test_shrink_fit_penalty_error_falls_like_one_over_penalty():
    ref = shrink_fit_case(3e-3, penalty=1e4).pressure_pa
    e = [abs(shrink_fit_case(3e-3, penalty=k).pressure_pa / ref - 1) for k in (0.1, 1.0, 10.0)]
    assert e[0] > e[1] > e[2]
    assert 5 < e[0] / e[1] < 20 and 5 < e[1] / e[2] < 20  # first order in 1/penalty


def test_frame_smaller_than_lumen_gives_zero_force_not_error(tube):
    sol = solve_frame_expansion(tube, _frame(11.0), TISSUE)
    assert not sol.in_contact and sol.radial_force_n == 0.0
    assert sol.diameter_mean_mm == pytest.approx(22.0)
    assert any("does not reach the wall" in w for w in sol.warnings)
    assert sol.pressure_kpa.shape == sol.area_mm2.shape == (len(sol.points_mm),)


def test_oversized_frame_in_circular_wall(tube):
    frame = _frame(12.5, k0=5.0)
    sol = solve_frame_expansion(tube, frame, TISSUE)
    assert sol.converged and sol.in_contact
    assert 24.0 < sol.diameter_mean_mm < 25.0
    assert sol.eccentricity == pytest.approx(0.0, abs=1e-12)
    # frame equilibrium: radial force = K0 × diameter reduction
    assert sol.radial_force_n == pytest.approx(5.0 * (25.0 - sol.diameter_mean_mm), rel=2e-3)
    assert sol.max_principal_stress_kpa > 0 and 0 < sol.max_principal_strain < 0.2
    zmid = sol.points_mm[:, 2]
    assert zmid.min() >= 2.0 and zmid.max() <= 8.0
    # a short band on a tube with clamped ends bears mostly at its edges (a bending length
    # sqrt(R t) ~ 5 mm): part of the band may lift off
    assert 0.3 * sol.area_mm2.sum() < sol.contact_area_mm2 <= sol.area_mm2.sum()
    # the facet pressure map carries the radial force
    assert float(sol.pressure_kpa @ sol.area_mm2) * 1e-3 == pytest.approx(sol.radial_force_n,
                                                                          rel=0.02)
    json.dumps(sol.to_dict())


def test_oval_annulus_ovalises_a_compliant_frame(oval_tube):
    round_ = solve_frame_expansion(oval_tube, _frame(13.0), TISSUE)
    oval = solve_frame_expansion(oval_tube, _frame(13.0, k2=0.5), TISSUE)
    assert round_.eccentricity == pytest.approx(0.0, abs=1e-12)
    assert oval.eccentricity > 0.05
    # the long diameter follows the lumen's major axis (x, θ = 0)
    assert np.argmax(oval.frame_radius_mm) in (0, len(oval.frame_radius_mm) // 2)
    assert oval.contact_area_mm2 > round_.contact_area_mm2


def test_heavy_oversizing_warns(tube):
    sol = solve_frame_expansion(tube, _frame(16.0, k0=2.0), TISSUE, degree=1)
    assert any("stretch the lumen" in w for w in sol.warnings)


def test_frame_outside_the_wall_and_bad_frames_are_input_errors(tube):
    with pytest.raises(InputError, match="no inner wall facet"):
        solve_frame_expansion(tube, _frame(12.5, z=(20.0, 30.0)), TISSUE)
    with pytest.raises(InputError, match="radial_stiffness"):
        _frame(12.5, k0=-1.0)
    with pytest.raises(InputError, match="z_max_mm"):
        _frame(12.5, z=(5.0, 1.0))
    with pytest.raises(InputError, match="ends"):
        solve_frame_expansion(tube, _frame(12.5), TISSUE, ends="free")


def test_frame_round_trips_through_a_dict():
    f = _frame(12.5, k2=0.7)
    assert ExpandingFrame.from_dict(json.loads(json.dumps(f.to_dict()))) == f


def test_timeout_is_a_solver_error(tube):
    with pytest.raises(SolverError, match="timeout"):
        solve_frame_expansion(tube, _frame(12.5), TISSUE, timeout_s=1e-9)


def test_neo_hookean_contact_agrees_with_linear_at_small_strain(tube):
    frame = _frame(12.3)
    lin = solve_frame_expansion(tube, frame, TISSUE, degree=1)
    nh = solve_frame_expansion(tube, frame, TISSUE, degree=1, model="neo_hookean")
    assert nh.converged and nh.max_principal_strain < 0.02
    assert nh.radial_force_n == pytest.approx(lin.radial_force_n, rel=0.02)
    assert nh.diameter_mean_mm == pytest.approx(lin.diameter_mean_mm, abs=0.01)


def test_calcium_region_from_a_wall_file_is_stiffer(tmp_path):
    from cardiotwin.physics.solid import load_wall
    from cardiotwin.physics.solid_verification import write_tube_wall

    dom = write_tube_wall(tmp_path / "calc.msh", 12.0, 14.5, 10.0, size_mm=2.5,
                          calcium_sectors=(0,))
    solid = load_wall(dom)
    plain = solve_frame_expansion(tube_mesh(0.012, 0.0145, 0.010, h_m=2.5e-3), _frame(12.5),
                                  TISSUE)
    calc = solve_frame_expansion(solid, _frame(12.5))  # default tissue + calcium materials
    assert calc.radial_force_n > plain.radial_force_n
    assert calc.max_principal_stress_kpa > calc.max_tissue_stress_kpa
    assert calc.diameter_mean_mm < plain.diameter_mean_mm
