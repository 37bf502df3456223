"""Valve and device read-outs: section pressures around a valve, the jet speed, and the flow
through each Brinkman part's solid footprint (leak check).
"""

from __future__ import annotations

from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError
from cardiotwin.physics.mesh import MM_TO_M, cell_geometry
from cardiotwin.physics.pulsatile.settings import ValvePlanes

__all__ = ["region_flux_setup", "valve_eval", "valve_setup"]


def valve_setup(fm, V, Qsp, valve: ValvePlanes, regions=()) -> dict[str, Any]:
    """Per-dof weights of the two section means and the velocity dofs of the jet region (the
    fluid between the valve centre and the downstream section, without the Brinkman regions:
    the P2 velocity overshoots at a porous plate's rim corner, 23 m/s beside a 5–8 m/s jet on
    the demo twin, and that is not the jet)."""
    import ufl
    from dolfinx import fem

    msh = fm.mesh
    comm = msh.comm
    tdim = msh.topology.dim
    n = msh.topology.index_map(tdim).size_local
    mid, _ = cell_geometry(msh)
    mid_mm = mid / MM_TO_M
    Q0 = fem.functionspace(msh, ("DG", 0))
    vol = fem.assemble_vector(fem.form(ufl.TestFunction(Q0) * ufl.dx)).array[:n]
    a = np.asarray(valve.axis)
    c = np.asarray(valve.centre_mm)
    rel = mid_mm - c
    z = rel @ a
    rr = np.linalg.norm(rel - np.outer(z, a), axis=1)
    cdofs = Qsp.dofmap.list[:n]
    nv = cdofs.shape[1]
    weights = []
    for z0 in (-valve.upstream_mm, valve.downstream_mm):
        sel = (np.abs(z - z0) <= valve.slab_mm / 2) & (rr <= valve.radius_mm)
        total = comm.allreduce(float(vol[sel].sum()), op=MPI.SUM)
        if total <= 0:
            raise InputError(f"no mesh cell in the valve section {z0:+g} mm from "
                             f"{valve.centre_mm} along {valve.axis}; check ValvePlanes (LPS mm)")
        w = np.zeros(len(Qsp.tabulate_dof_coordinates()))
        np.add.at(w, cdofs[sel].ravel(), np.repeat(vol[sel] / nv / total, nv))
        weights.append(w)
    X = V.tabulate_dof_coordinates() / MM_TO_M
    n_own = V.dofmap.index_map.size_local
    relx = X[:n_own] - c
    zx = relx @ a
    rx = np.linalg.norm(relx - np.outer(zx, a), axis=1)
    in_jet = (zx >= 0) & (zx <= valve.downstream_mm) & (rx <= valve.radius_mm)
    for reg in regions:
        in_jet &= reg.indicator(X[:n_own]) == 0.0
    jet = np.flatnonzero(in_jet)
    return {"w_up": weights[0], "w_down": weights[1], "jet": jet}


def region_flux_setup(fm, V, regions) -> list[tuple[str, Any]]:
    """Per Brinkman part, a vector ``w`` with ``w·u`` the flow through its solid footprint (m³/s).

    ``∫ g (a·u) dx / (t/2)`` with ``g`` the indicator (at quadrature points) of the central half
    of the part's thickness ``t`` within its radii, at least one cell diameter outside its inner
    radius (the rim cells belong to the orifice), ``a`` the part's axis: the axial flux averaged
    over the central half of the part.
    """
    import ufl
    from dolfinx import fem
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc

    out: list[tuple[str, Any]] = []
    msh = fm.mesh
    if not regions or msh.topology.dim != 3:
        return out
    x = ufl.SpatialCoordinate(msh)
    h = ufl.CellDiameter(msh)
    v = ufl.TestFunction(V)
    for reg in regions:
        for k, part in enumerate(reg.parts):
            a = np.asarray(part.axis, dtype=float)
            axis = ufl.as_vector([float(c) for c in a])
            rel = x - ufl.as_vector([float(c) * MM_TO_M for c in part.centre_mm])
            z = ufl.dot(rel, axis)
            r = ufl.sqrt(ufl.max_value(ufl.dot(rel, rel) - z * z, 0.0))
            z_mid = 0.5 * (part.z0_mm + part.z1_mm) * MM_TO_M
            half = 0.25 * (part.z1_mm - part.z0_mm) * MM_TO_M
            r_in = part.r_inner_mm * MM_TO_M + (h if part.r_inner_mm > 0 else 0.0)
            inside = ufl.And(ufl.lt(abs(z - z_mid), half),
                             ufl.And(ufl.gt(r, r_in), ufl.lt(r, part.r_outer_mm * MM_TO_M)))
            g = ufl.conditional(inside, 1.0, 0.0)
            vec = fpetsc.assemble_vector(fem.form(g * ufl.dot(axis, v) / (2.0 * half) * ufl.dx))
            vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            out.append((f"{reg.name}/{k}", vec))
    return out


def valve_eval(data, u, p, comm, gdim) -> tuple[float, float]:
    pa = p.x.array
    local = np.array([data["w_up"] @ pa, data["w_down"] @ pa])
    up, down = comm.allreduce(local, op=MPI.SUM)
    sp = np.linalg.norm(u.x.array.reshape(-1, gdim)[data["jet"]], axis=1)
    vj = comm.allreduce(float(np.max(sp, initial=0.0)), op=MPI.MAX)
    return float(up - down), vj
