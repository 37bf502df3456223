"""Wall shear stress over the last cycle: TAWSS and OSI (He & Ku 1996).
"""

from __future__ import annotations

from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np

from cardiotwin.physics.mesh import FlowMesh

__all__ = ["WallShear"]


class WallShear:
    """Lumped L2 projection of the wall traction's tangential part onto P1 wall nodes.

    ``TAWSS = (1/T)∫|τ|dt`` and ``OSI = ½(1 − |∫τ dt| / ∫|τ| dt)`` (He & Ku 1996), accumulated
    with the rectangle rule over the steps of the last cycle.
    """

    def __init__(self, fm: FlowMesh, mu: Any, u):
        """``mu``: viscosity in Pa·s, a number or a UFL expression (μ(γ̇) of ``u``)."""
        import ufl
        from dolfinx import fem, la

        msh = fm.mesh
        gdim = msh.geometry.dim
        self.la = la
        self.W = fem.functionspace(msh, ("Lagrange", 1, (gdim,)))
        self.S = fem.functionspace(msh, ("Lagrange", 1))
        ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)(fm.names["wall"])
        n = ufl.FacetNormal(msh)
        tr = mu * (ufl.grad(u) + ufl.grad(u).T) * n
        tau = tr - ufl.dot(tr, n) * n
        v = ufl.TestFunction(self.W)
        self.num_form = fem.form(ufl.inner(tau, v) * ds)
        den = fem.assemble_vector(fem.form(ufl.inner(ufl.as_vector([1.0] * gdim), v) * ds))
        den.scatter_reverse(la.InsertMode.add)
        self.den = den.array.copy()
        self.nz = self.den > 0
        self.gdim = gdim
        nnodes = len(self.den) // gdim
        self.sum_vec = np.zeros((nnodes, gdim))
        self.sum_mag = np.zeros(nnodes)
        self.time = 0.0

    def accumulate(self, dt: float) -> None:
        from dolfinx import fem

        num = fem.assemble_vector(self.num_form)
        num.scatter_reverse(self.la.InsertMode.add)
        tau = np.zeros_like(self.den)
        tau[self.nz] = num.array[self.nz] / self.den[self.nz]
        tau = tau.reshape(-1, self.gdim)
        self.sum_vec += dt * tau
        self.sum_mag += dt * np.linalg.norm(tau, axis=1)
        self.time += dt

    def finish(self):
        from dolfinx import fem

        tawss = fem.Function(self.S, name="tawss_pa")
        osi = fem.Function(self.S, name="osi")
        n_loc = len(tawss.x.array)
        T = max(self.time, 1e-300)
        tawss.x.array[:] = self.sum_mag[:n_loc] / T
        mag = self.sum_mag[:n_loc]
        ratio = np.divide(np.linalg.norm(self.sum_vec[:n_loc], axis=1), mag,
                          out=np.ones_like(mag), where=mag > 0)
        osi.x.array[:] = 0.5 * (1.0 - np.clip(ratio, 0.0, 1.0))
        tawss.x.scatter_forward()
        osi.x.scatter_forward()
        return tawss, osi

    def functions(self):
        """The accumulators as (vector, scalar) P1 Functions (owned values valid), for the
        adios4dolfinx checkpoint."""
        from dolfinx import fem

        vec = fem.Function(self.W, name="wss_sum_vec")
        mag = fem.Function(self.S, name="wss_sum_mag")
        vec.x.array[:] = self.sum_vec.ravel()
        mag.x.array[:] = self.sum_mag
        return vec, mag

    def load_functions(self, vec, mag, time_s: float) -> None:
        """Inverse of :meth:`functions`."""
        self.sum_vec = vec.x.array.reshape(self.sum_vec.shape).copy()
        self.sum_mag = mag.x.array.copy()
        self.time = float(time_s)

    def state(self) -> dict[str, np.ndarray]:
        return {"wss_sum_vec": self.sum_vec, "wss_sum_mag": self.sum_mag,
                "wss_time": np.array([self.time])}

    def load(self, d) -> None:
        self.sum_vec = d["wss_sum_vec"].copy()
        self.sum_mag = d["wss_sum_mag"].copy()
        self.time = float(d["wss_time"][0])
