"""Observed order of the steady solver on Hagen–Poiseuille flow (see README.md beside this file)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.physics.conftest import make_pipe

R_MM, L_MM = 5.0, 30.0
MU, RHO = 3.5e-3, 1060.0
U_MEAN = 10 * MU / (RHO * 2 * R_MM * 1e-3)  # Re = 10 on the diameter
Q = U_MEAN * math.pi * (R_MM * 1e-3) ** 2


def _l2_error(domain) -> float:
    import dolfinx_solver  # noqa: F401
    import ufl
    from dolfinx import fem
    from mpi4py import MPI

    from cardiotwin.physics.mesh import load_domain
    from cardiotwin.physics.steady import solve_steady
    from cardiotwin.physics.windkessel import OutletResistance

    fm = load_domain(domain)
    res = solve_steady(fm, inflow_m3_s=Q, outlets={"out": OutletResistance(0.0)})
    msh = fm.mesh
    x = ufl.SpatialCoordinate(msh)
    R = R_MM * 1e-3
    u_ex = ufl.as_vector((0, 0, 2 * U_MEAN * (1 - (x[0] ** 2 + x[1] ** 2) / R**2)))
    mid = ufl.conditional(ufl.And(ufl.gt(x[2], L_MM / 3e3), ufl.lt(x[2], 2 * L_MM / 3e3)), 1.0, 0.0)
    err = msh.comm.allreduce(fem.assemble_scalar(fem.form(mid * ufl.inner(res.u - u_ex, res.u - u_ex) * ufl.dx)), op=MPI.SUM)
    ref = msh.comm.allreduce(fem.assemble_scalar(fem.form(mid * ufl.inner(u_ex, u_ex) * ufl.dx)), op=MPI.SUM)
    return math.sqrt(err / ref)


@pytest.mark.validation
def test_poiseuille_observed_order(tmp_path):
    hs = [2.5, 5 / 3, 1.25, 5 / 6]
    errors = [_l2_error(make_pipe(tmp_path / f"pipe{i}.msh", radius_mm=R_MM, length_mm=L_MM, h_mm=h))
              for i, h in enumerate(hs)]
    order = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    print("h (mm):", hs, "L2 errors:", [f"{e:.4f}" for e in errors], f"observed order {order:.2f}")
    assert all(e2 < e1 for e1, e2 in zip(errors[:-1], errors[1:], strict=True)), errors
    assert abs(order - 2.0) < 0.4, order
