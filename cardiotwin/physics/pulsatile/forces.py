"""Force of the fluid on a boundary (drag and lift of an immersed body).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError
from cardiotwin.physics.mesh import FlowMesh

__all__ = ["boundary_force"]


def boundary_force(u, p, *, mu: float, fm: FlowMesh, boundary: str) -> np.ndarray:
    """Force (N, or N/m in 2-D) exerted by the fluid on a boundary: ``−∫ σ(u, p) n ds``.

    ``σ = −pI + μ(∇u + ∇uᵀ)``, ``n`` the outward normal of the fluid domain; for an immersed body
    (e.g. the ``"cylinder"`` of a 2-D benchmark) the components are drag and lift.
    """
    import ufl
    from dolfinx import fem

    if boundary not in fm.names:
        raise InputError(f"unknown boundary {boundary!r}; the mesh has {sorted(fm.names)}")
    msh = fm.mesh
    n = ufl.FacetNormal(msh)
    ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)(fm.names[boundary])
    gdim = msh.geometry.dim
    sigma = -p * ufl.Identity(gdim) + mu * (ufl.grad(u) + ufl.grad(u).T)
    t = -ufl.dot(sigma, n)
    return np.array([msh.comm.allreduce(fem.assemble_scalar(fem.form(t[i] * ds)), op=MPI.SUM)
                     for i in range(gdim)])
