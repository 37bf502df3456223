"""Derived haemodynamic quantities of a :class:`~cardiotwin.physics.steady.FlowResult`.

Positions and lengths are given in mm (LPS, like the geometry); results are SI (Pa, m³/s).
All reductions are MPI-safe (each rank contributes its owned cells/facets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError
from cardiotwin.physics.mesh import MM_TO_M

__all__ = ["GORLIN_CONSTANT", "ValveGradient", "bernoulli_gradient_mmhg", "flow_split",
           "gorlin_eoa_cm2",
           "peak_jet_velocity", "section_mean_pressure", "transvalvular_gradient", "wall_shear_stress"]


@dataclass(frozen=True)
class ValveGradient:
    """Pressure gradient across a valve or device (Pa).

    Attributes
    ----------
    peak_pa : upstream mean pressure minus the lowest downstream section pressure (vena contracta).
    net_pa : upstream mean pressure minus the section pressure at ``downstream_max_mm``
        (after pressure recovery).
    upstream_pa, min_downstream_pa : the two section pressures of ``peak_pa``.
    min_position_mm : distance downstream of the valve centre where the minimum lies.
    """

    peak_pa: float
    net_pa: float
    upstream_pa: float
    min_downstream_pa: float
    min_position_mm: float


def _unit(axis) -> np.ndarray:
    a = np.asarray(axis, dtype=float).reshape(-1)
    nrm = np.linalg.norm(a)
    if a.shape != (3,) or not np.isfinite(nrm) or nrm == 0:
        raise InputError(f"axis must be a non-zero 3-vector; got {axis!r}")
    return a / nrm


def _cell_data(result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owned cells' midpoints (mm), volumes (m³) and mean pressures (Pa), cached on the result."""
    cache = getattr(result, "_metrics_cells", None)
    if cache is not None:
        return cache
    p = result.p
    msh = p.function_space.mesh
    tdim = msh.topology.dim
    n = msh.topology.index_map(tdim).size_local
    x = msh.geometry.x[msh.geometry.dofmaps[0][:n]]
    mid_mm = x.mean(axis=1) / MM_TO_M
    vol = np.abs(np.einsum("ij,ij->i", x[:, 1] - x[:, 0],
                           np.cross(x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]))) / 6.0
    p_cell = p.x.array[p.function_space.dofmap.list[:n]].mean(axis=1)  # exact cell mean for P1
    cache = (mid_mm, vol, p_cell)
    result._metrics_cells = cache
    return cache


def section_mean_pressure(result, *, centre_mm, axis, radius_mm: float,
                          slab_mm: float = 2.0) -> float:
    """Volume-weighted mean pressure (Pa) in a thin slab across the vessel.

    Cells whose midpoint lies within ``slab_mm/2`` of the plane through ``centre_mm`` normal to
    ``axis`` and within ``radius_mm`` of the axis contribute.

    Raises
    ------
    InputError
        If no cell lies in the slab (move the centre or widen ``slab_mm``).
    """
    if radius_mm <= 0 or slab_mm <= 0:
        raise InputError(f"radius_mm and slab_mm must be > 0; got {radius_mm}, {slab_mm}")
    a = _unit(axis)
    mid, vol, pc = _cell_data(result)
    rel = mid - np.asarray(centre_mm, dtype=float)
    z = rel @ a
    r = np.linalg.norm(rel - np.outer(z, a), axis=1)
    sel = (np.abs(z) <= slab_mm / 2) & (r <= radius_mm)
    comm = result.p.function_space.mesh.comm
    wsum = comm.allreduce(float(vol[sel].sum()), op=MPI.SUM)
    psum = comm.allreduce(float((vol[sel] * pc[sel]).sum()), op=MPI.SUM)
    if wsum <= 0:
        raise InputError(
            f"no mesh cell within {slab_mm} mm slab at {tuple(centre_mm)} mm (radius {radius_mm} mm);"
            " check the centre/axis (LPS mm) or widen slab_mm")
    return psum / wsum


def transvalvular_gradient(result, *, centre_mm, axis, radius_mm: float,
                           upstream_mm: float = 10.0, downstream_max_mm: float = 40.0,
                           slab_mm: float = 2.0, step_mm: float = 1.0,
                           downstream_min_mm: float | None = None) -> ValveGradient:
    """Peak and net pressure gradient across a valve/device placed at ``centre_mm``.

    Parameters
    ----------
    centre_mm, axis : valve centre (LPS mm) and flow direction.
    radius_mm : sections include cells within this distance of the axis (the lumen radius).
    upstream_mm : the upstream section lies this far before the valve.
    downstream_max_mm : sections are sampled every ``step_mm`` from ``downstream_min_mm``
        (default ``slab_mm``, just past a thin valve plate) to here; the last gives ``net_pa``.
    """
    if upstream_mm <= 0 or downstream_max_mm <= 0:
        raise InputError("upstream_mm and downstream_max_mm must be > 0")
    a = _unit(axis)
    c = np.asarray(centre_mm, dtype=float)
    start = slab_mm if downstream_min_mm is None else downstream_min_mm
    if not start < downstream_max_mm:
        raise InputError(f"downstream_min_mm ({start}) must be < downstream_max_mm ({downstream_max_mm})")
    p_up = section_mean_pressure(result, centre_mm=c - upstream_mm * a, axis=a,
                                 radius_mm=radius_mm, slab_mm=slab_mm)
    positions = np.arange(start, downstream_max_mm + 1e-9, step_mm)
    if positions[-1] < downstream_max_mm - 1e-9:
        positions = np.append(positions, downstream_max_mm)
    p_down = np.array([section_mean_pressure(result, centre_mm=c + s * a, axis=a,
                                             radius_mm=radius_mm, slab_mm=slab_mm)
                       for s in positions])
    k = int(np.argmin(p_down))
    return ValveGradient(peak_pa=float(p_up - p_down[k]), net_pa=float(p_up - p_down[-1]),
                         upstream_pa=float(p_up), min_downstream_pa=float(p_down[k]),
                         min_position_mm=float(positions[k]))


def peak_jet_velocity(result, *, centre_mm, axis, radius_mm: float,
                      downstream_max_mm: float = 40.0, downstream_min_mm: float = 0.0,
                      region=None) -> float:
    """Largest flow speed (m/s) of the jet downstream of a valve: the steady analogue of the
    continuous-wave Doppler peak velocity at the vena contracta.

    The speed is taken at the owned velocity nodes between the planes ``downstream_min_mm``
    and ``downstream_max_mm`` along ``axis`` from ``centre_mm`` (negative = upstream), within
    ``radius_mm`` of the axis, and outside ``region`` (a
    :class:`~cardiotwin.physics.brinkman.BrinkmanRegion` or None): the velocity overshoots at a
    porous plate's rim corner and that is not the jet (the same rule as the pulsatile solver's
    jet speed). With a slab upstream of the valve it gives the proximal (LVOT) velocity.

    Raises
    ------
    InputError
        If no velocity node lies in that jet region (check the centre/axis, LPS mm).
    """
    if radius_mm <= 0 or not downstream_min_mm < downstream_max_mm:
        raise InputError(f"radius_mm must be > 0 and downstream_min_mm < downstream_max_mm; got "
                         f"{radius_mm}, {downstream_min_mm}, {downstream_max_mm}")
    a = _unit(axis)
    u = result.u
    V = u.function_space
    gdim = V.mesh.geometry.dim
    n_own = V.dofmap.index_map.size_local
    x_mm = V.tabulate_dof_coordinates()[:n_own] / MM_TO_M
    rel = x_mm - np.asarray(centre_mm, dtype=float)
    z = rel @ a
    r = np.linalg.norm(rel - np.outer(z, a), axis=1)
    sel = (z >= downstream_min_mm) & (z <= downstream_max_mm) & (r <= radius_mm)
    if region is not None:
        sel &= region.indicator(x_mm) == 0.0
    speed = np.linalg.norm(u.x.array.reshape(-1, gdim)[:n_own][sel], axis=1)
    comm = V.mesh.comm
    n_sel = comm.allreduce(int(sel.sum()), op=MPI.SUM)
    if n_sel == 0:
        raise InputError(f"no velocity node within {radius_mm} mm of the axis from {tuple(centre_mm)}"
                         f" mm between {downstream_min_mm} and {downstream_max_mm} mm along the axis; check "
                         "the centre/axis (LPS mm)")
    return float(comm.allreduce(float(np.max(speed, initial=0.0)), op=MPI.MAX))


def wall_shear_stress(result) -> dict[str, Any]:
    """Wall shear stress ``τ = μ(∇u + ∇uᵀ)n − ((…)n·n)n`` on the ``wall`` facets.

    Returns
    -------
    dict
        ``mean_pa`` (area-weighted mean of ``|τ|`` over the wall, exact per facet),
        ``max_pa`` and ``p99_pa`` (over wall nodes of the lumped L2 projection),
        ``area_m2`` and ``function`` (P1 vector Function ``wss_pa``, zero off the wall).
    """
    import ufl
    from dolfinx import fem, la

    u = result.u
    V = u.function_space
    msh = V.mesh
    comm = msh.comm
    fm = result.mesh
    mu = result.blood.viscosity_pa_s
    ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)(fm.names["wall"])
    n = ufl.FacetNormal(msh)
    traction = mu * (ufl.grad(u) + ufl.grad(u).T) * n
    tau = traction - ufl.dot(traction, n) * n
    v = ufl.TestFunction(V)
    one = ufl.as_vector((1.0, 1.0, 1.0))
    num = fem.assemble_vector(fem.form(ufl.inner(tau, v) * ds))
    den = fem.assemble_vector(fem.form(ufl.inner(one, v) * ds))
    num.scatter_reverse(la.InsertMode.add)
    den.scatter_reverse(la.InsertMode.add)
    wss = fem.Function(V, name="wss_pa")
    nz = den.array > 0
    wss.x.array[nz] = num.array[nz] / den.array[nz]
    wss.x.scatter_forward()
    area = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ds)), op=MPI.SUM)
    mag_int = comm.allreduce(
        fem.assemble_scalar(fem.form(ufl.sqrt(ufl.inner(tau, tau) + 1e-30) * ds)), op=MPI.SUM)
    bs = V.dofmap.index_map_bs
    n_own = V.dofmap.index_map.size_local
    vals = wss.x.array.reshape(-1, bs)[:n_own]
    on_wall = den.array.reshape(-1, bs)[:n_own, 0] > 0
    mags = np.linalg.norm(vals[on_wall], axis=1)
    all_mags = np.concatenate(comm.allgather(mags))
    return {"mean_pa": float(mag_int / area), "max_pa": float(all_mags.max()),
            "p99_pa": float(np.percentile(all_mags, 99)), "area_m2": float(area), "function": wss}


def flow_split(result) -> dict[str, float]:
    """Outlet name → fraction of the inlet flow leaving there."""
    qin = result.inlet_flow_m3_s
    return {k: float(q / qin) for k, q in result.outlet_flows_m3_s.items()}


def bernoulli_gradient_mmhg(flow_m3_s: float, orifice_area_m2: float) -> float:
    """Simplified Bernoulli gradient 4·v² in mmHg (v = Q/A in m/s) of a flow through an orifice.

    The clinical Doppler relation (Hatle L, Angelsen B, Tromsdal A. Br Heart J 1980;43:284–292):
    its constant 4 mmHg/(m/s)² is ½ρ for blood expressed in mmHg. Shown beside the 3-D result as
    an independent order-of-magnitude check.
    """
    if not orifice_area_m2 > 0:
        raise InputError(f"orifice area must be > 0 m²; got {orifice_area_m2!r}")
    v = flow_m3_s / orifice_area_m2
    return 4.0 * v * v


GORLIN_CONSTANT = 44.3
"""Gorlin's constant √(2g) in cm^½/s (g = 981 cm/s²), with the aortic-valve discharge
coefficient 1 (Gorlin R, Gorlin SG. Am Heart J 1951;41:1–29)."""


def gorlin_eoa_cm2(flow_ml_s: float, gradient_mmhg: float) -> float | None:
    """Gorlin valve area ``A[cm²] = Q[mL/s] / (44.3 · √ΔP[mmHg])`` (Gorlin & Gorlin 1951).

    ``Q`` is the flow through the valve while it is open (here: the steady flow) and ``ΔP`` the
    transvalvular gradient. Gorlin took the pressure head in cm of water but the gradient in
    mmHg, so the constant leaves out the mmHg → pressure-head factor: for blood (ρ = 1060 kg/m³)
    the ideal-orifice relation ΔP = ½ρv² reads ``A = Q / (50.2 √ΔP)``, and a Gorlin area is
    50.2 / 44.3 = 1.13 times the area of an ideal orifice with the same flow and gradient.
    None when the gradient is not positive (no area can be given).
    """
    if not gradient_mmhg > 0:
        return None
    return flow_ml_s / (GORLIN_CONSTANT * gradient_mmhg ** 0.5)
