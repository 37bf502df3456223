"""Schäfer–Turek 2D-1 on three refined meshes (see README.md beside this file)."""

from __future__ import annotations

import pytest

MESHES = [(0.02, 0.005), (0.015, 0.00375), (0.01, 0.0025)]


@pytest.mark.slow
@pytest.mark.validation
def test_schafer_turek_2d1_mesh_study():
    import dolfinx_solver  # noqa: F401

    from cardiotwin.physics import verification as ver
    from cardiotwin.physics.newton import solve_newton
    from cardiotwin.physics.rheology import Newtonian

    rows = []
    for h, hc in MESHES:
        fm = ver.cylinder_channel_2d(h, h_cylinder_m=hc, geometry_order=2)
        r = solve_newton(fm, inflow=ver.schafer_turek_inflow(), reference_length_m=0.1,
                         density_kg_m3=ver.ST_DENSITY_KG_M3,
                         rheology=Newtonian(ver.ST_VISCOSITY_PA_S))
        out = ver.schafer_turek_2d1(r)
        rows.append((h, r.n_dofs, r.iterations, out))
        print(f"h={h} dofs={r.n_dofs} its={r.iterations} "
              f"c_D={out['drag_coefficient']:.8f} ({out['drag_coefficient_rel_error']:+.1e}) "
              f"c_L={out['lift_coefficient']:.8f} ({out['lift_coefficient_rel_error']:+.1e}) "
              f"dp={out['pressure_difference_pa']:.8f} ({out['pressure_difference_pa_rel_error']:+.1e})")
    # Reference values: John & Matthies (2001) / FEATFLOW, in ver.SCHAFER_TUREK_2D1
    for _, _, its, out in rows:
        for k in ("drag_coefficient", "lift_coefficient", "pressure_difference_pa"):
            assert abs(out[f"{k}_rel_error"]) < 0.01, (k, out)
        assert its[-1] <= 6
    finest = rows[-1][3]
    assert abs(finest["drag_coefficient_rel_error"]) < 1e-4
    assert abs(finest["lift_coefficient_rel_error"]) < 1e-3
