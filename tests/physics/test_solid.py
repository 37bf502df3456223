"""Wall elasticity (cardiotwin.physics.solid): Lamé cylinder, neo-Hookean limit, wall meshes."""

from __future__ import annotations

import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.physics.solid import ElasticWall, Material, load_wall
from cardiotwin.physics.solid_verification import (
    convergence_order,
    lame_case,
    lame_reference,
    neo_hookean_vs_linear,
    tube_mesh,
    write_tube_wall,
)


def test_material_checks_and_lame_parameters():
    lam, mu = Material(2e6, 0.45).lame
    assert mu == pytest.approx(2e6 / 2.9)
    assert lam == pytest.approx(2e6 * 0.45 / (1.45 * 0.1))
    with pytest.raises(InputError, match="youngs_modulus_pa"):
        Material(-1.0, 0.3)
    with pytest.raises(InputError, match="poisson_ratio"):
        Material(1e6, 0.5)


def test_lame_reference_satisfies_boundary_conditions():
    ur, srr, stt = lame_reference(np.array([0.012, 0.015]), a=0.012, b=0.015, p_inner=1e4,
                                  E=2e6, nu=0.45)
    assert srr == pytest.approx([-1e4, 0.0], abs=1e-6)
    assert stt[0] == pytest.approx(1e4 * (0.012**2 + 0.015**2) / (0.015**2 - 0.012**2))
    assert ur[0] > ur[1] > 0


def test_lame_p2_converges_below_one_percent():
    """P2 (affine geometry): radial displacement and hoop stress within 1 % on the finest of
    three meshes, second order (limited by the chordal geometry)."""
    hs = [3e-3, 1.5e-3, 1e-3]
    rs = [lame_case(h, degree=2) for h in hs]
    assert rs[-1].ur_error < 0.01
    assert rs[-1].hoop_error < 0.01
    assert convergence_order(hs, [r.ur_error for r in rs]) > 1.7
    assert convergence_order(hs, [r.hoop_error for r in rs]) > 1.5


def test_gamg_with_rigid_body_modes_matches_mumps():
    direct = lame_case(3e-3, degree=2, linear_solver="mumps")
    amg = lame_case(3e-3, degree=2, linear_solver="gamg")
    assert amg.ur_error == pytest.approx(direct.ur_error, rel=1e-4)
    assert amg.hoop_error == pytest.approx(direct.hoop_error, rel=1e-4)


def test_neo_hookean_reduces_to_linear_and_softens_under_inflation():
    ul, un = neo_hookean_vs_linear(100.0, h_m=3e-3)
    assert abs(un / ul - 1) < 0.01
    # ~10 % hoop strain: the follower pressure on a thinning, widening tube inflates it more
    # than the small-strain model predicts
    ul, un = neo_hookean_vs_linear(50e3, h_m=3e-3, steps=3)
    assert un > 1.1 * ul


def test_load_wall_reads_groups_in_metres(tmp_path):
    dom = write_tube_wall(tmp_path / "tube.msh", 12.0, 14.5, 10.0, size_mm=3.0,
                          calcium_sectors=(1,))
    solid = load_wall(dom)
    assert set(solid.facet_names) == {"inner", "outer", "proximal", "distal"}
    assert solid.cell_names == {"tissue": 1, "calcium": 2}
    r = np.hypot(solid.mesh.geometry.x[:, 0], solid.mesh.geometry.x[:, 1])
    assert r.max() == pytest.approx(0.0145, rel=1e-6)
    assert r.min() == pytest.approx(0.012, rel=0.02)
    assert set(np.unique(solid.cell_tags.values)) == {1, 2}
    with pytest.raises(InputError, match="calcium"):
        ElasticWall(solid, {"tissue": Material(2e6, 0.45)})


def test_load_wall_missing_file(tmp_path):
    from cardiotwin.geometry.wall_mesh import WallDomain

    dom = WallDomain(str(tmp_path / "none.msh"), (0, 0, 0), (0, 0, 1), 2.0, 0, 0, False)
    with pytest.raises(InputError, match="not found"):
        load_wall(dom)


def test_bad_options_are_input_errors():
    solid = tube_mesh(0.012, 0.015, 0.006, h_m=3e-3)
    mats = {"tissue": Material(2e6, 0.45)}
    with pytest.raises(InputError, match="model"):
        ElasticWall(solid, mats, model="mooney")
    with pytest.raises(InputError, match="fixed"):
        ElasticWall(solid, mats, fixed={"proximal": "radial"})
    with pytest.raises(InputError, match="facet group"):
        ElasticWall(solid, mats, fixed={"inlet": "all"})
