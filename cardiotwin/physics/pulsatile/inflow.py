"""The inflow Dirichlet condition of the pulsatile solver: a velocity expression, or a flow
waveform with a parabolic, plug or Womersley profile normalised to the exact discrete flux.
"""

from __future__ import annotations

import math

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError
from cardiotwin.physics.pulsatile.settings import Inflow

__all__ = ["make_inflow"]


def make_inflow(fm, V, g, inflow: Inflow, in_dofs, wall_dofs, facets, ds, nrm, blood, s, *,
                 mu_pa_s: float | None = None):
    """Return ``update(t)`` that sets the inflow Dirichlet function ``g`` at time ``t``."""
    import ufl
    from dolfinx import fem
    from scipy.spatial import cKDTree

    msh = fm.mesh
    comm = msh.comm
    gdim = msh.geometry.dim
    tag = fm.names[inflow.boundary]
    if inflow.velocity is not None:
        tdim = msh.topology.dim
        msh.topology.create_connectivity(tdim - 1, tdim)
        f2c = msh.topology.connectivity(tdim - 1, tdim)
        cells = np.unique(np.concatenate([f2c.links(f) for f in facets[inflow.boundary]])
                          if len(facets[inflow.boundary]) else np.zeros(0, dtype=np.int32)
                          ).astype(np.int32)
        vel = inflow.velocity

        def update_velocity(t: float) -> None:
            g.interpolate(lambda x: vel(x, t), cells0=cells)
            g.x.scatter_forward()

        return update_velocity

    X = V.tabulate_dof_coordinates()
    rim_blocks = np.intersect1d(in_dofs, wall_dofs)
    rim = np.concatenate([r for r in comm.allgather(X[rim_blocks]) if len(r)] or [np.zeros((0, 3))])
    if len(rim) < 2:
        raise InputError(f"inflow boundary {inflow.boundary!r} shares no rim with the no-slip "
                         "boundaries; a flow-rate profile needs one (or give Inflow.velocity)")
    d = cKDTree(rim).query(X[in_dofs])[0] if len(in_dofs) else np.zeros(0)
    dmax = comm.allreduce(float(d.max()) if len(d) else 0.0, op=MPI.MAX)
    ncomp = [comm.allreduce(fem.assemble_scalar(fem.form(nrm[i] * ds(tag))), op=MPI.SUM)
             for i in range(gdim)]
    direction = -np.asarray(ncomp) / np.linalg.norm(ncomp)
    flux_form = fem.form(ufl.dot(g, nrm) * ds(tag))

    def unit_flux(phi_nodes: np.ndarray) -> float:
        g.x.array[:] = 0.0
        g.x.array.reshape(-1, gdim)[in_dofs] = phi_nodes[:, None] * direction[None, :]
        g.x.scatter_forward()
        return -comm.allreduce(fem.assemble_scalar(flux_form), op=MPI.SUM)

    qfun = inflow.flow_m3_s
    if inflow.profile in ("parabolic", "plug"):
        phi = d * (2 * dmax - d) / dmax**2 if inflow.profile == "parabolic" else \
            (d > 1e-9 * dmax).astype(float)
        phi = phi / unit_flux(phi)
        shape = phi[:, None] * direction[None, :]

        def update_flow(t: float) -> None:
            g.x.array.reshape(-1, gdim)[in_dofs] = float(qfun(t)) * shape
            g.x.scatter_forward()

        return update_flow

    # Womersley: one profile per Fourier mode (r = R − distance to the rim, R = max distance)
    from cardiotwin.physics.waveforms import (
        womersley_flow_factor,
        womersley_number,
        womersley_shape,
    )

    coeffs = np.asarray(qfun.fourier(s.womersley_harmonics), dtype=complex)
    period = float(qfun.period_s)
    omega = 2 * math.pi / period
    radius = dmax
    r = np.clip((radius - d) / radius, 0.0, 1.0)
    modes = []
    for k, c in enumerate(coeffs):
        if k == 0:
            sh = (1.0 - r**2).astype(complex)
        else:
            alpha = womersley_number(radius, k * omega, density_kg_m3=blood.density_kg_m3,
                                     viscosity_pa_s=blood.viscosity_pa_s if mu_pa_s is None
                                     else mu_pa_s)
            sh = womersley_shape(r, alpha) / womersley_flow_factor(alpha)
        flux = unit_flux(sh.real) + 1j * unit_flux(sh.imag)
        modes.append(c * sh / flux)
    modes_arr = np.array(modes)          # (n_modes, n_nodes)
    kk = np.arange(len(coeffs))

    def update_womersley(t: float) -> None:
        vals = (modes_arr * np.exp(1j * kk * omega * t)[:, None]).sum(axis=0).real
        g.x.array.reshape(-1, gdim)[in_dofs] = vals[:, None] * direction[None, :]
        g.x.scatter_forward()

    return update_womersley
