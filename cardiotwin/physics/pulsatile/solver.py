"""Pulsatile incompressible Navier–Stokes with Windkessel outlets (IPCS, Taylor–Hood P2–P1).

Scheme (see ``docs/pulsatile.md`` for the derivation and the choices)
-----------------------------------------------------------------------
Incremental pressure correction (IPCS; Goda 1979, van Kan 1986) with the pressure living at half
steps ``t^{n+1/2}``, which makes the splitting second order in time (van Kan 1986; Guermond,
Minev & Shen 2006)::

  1. ρ(u* − uⁿ)/Δt + ρ(B·∇)ũ − μΔũ + ∇p^{n−1/2} + σχ u* = 0,   ũ = (u* + uⁿ)/2   (tentative)
  2. Δφ = ρ/Δt ∇·u*,   φ = p^{n+1/2} − p^{n−1/2}                                  (pressure)
  3. u^{n+1} = u* − Δt/ρ ∇φ  (L2 projection, velocity Dirichlet conditions kept)   (correction)

with the Adams–Bashforth extrapolated advecting velocity ``B = 3/2 uⁿ − 1/2 u^{n−1}`` and
Crank–Nicolson viscous and convective terms (``convection="semi-implicit"``, Simo & Armero 1994;
only the convection matrix is assembled every step, see below) or a fully explicit
Adams–Bashforth-2 convection with a constant momentum matrix (``convection="explicit"``, cheaper,
CFL ≲ 0.5). The Brinkman drag ``σχ u`` (``σ = μ/κ``) is implicit (backward Euler): with a huge
σ Crank–Nicolson would oscillate. Outlets carry the backflow stabilisation
``−β ρ/2 min(B·n, 0) u*·v`` (Esmaily-Moghadam et al. 2011). The pressure-Poisson and mass
matrices never change and are assembled once.

Operator splitting of the assembly (Newtonian path)
---------------------------------------------------
The scalar P2 mass ``M`` and stiffness ``K`` matrices are assembled once, with
``A₀ = ρ/Δt M + ½μK (+ σ M_χ)`` and ``R₀ = ρ/Δt M − ½μK``; per step only the convection matrix
``C(B) = ½ρ∫(B·∇u)v`` (and the outlet backflow facet term) is assembled, and
``A = A₀ + C (+ backflow)``, ``R = R₀ − C`` are sparse additions in the common pattern. The
right-hand sides are matrix–vector products: ``b1_i = R₀ uⁿ_i − C uⁿ_i + G_i p^{n−1/2}``,
``b2 = Σ_i E_i u*_i``, ``b3_i = M u*_i + G_i (Δt/ρ φ)`` with the gradient/divergence matrices
``G_i`` (``−∫∂p/∂x_i v``) and ``E_i`` (``−ρ/Δt ∫∂u_i/∂x_i q``) assembled once, the
technique of Oasis (Mortensen & Valen-Sendstad 2015). The results equal those of whole-form
assembly to round-off (measured relative differences ≤ 2e-12); the per-step assembly time falls
by about 2× (``docs/performance.md``).

Shear-thinning blood (``rheology=CarreauYasuda()``)
--------------------------------------------------
μ(γ̇) is evaluated from the Adams–Bashforth velocity ``B`` (lagged, semi-implicit) and step 1
becomes one vector system with Crank–Nicolson on the full stress ``2μ(B) ε(u)``, reassembled
every step. An explicit ``∇uᵀ`` term on the scalar matrix was unstable: it acts as an explicit
grad-div term on the tentative velocity. See ``docs/pulsatile.md``. The Newtonian path
(``rheology=None``) is unchanged.

Outlet coupling (implicit, exact per step)
------------------------------------------
Every outlet is a pressure (Dirichlet) boundary of step 2. For a Windkessel, the trapezoidal
update gives ``p^{n+1} = a + b Q^{n+1}`` (:meth:`~cardiotwin.physics.windkessel.RCR.implicit_coefficients`)
and the half-step pressure imposed in step 2 is ``(pⁿ + p^{n+1})/2``. Steps 2–3 are linear in the
outlet values ``g_j`` of φ, so ``φ = φ₀ + Σ g_j ψ_j`` and ``u^{n+1} = u₀ + Σ g_j w_j`` with
responses ``ψ_j`` (φ = 1 on outlet j, 0 on the others) and ``w_j`` computed **once** (all
operators are constant). The outlet flows are then ``Q = Q₀ + K g`` (``K_ij = ∫_Γi w_j·n``) and
``(I − diag(b/2) K) g = (pⁿ + a + b Q₀)/2 − p^{n−1/2}`` is an m×m solve: the Windkessel
pressures and the 3-D flows agree exactly at every step, for any ratio of Windkessel to 3-D
resistance (the explicit lagged coupling becomes unstable when ``R_p`` is large compared with
the 3-D resistance between outlets).

References
----------
Goda K. A multistep technique with implicit difference schemes for calculating two- or
three-dimensional cavity flows. J Comput Phys 1979;30:76–95.

van Kan J. A second-order accurate pressure-correction scheme for viscous incompressible flow.
SIAM J Sci Stat Comput 1986;7:870–891.

Guermond JL, Minev P, Shen J. An overview of projection methods for incompressible flows.
Comput Methods Appl Mech Eng 2006;195:6011–6045.

Simo JC, Armero F. Unconditional stability and long-term behavior of transient algorithms for the
incompressible Navier–Stokes and Euler equations. Comput Methods Appl Mech Eng 1994;111:271–286.

Mortensen M, Valen-Sendstad K. Oasis: a high-level/high-performance open source Navier–Stokes
solver. Comput Phys Commun 2015;188:177–188.

Esmaily-Moghadam M, Bazilevs Y, Hsia TY, Vignon-Clementel IE, Marsden AL. A comparison of outlet
boundary treatments for prevention of backflow divergence with relevance to blood flow
simulations. Comput Mech 2011;48:277–291.

Gorlin R, Gorlin SG. Hydraulic formula for calculation of the area of the stenotic mitral valve,
other cardiac valves, and central circulatory shunts. Am Heart J 1951;41:1–29.

He X, Ku DN. Pulsatile flow in the human left coronary artery bifurcation: average conditions.
J Biomech Eng 1996;118:74–82 (oscillatory shear index).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple

import dolfinx_solver  # noqa: F401  (loads the MPI runtime before dolfinx/petsc4py)
import numpy as np
from mpi4py import MPI

from cardiotwin.errors import InputError, SolverError
from cardiotwin.physics.brinkman import BrinkmanRegion
from cardiotwin.physics.linear import assemble_system
from cardiotwin.physics.mesh import FlowMesh, cell_geometry, indicator_dg0
from cardiotwin.physics.pulsatile.checkpoint import (
    CHECKPOINT_DIR,
    checkpoint_format,
    checkpoint_path,
    prune_checkpoints,
    read_checkpoint,
    write_checkpoint,
)
from cardiotwin.physics.pulsatile.forms import eddy_viscosity, shear_thinning_momentum_forms
from cardiotwin.physics.pulsatile.inflow import make_inflow
from cardiotwin.physics.pulsatile.outlets import OPEN, OutletModel, OutletState, outlet_key
from cardiotwin.physics.pulsatile.result import PulsatileResult, StepState
from cardiotwin.physics.pulsatile.settings import Inflow, PulsatileSettings, ValvePlanes
from cardiotwin.physics.pulsatile.valve import region_flux_setup, valve_eval, valve_setup
from cardiotwin.physics.pulsatile.wall_shear import WallShear
from cardiotwin.physics.rheology import Newtonian, shear_rate
from cardiotwin.physics.windkessel import RCR, OutletResistance, TwoElement
from cardiotwin.provenance import Provenance, sha256_file

logger = logging.getLogger(__name__)

__all__ = ["solve_pulsatile"]

_DEFAULT_BLOOD = Newtonian()
_DEFAULT_SETTINGS = PulsatileSettings()


class _KSP:
    def __init__(self, comm, A, options: dict[str, Any], prefix: str, what: str):
        from petsc4py import PETSc

        self.PETSc, self.what = PETSc, what
        self.ksp = PETSc.KSP().create(comm)
        self.ksp.setOptionsPrefix(prefix)
        opts = PETSc.Options()
        self._prefix, self._keys = prefix, list(options)
        for k, v in options.items():
            opts[f"{prefix}{k}"] = v
        self.ksp.setOperators(A)
        self.ksp.setFromOptions()
        self.iterations = 0

    def solve(self, b, x, step: int, t: float) -> None:
        try:
            self.ksp.solve(b, x)
        except self.PETSc.Error as e:
            raise SolverError(f"{self.what} solve failed at step {step} (t = {t:.5g} s): {e}. "
                              "Check the petsc options and the mesh tags.") from e
        reason = self.ksp.getConvergedReason()
        if reason < 0:
            raise SolverError(
                f"{self.what} solve diverged at step {step} (t = {t:.5g} s, KSP reason {reason}). "
                "Likely causes: a time step far too large (the flow is blowing up) or unsuitable "
                "petsc options; reduce dt_s (`rehearse --pulsatile --dt-ms`) or use the MUMPS "
                "direct solver.")
        self.iterations += self.ksp.getIterationNumber()
        x.ghostUpdate(addv=self.PETSc.InsertMode.INSERT, mode=self.PETSc.ScatterMode.FORWARD)

    def destroy(self) -> None:
        opts = self.PETSc.Options()
        for k in self._keys:
            opts.delValue(f"{self._prefix}{k}")
        self.ksp.destroy()


_counter = [0]


class _Inputs(NamedTuple):
    """The checked arguments of :func:`solve_pulsatile` that the run uses."""

    n_steps: int
    models: dict[str, OutletModel]
    names: list[str]
    period_s: float
    rho: float
    mu: float
    variable_mu: bool


def _check_inputs(fm: FlowMesh, *, inflow, outlets, dt_s, t_end_s, blood, regions, no_slip,
                  period_s, initial_outlet_pressures_pa, initial_velocity, initial_pressure,
                  out_dir, write_every, checkpoint_every, rheology) -> _Inputs:
    """Validate the arguments of :func:`solve_pulsatile` before any work (:class:`InputError`)."""
    for name, v in (("dt_s", dt_s), ("t_end_s", t_end_s)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a finite number of seconds > 0; got {v!r}")
    n_steps = int(round(t_end_s / dt_s))
    if n_steps < 1:
        raise InputError(f"t_end_s ({t_end_s}) must be at least one time step dt_s ({dt_s})")
    if not isinstance(inflow, Inflow):
        raise InputError(f"inflow must be an Inflow; got {type(inflow).__name__}")
    if inflow.boundary not in fm.names:
        raise InputError(f"inflow boundary {inflow.boundary!r} is not a facet group of the mesh "
                         f"({sorted(fm.names)})")
    for nm in no_slip:
        if nm not in fm.names:
            raise InputError(f"no_slip boundary {nm!r} is not a facet group of the mesh "
                             f"({sorted(fm.names)})")
    models: dict[str, OutletModel] = {}
    for k, v in outlets.items():
        key = outlet_key(fm, k)
        if isinstance(v, str) and v != OPEN:
            raise InputError(f"outlet {k!r}: model must be RCR, TwoElement, OutletResistance or "
                             f"'open'; got {v!r}")
        if not isinstance(v, RCR | TwoElement | OutletResistance | str):
            raise InputError(f"outlet {k!r}: model must be RCR, TwoElement, OutletResistance or "
                             f"'open'; got {type(v).__name__}")
        models[key] = v
    missing = [n for n in fm.names if n.startswith("outlet:") and n not in models]
    if missing:
        raise InputError(f"no outlet model for {missing}; give an RCR, TwoElement, "
                         "OutletResistance or 'open' for every outlet")
    if not models:
        raise InputError("at least one outlet is needed (a pressure boundary)")
    for k in models:
        if k == inflow.boundary or k in no_slip:
            raise InputError(f"boundary {k!r} cannot be both an outlet and an inflow/no-slip boundary")
    for k, v in (initial_outlet_pressures_pa or {}).items():
        if outlet_key(fm, k) not in models or not math.isfinite(v):
            raise InputError(f"initial_outlet_pressures_pa: bad entry {k!r}: {v!r}")
    for reg in regions:
        if not isinstance(reg, BrinkmanRegion):
            raise InputError(f"regions must be BrinkmanRegion objects; got {type(reg).__name__}")
    for name, v in (("write_every", write_every), ("checkpoint_every", checkpoint_every)):
        if not (isinstance(v, int) and v >= 0):
            raise InputError(f"{name} must be an integer >= 0; got {v!r}")
    if (write_every or checkpoint_every) and out_dir is None:
        raise InputError("write_every/checkpoint_every need an out_dir")
    if period_s is None:
        period_s = float(getattr(inflow.flow_m3_s, "period_s", 0.0) or t_end_s)
    if not (math.isfinite(period_s) and period_s > 0):
        raise InputError(f"period_s must be > 0; got {period_s!r}")
    if dt_s > period_s * (1 + 1e-12):
        raise InputError(f"dt_s ({dt_s:g} s) is longer than the cycle period_s ({period_s:g} s): "
                         "a cycle needs many steps (40 or more); reduce dt_s")
    if inflow.flow_m3_s is not None:
        try:
            q_first = float(inflow.flow_m3_s(float(dt_s)))
        except (TypeError, ValueError) as e:
            raise InputError(f"Inflow.flow_m3_s must map a time in s to a flow in m³/s; calling "
                             f"it at t = {dt_s:g} s failed: {e}") from e
        if not math.isfinite(q_first):
            raise InputError(f"Inflow.flow_m3_s({dt_s:g}) = {q_first!r} is not finite; check the "
                             "waveform parameters (heart rate, stroke volume)")
    variable_mu = False
    if rheology is not None:
        missing_attrs = [a for a in ("ufl_viscosity", "viscosity", "reference_viscosity_pa_s",
                                     "is_newtonian") if not hasattr(rheology, a)]
        if missing_attrs:
            raise InputError(f"rheology must provide ufl_viscosity(), viscosity(), "
                             f"reference_viscosity_pa_s and is_newtonian (use "
                             f"cardiotwin.physics.rheology.Newtonian or CarreauYasuda); "
                             f"{type(rheology).__name__} lacks {missing_attrs}")
        variable_mu = not bool(rheology.is_newtonian)
    try:
        rho, mu = float(blood.density_kg_m3), float(blood.viscosity_pa_s)
    except (AttributeError, TypeError, ValueError) as e:
        raise InputError(f"blood must have numeric density_kg_m3 and viscosity_pa_s (a "
                         f"Newtonian); got {type(blood).__name__}: {e}") from e
    if not (math.isfinite(rho) and rho > 0 and math.isfinite(mu) and mu > 0):
        raise InputError(f"blood density ({rho!r} kg/m³) and viscosity ({mu!r} Pa·s) must be "
                         "finite and > 0")
    for name, f0 in (("initial_velocity", initial_velocity), ("initial_pressure", initial_pressure)):
        if f0 is not None and hasattr(f0, "function_space") and f0.function_space.mesh is not fm.mesh:
            raise InputError(f"{name} is a Function on another mesh; give one on fm.mesh or a "
                             "callable (x, t) -> values")
    names = list(models)
    if rheology is not None:
        # Newtonian: its constant viscosity (μ(0) is μ_0 also for a Carreau–Yasuda law with
        # n = 1); shear-thinning: μ_∞ for the Brinkman drag and the callback's StepState.mu
        mu = float(rheology.reference_viscosity_pa_s if variable_mu
                   else np.asarray(rheology.viscosity(np.zeros(1))).ravel()[0])
        if not (math.isfinite(mu) and mu > 0):
            raise InputError(f"rheology gives a viscosity of {mu!r} Pa·s; it must be > 0")
    return _Inputs(n_steps, models, names, period_s, rho, mu, variable_mu)


def _provenance(fm: FlowMesh, inp: _Inputs, *, dt_s, t_end_s, blood, regions, inflow, no_slip,
                settings, valve, rheology) -> Provenance:
    """The run's provenance: mesh hash and every parameter that shapes the result."""
    prov = Provenance(step="flow.pulsatile")
    if fm.domain is not None:
        prov.inputs["mesh"] = sha256_file(fm.domain.mesh_path)
    prov.parameters = {
        "dt_s": float(dt_s), "t_end_s": float(t_end_s), "n_steps": inp.n_steps,
        "period_s": inp.period_s,
        "outlets": {k: (asdict(v) if not isinstance(v, str) else v) for k, v in inp.models.items()},
        "blood": (asdict(blood) if is_dataclass(blood) else
                  {"density_kg_m3": inp.rho, "viscosity_pa_s": inp.mu}),
        "regions": [r.to_dict() for r in regions],
        "inflow": {"profile": inflow.profile, "boundary": inflow.boundary,
                   "flow": repr(inflow.flow_m3_s) if inflow.flow_m3_s is not None else None},
        "no_slip": list(no_slip), "settings": asdict(settings), "mpi_size": fm.mesh.comm.size,
        "valve": asdict(valve) if valve is not None else None,
    }
    if rheology is not None:
        prov.parameters["rheology"] = {type(rheology).__name__: dict(vars(rheology))}
    return prov


class _IPCS:
    """The discrete scheme of one run (see the module notes): spaces, boundary conditions,
    operators, linear solvers and work vectors, built once; then per time step the tentative
    velocity, the pressure increment and projection, and the implicit outlet coupling.

    Everything PETSc owns is released by :meth:`destroy`.
    """

    def __init__(self, fm: FlowMesh, inp: _Inputs, *, inflow: Inflow, no_slip, regions, blood,
                 rheology, dt_s: float, settings: PulsatileSettings, prov: Provenance):
        import ufl
        from dolfinx import fem
        from dolfinx.fem import petsc as fpetsc
        from petsc4py import PETSc

        s = settings
        rho, mu, variable_mu, names = inp.rho, inp.mu, inp.variable_mu, inp.names
        m = len(names)
        msh = fm.mesh
        comm = msh.comm
        tdim = msh.topology.dim
        fdim = tdim - 1
        gdim = msh.geometry.dim
        facet_tags = fm.facet_tags
        mesh_facets = {nm: facet_tags.find(tag) for nm, tag in fm.names.items()}
        fm_local_counts = comm.allreduce(np.array([len(mesh_facets[nm]) for nm in
                                                   [inflow.boundary, *names]]), op=MPI.SUM)
        if np.any(fm_local_counts == 0):
            raise InputError(f"boundaries {[inflow.boundary, *names]} must all have facets; "
                             f"counts {fm_local_counts.tolist()}")
        self.s, self.comm, self.gdim, self.m = s, comm, gdim, m
        self.dt_s, self.rho, self.variable_mu = dt_s, rho, variable_mu
        self.PETSc, self.fpetsc = PETSc, fpetsc

        # ---- spaces, boundary conditions -------------------------------------------------------
        with prov.timed("setup"):
            V = fem.functionspace(msh, ("Lagrange", 2, (gdim,)))
            Qsp = fem.functionspace(msh, ("Lagrange", 1))
            self.V, self.Qsp = V, Qsp
            self.n_dofs = {"velocity": V.dofmap.index_map.size_global * gdim,
                           "pressure": Qsp.dofmap.index_map.size_global}
            ds = ufl.Measure("ds", domain=msh, subdomain_data=facet_tags)
            nrm = ufl.FacetNormal(msh)
            dt_c = fem.Constant(msh, PETSc.ScalarType(dt_s))
            rho_c = fem.Constant(msh, PETSc.ScalarType(rho))
            u_n, u_nm1, u_star, u_new = (fem.Function(V, name=n) for n in
                                         ("velocity_m_s", "u_nm1", "u_star", "u_new"))
            self.u_n, self.u_nm1, self.u_star, self.u_new = u_n, u_nm1, u_star, u_new
            p_h = fem.Function(Qsp, name="pressure_pa")   # p^{n-1/2}, then p^{n+1/2}
            self.p_h = p_h
            self.p_prev = fem.Function(Qsp)                # p^{n-1/2} kept for the callback
            phi = fem.Function(Qsp)
            self.phi = phi
            g_in = fem.Function(V)
            self.g_in = g_in
            zero_q = fem.Function(Qsp)
            self.zero_q = zero_q
            in_dofs = fem.locate_dofs_topological(V, fdim, mesh_facets[inflow.boundary])
            wall_facets = (np.unique(np.concatenate([mesh_facets[nm] for nm in no_slip])) if no_slip
                           else np.zeros(0, dtype=np.int32)).astype(np.int32)
            wall_dofs = fem.locate_dofs_topological(V, fdim, wall_facets)
            # The momentum and mass operators act on each velocity component alike (Laplacian
            # form, same Dirichlet boundaries for all components), so they are assembled once on
            # the scalar P2 space and solved per component: 9x fewer matrix entries than the
            # vector form.
            S = fem.functionspace(msh, ("Lagrange", 2))
            if not np.array_equal(S.tabulate_dof_coordinates(), V.tabulate_dof_coordinates()):
                raise SolverError("internal: scalar and vector P2 dof layouts differ")
            self.g_c = [fem.Function(S) for _ in range(gdim)]
            zero_s = fem.Function(S)
            self.u_c = fem.Function(S)
            self.in_dofs_s = fem.locate_dofs_topological(S, fdim, mesh_facets[inflow.boundary])
            self.wall_dofs_s = fem.locate_dofs_topological(S, fdim, wall_facets)
            bcs_c = [[fem.dirichletbc(self.g_c[i], self.in_dofs_s),
                      fem.dirichletbc(zero_s, self.wall_dofs_s)] for i in range(gdim)]
            self.bc_dofs_all = np.unique(np.concatenate([self.in_dofs_s, self.wall_dofs_s]))
            self.bc_owned_s = np.unique(np.concatenate([b.dof_indices()[0][:b.dof_indices()[1]]
                                                        for b in bcs_c[0]]))
            self.out_dofs_p = [fem.locate_dofs_topological(Qsp, fdim, mesh_facets[nm])
                               for nm in names]
            self.bcs_p0 = [fem.dirichletbc(zero_q, np.unique(np.concatenate(self.out_dofs_p)))]

            # inflow profile
            self.inflow_update = make_inflow(fm, V, g_in, inflow, in_dofs, wall_dofs, mesh_facets,
                                             ds, nrm, blood, s,
                                             mu_pa_s=mu if rheology is not None else None)

            # Brinkman drag σχ (sum over regions)
            sigma = None
            if regions:
                Q0 = fem.functionspace(msh, ("DG", 0))
                sigma = fem.Function(Q0, name="brinkman_drag")
                samples = s.brinkman_samples if tdim == 3 else 1
                for reg in regions:
                    chi = indicator_dg0(fm, reg, samples)
                    sigma.x.array[:] += mu / reg.permeability_m2 * chi.x.array
                    vol = comm.allreduce(fem.assemble_scalar(fem.form(chi * ufl.dx)), op=MPI.SUM)
                    if vol <= 0:
                        logger.warning("Brinkman region %r does not intersect the mesh", reg.name)

        # ---- forms -----------------------------------------------------------------------------
        with prov.timed("forms"):
            u, v = ufl.TrialFunction(S), ufl.TestFunction(S)
            v_vec = ufl.TestFunction(V)
            pt, q = ufl.TrialFunction(Qsp), ufl.TestFunction(Qsp)
            B = 1.5 * u_n - 0.5 * u_nm1
            out_ids = [fm.names[nm] for nm in names]
            beta = fem.Constant(msh, PETSc.ScalarType(s.backflow_beta))
            Bn_minus = 0.5 * (ufl.dot(B, nrm) - abs(ufl.dot(B, nrm)))
            # Newtonian momentum operators (see the module notes, "Operator splitting of the
            # assembly"): the constant parts are assembled once, only the convection matrix (and
            # the outlet backflow term) per step; the right-hand sides are matrix–vector products.
            # The pressure enters as ∫∇p·v (not −∫p ∇·v): the natural outlet condition of step 1
            # is then μ∂u/∂n = 0 and the outlet pressure is the Dirichlet value of step 2 (the
            # Windkessel pressure). With −∫p ∇·v the natural condition would be p = 0 at the
            # outlet, contradicting the imposed pressure (measured: a 8 kPa Windkessel pressure
            # accelerated the fluid to 300 m/s in one step).
            semi = s.convection == "semi-implicit"
            self.semi = semi
            backflow = s.backflow_beta > 0 and bool(out_ids)
            m_form = fem.form(u * v * ufl.dx)
            k_form = fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx)
            c_expr = 0.5 * rho_c * ufl.dot(B, ufl.grad(u)) * v * ufl.dx
            if s.smagorinsky_cs > 0 and not variable_mu:
                # LES eddy viscosity μ_t = ρ(C_s Δ)²γ̇(B), Crank–Nicolson like μ: ½μ_t K_t joins
                # the per-step matrix C (A = A₀ + C, b = R₀uⁿ − C uⁿ + ...). Per-component Laplace
                # form: the ∇uᵀ part of the eddy stress is dropped (the vector path keeps it).
                mu_t = eddy_viscosity(msh, rho_c, s.smagorinsky_cs, B)
                dx4 = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": 4})
                c_expr += 0.5 * mu_t * ufl.inner(ufl.grad(u), ufl.grad(v)) * dx4
            self.c_form = fem.form(c_expr)
            self.bf_form = (fem.form(sum(-beta * rho_c / 2 * Bn_minus * u * v * ds(oid)
                                         for oid in out_ids))
                            if semi and backflow else None)
            # −∂p/∂x_i v (P1 → P2; also D_i = Δt/ρ G_i) and −ρ/Δt ∂u_i/∂x_i q (P2 → P1)
            G_forms = [fem.form(-pt.dx(i) * v * ufl.dx) for i in range(gdim)]
            E_forms = [fem.form(-rho_c / dt_c * u.dx(i) * q * ufl.dx) for i in range(gdim)]
            # explicit convection (and explicit backflow): assembled right-hand-side vectors
            self.L1x_c = []
            if not semi:
                for i in range(gdim):
                    Li = -rho_c * (1.5 * ufl.dot(u_n, ufl.grad(u_n[i]))
                                   - 0.5 * ufl.dot(u_nm1, ufl.grad(u_nm1[i]))) * v * ufl.dx
                    if s.backflow_beta > 0:
                        for oid in out_ids:
                            Li += beta * rho_c / 2 * Bn_minus * B[i] * v * ds(oid)
                    self.L1x_c.append(fem.form(Li))
            if variable_mu:
                self.a1v_c, self.L1v_c = shear_thinning_momentum_forms(
                    rheology, V=V, u_n=u_n, u_nm1=u_nm1, p_h=p_h, B=B, rho_c=rho_c, dt_c=dt_c,
                    beta=beta, Bn_minus=Bn_minus, sigma=sigma, nrm=nrm, ds=ds, out_ids=out_ids,
                    convection=s.convection, backflow=s.backflow_beta > 0,
                    smagorinsky_cs=s.smagorinsky_cs)
            self.a2_c = fem.form(ufl.inner(ufl.grad(pt), ufl.grad(q)) * ufl.dx)
            self.L3_resp = [fem.form(-dt_c / rho_c * phi.dx(i) * v * ufl.dx) for i in range(gdim)]

            # Dirichlet rows/columns are eliminated by PETSc (MatZeroRowsColumns) on a copy of
            # the unconstrained matrix, and the lifting b −= A·x_bc is one matrix-vector product:
            # much cheaper than re-integrating the boundary cells' element matrices for every
            # component. Every scalar P2 matrix shares the cell sparsity pattern of the mass
            # matrix (the outlet facet terms couple dofs of one cell), so sums are
            # SAME_NONZERO_PATTERN axpys.
            SAME = PETSc.Mat.Structure.SAME_NONZERO_PATTERN
            self.SAME = SAME
            A3f = fpetsc.assemble_matrix(m_form)      # mass matrix M (unconstrained)
            A3f.assemble()
            Km = fpetsc.assemble_matrix(k_form)
            Km.assemble()
            A_lhs0 = A3f.copy()                         # ρ/Δt M + ½μ K (+ σ M_χ)
            A_lhs0.scale(rho / dt_s)
            A_lhs0.axpy(0.5 * mu, Km, SAME)
            A_rhs0 = A3f.copy()                         # ρ/Δt M − ½μ K
            A_rhs0.scale(rho / dt_s)
            A_rhs0.axpy(-0.5 * mu, Km, SAME)
            Km.destroy()
            if sigma is not None:
                Sg = fpetsc.assemble_matrix(fem.form(sigma * u * v * ufl.dx))
                Sg.assemble()
                A_lhs0.axpy(1.0, Sg, SAME)
                Sg.destroy()
            self.Cm = fpetsc.create_matrix(self.c_form) if semi else None
            A1f = fpetsc.assemble_matrix(m_form)        # unconstrained momentum matrix
            A1f.assemble()
            A_lhs0.copy(A1f, SAME)
            self.G_mats, self.E_mats = [], []
            for forms_, mats in ((G_forms, self.G_mats), (E_forms, self.E_mats)):
                for f_ in forms_:
                    mat = fpetsc.assemble_matrix(f_)
                    mat.assemble()
                    mats.append(mat)
            A1 = A1f.copy()
            A1.setOption(PETSc.Mat.Option.KEEP_NONZERO_PATTERN, True)
            lo = S.dofmap.index_map.local_range[0]
            self.bc_rows = (self.bc_owned_s + lo).astype(PETSc.IntType)
            A1.zeroRowsColumns(self.bc_rows, 1.0)
            A2 = fpetsc.assemble_matrix(self.a2_c, bcs=self.bcs_p0)
            A2.assemble()
            A3 = A3f.copy()
            A3.setOption(PETSc.Mat.Option.KEEP_NONZERO_PATTERN, True)
            if s.projection_bcs:
                A3.zeroRowsColumns(self.bc_rows, 1.0)
            self.A1, self.A1f, self.A2, self.A3, self.A3f = A1, A1f, A2, A3, A3f
            self.A_lhs0, self.A_rhs0 = A_lhs0, A_rhs0
            self.n_own_s = S.dofmap.index_map.size_local
            self.n_own_q = Qsp.dofmap.index_map.size_local
            self.un_c = fem.Function(S)                       # uⁿ_i
            self.us_c = [fem.Function(S) for _ in range(gdim)]   # u*_i
            self.bx = fpetsc.create_vector(S) if not semi else None
            self.phi_s = fpetsc.create_vector(Qsp)            # Δt/ρ φ
            self.x_bc = fem.Function(S)
            self.lift_tmp = fpetsc.create_vector(S)
            self.b1 = fpetsc.create_vector(S)
            self.b2 = fpetsc.create_vector(Qsp)
            self.b3 = fpetsc.create_vector(S)
            _counter[0] += 1
            pre = f"cardiotwin_pulsatile_{_counter[0]}_"
            self.ksp1 = _KSP(comm, A1, s.momentum_petsc_options, pre + "mom_", "momentum")
            self.ksp2 = _KSP(comm, A2, s.pressure_petsc_options, pre + "pre_", "pressure Poisson")
            self.ksp3 = _KSP(comm, A3, s.mass_petsc_options, pre + "cor_", "velocity correction")
            self.A1v = self.b1v = self.ksp1v = None
            if variable_mu:
                # shear-thinning: one vector momentum system (the stress couples the components)
                zero_v = fem.Function(V)
                self.bcs_v = [fem.dirichletbc(g_in, in_dofs), fem.dirichletbc(zero_v, wall_dofs)]
                self.A1v = fpetsc.create_matrix(self.a1v_c)
                self.b1v = fpetsc.create_vector(V)
                self.ksp1v = _KSP(comm, self.A1v, s.momentum_petsc_options, pre + "momv_",
                                  "momentum")

            def flux_vec(tag, expr):
                vec = fpetsc.assemble_vector(fem.form(expr * ds(tag)))
                vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
                return vec

            # Outlet flows are the consistent (conservative) fluxes of the end-of-step velocity
            # ū = u* − Δt/ρ ∇φ of the projection: Q_i = ∫_Ω ū·∇χ_i dx, χ_i the P1 function equal
            # to 1 on the nodes of outlet i (Hughes et al. 2000). The pressure step makes ū
            # weakly divergence-free against every P1 test function vanishing on the outlets, so
            # Σ Q_i = Q_in up to the solver tolerance. The face flux ∫_Γi u·n of the projected P2
            # velocity is not conservative: the pressure step cannot control ∇·u in the cells
            # touching a pressure-Dirichlet outlet (measured on a pipe in diastole: 3 % of the
            # peak flow still leaving through the face with no inflow). It is kept as a
            # diagnostic (``face_mass_imbalance``). Q_i = c_i·u* − Δt/ρ d_i·φ is linear in φ, as
            # the coupling needs.
            self.c_out, self.d_out = [], []
            for j in range(m):
                chi_j = fem.Function(Qsp)
                chi_j.x.array[self.out_dofs_p[j]] = 1.0
                vec = fpetsc.assemble_vector(fem.form(ufl.dot(ufl.grad(chi_j), v_vec) * ufl.dx))
                vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
                self.c_out.append(vec)
                vec = fpetsc.assemble_vector(
                    fem.form(-dt_c / rho_c * ufl.dot(ufl.grad(chi_j), ufl.grad(q)) * ufl.dx))
                vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
                self.d_out.append(vec)

            self.c_face = [flux_vec(oid, ufl.dot(nrm, v_vec)) for oid in out_ids]
            self.c_in = flux_vec(fm.names[inflow.boundary], ufl.dot(nrm, v_vec))
            self.p_names = [inflow.boundary, *names]
            self.p_mean_vecs = {}
            for nm in self.p_names:
                area = comm.allreduce(fem.assemble_scalar(fem.form(1.0 * ds(fm.names[nm]))),
                                      op=MPI.SUM)
                vec = flux_vec(fm.names[nm], q)
                vec.scale(1.0 / area)
                self.p_mean_vecs[nm] = vec

    # -- helpers ---------------------------------------------------------------------------------
    def outlet_flows(self, u_field, phi_field) -> np.ndarray:
        """Consistent outlet fluxes ``c_i·u + d_i·φ`` (m³/s)."""
        return np.array([c.dot(u_field.x.petsc_vec) + d.dot(phi_field.x.petsc_vec)
                         for c, d in zip(self.c_out, self.d_out, strict=True)])

    @staticmethod
    def _zero_ghosts(b, n_own):
        """A matrix–vector product leaves stale ghost entries; zero them before the reverse (add)
        scatter."""
        with b.localForm() as bl:
            bl.array[n_own:] = 0.0

    def _lift(self, b, Af, i):
        """``b −= Af·x_bc`` and the Dirichlet values on the bc rows (component i)."""
        PETSc = self.PETSc
        x_bc = self.x_bc
        x_bc.x.array[:] = 0.0
        x_bc.x.array[self.in_dofs_s] = self.g_c[i].x.array[self.in_dofs_s]
        x_bc.x.array[self.wall_dofs_s] = 0.0
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        Af.mult(x_bc.x.petsc_vec, self.lift_tmp)
        b.axpy(-1.0, self.lift_tmp)
        b.array[self.bc_owned_s] = x_bc.x.array[self.bc_owned_s]

    # -- set-up ----------------------------------------------------------------------------------
    def compute_outlet_responses(self) -> np.ndarray:
        """Responses ``ψ_j`` (φ = 1 on outlet j, 0 on the others) and ``w_j`` and the matrix
        ``K_ij = d_i·ψ_j`` of the implicit outlet coupling (m³/s per Pa); returns K."""
        from dolfinx import fem

        PETSc, fpetsc, s, gdim, m = self.PETSc, self.fpetsc, self.s, self.gdim, self.m
        b2, b3, u_c, phi = self.b2, self.b3, self.u_c, self.phi
        self.psi, self.w_resp = [], []
        for j in range(m):
            one = fem.Function(self.Qsp)
            one.x.array[self.out_dofs_p[j]] = 1.0
            bcs_j = [fem.dirichletbc(one, self.out_dofs_p[j])] + [
                fem.dirichletbc(self.zero_q, self.out_dofs_p[i]) for i in range(m) if i != j]
            with b2.localForm() as bl:
                bl.set(0.0)
            fpetsc.apply_lifting(b2, [self.a2_c], bcs=[bcs_j])
            b2.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            fpetsc.set_bc(b2, bcs_j)
            psi_j = fem.Function(self.Qsp)
            self.ksp2.solve(b2, psi_j.x.petsc_vec, 0, 0.0)
            self.psi.append(psi_j)
            phi.x.array[:] = psi_j.x.array
            w_j = fem.Function(self.V)
            for i in range(gdim):
                with b3.localForm() as bl:
                    bl.set(0.0)
                fpetsc.assemble_vector(b3, self.L3_resp[i])
                b3.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
                if s.projection_bcs:
                    b3.array[self.bc_owned_s] = 0.0
                u_c.x.petsc_vec.set(0.0)
                self.ksp3.solve(b3, u_c.x.petsc_vec, 0, 0.0)
                if s.projection_bcs:
                    u_c.x.array[self.bc_dofs_all] = 0.0
                w_j.x.array.reshape(-1, gdim)[:, i] = u_c.x.array
            self.w_resp.append(w_j)
        self.K = np.array([[self.d_out[i].dot(self.psi[j].x.petsc_vec) for j in range(m)]
                           for i in range(m)])
        return self.K

    def initial_state(self, outs: list[OutletState], initial_velocity, initial_pressure,
                      names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Set the initial velocity, outlet flows and pressure; returns the outlet model
        pressures ``p_full`` and the outlet half-step pressures ``p_half_out`` (Pa)."""
        u_n, u_nm1, p_h = self.u_n, self.u_nm1, self.p_h
        if initial_velocity is not None:
            if hasattr(initial_velocity, "function_space"):
                u_n.interpolate(initial_velocity)
            else:
                u_n.interpolate(lambda x: initial_velocity(x, 0.0))
            u_n.x.scatter_forward()
            u_nm1.x.array[:] = u_n.x.array
        q_init = np.array([c.dot(u_n.x.petsc_vec) for c in self.c_out])  # ū = u at rest/initial
        for o, qq in zip(outs, q_init, strict=True):
            o.q = float(qq)
        p_full = np.array([o.pressure(o.q) for o in outs])
        if initial_pressure is not None:
            if hasattr(initial_pressure, "function_space"):
                p_h.interpolate(initial_pressure)
            else:
                p_h.interpolate(lambda x: initial_pressure(x, -0.5 * self.dt_s))
        else:
            for j in range(self.m):
                p_h.x.array[:] += p_full[j] * self.psi[j].x.array
        p_h.x.scatter_forward()
        p_half_out = np.array([self.p_mean_vecs[nm].dot(p_h.x.petsc_vec) for nm in names])
        return p_full, p_half_out

    # -- one time step ---------------------------------------------------------------------------
    def tentative_velocity(self, step: int, t: float) -> float:
        """Step 1: set the inflow at ``t`` and solve for ``u*`` (vector system when
        shear-thinning, else component by component); returns the assembly time (s)."""
        PETSc, fpetsc, gdim, SAME = self.PETSc, self.fpetsc, self.gdim, self.SAME
        u_star, u_c = self.u_star, self.u_c
        ta = time.perf_counter()
        t_asm = 0.0
        self.inflow_update(t)
        g_arr = self.g_in.x.array.reshape(-1, gdim)
        for i in range(gdim):
            self.g_c[i].x.array[:] = g_arr[:, i]
        if self.variable_mu:
            assemble_system(self.A1v, self.b1v, self.a1v_c, self.L1v_c, self.bcs_v)
            t_asm_v = time.perf_counter()
            u_star.x.petsc_vec.set(0.0)
            self.ksp1v.solve(self.b1v, u_star.x.petsc_vec, step, t)
            for bc in self.bcs_v:  # Dirichlet values exactly (wall after inlet, as the scalar path)
                bc.set(u_star.x.array)
        elif self.semi:
            # A = ρ/Δt M + ½μK (+σM_χ) + C(B) (+ backflow)
            self.Cm.zeroEntries()
            fpetsc.assemble_matrix(self.Cm, self.c_form)
            self.Cm.assemble()
            self.A_lhs0.copy(self.A1f, SAME)
            self.A1f.axpy(1.0, self.Cm, SAME)
            if self.bf_form is not None:
                fpetsc.assemble_matrix(self.A1f, self.bf_form)
                self.A1f.assemble()
            self.A1f.copy(self.A1, structure=SAME)
            self.A1.zeroRowsColumns(self.bc_rows, 1.0)
        tb = time.perf_counter() if not self.variable_mu else t_asm_v
        t_asm += tb - ta
        u_n_arr = self.u_n.x.array.reshape(-1, gdim)
        b1 = self.b1
        for i in range(gdim if not self.variable_mu else 0):
            tb1 = time.perf_counter()
            # b1 = (ρ/Δt M − ½μK − C) uⁿ_i + G_i p^{n−1/2} (+ explicit convection vector)
            self.un_c.x.array[:] = u_n_arr[:, i]
            self.A_rhs0.mult(self.un_c.x.petsc_vec, b1)
            if self.Cm is not None:
                self.Cm.mult(self.un_c.x.petsc_vec, self.lift_tmp)
                b1.axpy(-1.0, self.lift_tmp)
            self.G_mats[i].multAdd(self.p_h.x.petsc_vec, b1, b1)
            if self.bx is not None:
                with self.bx.localForm() as bl:
                    bl.set(0.0)
                fpetsc.assemble_vector(self.bx, self.L1x_c[i])
                self.bx.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
                b1.axpy(1.0, self.bx)
            self._zero_ghosts(b1, self.n_own_s)
            self._lift(b1, self.A1f, i)
            t_asm += time.perf_counter() - tb1
            # Zero initial guess, set through PETSc: a guess written through the numpy view
            # came back added to the Dirichlet rows (measured), so the KSP starts from zero
            # and the Dirichlet values are re-imposed exactly after the solve.
            u_c.x.petsc_vec.set(0.0)
            self.ksp1.solve(b1, u_c.x.petsc_vec, step, t)
            u_c.x.array[self.bc_dofs_all] = self.x_bc.x.array[self.bc_dofs_all]
            u_star.x.array.reshape(-1, gdim)[:, i] = u_c.x.array
        return t_asm

    def project(self, step: int, t: float) -> float:
        """Steps 2 and 3 with zero outlet values of φ: the pressure increment and the velocity
        correction into ``u_new``; returns the assembly time (s)."""
        fpetsc, gdim, s = self.fpetsc, self.gdim, self.s
        b2, b3, phi, u_c = self.b2, self.b3, self.phi, self.u_c
        # (2) pressure increment with zero outlet values: b2 = Σ_i E_i u*_i
        tc = time.perf_counter()
        us_arr = self.u_star.x.array.reshape(-1, gdim)
        for i in range(gdim):
            self.us_c[i].x.array[:] = us_arr[:, i]
            if i == 0:
                self.E_mats[i].mult(self.us_c[i].x.petsc_vec, b2)
            else:
                self.E_mats[i].multAdd(self.us_c[i].x.petsc_vec, b2, b2)
        self._zero_ghosts(b2, self.n_own_q)
        fpetsc.set_bc(b2, self.bcs_p0)
        td = time.perf_counter()
        t_asm = td - tc
        phi.x.array[:] = 0.0
        self.ksp2.solve(b2, phi.x.petsc_vec, step, t)
        # (3) velocity correction: b3 = M u*_i + Δt/ρ G_i φ
        t_asm3 = 0.0
        phi.x.petsc_vec.copy(self.phi_s)
        self.phi_s.scale(self.dt_s / self.rho)
        for i in range(gdim):
            te1 = time.perf_counter()
            self.A3f.mult(self.us_c[i].x.petsc_vec, b3)
            self.G_mats[i].multAdd(self.phi_s, b3, b3)
            self._zero_ghosts(b3, self.n_own_s)
            if s.projection_bcs:
                self._lift(b3, self.A3f, i)
            t_asm3 += time.perf_counter() - te1
            u_c.x.petsc_vec.set(0.0)
            self.ksp3.solve(b3, u_c.x.petsc_vec, step, t)
            if s.projection_bcs:
                u_c.x.array[self.bc_dofs_all] = self.x_bc.x.array[self.bc_dofs_all]
            self.u_new.x.array.reshape(-1, gdim)[:, i] = u_c.x.array
        return t_asm + t_asm3

    def couple_outlets(self, outs: list[OutletState], p_full: np.ndarray,
                       p_half_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step 4: the outlet values ``g`` of φ that make the outlet pressures and the 3-D flows
        agree (m×m solve), added to φ, ``u_new`` and the pressure; advances the outlet models.
        Returns the new outlet flows, model pressures and half-step outlet pressures."""
        dt_s, m, K = self.dt_s, self.m, self.K
        phi, u_new, p_h = self.phi, self.u_new, self.p_h
        q0 = self.outlet_flows(self.u_star, phi)
        ab = np.array([o.coefficients(dt_s) for o in outs])
        a_c, b_c = ab[:, 0], ab[:, 1]
        lhs = np.eye(m) - (b_c / 2)[:, None] * K
        rhs = 0.5 * (p_full + a_c + b_c * q0) - p_half_out
        g = np.linalg.solve(lhs, rhs)
        for j in range(m):
            if g[j] != 0.0:
                phi.x.array[:] += g[j] * self.psi[j].x.array
                u_new.x.array[:] += g[j] * self.w_resp[j].x.array
        q_new = q0 + K @ g
        self.p_prev.x.array[:] = p_h.x.array
        p_h.x.array[:] += phi.x.array
        p_half_out = p_half_out + g
        for o, qq in zip(outs, q_new, strict=True):
            o.advance(qq, dt_s)
        p_full = a_c + b_c * q_new
        return q_new, p_full, p_half_out

    def check(self, step: int, t: float, q_new: np.ndarray, h_cell: np.ndarray,
              cell_dofs: np.ndarray) -> float:
        """Step 5, before anything is recorded or written: finite values, CFL and speed within
        the settings (:class:`SolverError` naming the step and the likely cause); returns the
        largest cell CFL number."""
        s, dt_s, gdim, comm = self.s, self.dt_s, self.gdim, self.comm
        ua = self.u_new.x.array
        finite = comm.allreduce(bool(np.all(np.isfinite(ua))
                                     and np.all(np.isfinite(self.p_h.x.array))
                                     and np.all(np.isfinite(q_new))), op=MPI.LAND)
        if not finite:
            raise SolverError(
                f"NaN/Inf in the solution at step {step} (t = {t:.5g} s). Likely causes: dt_s "
                f"= {dt_s:g} s too large for this mesh and flow, outlet parameters in the wrong "
                "units, or a degenerate mesh; reduce dt_s.")
        speed = np.linalg.norm(ua.reshape(-1, gdim), axis=1)
        cell_speed = speed[cell_dofs].max(axis=1) if len(h_cell) else np.zeros(0)
        cfl = comm.allreduce(float(np.max(cell_speed * dt_s / h_cell, initial=0.0)), op=MPI.MAX)
        vmax = comm.allreduce(float(np.max(speed, initial=0.0)), op=MPI.MAX)
        if cfl > s.cfl_max:
            dt_ok = dt_s * 0.5 * s.cfl_max / cfl
            raise SolverError(
                f"CFL {cfl:.3g} at step {step} (t = {t:.5g} s) exceeds cfl_max = {s.cfl_max:g} "
                f"(peak speed {vmax:.3g} m/s): the time step is far too large or the flow is "
                f"diverging; reduce dt_s below {dt_ok:.3g} s (`rehearse --pulsatile --dt-ms`). "
                f"If a smaller dt_s diverges at the same time, the mesh is too coarse for this "
                f"Reynolds number: refine it (`twin build --h-min/--h-max`) or use the LES "
                f"model, PulsatileSettings(smagorinsky_cs=0.1) (`--les-cs 0.1`).")
        if vmax > s.max_speed_m_s:
            raise SolverError(
                f"velocity {vmax:.3g} m/s at step {step} (t = {t:.5g} s) exceeds max_speed_m_s "
                f"= {s.max_speed_m_s:g}: the run is diverging; reduce dt_s (`rehearse "
                "--pulsatile --dt-ms`), check the inflow units (m³/s) and the outlet parameters "
                "(SI); on a coarse mesh at physiological flow use "
                "PulsatileSettings(smagorinsky_cs=0.1) (`--les-cs 0.1`).")
        return cfl

    def accept(self) -> None:
        """Make the checked ``u_new`` the current velocity (``u_n``), keeping the previous one."""
        self.u_nm1.x.array[:] = self.u_n.x.array
        self.u_n.x.array[:] = self.u_new.x.array

    def linear_iterations(self) -> dict[str, int]:
        """Total KSP iterations per solver."""
        return {"momentum": (self.ksp1v if self.variable_mu else self.ksp1).iterations,
                "pressure": self.ksp2.iterations, "correction": self.ksp3.iterations}

    def destroy(self, extra=()) -> None:
        """Release the KSPs (and their options) and every PETSc matrix and vector, plus
        ``extra`` PETSc objects of the caller."""
        for k_ in (self.ksp1, self.ksp2, self.ksp3, self.ksp1v):
            if k_ is not None:
                k_.destroy()
        for obj in [self.A1, self.A1f, self.A2, self.A3, self.A3f, self.A_lhs0, self.A_rhs0,
                    self.Cm, self.bx, self.phi_s, *self.G_mats, *self.E_mats, self.lift_tmp,
                    self.b1, self.b2, self.b3, self.c_in, *self.c_out, *self.d_out, *self.c_face,
                    *self.p_mean_vecs.values(), *extra, self.A1v, self.b1v]:
            if obj is not None:
                obj.destroy()


class _Traces:
    """Per-step traces of a run, as :class:`PulsatileResult` holds them; saved in and restored
    from checkpoints."""

    def __init__(self, names: list[str], p_names: list[str]):
        self.names, self.p_names = names, p_names
        self.rec: dict[str, list] = {"t": [], "qin": [], "cfl": [], "imb": [], "dp_valve": [],
                                     "vjet": [], "imb_face": [], "region_flux": []}
        self.rec_q: dict[str, list] = {nm: [] for nm in names}
        self.rec_p: dict[str, list] = {nm: [] for nm in names}
        self.rec_pb: dict[str, list] = {nm: [] for nm in p_names}
        self.q_scale = 0.0

    def restore(self, extra: dict) -> None:
        """The traces of a checkpoint's ``state``."""
        self.q_scale = extra["q_scale"]
        for k in self.rec:
            self.rec[k] = list(extra["rec"].get(k, []))
        for nm in self.names:
            self.rec_q[nm] = list(extra["rec_q"][nm])
            self.rec_p[nm] = list(extra["rec_p"][nm])
        for nm in self.p_names:
            self.rec_pb[nm] = list(extra["rec_pb"][nm])

    def state(self) -> dict[str, Any]:
        """The traces for a checkpoint's ``state`` (JSON-able)."""
        return {"q_scale": self.q_scale, "rec": self.rec, "rec_q": self.rec_q,
                "rec_p": self.rec_p, "rec_pb": self.rec_pb}

    def record(self, scheme: _IPCS, t: float, cfl: float, q_new: np.ndarray, p_full: np.ndarray,
               valve_data, flux_parts) -> tuple[float, float]:
        """Step 6: append the step's traces; returns the inflow (m³/s) and the mass imbalance."""
        u_vec = scheme.u_n.x.petsc_vec
        rec = self.rec
        q_in = -scheme.c_in.dot(u_vec)
        self.q_scale = max(self.q_scale, abs(q_in))
        q_scale = self.q_scale
        imb = (float(np.sum(q_new)) - q_in) / max(abs(q_in), 0.1 * q_scale, 1e-300)
        rec["t"].append(t)
        rec["qin"].append(q_in)
        rec["cfl"].append(cfl)
        rec["imb"].append(imb)
        q_face = sum(c.dot(u_vec) for c in scheme.c_face)
        rec["imb_face"].append((q_face - q_in) / max(abs(q_in), 0.1 * q_scale, 1e-300))
        for j, nm in enumerate(self.names):
            self.rec_q[nm].append(float(q_new[j]))
            self.rec_p[nm].append(float(p_full[j]))
        for nm in self.p_names:
            self.rec_pb[nm].append(float(scheme.p_mean_vecs[nm].dot(scheme.p_h.x.petsc_vec)))
        if valve_data is not None:
            dp, vj = valve_eval(valve_data, scheme.u_n, scheme.p_h, scheme.comm, scheme.gdim)
            rec["dp_valve"].append(dp)
            rec["vjet"].append(vj)
        if flux_parts:
            rec["region_flux"].append([vec.dot(u_vec) for _, vec in flux_parts])
        return q_in, imb


def solve_pulsatile(
    fm: FlowMesh, *, inflow: Inflow, outlets: dict[str, OutletModel], dt_s: float,
    t_end_s: float, blood: Newtonian = _DEFAULT_BLOOD, regions: Sequence[BrinkmanRegion] = (),
    no_slip: Sequence[str] = ("wall",), period_s: float | None = None,
    valve: ValvePlanes | None = None, settings: PulsatileSettings = _DEFAULT_SETTINGS,
    initial_outlet_pressures_pa: dict[str, float] | None = None,
    initial_velocity: Callable[[np.ndarray, float], np.ndarray] | Any | None = None,
    initial_pressure: Callable[[np.ndarray, float], np.ndarray] | Any | None = None,
    out_dir: str | Path | None = None, write_every: int = 0,
    checkpoint_every: int = 0, restart_from: str | Path | None = None,
    callback: Callable[[StepState], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    rheology: Any = None,
) -> PulsatileResult:
    """Solve pulsatile Navier–Stokes from ``t = 0`` to ``t_end_s`` with Windkessel outlets.

    Parameters
    ----------
    fm : mesh in metres (:func:`~cardiotwin.physics.mesh.load_domain` or built in dolfinx, 2-D
        or 3-D) with named facet groups.
    inflow : velocity Dirichlet condition on ``inflow.boundary``.
    outlets : outlet name (with or without ``outlet:``; any facet-group name is accepted, e.g. an
        ``"outflow"`` of a 2-D mesh) → :class:`~cardiotwin.physics.windkessel.RCR`,
        :class:`~cardiotwin.physics.windkessel.TwoElement`,
        :class:`~cardiotwin.physics.windkessel.OutletResistance` or ``"open"`` (zero pressure). Every
        ``outlet:*`` group of the mesh needs one.
    dt_s, t_end_s : time step and end time in s (``round(t_end_s/dt_s)`` steps).
    blood : density and viscosity: a :class:`~cardiotwin.physics.rheology.Newtonian` (default
        blood) or any object with ``density_kg_m3`` and ``viscosity_pa_s`` (> 0).
    regions : Brinkman (porous) regions, evaluated in LPS mm.
    no_slip : facet groups with zero velocity (``("wall", "cylinder")`` for a 2-D benchmark).
    period_s : cycle length for last-cycle statistics (TAWSS/OSI, gradients); default the
        inflow waveform's ``period_s`` or ``t_end_s``.
    valve : sections for the transvalvular gradient and EOA.
    settings : scheme and solver options.
    initial_outlet_pressures_pa : Windkessel capacitor pressures at ``t = 0`` (default ``p_d``).
    initial_velocity, initial_pressure : callables ``(x, t) → values`` for the initial fields
        (velocity at ``t = 0``, pressure at ``t = −Δt/2``; the pressure must be constant on each
        outlet); default rest and the harmonic extension of the initial outlet pressures. Either
        may also be a dolfinx ``Function`` on the same mesh (interpolated into P2 / P1).
    out_dir : directory for the VTX series (``velocity.bp``, ``pressure.bp``, ``wall.bp``) and
        checkpoints; nothing is written when None.
    write_every : write the fields every this many steps (0: never).
    checkpoint_every : write a restart checkpoint every this many steps into
        ``out_dir/checkpoints/step_<n>`` (0: never).
    restart_from : a checkpoint directory; the run continues from its step with the same
        arguments on the same mesh (adios4dolfinx checkpoints: any number of MPI ranks; npz
        checkpoints: the same number). The returned traces include the steps before the
        restart.
    callback : called after every step with a :class:`StepState`.
    progress : called as ``progress(step, n_steps)`` after every step.
    rheology : viscosity law, :class:`~cardiotwin.physics.rheology.Newtonian` or
        :class:`~cardiotwin.physics.rheology.CarreauYasuda` (any object with ``ufl_viscosity``,
        ``viscosity``, ``reference_viscosity_pa_s`` and ``is_newtonian``). ``None`` (default):
        Newtonian with ``blood.viscosity_pa_s``. A Newtonian law replaces
        ``blood.viscosity_pa_s`` by its constant viscosity and runs the same scheme. A
        shear-thinning law evaluates ``μ(γ̇)`` from the extrapolated velocity
        ``3/2 uⁿ − 1/2 u^{n−1}`` every step (semi-implicit, lagged) and solves the momentum
        step as one vector system with the full stress ``2μ ε(u)``, reassembled every step
        (several times the Newtonian step cost; see ``docs/pulsatile.md``); the Brinkman drag
        and ``StepState.mu`` then use ``reference_viscosity_pa_s`` (μ_∞) and the wall shear stress uses ``μ(γ̇)``.

    Returns
    -------
    PulsatileResult

    Raises
    ------
    InputError
        Bad time step/end time (or a time step longer than ``period_s``), a flow waveform
        that is not finite at the first step, unknown or missing
        outlets, invalid outlet models or inflow, unknown boundary names, a rheology object
        without the viscosity methods, unusable checkpoint.
    SolverError
        NaN, runaway velocity, a CFL above ``settings.cfl_max`` or a failed linear solve, naming
        the step, time and likely cause. Nothing non-finite is written to files.
    """
    from dolfinx import io

    t_start = time.perf_counter()
    s = settings
    inp = _check_inputs(
        fm, inflow=inflow, outlets=outlets, dt_s=dt_s, t_end_s=t_end_s, blood=blood,
        regions=regions, no_slip=no_slip, period_s=period_s,
        initial_outlet_pressures_pa=initial_outlet_pressures_pa, initial_velocity=initial_velocity,
        initial_pressure=initial_pressure, out_dir=out_dir, write_every=write_every,
        checkpoint_every=checkpoint_every, rheology=rheology)
    n_steps, names, period_s = inp.n_steps, inp.names, inp.period_s
    msh = fm.mesh
    comm = msh.comm
    prov = _provenance(fm, inp, dt_s=dt_s, t_end_s=t_end_s, blood=blood, regions=regions,
                       inflow=inflow, no_slip=no_slip, settings=s, valve=valve, rheology=rheology)
    scheme = _IPCS(fm, inp, inflow=inflow, no_slip=no_slip, regions=regions, blood=blood,
                   rheology=rheology, dt_s=dt_s, settings=s, prov=prov)
    u_n, u_nm1, p_h = scheme.u_n, scheme.u_nm1, scheme.p_h

    # Everything from here on runs in one try: the finally releases the PETSc objects (and the
    # options of the KSPs) whatever is refused or fails, restart and valve set-up included.
    writers = []
    flux_parts: list[tuple[str, Any]] = []
    try:
        # ---- outlet responses ψ_j, w_j and K ---------------------------------------------------
        with prov.timed("responses"):
            K = scheme.compute_outlet_responses()
            prov.parameters["outlet_response_K_m3_s_pa"] = K.tolist()

        # ---- state -----------------------------------------------------------------------------
        p0s = initial_outlet_pressures_pa or {}
        outs = [OutletState(nm, inp.models[nm], p0s.get(nm, p0s.get(nm.split(":", 1)[-1])))
                for nm in names]
        p_full, p_half_out = scheme.initial_state(outs, initial_velocity, initial_pressure, names)
        traces = _Traces(names, scheme.p_names)
        step0 = 0

        # wall shear accumulators (P1 vector / scalar on wall nodes, lumped projection)
        mu_wall = rheology.ufl_viscosity(shear_rate(u_n)) if inp.variable_mu else inp.mu
        wss = WallShear(fm, mu_wall, u_n) if "wall" in fm.names else None
        last_cycle_start = n_steps - int(round(period_s / dt_s))
        restart_dir = Path(restart_from) if restart_from is not None else None
        ck_format = checkpoint_format(s.checkpoint_format) if checkpoint_every else None
        if restart_dir is not None:
            step0, extra = read_checkpoint(restart_dir, comm, [u_n, u_nm1, p_h], wss, msh)
            for o, st in zip(outs, extra["outlets"], strict=True):
                o.p_c, o.q = st["p_c"], st["q"]
            p_full = np.array(extra["p_full"])
            p_half_out = np.array(extra["p_half_out"])
            traces.restore(extra)
            if step0 >= n_steps:
                raise InputError(f"checkpoint {restart_dir} is at step {step0}, not before the end "
                                 f"step {n_steps}")
            logger.info("restarting from %s at step %d", restart_dir, step0)

        # valve sections
        valve_data = (valve_setup(fm, scheme.V, scheme.Qsp, valve, regions)
                      if valve is not None else None)
        # flux through the solid footprint of every Brinkman part (leak check)
        flux_parts = region_flux_setup(fm, scheme.V, regions)

        # cell data for CFL
        _, h_cell = cell_geometry(msh)
        cell_dofs = scheme.V.dofmap.list[:len(h_cell)]

        # output
        out_path = Path(out_dir) if out_dir is not None else None
        paths: dict[str, Path] = {}
        if out_path is not None and write_every:
            if comm.rank == 0:
                out_path.mkdir(parents=True, exist_ok=True)
            comm.barrier()
            paths = {"velocity": out_path / "velocity.bp", "pressure": out_path / "pressure.bp"}
            writers = [io.VTXWriter(comm, str(paths["velocity"]), [u_n], engine="BP4"),
                       io.VTXWriter(comm, str(paths["pressure"]), [p_h], engine="BP4")]

        t_assemble = t_solve = t_post = 0.0
        for n in range(step0, n_steps):
            step = n + 1
            t = step * dt_s
            ta = time.perf_counter()
            # (1) tentative velocity, (2) pressure increment, (3) velocity correction,
            # (4) implicit outlet coupling
            t_assemble += scheme.tentative_velocity(step, t)
            t_assemble += scheme.project(step, t)
            q_new, p_full, p_half_out = scheme.couple_outlets(outs, p_full, p_half_out)
            t_solve += time.perf_counter() - ta
            tg = time.perf_counter()
            # (5) checks before anything is recorded or written
            cfl = scheme.check(step, t, q_new, h_cell, cell_dofs)
            scheme.accept()
            # (6) record
            q_in, imb = traces.record(scheme, t, cfl, q_new, p_full, valve_data, flux_parts)
            if abs(imb) > s.imbalance_warn and comm.rank == 0:
                logger.warning("mass imbalance %.2e at step %d (t = %.4g s): refine the mesh or "
                               "reduce dt_s", imb, step, t)
            if wss is not None and n >= last_cycle_start:
                wss.accumulate(dt_s)
            t_post += time.perf_counter() - tg
            if writers and step % write_every == 0:
                for wr in writers:
                    wr.write(t)
            if checkpoint_every and step % checkpoint_every == 0:
                extra = {"outlets": [{"p_c": o.p_c, "q": o.q} for o in outs],
                         "p_full": p_full.tolist(), "p_half_out": p_half_out.tolist(),
                         **traces.state()}
                write_checkpoint(checkpoint_path(out_path, step), comm, step,
                                 [u_n, u_nm1, p_h], wss, extra, fmt=ck_format)
                if s.checkpoint_keep and comm.rank == 0:
                    prune_checkpoints(out_path / CHECKPOINT_DIR, keep=s.checkpoint_keep)
            if callback is not None:
                callback(StepState(step, t, dt_s, u_n, p_h, scheme.p_prev, inp.mu, fm,
                                   dict(zip(names, map(float, q_new), strict=True)),
                                   dict(zip(names, map(float, p_full), strict=True)),
                                   u_previous=u_nm1))
            if progress is not None:
                progress(step, n_steps)
            if step % s.log_every == 0 or step == n_steps:
                logger.info("pulsatile step %d/%d t=%.4f s Q_in=%.4g m3/s CFL=%.3g imbalance=%.1e "
                            "p_out=%s", step, n_steps, t, q_in, cfl, imb,
                            np.array2string(p_full, precision=5))
    finally:
        for wr in writers:
            wr.close()
        scheme.destroy(extra=[vec for _, vec in flux_parts])

    # ---- post-processing ---------------------------------------------------------------------
    tawss = osi = None
    if wss is not None and n_steps - last_cycle_start >= 1 and last_cycle_start >= 0:
        tawss, osi = wss.finish()
        if out_path is not None and write_every:
            paths["wall"] = out_path / "wall.bp"
            with io.VTXWriter(comm, str(paths["wall"]), [tawss, osi], engine="BP4") as wr:
                wr.write(0.0)
    timings = dict(prov.timings_s)
    timings.update({"assemble": t_assemble, "solve": t_solve - t_assemble, "postprocess": t_post,
                    "total": time.perf_counter() - t_start,
                    "per_step": (time.perf_counter() - t_start) / max(1, n_steps - step0)})
    prov.timings_s = timings
    prov.parameters["linear_iterations"] = scheme.linear_iterations()
    return _result(traces, fm=fm, scheme=scheme, blood=blood, valve=valve, dt_s=dt_s,
                   period_s=period_s, settings=s, timings=timings, prov=prov, tawss=tawss, osi=osi,
                   paths=paths, flux_parts=flux_parts)


def _result(traces: _Traces, *, fm, scheme: _IPCS, blood, valve, dt_s, period_s, settings,
            timings, prov, tawss, osi, paths, flux_parts) -> PulsatileResult:
    """The :class:`PulsatileResult` of a finished run (warns about a large mass imbalance)."""
    rec, names = traces.rec, traces.names
    times = np.array(rec["t"])
    imb_arr = np.array(rec["imb"])
    if len(imb_arr) and np.max(np.abs(imb_arr)) > settings.imbalance_warn:
        logger.warning("pulsatile: max mass imbalance %.2e exceeds %.1e",
                       float(np.max(np.abs(imb_arr))), settings.imbalance_warn)
    strip = {nm: nm.split(":", 1)[1] if nm.startswith("outlet:") else nm for nm in names}
    return PulsatileResult(
        times_s=times, pressure_times_s=times - 0.5 * dt_s,
        inlet_flow_m3_s=np.array(rec["qin"]),
        outlet_flows_m3_s={strip[nm]: np.array(traces.rec_q[nm]) for nm in names},
        outlet_pressures_pa={strip[nm]: np.array(traces.rec_p[nm]) for nm in names},
        boundary_pressures_pa={nm: np.array(traces.rec_pb[nm]) for nm in traces.p_names},
        mass_imbalance=imb_arr, cfl=np.array(rec["cfl"]), period_s=float(period_s),
        dt_s=float(dt_s), u=scheme.u_n, p=scheme.p_h, n_dofs=scheme.n_dofs, timings_s=timings,
        provenance=prov, mesh=fm, blood=blood,
        valve_gradient_pa=np.array(rec["dp_valve"]) if valve is not None else None,
        jet_velocity_m_s=np.array(rec["vjet"]) if valve is not None else None,
        tawss_pa=tawss, osi=osi, paths=paths, face_mass_imbalance=np.array(rec["imb_face"]),
        region_flux_m3_s=({key: np.array([row[k] for row in rec["region_flux"]])
                           for k, (key, _) in enumerate(flux_parts)} if flux_parts else {}))
