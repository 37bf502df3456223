"""Steady incompressible Navier–Stokes in a tagged fluid domain, with Brinkman devices.

Discretisation
--------------
Equal-order P1–P1 velocity–pressure with residual-based stabilisation (SUPG + PSPG + LSIC, the
VMS-style formulation SimVascular uses; Tezduyar & Osawa 2000, Bazilevs et al. 2007)::

    ρ(a·∇)u·v + μ∇u:∇v + σχ u·v − p ∇·v + q ∇·u                       (Galerkin)
  + Σ_K τ_M R_M·(ρ a·∇v + ∇q)/ρ + τ_C (∇·u)(∇·v)                        (SUPG, PSPG, LSIC)
  − β ρ/2 min(a·n, 0) u·v  on outlets                                    (backflow)

with ``R_M = ρ(u − u_k)/Δt + ρ(a·∇)u + ∇p + σχu`` (the viscous term vanishes for P1), the Brinkman
drag ``σ = μ/κ`` inside the device region (indicator ``χ``, cell volume fraction) and
``τ_M = [ (2|a|/h)² + (36ν/h²)² + (σχ/ρ)² ]^{-1/2}`` with ``h`` the cell diameter, and
``τ_C = ρ h²/(6 τ_M)`` (τ_M without σ). The viscous constant 36 (rather than Tezduyar's 4·3 for
an element length) was chosen on Poiseuille flow: with the cell *diameter* as ``h`` it minimises the
PSPG consistency error of linear elements (12: −7.7 % pressure drop, 36: +0.9 %, 100: +6.9 %).
The steady τ (no Δt) keeps the converged state independent of the pseudo-time history.

Nonlinear iteration
-------------------
Picard (Oseen) linearisation ``a = u_k`` with pseudo-time continuation: a backward-Euler term
``ρ(u − u_k)/Δt`` whose Δt follows switched evolution relaxation (SER: Δt grows as the steady
residual falls, up to pure Picard) plus a ramp of the inflow over the first iterations. Each
linear system is solved directly (MUMPS by default).

Outlets
-------
Resistance outlets ``p_i = p0_i + R_i Q_i`` enter as the traction ``−p_i n``. Explicit (lagged)
coupling is unstable when ``R_i`` is much larger than the 3-D resistance between outlets (the
usual physiological case: the outlet flows then oscillate with gain ≈ R_i/R_3D). The coupling is
therefore **implicit within every linearised step**: by superposition, the solution is
``x = x_f − Σ_i p_i x_i`` with ``A x_f = f`` and ``A x_i = b_i`` (``b_i = ∫_Γi n·v``), so the outlet
flows are ``Q = Q_f − K p`` with ``K_ji = b_j·x_i``, and ``(I + K R) Q = Q_f − K p0`` gives the
pressures consistent with the resistances for the current linearisation (Woodbury identity;
Esmaily-Moghadam et al. 2013 use the same rank-one resistance term in the tangent). The ``m``
extra right-hand sides reuse the factorisation.

Known limitation (measured, see the report of the aortic benchmark)
-------------------------------------------------------------------
Equal-order P1 on a valve-zone mesh of h ≈ 1.2 mm under-resolves a 10 mm jet: part of the flow
crosses the valve plane as stabilisation (PSPG) flux rather than as velocity, and the gradient
then depends on the permeability (0.8 cm² plate, 4 mm, h 1.2 mm: 18.8 mmHg with κ = 1e-12 m²,
48.5 mmHg with κ = 1e-10 m², simplified Bernoulli 33 mmHg). Check
``metrics.transvalvular_gradient`` against Bernoulli and refine the valve zone (h ≲ r_orifice/6)
before trusting an absolute gradient; differences between devices are more robust.

Convergence and honesty
-----------------------
``status = "converged"`` when the relative velocity update and the outlet-flow changes fall below
``rtol``. At high Reynolds numbers a steady state may not exist; the iteration then stops when the
outlet flows, outlet pressures and inlet pressure have *settled* within ``settle_rtol`` over
``settle_window`` iterations (``status = "settled"``, ``converged = False``, with the measured
oscillation in ``reason``), or at ``max_iterations`` (``status = "max_iterations"``). NaN, a
failing linear solve or a runaway velocity raise :class:`~cardiotwin.errors.SolverError`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError, SolverError
from cardiotwin.physics.brinkman import BrinkmanRegion
from cardiotwin.physics.linear import LaggedCoupledSolver, LinearSolver, assemble_system
from cardiotwin.physics.mesh import (
    FlowMesh,
    boundary_facets,
    dilate_dg0,
    indicator_dg0,
    inlet_profile,
    median_cell_size,
)
from cardiotwin.physics.rheology import Newtonian
from cardiotwin.physics.windkessel import OutletResistance
from cardiotwin.provenance import Provenance, sha256_file

logger = logging.getLogger(__name__)

__all__ = ["FlowResult", "SteadySettings", "solve_steady"]

_BLOOD = Newtonian()


def _default_petsc_options() -> dict[str, Any]:
    return {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
            "mat_mumps_icntl_14": 80, "mat_mumps_icntl_7": 5}


@dataclass(frozen=True)
class SteadySettings:
    """Options of :func:`solve_steady`.

    Parameters
    ----------
    element : ``"P1-P1"`` (stabilised equal order; the only choice for now).
    stabilisation : ``"supg-pspg-lsic"`` (full VMS-style set) or ``"pspg"`` (PSPG only, for
        low Reynolds number verification).
    max_iterations : upper bound on nonlinear (Picard) iterations.
    rtol : convergence tolerance on ``‖Δu‖/‖u‖`` and on ``max|ΔQ_i|/Q_in``.
    ramp_iterations : inflow rises linearly over this many first iterations (1 = no ramp).
    pseudo_cfl : initial pseudo-time step as a CFL number on the mean inlet velocity and the
        median cell size; ``math.inf`` disables pseudo-time (plain Picard).
    pseudo_cfl_max : the SER-grown CFL is capped here; beyond ``1e6`` the term is dropped.
    relaxation : under-relaxation ω of the velocity update (1 = none).
    backflow_beta : β of the outlet backflow stabilisation (0 disables; 0.2–1 typical).
    settle_rtol, settle_window, settle_min_iterations : when the strict criterion is not met, stop
        once outlet flows (relative to Q_in) and outlet/inlet pressures (relative to their spread)
        vary by less than ``settle_rtol`` over ``settle_window`` iterations, but not before
        ``settle_min_iterations``.
    tau_region_layers : the drag also enters τ_M in this many layers of cells around the Brinkman
        region (0: only inside), so PSPG cannot carry mass through the region (see
        ``dilate_dg0``).
    indicator_samples : Brinkman indicator per cell (0 or 1) = 1 when all of the cell's 4
        vertices, centroid and 6 edge midpoints (``11``), or the centroid alone (``1``).
    quadrature_degree : degree of the cell quadrature of all forms (2 is exact for the linear
        Galerkin terms; 3 integrates the convective term exactly at ~1.5× assembly cost).
    stabilisation_quadrature_degree : the same for the SUPG/PSPG/LSIC terms (1 = centroid).
    reuse_factorisation : keep the LU factors of an earlier Picard matrix and solve the current
        (outlet-coupled) system with GMRES preconditioned by them (plus the Woodbury correction
        of the outlet resistances); refactor when GMRES needed more than
        ``lagged_max_linear_iterations`` iterations. ``False``: factor every iteration.
    linear_rtol : relative tolerance of those GMRES solves.
    max_speed_m_s : a velocity above this raises :class:`SolverError` (divergence guard).
    petsc_options : PETSc options of the linear solver (default MUMPS LU with METIS ordering). With
        ``reuse_factorisation`` they configure the factorisation (``pc_*``, ``mat_mumps_*``).
    """

    element: str = "P1-P1"
    stabilisation: str = "supg-pspg-lsic"
    max_iterations: int = 80
    rtol: float = 1e-4
    ramp_iterations: int = 3
    pseudo_cfl: float = 5.0
    pseudo_cfl_max: float = 1e7
    relaxation: float = 1.0
    backflow_beta: float = 1.0
    settle_rtol: float = 5e-3
    settle_window: int = 8
    settle_min_iterations: int = 30
    indicator_samples: int = 11
    quadrature_degree: int = 2
    stabilisation_quadrature_degree: int = 1
    reuse_factorisation: bool = True
    lagged_max_linear_iterations: int = 12
    linear_rtol: float = 1e-9
    max_speed_m_s: float = 100.0
    tau_region_layers: int = 1
    petsc_options: dict[str, Any] = field(default_factory=_default_petsc_options)

    def __post_init__(self) -> None:
        if self.element != "P1-P1":
            raise InputError(f"element must be 'P1-P1'; got {self.element!r}")
        if self.stabilisation not in ("supg-pspg-lsic", "pspg"):
            raise InputError(
                f"stabilisation must be 'supg-pspg-lsic' or 'pspg'; got {self.stabilisation!r}")
        if self.max_iterations < 1:
            raise InputError(f"max_iterations must be >= 1; got {self.max_iterations}")
        if not (0 < self.rtol < 1):
            raise InputError(f"rtol must be in (0, 1); got {self.rtol}")
        if self.ramp_iterations < 1:
            raise InputError(f"ramp_iterations must be >= 1; got {self.ramp_iterations}")
        if not (self.pseudo_cfl > 0 and self.pseudo_cfl_max > 0):
            raise InputError("pseudo_cfl and pseudo_cfl_max must be > 0 (math.inf disables)")
        if not (0 < self.relaxation <= 1.5):
            raise InputError(f"relaxation must be in (0, 1.5]; got {self.relaxation}")
        if self.backflow_beta < 0:
            raise InputError(f"backflow_beta must be >= 0; got {self.backflow_beta}")
        if self.indicator_samples not in (1, 11):
            raise InputError(f"indicator_samples must be 1 or 11; got {self.indicator_samples}")
        if self.settle_window < 2:
            raise InputError(f"settle_window must be >= 2; got {self.settle_window}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}


@dataclass
class FlowResult:
    """Steady flow solution (SI) and its bookkeeping.

    Attributes
    ----------
    u, p : velocity (m/s) and pressure (Pa) as P1 dolfinx Functions.
    inlet_flow_m3_s : flow entering through the inlet (> 0).
    outlet_flows_m3_s : outlet name → flow leaving (m³/s, > 0 for outflow).
    outlet_pressures_pa : outlet name → the resistance-model pressure ``p0 + R·Q`` (Pa).
    inlet_pressure_pa : area-mean pressure on the inlet (Pa).
    iterations : nonlinear iterations done.
    residuals : relative velocity update per iteration.
    converged : True only when the strict tolerance was met.
    status, reason : ``"converged"`` / ``"settled"`` / ``"max_iterations"`` and why.
    n_dofs : global number of unknowns.
    timings_s : stage → seconds.
    provenance : how it was made.
    mesh : the FlowMesh; ``chi`` : DG0 Brinkman indicator (or None); ``blood``.
    """

    u: Any
    p: Any
    inlet_flow_m3_s: float
    outlet_flows_m3_s: dict[str, float]
    outlet_pressures_pa: dict[str, float]
    iterations: int
    residuals: list[float]
    converged: bool
    n_dofs: int
    timings_s: dict[str, float]
    provenance: Provenance
    status: str = "converged"
    reason: str = ""
    inlet_pressure_pa: float = 0.0
    mesh: FlowMesh | None = None
    chi: Any = None
    blood: Newtonian = field(default_factory=Newtonian)
    region: BrinkmanRegion | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers: flows, pressures, convergence, size, timings."""
        qin = self.inlet_flow_m3_s
        return {
            "inlet_flow_m3_s": float(qin),
            "inlet_pressure_pa": float(self.inlet_pressure_pa),
            "outlet_flows_m3_s": {k: float(v) for k, v in self.outlet_flows_m3_s.items()},
            "outlet_pressures_pa": {k: float(v) for k, v in self.outlet_pressures_pa.items()},
            "flow_split": {k: float(v / qin) for k, v in self.outlet_flows_m3_s.items()},
            "mass_imbalance": float((sum(self.outlet_flows_m3_s.values()) - qin) / qin),
            "iterations": int(self.iterations),
            "final_residual": float(self.residuals[-1]) if self.residuals else None,
            "converged": bool(self.converged),
            "status": self.status,
            "reason": self.reason,
            "n_dofs": int(self.n_dofs),
            "timings_s": {k: float(v) for k, v in self.timings_s.items()},
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write velocity, pressure, WSS (and the Brinkman indicator) for ParaView/meshio.

        Files: ``flow.xdmf`` + ``flow.h5`` (dolfinx XDMF, all ranks write collectively) and
        ``flow.vtu`` + ``flow.pvd`` (one VTU gathered on rank 0, written with meshio so that both
        ParaView and meshio read it). Fields: ``velocity_m_s``, ``pressure_pa``, ``wss_pa``
        (P1, point data) and ``brinkman_indicator`` (cell data). Returns name → path.
        """
        import meshio
        from dolfinx import io

        from cardiotwin.physics.metrics import wall_shear_stress

        out = Path(out_dir)
        comm = self.u.function_space.mesh.comm
        if comm.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        comm.barrier()
        self.u.name, self.p.name = "velocity_m_s", "pressure_pa"
        wss = wall_shear_stress(self)["function"]
        point_funcs = [self.u, self.p, wss]
        if self.chi is not None:
            self.chi.name = "brinkman_indicator"
        msh = self.u.function_space.mesh
        paths = {"xdmf": out / "flow.xdmf", "h5": out / "flow.h5", "vtu": out / "flow.vtu",
                 "pvd": out / "flow.pvd"}
        with io.XDMFFile(comm, str(paths["xdmf"]), "w") as f:
            f.write_mesh(msh)
            for fn in point_funcs + ([self.chi] if self.chi is not None else []):
                f.write_function(fn, 0.0)
        # VTU via meshio: P1 dofs map to geometry nodes cell by cell (same vertex order)
        tdim = msh.topology.dim
        n_cells = msh.topology.index_map(tdim).size_local
        gdofs = msh.geometry.dofmaps[0][:n_cells]
        x = msh.geometry.x
        data = {}
        for fn in point_funcs:
            V = fn.function_space
            bs = V.dofmap.index_map_bs
            node_vals = np.zeros((len(x), bs))
            node_vals[gdofs.ravel()] = fn.x.array.reshape(-1, bs)[V.dofmap.list[:n_cells].ravel()]
            data[fn.name] = node_vals if bs > 1 else node_vals[:, 0]
        chi_vals = (self.chi.x.array[self.chi.function_space.dofmap.list[:n_cells, 0]]
                    if self.chi is not None else None)
        gathered = comm.gather((x, gdofs, data, chi_vals), root=0)
        if comm.rank == 0:
            pts, cells, pdata, cdata, off = [], [], {k: [] for k in data}, [], 0
            for xr, cr, dr, chr_ in gathered:
                pts.append(xr)
                cells.append(cr + off)
                off += len(xr)
                for k in dr:
                    pdata[k].append(dr[k])
                if chr_ is not None:
                    cdata.append(chr_)
            mesh_out = meshio.Mesh(
                np.vstack(pts), [("tetra", np.vstack(cells).astype(np.int64))],
                point_data={k: np.concatenate(v) for k, v in pdata.items()},
                cell_data=({"brinkman_indicator": [np.concatenate(cdata)]} if cdata else None))
            tmp = paths["vtu"].with_suffix(".tmp.vtu")
            meshio.write(tmp, mesh_out, binary=True)
            tmp.replace(paths["vtu"])
            paths["pvd"].write_text(
                '<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n'
                '  <Collection>\n    <DataSet timestep="0" part="0" file="flow.vtu"/>\n'
                "  </Collection>\n</VTKFile>\n")
        comm.barrier()
        return paths


_counter = [0]


def solve_steady(fm: FlowMesh, *, inflow_m3_s: float, outlets: dict[str, OutletResistance],
                 blood: Newtonian = _BLOOD, region: BrinkmanRegion | None = None,
                 settings: SteadySettings = SteadySettings(), inflow_profile: str = "parabolic",
                 progress: Callable[[float, str], None] | None = None) -> FlowResult:
    """Solve steady Navier–Stokes with a prescribed inflow, resistance outlets and a device.

    Parameters
    ----------
    fm : mesh from :func:`load_domain` (metres).
    inflow_m3_s : flow through the inlet in m³/s (> 0), entering along −(cap normal).
    outlets : outlet name (with or without the ``outlet:`` prefix) → resistance model; every
        outlet of the domain needs one.
    blood : the Newtonian fluid (density and viscosity); default blood.
    region : Brinkman (porous) device or valve region, evaluated in mm; None for none.
    settings : discretisation and iteration options.
    inflow_profile : ``"parabolic"`` (scaled to the exact flow on any cap shape) or ``"plug"``.
    progress : called as ``progress(fraction, message)`` after each iteration.

    Returns
    -------
    FlowResult

    Raises
    ------
    InputError
        Non-positive flow, unknown/missing outlets, bad profile name.
    SolverError
        NaN, a failed linear solve or a runaway velocity, naming the iteration.
    """
    import ufl
    from basix.ufl import element, mixed_element
    from dolfinx import fem
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc

    t_start = time.perf_counter()
    # ---- inputs ------------------------------------------------------------------------------
    if not (isinstance(inflow_m3_s, int | float) and math.isfinite(inflow_m3_s) and inflow_m3_s > 0):
        raise InputError(f"inflow_m3_s must be a positive finite flow in m³/s; got {inflow_m3_s!r} "
                         "(230 mL/s = 2.3e-4 m³/s)")
    if inflow_profile not in ("parabolic", "plug"):
        raise InputError(f"inflow_profile must be 'parabolic' or 'plug'; got {inflow_profile!r}")
    valid = fm.outlet_names
    given: dict[str, OutletResistance] = {}
    for k, v in outlets.items():
        name = k.split(":", 1)[1] if k.startswith("outlet:") else k
        if name not in valid:
            raise InputError(f"unknown outlet {k!r}; the domain's outlets are {valid}")
        if not isinstance(v, OutletResistance):
            raise InputError(f"outlet {k!r} needs an OutletResistance; got {type(v).__name__}")
        given[name] = v
    if missing := [n for n in valid if n not in given]:
        raise InputError(f"no resistance given for outlets {missing}; the domain's outlets are {valid}")
    names = valid
    m = len(names)
    s = settings
    prov = Provenance(step="flow.steady")
    prov.inputs["mesh"] = sha256_file(fm.domain.mesh_path)
    prov.parameters = {
        "inflow_m3_s": float(inflow_m3_s),
        "outlets": {n: asdict(given[n]) for n in names},
        "blood": asdict(blood),
        "region": region.to_dict() if region is not None else None,
        "settings": s.to_dict(),
        "inflow_profile": inflow_profile,
        "mpi_size": fm.mesh.comm.size,
    }

    msh = fm.mesh
    comm = msh.comm
    tdim = msh.topology.dim
    fdim = tdim - 1
    rho, mu = blood.density_kg_m3, blood.viscosity_pa_s

    # ---- spaces and boundary conditions ------------------------------------------------------
    with prov.timed("setup"):
        P1v = element("Lagrange", msh.basix_cell(), 1, shape=(3,), dtype=PETSc.RealType)
        P1 = element("Lagrange", msh.basix_cell(), 1, dtype=PETSc.RealType)
        W = fem.functionspace(msh, mixed_element([P1v, P1]))
        V, V_to_W = W.sub(0).collapse()
        Qs, Q_to_W = W.sub(1).collapse()
        V_to_W, Q_to_W = np.asarray(V_to_W), np.asarray(Q_to_W)
        n_owned_W = W.dofmap.index_map.size_local * W.dofmap.index_map_bs
        vel_owned = V_to_W[V_to_W < n_owned_W]
        n_dofs = W.dofmap.index_map.size_global * W.dofmap.index_map_bs

        g_unit, _ = inlet_profile(fm, V, inflow_profile)
        ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)
        n = ufl.FacetNormal(msh)
        flux_unit = comm.allreduce(
            fem.assemble_scalar(fem.form(ufl.dot(g_unit, n) * ds(fm.names["inlet"]))), op=MPI.SUM)
        if not flux_unit < 0:
            raise InputError("inlet profile does not point into the domain; check the inlet cap "
                             "normal (it must point out of the fluid)")
        g_unit.x.array[:] *= inflow_m3_s / -flux_unit  # now ∫ g·n = −Q exactly
        g = fem.Function(V)
        zero_v = fem.Function(V)
        wall_dofs = fem.locate_dofs_topological((W.sub(0), V), fdim, boundary_facets(fm, "wall"))
        inlet_dofs = fem.locate_dofs_topological((W.sub(0), V), fdim, boundary_facets(fm, "inlet"))
        bcs = [fem.dirichletbc(g, inlet_dofs, W.sub(0)), fem.dirichletbc(zero_v, wall_dofs, W.sub(0))]
        bc_owned = np.unique(np.concatenate([b.dof_indices()[0][:b.dof_indices()[1]] for b in bcs]))

        area_in = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ds(fm.names["inlet"]))),
                                 op=MPI.SUM)
        h_cells = median_cell_size(msh)
        U_ref = inflow_m3_s / area_in

    # ---- Brinkman indicator --------------------------------------------------------------------
    chi = None
    with prov.timed("indicator"):
        if region is not None:
            chi = indicator_dg0(fm, region, s.indicator_samples)
            chi_tau = dilate_dg0(fm, chi, s.tau_region_layers) if s.tau_region_layers else chi
            sigma = fem.Constant(msh, PETSc.ScalarType(mu / region.permeability_m2))
            frac = comm.allreduce(fem.assemble_scalar(fem.form(chi * ufl.dx)), op=MPI.SUM)
            prov.parameters["region_volume_m3"] = float(frac)
            if frac <= 0:
                logger.warning("Brinkman region %r does not intersect the mesh", region.name)

    # ---- forms -------------------------------------------------------------------------------
    with prov.timed("forms"):
        w = fem.Function(W)       # current iterate (u_k, p_k)
        u_k = w.sub(0)
        (u, p) = ufl.TrialFunctions(W)
        (v, q) = ufl.TestFunctions(W)
        inv_dt = fem.Constant(msh, PETSc.ScalarType(0.0))
        rho_c = fem.Constant(msh, PETSc.ScalarType(rho))
        mu_c = fem.Constant(msh, PETSc.ScalarType(mu))
        h = ufl.CellDiameter(msh)
        # Fixed quadrature: τ contains square roots, for which UFL would estimate a huge degree.
        dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": s.quadrature_degree})
        # Stabilisation terms at the centroid (1 point): with P1 their integrands are nearly
        # constant per cell, and this cuts the element kernel cost by ~2.
        dxs = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": s.stabilisation_quadrature_degree})
        a_adv = u_k
        drag = sigma * chi if region is not None else None
        unorm = ufl.sqrt(ufl.dot(a_adv, a_adv) + (1e-6 * U_ref) ** 2)
        nu = mu / rho
        tau_base = (2 * unorm / h) ** 2 + (36 * nu / h**2) ** 2
        tau_m_fluid = 1 / ufl.sqrt(tau_base)
        tau_m = (1 / ufl.sqrt(tau_base + (sigma * chi_tau / rho) ** 2) if drag is not None
                 else tau_m_fluid)
        tau_c = rho_c * h**2 / (6 * tau_m_fluid)

        def R_M(uu, pp, u_old=None):
            r = rho_c * ufl.grad(uu) * a_adv + ufl.grad(pp)
            if u_old is not None:
                r += rho_c * inv_dt * (uu - u_old)
            if drag is not None:
                r += drag * uu
            return r

        a_form = (rho_c * inv_dt * ufl.inner(u, v) * dx
                  + rho_c * ufl.inner(ufl.grad(u) * a_adv, v) * dx
                  + mu_c * ufl.inner(ufl.grad(u), ufl.grad(v)) * dx
                  - p * ufl.div(v) * dx + q * ufl.div(u) * dx)
        L_form = rho_c * inv_dt * ufl.inner(u_k, v) * dx
        if drag is not None:
            a_form += drag * ufl.inner(u, v) * dx
        # PSPG (always), SUPG + LSIC (full set); the time term enters R_M consistently
        r_lhs = R_M(u, p) + rho_c * inv_dt * u
        r_rhs = rho_c * inv_dt * u_k
        a_form += tau_m / rho_c * ufl.inner(r_lhs, ufl.grad(q)) * dxs
        L_form += tau_m / rho_c * ufl.inner(r_rhs, ufl.grad(q)) * dxs
        if s.stabilisation == "supg-pspg-lsic":
            supg_v = rho_c * ufl.grad(v) * a_adv
            a_form += tau_m / rho_c * ufl.inner(r_lhs, supg_v) * dxs
            L_form += tau_m / rho_c * ufl.inner(r_rhs, supg_v) * dxs
            a_form += tau_c * ufl.div(u) * ufl.div(v) * dxs
        out_ids = [fm.names[f"outlet:{nm}"] for nm in names]
        if s.backflow_beta > 0:
            un = ufl.dot(a_adv, n)
            back = 0.5 * (un - abs(un))  # min(a·n, 0)
            beta = fem.Constant(msh, PETSc.ScalarType(s.backflow_beta))
            for oid in out_ids:
                a_form += -beta * rho_c / 2 * back * ufl.inner(u, v) * ds(oid)
        a_c = fem.form(a_form)
        L_c = fem.form(L_form)
        # outlet load vectors b_i = ∫_Γi n·v (also give Q_i = b_i·x) and inlet pressure mean
        b_out = []
        for oid in out_ids:
            bi = fpetsc.assemble_vector(fem.form(ufl.inner(n, v) * ds(oid)))
            bi.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            bi.array[bc_owned] = 0.0  # homogeneous Dirichlet rows (rim nodes)
            b_out.append(bi)
        c_pin = fpetsc.assemble_vector(fem.form(q * ds(fm.names["inlet"])))
        c_pin.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        A = fpetsc.create_matrix(a_c)
        b = fpetsc.create_vector(W)
        x_f = fpetsc.create_vector(W)
        x_i = [fpetsc.create_vector(W) for _ in range(m)]
        x_new = fpetsc.create_vector(W)
        r_vec = fpetsc.create_vector(W)
        R = np.array([given[nm].resistance_pa_s_m3 for nm in names])
        p0 = np.array([given[nm].p0_pa for nm in names])
        _counter[0] += 1
        prefix = f"cardiotwin_flow_{_counter[0]}_"
        if s.reuse_factorisation:
            lin = LaggedCoupledSolver(comm, s.petsc_options, prefix, A, b_out, R, s.linear_rtol,
                                 max_it=2 * s.lagged_max_linear_iterations)
        else:
            lin = LinearSolver(comm, s.petsc_options, prefix)
            lin.set_operator(A)

    residuals: list[float] = []
    history: list[np.ndarray] = []
    status, reason = "max_iterations", ""
    cfl = s.pseudo_cfl
    res_prev = None
    Q = np.zeros(m)
    pout = p0.copy()
    it = 0
    t_assemble = t_solve = 0.0
    need_factor = True
    linear_its: list[int] = []
    try:
        for it in range(1, s.max_iterations + 1):
            ramp = min(1.0, it / s.ramp_iterations)
            g.x.array[:] = ramp * g_unit.x.array
            dt = cfl * h_cells / U_ref
            inv_dt.value = 0.0 if (not math.isfinite(cfl) or cfl > 1e6) else 1.0 / dt
            t0 = time.perf_counter()
            assemble_system(A, b, a_c, L_c, bcs)
            # steady residual of the current iterate (the pseudo-time term cancels at u = u_k)
            if it > s.ramp_iterations:
                A.mult(w.x.petsc_vec, r_vec)
                r_vec.axpy(-1.0, b)
                for i in range(m):
                    r_vec.axpy(pout[i], b_out[i])
                res_abs = r_vec.norm()
            else:
                res_abs = None
            t1 = time.perf_counter()
            t_assemble += t1 - t0
            if s.reuse_factorisation:
                for i in range(m):
                    b.axpy(-p0[i], b_out[i])
                if need_factor or it <= s.ramp_iterations + 1:  # operator still changes fast
                    lin.refactor(it)
                w.x.petsc_vec.copy(x_new)
                reason_k, its_k = lin.solve(b, x_new)
                need_factor = reason_k < 0 or its_k > s.lagged_max_linear_iterations
                if reason_k < 0:  # lagged factors too stale: refactor now and retry
                    logger.debug("lagged solve failed (reason %d after %d its): refactoring",
                                 reason_k, its_k)
                    lin.refactor(it)
                    w.x.petsc_vec.copy(x_new)
                    reason_k, its_k = lin.solve(b, x_new)
                    need_factor = False
                    if reason_k < 0:
                        raise SolverError(
                            f"linear solve failed at nonlinear iteration {it} even with fresh LU "
                            f"factors (KSP reason {reason_k}, {its_k} iterations). Likely causes: "
                            "a singular or ill-conditioned system (degenerate cells, missing "
                            "boundary tags) or inconsistent petsc_options.")
                linear_its.append(its_k)
                x_new.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
                Q = np.array([bi.dot(x_new) for bi in b_out])
                pout = p0 + R * Q
            else:
                lin.set_operator(A)
                lin.solve(b, x_f, it, "momentum/continuity")
                for i in range(m):
                    lin.solve(b_out[i], x_i[i], it, f"outlet {names[i]} response")
                # implicit resistance coupling: Q = Q_f − K p, p = p0 + R Q
                Qf = np.array([bi.dot(x_f) for bi in b_out])
                K = np.array([[b_out[j].dot(x_i[i]) for i in range(m)] for j in range(m)])
                Q = np.linalg.solve(np.eye(m) + K * R[None, :], Qf - K @ p0)
                pout = p0 + R * Q
                x_f.copy(x_new)
                for i in range(m):
                    x_new.axpy(-pout[i], x_i[i])
            t_solve += time.perf_counter() - t1
            # update, relaxation, checks
            xa = x_new.array_r
            wa = w.x.array
            du = xa[vel_owned] - wa[vel_owned]
            du_n = math.sqrt(comm.allreduce(float(du @ du), op=MPI.SUM))
            un_ = math.sqrt(comm.allreduce(float(xa[vel_owned] @ xa[vel_owned]), op=MPI.SUM))
            if not (np.all(np.isfinite(xa)) and math.isfinite(du_n)):
                raise SolverError(
                    f"NaN/Inf in the solution at iteration {it}. Likely causes: a degenerate mesh, "
                    "absurd settings (pseudo_cfl, relaxation) or a Reynolds number far beyond what "
                    "this mesh resolves; try a smaller pseudo_cfl or more ramp_iterations.")
            omega = s.relaxation if it > 1 else 1.0
            wa_owned_new = wa.copy()
            n_loc = len(xa)
            wa_owned_new[:n_loc] = (1 - omega) * wa[:n_loc] + omega * xa
            w.x.array[:] = wa_owned_new
            w.x.scatter_forward()
            vmax = comm.allreduce(float(np.max(np.abs(w.x.array[V_to_W]))), op=MPI.MAX)
            if vmax > s.max_speed_m_s:
                raise SolverError(
                    f"velocity {vmax:.3g} m/s exceeds max_speed_m_s={s.max_speed_m_s} at iteration "
                    f"{it}: the iteration is diverging. Likely causes: pseudo_cfl too large for "
                    "this Reynolds number, too few ramp_iterations, or resistances/flow in the "
                    "wrong units.")
            rel = du_n / max(un_, 1e-300)
            residuals.append(rel)
            q_in = inflow_m3_s * ramp
            p_in = c_pin.dot(w.x.petsc_vec) / area_in
            history.append(np.concatenate([Q / inflow_m3_s, pout, [p_in]]))
            dQ = (np.max(np.abs(history[-1][:m] - history[-2][:m])) if len(history) > 1 else 1.0)
            logger.info("flow it %d: |du|/|u|=%.2e dQ/Qin=%.2e CFL=%.3g p_in=%.4g Pa Q=%s lin_its=%s",
                        it, rel, dQ, cfl, p_in, np.array2string(Q, precision=4),
                        linear_its[-1] if linear_its else "-")
            if progress is not None:
                progress(min(1.0, it / s.max_iterations),
                         f"iteration {it}: update {rel:.1e}, inlet pressure {p_in:.0f} Pa")
            # SER: grow the pseudo time step as the steady residual falls
            if res_abs is not None:
                if res_prev is not None and math.isfinite(cfl):
                    cfl = min(s.pseudo_cfl_max, cfl * min(4.0, max(0.5, res_prev / max(res_abs, 1e-300))))
                res_prev = res_abs
            if it > s.ramp_iterations and rel < s.rtol and dQ < s.rtol and abs(q_in - inflow_m3_s) == 0:
                status, reason = "converged", f"‖Δu‖/‖u‖ = {rel:.2e} and max ΔQ/Q_in = {dQ:.2e} < rtol"
                break
            if it >= max(s.settle_min_iterations, s.ramp_iterations + s.settle_window):
                win = np.array(history[-s.settle_window:])
                p_scale = max(1.0, float(np.ptp(np.concatenate([pout, [p_in]]))),
                              0.5 * rho * U_ref**2)
                spread_q = float(np.max(np.ptp(win[:, :m], axis=0)))
                spread_p = float(np.max(np.ptp(win[:, m:], axis=0))) / p_scale
                if max(spread_q, spread_p) < s.settle_rtol:
                    status = "settled"
                    reason = (f"no strict steady state (‖Δu‖/‖u‖ = {rel:.1e} > rtol = {s.rtol:g}); "
                              f"outlet flows and pressures settled over the last {s.settle_window} "
                              f"iterations within {max(spread_q, spread_p):.1e} (flow split ±"
                              f"{spread_q:.1e}, pressures ±{spread_p:.1e} of their range)")
                    break
        else:
            reason = (f"max_iterations={s.max_iterations} reached with ‖Δu‖/‖u‖ = {residuals[-1]:.1e}"
                      f" (rtol {s.rtol:g})")
    finally:
        n_fact = getattr(lin, "n_factorisations", it)
        lin.destroy()
        for vec in [b, x_f, x_new, r_vec, c_pin, *x_i, *b_out]:
            vec.destroy()
        A.destroy()

    if status != "converged":
        logger.warning("steady flow: %s", reason)
    timings = dict(prov.timings_s)
    timings.update({"assemble": t_assemble, "solve": t_solve,
                    "total": time.perf_counter() - t_start})
    if s.reuse_factorisation:
        prov.parameters["factorisations"] = n_fact
        prov.parameters["linear_iterations"] = linear_its
    prov.timings_s = timings
    prov.parameters["status"] = status
    u_out = w.sub(0).collapse()
    p_out = w.sub(1).collapse()
    p_in = comm.allreduce(fem.assemble_scalar(fem.form(p_out * ds(fm.names["inlet"]))),
                          op=MPI.SUM) / area_in
    q_in_meas = -comm.allreduce(fem.assemble_scalar(fem.form(ufl.dot(u_out, n) * ds(fm.names["inlet"]))), op=MPI.SUM)
    q_out = {nm: comm.allreduce(fem.assemble_scalar(fem.form(ufl.dot(u_out, n) * ds(oid))), op=MPI.SUM)
             for nm, oid in zip(names, out_ids, strict=True)}
    return FlowResult(
        u=u_out, p=p_out, inlet_flow_m3_s=float(q_in_meas),
        outlet_flows_m3_s={k: float(v) for k, v in q_out.items()},
        outlet_pressures_pa={nm: float(p0[i] + R[i] * q_out[nm]) for i, nm in enumerate(names)},
        iterations=it, residuals=residuals, converged=status == "converged", n_dofs=int(n_dofs),
        timings_s=timings, provenance=prov, status=status, reason=reason,
        inlet_pressure_pa=float(p_in), mesh=fm, chi=chi, blood=blood, region=region)
