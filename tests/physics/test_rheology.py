"""Viscosity laws: cited blood parameters, limits, UFL = NumPy, validation, and the 1-D channel
reference used to verify the Carreau–Yasuda solver."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest

from cardiotwin.errors import InputError
from cardiotwin.physics.rheology import CarreauYasuda, Newtonian, shear_rate
from cardiotwin.physics.verification import channel_flow_profile


def test_default_blood_parameters_are_cho_kensey():
    """Cho & Kensey (1991) via Johnston et al. (2004) Table 1: μ0 = 0.56 P, μ∞ = 0.0345 P,
    λ = 3.313 s, n = 0.3568 (Carreau, a = 2)."""
    cy = CarreauYasuda()
    assert (cy.mu0_pa_s, cy.mu_inf_pa_s, cy.lambda_s, cy.n, cy.a) == (0.056, 0.00345, 3.313,
                                                                      0.3568, 2.0)
    assert cy.reference_viscosity_pa_s == 0.00345
    assert Newtonian().reference_viscosity_pa_s == 3.5e-3


def test_carreau_yasuda_limits_and_closed_form():
    cy = CarreauYasuda()
    g = np.array([0.0, 1e-9, 1.0, 100.0, 1e9])
    mu = cy.viscosity(g)
    assert mu[0] == pytest.approx(0.056, rel=1e-12)            # γ̇ → 0: μ0
    assert mu[1] == pytest.approx(0.056, rel=1e-12)
    assert mu[-1] == pytest.approx(0.00345, rel=1e-3)          # γ̇ → ∞: μ∞
    # hand value at γ̇ = 1/s: μ∞ + (μ0 − μ∞)(1 + 3.313²)^((0.3568 − 1)/2)
    assert mu[2] == pytest.approx(0.00345 + 0.05255 * (1 + 3.313**2) ** (-0.3216), rel=1e-12)
    assert np.all(np.diff(mu[1:]) < 0)                          # shear thinning
    # λ → 0 (or n = 1): Newtonian with μ0
    np.testing.assert_allclose(CarreauYasuda(lambda_s=1e-12).viscosity(g[:4]), 0.056, rtol=1e-9)
    np.testing.assert_allclose(CarreauYasuda(n=1.0).viscosity(g), 0.056, rtol=1e-15)
    np.testing.assert_allclose(Newtonian(2e-3).viscosity(g), 2e-3)


def test_ufl_viscosity_and_shear_rate_match_numpy():
    """Simple shear u = (s·y, 0) has γ̇ = sqrt(2 D:D) = s exactly; ∫ μ(γ̇(u)) over the unit square
    equals μ(s) from the NumPy law."""
    import ufl
    from dolfinx import fem, mesh
    from mpi4py import MPI

    msh = mesh.create_unit_square(MPI.COMM_WORLD, 2, 2)
    V = fem.functionspace(msh, ("Lagrange", 1, (2,)))
    cy = CarreauYasuda()
    for s in (0.3, 7.0, 250.0):
        u = fem.Function(V)
        u.interpolate(lambda x, s=s: np.vstack([s * x[1], 0 * x[0]]))
        for law in (cy, Newtonian()):
            val = msh.comm.allreduce(fem.assemble_scalar(fem.form(
                law.ufl_viscosity(shear_rate(u)) * ufl.dx(domain=msh))), op=MPI.SUM)
            assert val == pytest.approx(float(law.viscosity(np.array([s]))[0]), rel=1e-12)


@pytest.mark.parametrize("kwargs", [
    {"mu0_pa_s": -1.0}, {"mu_inf_pa_s": 0.0}, {"mu0_pa_s": 0.001, "mu_inf_pa_s": 0.002},
    {"lambda_s": 0.0}, {"n": 0.0}, {"n": 1.5}, {"a": -2.0}, {"lambda_s": float("nan")},
])
def test_carreau_yasuda_rejects_bad_parameters(kwargs):
    with pytest.raises(InputError):
        CarreauYasuda(**kwargs)


def test_newtonian_rejects_bad_viscosity():
    with pytest.raises(InputError, match="viscosity_pa_s"):
        Newtonian(0.0)


def test_channel_reference_reproduces_poiseuille():
    """For a Newtonian law the 1-D reference must give the plane Poiseuille parabola
    u = 6U y(H−y)/H² and −dp/dx = 12 μ U/H² (trapezoidal/bisection error < 1e-6)."""
    H, U, mu = 0.01, 0.02, 3.5e-3
    y = np.linspace(0, H, 21)
    u, G = channel_flow_profile(Newtonian(mu), height_m=H, flow_per_depth_m2_s=U * H, y_m=y)
    np.testing.assert_allclose(u, 6 * U * y * (H - y) / H**2, atol=1e-6 * U)
    assert G == pytest.approx(12 * mu * U / H**2, rel=1e-6)


def test_channel_reference_power_law_limit():
    """With μ∞ ≈ 0 and λγ̇ ≫ 1 Carreau–Yasuda is the power law μ = μ0 (λγ̇)^(n−1), whose channel
    profile is u/U_max = 1 − |2η/H|^((n+1)/n) (Bird, Stewart & Lightfoot 2002, problem 8B.3)."""
    n, H = 0.5, 0.01
    cy = CarreauYasuda(mu0_pa_s=1.0, mu_inf_pa_s=1e-5, lambda_s=1e4, n=n, a=2.0)
    y = np.linspace(0, H, 41)
    u, _ = channel_flow_profile(cy, height_m=H, flow_per_depth_m2_s=0.05 * H, y_m=y)
    shape = 1 - np.abs(2 * (y - H / 2) / H) ** ((n + 1) / n)
    np.testing.assert_allclose(u / u.max(), shape, atol=2e-3)
