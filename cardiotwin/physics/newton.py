"""Steady incompressible Navier–Stokes: Taylor–Hood elements, Newton's method, Re continuation.

This is the *verification-grade* steady solver of the physics package. It trades cost for
accuracy and robustness against the stabilised P1–P1 Picard solver of :mod:`.steady` (which is
what runs on patient meshes of a million cells; see ``docs/steady.md``).

Discretisation
--------------
Inf-sup stable Taylor–Hood ``P_k``–``P_{k-1}`` (default ``k = 2``), monolithic ``(u, p)`` in a
mixed space, no stabilisation. The residual, for all ``(v, q)``::

    F = ∫ ρ (∇u) u · v + ∫ τ(u) : ∇v − ∫ p ∇·v − ∫ q ∇·u − ∫ f · v + ∫ σχ u · v
      + Σ_outlets ∫ p0 n · v − [non-Newtonian only] Σ_outlets ∫ μ(γ̇) (∇u)ᵀ n · v

with ``τ(u) = μ ∇u`` (Newtonian; Laplace form, the natural condition is the classical
*do-nothing* ``(μ∇u − pI) n = −p0 n``) or ``τ(u) = 2 μ(γ̇) D(u)`` (generalised Newtonian, the
outlet term restores the same do-nothing condition, which fully developed flow satisfies), the
Brinkman drag ``σ = μ_ref/κ`` in a porous region (indicator ``χ``) and a body force ``f``.

Nonlinear solve
---------------
Newton's method (PETSc SNES ``newtonls`` with a backtracking line search by default) on the
exact Jacobian ``dF/d(u, p)`` derived by UFL; each linear system by MUMPS LU. Continuation in
the Reynolds number: the inflow is scaled through a sequence of Reynolds numbers (automatic:
geometric from ``first_reynolds`` with ratio ``max_step_ratio``), each stage warm-started from
the previous (scaled) solution; a failing stage is retried at half the Reynolds step up to
``max_halvings`` times before :class:`~cardiotwin.errors.SolverError` is raised with the stage,
its Reynolds number and the residual history.

Boundaries
----------
``inlet``: Dirichlet velocity, a callable profile (m/s) or a flow rate (m³/s) with a parabolic
or plug profile over a :class:`~cardiotwin.geometry.volume_mesh.FluidDomain` inlet cap. Every
boundary whose name starts with ``outlet``: natural (do-nothing) with a constant pressure
(default 0 Pa). Every other named boundary (``wall``, ``cylinder``…): no-slip. Without any
outlet the pressure is fixed to 0 at one vertex and returned with zero mean.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError, SolverError
from cardiotwin.physics.brinkman import BrinkmanRegion
from cardiotwin.physics.mesh import FlowMesh, indicator_dg0, inlet_profile
from cardiotwin.physics.rheology import CarreauYasuda, Newtonian, shear_rate
from cardiotwin.provenance import Provenance, sha256_file

logger = logging.getLogger(__name__)

__all__ = ["NewtonResult", "NewtonSettings", "StageReport", "solve_newton"]

InflowProfile = Callable[[np.ndarray], np.ndarray]
"""Velocity profile ``g(x)``: points ``x`` of shape (3, N) in m → velocity (gdim, N) in m/s."""


def _default_petsc_options() -> dict[str, Any]:
    return {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
            "mat_mumps_icntl_14": 100}


@dataclass(frozen=True)
class NewtonSettings:
    """Options of :func:`solve_newton`.

    Parameters
    ----------
    degree : velocity degree ``k`` of Taylor–Hood ``P_k``–``P_{k-1}``, ``k >= 2``.
    reynolds_steps : explicit intermediate Reynolds numbers of the continuation (those below the
        target are used, in increasing order, then the target); ``None`` = automatic.
    first_reynolds : automatic continuation starts here (a target at or below it is solved in
        one stage).
    max_step_ratio : automatic continuation multiplies Re by at most this per stage (> 1).
    max_halvings : a failed stage is retried at the midpoint Reynolds number this many times.
    max_iterations : Newton iterations per stage.
    rtol, atol : SNES tolerances on the residual norm (``atol`` relative to the residual scale
        ``ρU²L^{d-1} + μUL^{d-2}``); ``stol`` on the relative Newton step.
    line_search : SNES line search (``"bt"`` backtracking, ``"basic"`` full steps).
    quadrature_degree : cell quadrature degree; ``None`` = automatic for Newtonian fluids,
        ``3k − 1`` for shear-dependent viscosity (whose integrand is not polynomial).
    shear_rate_floor_1_s : regularisation of ``γ̇`` at zero strain (non-Newtonian only).
    indicator_samples : samples per cell of a Brinkman indicator (1 or 11, see
        :func:`.mesh.indicator_dg0`).
    petsc_options : options of SNES and its KSP (default: MUMPS LU).
    """

    degree: int = 2
    reynolds_steps: tuple[float, ...] | None = None
    first_reynolds: float = 50.0
    max_step_ratio: float = 3.0
    max_halvings: int = 4
    max_iterations: int = 25
    rtol: float = 1e-10
    atol: float = 1e-11
    stol: float = 1e-12
    line_search: str = "bt"
    quadrature_degree: int | None = None
    shear_rate_floor_1_s: float = 1e-6
    indicator_samples: int = 11
    petsc_options: dict[str, Any] = field(default_factory=_default_petsc_options)

    def __post_init__(self) -> None:
        if not (isinstance(self.degree, int) and 2 <= self.degree <= 4):
            raise InputError(f"degree must be 2, 3 or 4 (Taylor–Hood P_k–P_k-1); got {self.degree!r}")
        if self.reynolds_steps is not None and any(
                not (math.isfinite(r) and r > 0) for r in self.reynolds_steps):
            raise InputError(f"reynolds_steps must be positive numbers; got {self.reynolds_steps}")
        if not (self.first_reynolds > 0 and math.isfinite(self.first_reynolds)):
            raise InputError(f"first_reynolds must be > 0; got {self.first_reynolds}")
        if not self.max_step_ratio > 1:
            raise InputError(f"max_step_ratio must be > 1; got {self.max_step_ratio}")
        if self.max_halvings < 0 or self.max_iterations < 1:
            raise InputError("max_halvings must be >= 0 and max_iterations >= 1")
        if not (0 < self.rtol < 1 and self.atol > 0 and self.stol >= 0):
            raise InputError(f"need 0 < rtol < 1, atol > 0, stol >= 0; got {self.rtol}, "
                             f"{self.atol}, {self.stol}")
        if self.line_search not in ("bt", "basic", "l2", "cp"):
            raise InputError(f"line_search must be 'bt', 'basic', 'l2' or 'cp'; got {self.line_search!r}")
        if self.quadrature_degree is not None and not 1 <= self.quadrature_degree <= 20:
            raise InputError(f"quadrature_degree must be in [1, 20]; got {self.quadrature_degree}")
        if self.indicator_samples not in (1, 11):
            raise InputError(f"indicator_samples must be 1 or 11; got {self.indicator_samples}")


@dataclass(frozen=True)
class StageReport:
    """One continuation stage.

    Attributes
    ----------
    reynolds : Reynolds number of the stage.
    inflow_scale : inflow velocity relative to the target.
    iterations : Newton iterations taken.
    residuals : SNES residual norms (iteration 0 first).
    converged : SNES converged reason > 0.
    reason : PETSc SNES converged reason (``> 0`` converged, ``< 0`` diverged).
    time_s : wall time of the stage.
    """

    reynolds: float
    inflow_scale: float
    iterations: int
    residuals: tuple[float, ...]
    converged: bool
    reason: int
    time_s: float


@dataclass
class NewtonResult:
    """Converged steady state of :func:`solve_newton`.

    Attributes
    ----------
    u, p : velocity (m/s, ``P_k`` vector) and pressure (Pa, ``P_{k-1}``) Functions.
    w : the mixed ``(u, p)`` Function (a warm start for another solve on the same mesh).
    mesh : the :class:`~cardiotwin.physics.mesh.FlowMesh` solved on.
    stages : continuation stages actually run (failed attempts included, ``converged=False``).
    reynolds : target Reynolds number ``ρ U L / μ_ref``.
    reference_velocity_m_s, reference_length_m : ``U`` (mean inflow speed) and ``L``.
    density_kg_m3 : ρ.
    rheology : viscosity law.
    inlet_flow_m3_s : flow entering through the inlet (positive inward).
    boundary_flows_m3_s : outward flow through each named boundary.
    boundary_pressures_pa : mean pressure over each named boundary.
    n_dofs : global number of unknowns.
    timings_s : wall times (setup, solve, total).
    provenance : parameters, input hashes and timings.
    chi : DG0 Brinkman indicator (1 in porous cells) or ``None``.
    """

    u: Any
    p: Any
    w: Any
    mesh: FlowMesh
    stages: list[StageReport]
    reynolds: float
    reference_velocity_m_s: float
    reference_length_m: float
    density_kg_m3: float
    rheology: Newtonian | CarreauYasuda
    inlet_flow_m3_s: float
    boundary_flows_m3_s: dict[str, float]
    boundary_pressures_pa: dict[str, float]
    n_dofs: int
    timings_s: dict[str, float]
    provenance: Provenance
    chi: Any = None

    @property
    def iterations(self) -> list[int]:
        """Newton iterations of each converged stage."""
        return [s.iterations for s in self.stages if s.converged]

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers: Reynolds number, stages, flows, pressures, size, timings."""
        return {
            "reynolds": float(self.reynolds),
            "stages": [{"reynolds": s.reynolds, "iterations": s.iterations, "converged": s.converged,
                        "final_residual": s.residuals[-1] if s.residuals else None}
                       for s in self.stages],
            "inlet_flow_m3_s": float(self.inlet_flow_m3_s),
            "boundary_flows_m3_s": dict(self.boundary_flows_m3_s),
            "boundary_pressures_pa": dict(self.boundary_pressures_pa),
            "n_dofs": int(self.n_dofs),
            "timings_s": dict(self.timings_s),
        }


_counter = [0]
_BLOOD_NEWTONIAN = Newtonian()


def _continuation(re_target: float, s: NewtonSettings) -> list[float]:
    if s.reynolds_steps is not None:
        steps = sorted(r for r in s.reynolds_steps if r < re_target)
    else:
        steps = []
        r = s.first_reynolds
        while r < re_target:
            steps.append(r)
            r *= s.max_step_ratio
        # avoid a last step that is tiny compared to the others
        if steps and re_target / steps[-1] < 1.2:
            steps.pop()
    return [*steps, re_target]


def solve_newton(fm: FlowMesh, *, inflow: float | InflowProfile, inlet: str = "inlet",
                 outlets: Mapping[str, float] | None = None,
                 density_kg_m3: float = 1060.0,
                 rheology: Newtonian | CarreauYasuda = _BLOOD_NEWTONIAN,
                 region: BrinkmanRegion | None = None,
                 body_force: Callable[[Any], Any] | None = None,
                 inflow_profile: str = "parabolic",
                 reference_length_m: float | None = None,
                 initial_guess: NewtonResult | None = None,
                 settings: NewtonSettings = NewtonSettings()) -> NewtonResult:
    """Solve steady Navier–Stokes with Taylor–Hood elements and Newton's method.

    Parameters
    ----------
    fm : mesh in metres with named facet tags (2-D or 3-D).
    inflow : Dirichlet velocity on ``inlet``: a callable ``g(x)`` (x: (3, N) m → (gdim, N) m/s),
        or a flow rate in m³/s (> 0) when ``fm.domain`` is a FluidDomain with an inlet cap.
    inlet : name of the Dirichlet-velocity boundary (for manufactured solutions: the whole
        boundary).
    outlets : boundary name (``"outlet"``, ``"outlet:<name>"`` or ``<name>``) → constant outlet
        pressure in Pa; outlets not listed get 0 Pa. Every boundary named ``outlet*`` is an outlet.
    density_kg_m3 : ρ in kg/m³, in (0, 1e5) (benchmarks use 1).
    rheology : :class:`~.rheology.Newtonian` or :class:`~.rheology.CarreauYasuda`.
    region : Brinkman region (3-D meshes from a FluidDomain only; evaluated in mm).
    body_force : ``f(x)`` → UFL vector (N/m³) from the UFL spatial coordinate, e.g. for
        manufactured solutions. Not scaled by the continuation.
    inflow_profile : ``"parabolic"`` or ``"plug"`` when ``inflow`` is a flow rate.
    reference_length_m : ``L`` of the Reynolds number; default the inlet hydraulic diameter
        (2-D: inlet length; 3-D: ``2 sqrt(A/π)``).
    initial_guess : a result on the same mesh and degree to start from (continuation skipped
        below its Reynolds number).
    settings : discretisation and Newton options.

    Returns
    -------
    NewtonResult

    Raises
    ------
    InputError
        Unknown boundary names, bad inflow, bad density, region on a 2-D mesh.
    SolverError
        A stage did not converge even after ``max_halvings`` smaller Reynolds steps; the message
        names the stage, its Reynolds number and the residual history.

    References
    ----------
    Taylor & Hood (1973), Comput. Fluids 1:73–100. Elman, Silvester & Wathen (2014), *Finite
    Elements and Fast Iterative Solvers*, 2nd ed., ch. 8 (Newton for steady Navier–Stokes).
    """
    import ufl
    from basix.ufl import element, mixed_element
    from dolfinx import fem
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc

    t_start = time.perf_counter()
    s = settings
    msh = fm.mesh
    comm = msh.comm
    tdim = msh.topology.dim
    gdim = msh.geometry.dim
    fdim = tdim - 1

    # ---- inputs ------------------------------------------------------------------------------
    if not (math.isfinite(density_kg_m3) and 0 < density_kg_m3 < 1e5):
        raise InputError(f"density_kg_m3 must be in (0, 1e5); got {density_kg_m3!r} (blood 1060)")
    if not isinstance(rheology, Newtonian | CarreauYasuda):
        raise InputError(f"rheology must be Newtonian or CarreauYasuda; got {type(rheology).__name__}")
    if inlet not in fm.names:
        raise InputError(f"inlet boundary {inlet!r} is not tagged; the mesh has {sorted(fm.names)}")
    outlet_names = sorted(n for n in fm.names if n.startswith("outlet"))
    p_out: dict[str, float] = dict.fromkeys(outlet_names, 0.0)
    for k, v in (outlets or {}).items():
        full = k if k in fm.names else f"outlet:{k}"
        if full not in p_out:
            raise InputError(f"unknown outlet {k!r}; the mesh's outlets are {outlet_names}")
        if not math.isfinite(float(v)):
            raise InputError(f"outlet pressure of {k!r} must be finite (Pa); got {v!r}")
        p_out[full] = float(v)
    walls = sorted(n for n in fm.names if n != inlet and n not in p_out)
    if region is not None and (fm.domain is None or gdim != 3):
        raise InputError("a Brinkman region needs a 3-D mesh loaded from a FluidDomain (mm poses)")
    if inflow_profile not in ("parabolic", "plug"):
        raise InputError(f"inflow_profile must be 'parabolic' or 'plug'; got {inflow_profile!r}")
    if not callable(inflow):
        if not (isinstance(inflow, int | float) and math.isfinite(inflow) and inflow > 0):
            raise InputError(f"inflow must be a callable profile or a positive flow in m³/s; got "
                             f"{inflow!r}")
        if fm.domain is None or gdim != 3 or inlet != "inlet":
            raise InputError("a flow rate as inflow needs a 3-D FlowMesh from a FluidDomain (its "
                             "inlet cap defines the profile); pass a callable profile instead")
    if reference_length_m is not None and not (math.isfinite(reference_length_m)
                                               and reference_length_m > 0):
        raise InputError(f"reference_length_m must be > 0 (m); got {reference_length_m!r}")
    if initial_guess is not None and initial_guess.mesh is not fm:
        raise InputError("initial_guess must come from a solve on the same FlowMesh")

    prov = Provenance(step="physics.newton")
    if fm.domain is not None:
        prov.inputs["mesh"] = sha256_file(fm.domain.mesh_path)
    prov.parameters = {
        "inlet": inlet, "outlet_pressures_pa": p_out, "no_slip": walls,
        "density_kg_m3": float(density_kg_m3), "rheology": {type(rheology).__name__: vars(rheology)},
        "region": region.to_dict() if region is not None else None,
        "inflow": "callable" if callable(inflow) else float(inflow),
        "inflow_profile": inflow_profile, "element": f"P{s.degree}-P{s.degree - 1}",
        "body_force": body_force is not None, "mpi_size": comm.size,
    }

    # ---- spaces and boundary conditions ------------------------------------------------------
    with prov.timed("setup"):
        Pv = element("Lagrange", msh.basix_cell(), s.degree, shape=(gdim,), dtype=PETSc.RealType)
        Pp = element("Lagrange", msh.basix_cell(), s.degree - 1, dtype=PETSc.RealType)
        W = fem.functionspace(msh, mixed_element([Pv, Pp]))
        V, _ = W.sub(0).collapse()
        Qs, _ = W.sub(1).collapse()
        n_dofs = W.dofmap.index_map.size_global * W.dofmap.index_map_bs
        ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)
        n = ufl.FacetNormal(msh)
        msh.topology.create_connectivity(fdim, tdim)

        # target inflow g_full; the stage value is g = scale · g_full
        if callable(inflow):
            g_full = fem.Function(V)
            g_full.interpolate(inflow)
        else:
            g_full, _ = inlet_profile(fm, V, inflow_profile)
            unit_flux = comm.allreduce(
                fem.assemble_scalar(fem.form(ufl.dot(g_full, n) * ds(fm.names[inlet]))), op=MPI.SUM)
            if not unit_flux < 0:
                raise InputError("inlet profile does not point into the domain; check the inlet "
                                 "cap normal (it must point out of the fluid)")
            g_full.x.array[:] *= float(inflow) / -unit_flux
        g = fem.Function(V)
        zero_v = fem.Function(V)
        bcs = [fem.dirichletbc(g, fem.locate_dofs_topological(
            (W.sub(0), V), fdim, fm.facet_tags.find(fm.names[inlet])), W.sub(0))]
        for name in walls:
            dofs = fem.locate_dofs_topological((W.sub(0), V), fdim, fm.facet_tags.find(fm.names[name]))
            bcs.append(fem.dirichletbc(zero_v, dofs, W.sub(0)))
        pinned = not p_out
        if pinned:
            bcs.append(_pressure_pin(W, Qs))

        def _integral(expr, measure):
            return comm.allreduce(fem.assemble_scalar(fem.form(expr * measure)), op=MPI.SUM)

        area_in = _integral(1.0, ds(fm.names[inlet]))
        q_full = -_integral(ufl.dot(g_full, n), ds(fm.names[inlet]))
        if pinned:
            # closed (all-Dirichlet) boundary: U from the mean speed of the data on the boundary
            u_ref = math.sqrt(_integral(ufl.dot(g_full, g_full), ds(fm.names[inlet])) / area_in)
        else:
            u_ref = abs(q_full) / area_in
        if not (u_ref > 0 and math.isfinite(u_ref)):
            raise InputError(f"the inflow on {inlet!r} has no flow through the boundary (mean speed "
                             f"{u_ref!r} m/s); check the profile's direction and magnitude")
        if reference_length_m is None:
            reference_length_m = area_in if gdim == 2 else 2.0 * math.sqrt(area_in / math.pi)
        mu_ref = rheology.reference_viscosity_pa_s
        re_target = density_kg_m3 * u_ref * reference_length_m / mu_ref

    # ---- Brinkman indicator --------------------------------------------------------------------
    chi = None
    if region is not None:
        with prov.timed("indicator"):
            chi = indicator_dg0(fm, region, s.indicator_samples)

    # ---- residual ----------------------------------------------------------------------------
    with prov.timed("forms"):
        w = fem.Function(W)
        u, p = ufl.split(w)
        v, q = ufl.TestFunctions(W)
        rho = fem.Constant(msh, PETSc.ScalarType(density_kg_m3))
        newtonian = isinstance(rheology, Newtonian)
        qdeg = s.quadrature_degree
        if qdeg is None and not newtonian:
            qdeg = 3 * s.degree - 1
        md = {} if qdeg is None else {"quadrature_degree": qdeg}
        dx = ufl.Measure("dx", domain=msh, metadata=md)
        dso = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags, metadata=md)
        F = rho * ufl.inner(ufl.grad(u) * u, v) * dx - p * ufl.div(v) * dx - q * ufl.div(u) * dx
        if newtonian:
            mu = fem.Constant(msh, PETSc.ScalarType(rheology.viscosity_pa_s))
            F += mu * ufl.inner(ufl.grad(u), ufl.grad(v)) * dx
        else:
            mu = rheology.ufl_viscosity(shear_rate(u, floor_1_s=s.shear_rate_floor_1_s))
            F += 2 * mu * ufl.inner(ufl.sym(ufl.grad(u)), ufl.sym(ufl.grad(v))) * dx
            for name in p_out:
                F -= mu * ufl.inner(ufl.dot(ufl.grad(u).T, n), v) * dso(fm.names[name])
        for name, p0 in p_out.items():
            if p0 != 0.0:
                F += fem.Constant(msh, PETSc.ScalarType(p0)) * ufl.inner(n, v) * ds(fm.names[name])
        if body_force is not None:
            F -= ufl.inner(body_force(ufl.SpatialCoordinate(msh)), v) * dx
        if chi is not None:
            sigma = fem.Constant(msh, PETSc.ScalarType(mu_ref / region.permeability_m2))
            F += sigma * chi * ufl.inner(u, v) * dx

        _counter[0] += 1
        prefix = f"cardiotwin_newton_{_counter[0]}_"
        f_scale = (density_kg_m3 * u_ref**2 * reference_length_m ** (gdim - 1)
                   + mu_ref * u_ref * reference_length_m ** (gdim - 2))
        opts = dict(s.petsc_options)
        opts.setdefault("snes_type", "newtonls")
        opts.setdefault("snes_linesearch_type", s.line_search)
        opts.update({"snes_rtol": s.rtol, "snes_atol": s.atol * f_scale, "snes_stol": s.stol,
                     "snes_max_it": s.max_iterations})
        problem = fpetsc.NonlinearProblem(F, w, bcs=bcs, petsc_options_prefix=prefix)
        snes = problem.solver
        # The options stay in the database until the end of the solve: the factorisation options
        # (mat_mumps_*) are read when the first Jacobian is factored, not by setFromOptions.
        db = PETSc.Options()
        for k, v in opts.items():
            db[f"{prefix}{k}"] = v
        snes.setFromOptions()
        history: list[float] = []
        snes.setMonitor(lambda _snes, _it, norm: history.append(float(norm)))

    # ---- continuation ------------------------------------------------------------------------
    stages: list[StageReport] = []
    re_done = 0.0
    if initial_guess is not None:
        if initial_guess.w.x.array.shape != w.x.array.shape:
            raise InputError("initial_guess has a different element degree or mesh partition; "
                             f"expected {w.x.array.shape[0]} local values")
        w.x.array[:] = initial_guess.w.x.array
        # the guess's inflow level expressed on this problem's Reynolds scale
        re_done = re_target * initial_guess.reference_velocity_m_s / u_ref
    plan = [r for r in _continuation(re_target, s) if r > re_done * (1 + 1e-12)] or [re_target]
    logger.info("Newton P%d-P%d: %d dofs, Re = %.4g, continuation %s", s.degree, s.degree - 1,
                n_dofs, re_target, np.array2string(np.array(plan), precision=3))
    backup = w.x.array.copy()
    t_solve = time.perf_counter()
    try:
        queue = list(plan)
        halvings = 0
        while queue:
            re_k = queue[0]
            scale = re_k / re_target
            # warm start: scale the last converged state to the new inflow (exact for Stokes)
            if re_done > 0:
                w.x.array[:] = backup * (re_k / re_done)
            g.x.array[:] = scale * g_full.x.array
            history.clear()
            t0 = time.perf_counter()
            reason = _snes_solve(problem)
            its = snes.getIterationNumber()
            ok = reason > 0 and bool(np.all(np.isfinite(w.x.array)))
            stages.append(StageReport(reynolds=float(re_k), inflow_scale=float(scale),
                                      iterations=int(its), residuals=tuple(history),
                                      converged=ok, reason=int(reason),
                                      time_s=time.perf_counter() - t0))
            logger.info("Newton stage Re=%.4g: %s in %d iterations, residual %s", re_k,
                        "converged" if ok else f"FAILED (SNES reason {reason})", its,
                        f"{history[-1]:.2e}" if history else "-")
            if ok:
                backup = w.x.array.copy()
                re_done = re_k
                queue.pop(0)
                halvings = 0
                continue
            w.x.array[:] = backup
            if halvings >= s.max_halvings:
                hist = ", ".join(f"{r:.3e}" for r in history)
                raise SolverError(
                    f"Newton did not converge at continuation stage {len(stages)} (Re = {re_k:.4g}"
                    f" of target {re_target:.4g}; SNES reason {reason}) after {s.max_halvings} "
                    f"Reynolds-step halvings. Residual history: [{hist}]. Try more "
                    "continuation stages (smaller max_step_ratio / first_reynolds), a finer mesh, "
                    "or check that a steady solution exists at this Reynolds number.")
            halvings += 1
            queue.insert(0, 0.5 * (re_done + re_k))
    finally:
        snes.setMonitor(None)
        for k in opts:
            db.delValue(f"{prefix}{k}")
    t_solve = time.perf_counter() - t_solve

    # ---- outputs -----------------------------------------------------------------------------
    u_h = w.sub(0).collapse()
    p_h = w.sub(1).collapse()
    u_h.name, p_h.name = "velocity_m_s", "pressure_pa"
    if pinned:
        vol = _integral(1.0, ufl.dx(domain=msh))
        p_h.x.array[:] -= _integral(p_h, ufl.dx(domain=msh)) / vol
    flows = {nm: _integral(ufl.dot(u_h, n), ds(fm.names[nm])) for nm in fm.names}
    pressures = {nm: _integral(p_h, ds(fm.names[nm])) / _integral(1.0, ds(fm.names[nm]))
                 for nm in fm.names}
    timings = dict(prov.timings_s)
    timings.update({"solve": t_solve, "total": time.perf_counter() - t_start})
    prov.timings_s = timings
    prov.parameters["stages"] = [{"reynolds": st.reynolds, "iterations": st.iterations,
                                  "converged": st.converged} for st in stages]
    prov.parameters["reynolds"] = float(re_target)
    return NewtonResult(
        u=u_h, p=p_h, w=w, mesh=fm, stages=stages, reynolds=float(re_target),
        reference_velocity_m_s=float(u_ref), reference_length_m=float(reference_length_m),
        density_kg_m3=float(density_kg_m3), rheology=rheology,
        inlet_flow_m3_s=float(-flows[inlet]), boundary_flows_m3_s=flows,
        boundary_pressures_pa=pressures, n_dofs=int(n_dofs), timings_s=timings, provenance=prov,
        chi=chi)


def _snes_solve(problem) -> int:
    """Run SNES; a PETSc error in the linear solve counts as divergence (reason < 0)."""
    from petsc4py import PETSc

    try:
        problem.solve()
    except PETSc.Error as exc:  # e.g. a MUMPS failure on a singular Jacobian
        logger.warning("Newton solve raised PETSc error %s", exc)
        return -100
    return int(problem.solver.getConvergedReason())


def _pressure_pin(W, Qs):
    """Dirichlet ``p = 0`` at one vertex (the same on all ranks): fixes the pressure constant."""
    from dolfinx import fem

    X = Qs.tabulate_dof_coordinates()
    key = X[:, 0] + math.pi * X[:, 1] + math.e * X[:, 2]
    n_owned = Qs.dofmap.index_map.size_local
    local = float(key[:n_owned].min()) if n_owned else math.inf
    kmin = W.mesh.comm.allreduce(local, op=MPI.MIN)
    target = None
    if n_owned and local == kmin:
        target = X[int(np.argmin(key[:n_owned]))]
    owners = W.mesh.comm.allgather(target)
    point = next(t for t in owners if t is not None)

    def at_point(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x.T - point[None, :], axis=1) < 1e-12 * (1 + np.linalg.norm(point))

    dofs = fem.locate_dofs_geometrical((W.sub(1), Qs), at_point)
    zero = fem.Function(Qs)
    return fem.dirichletbc(zero, dofs, W.sub(1))
