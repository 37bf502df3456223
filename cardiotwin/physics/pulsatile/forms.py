"""Variational forms of the pulsatile momentum step beyond the Newtonian operator splitting: the
Smagorinsky eddy viscosity and the vector momentum forms of a shear-thinning viscosity.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)

from cardiotwin.physics.rheology import shear_rate

__all__ = ["eddy_viscosity", "shear_thinning_momentum_forms"]


def eddy_viscosity(msh, rho_c, cs: float, B):
    """Smagorinsky eddy viscosity ``ρ (C_s Δ)² γ̇(B)`` (UFL, Pa·s), Δ = cell volume^(1/d)."""
    import ufl

    delta = ufl.CellVolume(msh) ** (1.0 / msh.topology.dim)
    return rho_c * (cs * delta) ** 2 * shear_rate(B)


def shear_thinning_momentum_forms(rheology, *, V, u_n, u_nm1, p_h, B, rho_c, dt_c, beta,
                                   Bn_minus, sigma, nrm, ds, out_ids, convection: str,
                                   backflow: bool, smagorinsky_cs: float = 0.0):
    """Vector momentum forms (step 1) for a shear-thinning viscosity ``μ(γ̇(B))``.

    With ``smagorinsky_cs > 0`` the Smagorinsky eddy viscosity ``ρ (C_s Δ)² γ̇(B)`` is added
    (``Δ`` = cell volume^(1/d)).

    Crank–Nicolson on the full stress ``2μ ε(u)`` with μ lagged at the Adams–Bashforth velocity
    ``B`` (t^{n+1/2}). At the outlets ``∫μ(∇uᵀn)·v`` is subtracted so that the natural
    condition stays ``μ ∂u/∂n = 0`` (as the Newtonian Laplace form and ``newton.py``); fully
    developed flow satisfies it. Convection, backflow and Brinkman terms as the scalar path.
    """
    import ufl
    from dolfinx import fem

    msh = V.mesh
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    mu = rheology.ufl_viscosity(shear_rate(B))
    if smagorinsky_cs > 0:
        mu = mu + eddy_viscosity(msh, rho_c, smagorinsky_cs, B)
    # μ(γ̇) is not polynomial: quadrature degree 3k − 1 as in newton.py
    md = {"quadrature_degree": 5}
    dxq = ufl.Measure("dx", domain=msh, metadata=md)

    def eps(w):
        return ufl.sym(ufl.grad(w))

    def outlet_term(w):
        return sum(mu * ufl.inner(ufl.dot(ufl.grad(w).T, nrm), v) * ds(oid, metadata=md)
                   for oid in out_ids)

    a = (rho_c / dt_c * ufl.inner(u, v) * ufl.dx + mu * ufl.inner(eps(u), eps(v)) * dxq
         - 0.5 * outlet_term(u))
    L = (rho_c / dt_c * ufl.inner(u_n, v) * ufl.dx - mu * ufl.inner(eps(u_n), eps(v)) * dxq
         + 0.5 * outlet_term(u_n) - ufl.inner(ufl.grad(p_h), v) * ufl.dx)
    if convection == "semi-implicit":
        a += 0.5 * rho_c * ufl.inner(ufl.dot(ufl.grad(u), B), v) * ufl.dx
        L -= 0.5 * rho_c * ufl.inner(ufl.dot(ufl.grad(u_n), B), v) * ufl.dx
        if backflow:
            for oid in out_ids:
                a += -beta * rho_c / 2 * Bn_minus * ufl.inner(u, v) * ds(oid)
    else:
        L -= rho_c * ufl.inner(1.5 * ufl.dot(ufl.grad(u_n), u_n)
                               - 0.5 * ufl.dot(ufl.grad(u_nm1), u_nm1), v) * ufl.dx
        if backflow:
            for oid in out_ids:
                L += beta * rho_c / 2 * Bn_minus * ufl.inner(B, v) * ds(oid)
    if sigma is not None:
        a += sigma * ufl.inner(u, v) * ufl.dx
    return fem.form(a), fem.form(L)
