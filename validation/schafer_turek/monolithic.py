"""Independent reference for Schäfer–Turek 2D-2: fully coupled Taylor–Hood, implicit midpoint.

Purpose: an independent check of the pulsatile IPCS solver's lift (issue 5: c_L,max 0.984–0.987,
below the participants' interval [0.99, 1.01]). This solver shares nothing with
:mod:`cardiotwin.physics.pulsatile` or :mod:`cardiotwin.physics.newton` except the mesh
(:func:`cardiotwin.physics.verification.cylinder_channel_2d`, so both run on the same
triangulation) and the post-processing of ``test_2d2.py`` (:func:`benchmark_quantities`).

Discretisation (benchmark units: ρ = 1, ν = 1e-3, U_max = 1.5, no rescaling):

* Taylor–Hood P2–P1 in one mixed space (``basix.ufl.mixed_element``), isoparametric on the
  quadratic mesh.
* Time: the implicit midpoint rule (the Crank–Nicolson family member that evaluates every term at
  the midpoint). Unknowns per step are u^{n+1} and p^{n+1/2}; with u^m = (uⁿ + u^{n+1})/2 the
  step solves, for all (v, q),

      ((u^{n+1} − uⁿ)/Δt, v) + ((u^m·∇)u^m, v) + ν(∇u^m, ∇v) − (p^{n+1/2}, ∇·v) + (q, ∇·u^{n+1}) = 0

  second order, A-stable, energy-conserving for the convective term. The gradient form of the
  viscous term makes ν∇u·n − p n = 0 the natural (do-nothing) outlet condition of the benchmark.
* Newton (PETSc SNES, exact Jacobian, full step) per time step, MUMPS LU; initial guess
  2uⁿ − u^{n−1}. Converged when the residual is below ``snes_atol`` (1e-10) or reduced 1e-9.
  ``jacobian_lag = k`` keeps the Jacobian and its LU for k iterations across steps (chord
  method): measured over 60 steps of the periodic state, k = 5 / 10 give forces equal to full
  Newton within 2e-13 / 4e-12 at 2.0× / 2.5× less cost (0.53 → 0.26 / 0.21 s per step, 31k
  dofs).
* Forces: John's (2004) volume-integral form with the *same* residual as the time step, i.e. the
  force is exactly the discrete momentum residual tested with a function that is 1 on the cylinder
  (drag: e_x, lift: e_y) and 0 on the other Dirichlet dofs, evaluated at t^{n+1/2} — so drag and
  lift are consistent with the time discretisation (no separate time-level choice to make). The
  boundary integral of the stress is recorded beside it.
* Start: the steady Newton solution at Re = 100 (solved here from a Stokes guess with the
  continuation Re 10 → 30 → 100) plus the same
  small asymmetric vortex as ``run_2d2``; a spin-up with a larger Δt (``spinup_dt_bench_s``) until
  the shedding is saturated, then the measured phase at ``dt_bench_s``. The spin-up only shortens
  the transient: the measured quantities come from the last four periods of the measured phase,
  whose lift-peak drift is checked.

Run: ``.venv/bin/python validation/schafer_turek/monolithic.py --h 0.02 --hc 0.005`` (writes
``out/validation/st2d2_monolithic_*``). Results and the comparison with IPCS are in the docstring
of ``test_monolithic.py``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from validation.schafer_turek.test_2d2 import (  # noqa: E402
    DIAMETER_M,
    INTERVALS_2D2,
    _eval_at_points,
    benchmark_quantities,
    check_intervals,
    start_vortex,
)

# benchmark units (Schäfer & Turek 1996, test 2D-2)
RHO_KG_M3 = 1.0
NU_M2_S = 1e-3
U_MAX_M_S = 1.5
U_MEAN_M_S = 1.0
OUT_ROOT = Path(__file__).resolve().parents[2] / "out" / "validation"

logger = logging.getLogger(__name__)


def run_monolithic(*, h_m: float = 0.02, h_cylinder_m: float = 0.005,
                   dt_bench_s: float = 1.0 / 800.0, measure_bench_s: float = 1.75,
                   spinup_dt_bench_s: float = 1.0 / 200.0, spinup_bench_s: float = 5.0,
                   perturbation: float = 1.0, restart: Path | None = None,
                   checkpoint: Path | None = None, partial_series: Path | None = None,
                   snes_atol: float = 1e-10, jacobian_lag: int = 1,
                   degree: int = 2, analyse: bool = True) -> dict:
    """Run 2D-2 with the coupled implicit-midpoint Taylor–Hood solver.

    Parameters
    ----------
    h_m, h_cylinder_m : element sizes far away / on the cylinder (m), as ``cylinder_channel_2d``.
    dt_bench_s : time step of the measured phase (s).
    measure_bench_s : length of the measured phase (s); > 4 shedding periods (≈ 0.33 s each).
    spinup_dt_bench_s, spinup_bench_s : time step and length of the spin-up phase (s);
        ``spinup_bench_s = 0`` skips it (e.g. with ``restart``).
    perturbation : peak speed of the start vortex / U_mean (as ``run_2d2``).
    restart : ``.npz`` written by ``checkpoint`` of an earlier run on the same mesh: start from
        its last two states instead of the steady solution + vortex.
    checkpoint : where to write the last two states (mixed-space arrays) at the end.
    partial_series : where to dump the measured series every 200 steps (for watching a run).
    snes_atol : absolute Newton tolerance on the residual (force units, N/m).
    jacobian_lag : 1 = Newton (Jacobian and LU every iteration); k > 1 = the Jacobian and its LU
        are rebuilt every k-th iteration, counted across time steps (a chord method: more, much
        cheaper iterations; the converged solution is the same to ``snes_atol``). Rebuilt
        whenever Δt changes.
    degree : velocity degree k of the Taylor–Hood pair P_k–P_{k−1} (2: P2–P1, as the
        pulsatile solver; 3: P3–P2, an order higher in both fields on the same mesh).
    analyse : compute the benchmark quantities (needs > 4 periods in the measured phase).

    Returns
    -------
    dict
        ``series`` (benchmark-unit time series of the measured phase: t, cd, cl, cd_boundary,
        cl_boundary, dp), ``quantities`` (``benchmark_quantities``), mesh, cost.
    """
    import dolfinx_solver  # noqa: F401
    import ufl
    from basix.ufl import element, mixed_element
    from dolfinx import fem
    from dolfinx.fem import petsc as fpetsc
    from petsc4py import PETSc

    from cardiotwin.physics.verification import cylinder_channel_2d, schafer_turek_inflow

    t_wall = time.perf_counter()
    fm = cylinder_channel_2d(h_m, h_cylinder_m=h_cylinder_m, geometry_order=2)
    msh = fm.mesh
    gdim = msh.geometry.dim
    fdim = gdim - 1
    if degree not in (2, 3):
        raise ValueError(f"degree must be 2 (P2–P1) or 3 (P3–P2); got {degree!r}")
    Pv = element("Lagrange", msh.basix_cell(), degree, shape=(gdim,), dtype=PETSc.RealType)
    Pp = element("Lagrange", msh.basix_cell(), degree - 1, dtype=PETSc.RealType)
    W = fem.functionspace(msh, mixed_element([Pv, Pp]))
    V, V_to_W = W.sub(0).collapse()
    Q, Q_to_W = W.sub(1).collapse()
    n_dofs = W.dofmap.index_map.size_global * W.dofmap.index_map_bs

    # ---- boundary conditions -----------------------------------------------------------------
    g_in = fem.Function(V)
    g_in.interpolate(schafer_turek_inflow(U_MAX_M_S))
    zero_v = fem.Function(V)
    facets = {k: fm.facet_tags.find(v) for k, v in fm.names.items()}
    bcs = [fem.dirichletbc(g_in, fem.locate_dofs_topological((W.sub(0), V), fdim,
                                                             facets["inlet"]), W.sub(0))]
    for name in ("wall", "cylinder"):
        bcs.append(fem.dirichletbc(zero_v, fem.locate_dofs_topological(
            (W.sub(0), V), fdim, facets[name]), W.sub(0)))

    # ---- forms -------------------------------------------------------------------------------
    w = fem.Function(W)          # (u^{n+1}, p^{n+1/2})
    w_n = fem.Function(W)        # (uⁿ, ·)
    u, p = ufl.split(w)
    u_n, _ = ufl.split(w_n)
    v, q = ufl.TestFunctions(W)
    dt = fem.Constant(msh, PETSc.ScalarType(spinup_dt_bench_s or dt_bench_s))
    rho, nu = RHO_KG_M3, NU_M2_S
    mu = rho * nu
    um = 0.5 * (u + u_n)

    def momentum(vt):
        return (rho * ufl.inner((u - u_n) / dt, vt) + rho * ufl.inner(ufl.grad(um) * um, vt)
                + mu * ufl.inner(ufl.grad(um), ufl.grad(vt)) - p * ufl.div(vt)) * ufl.dx

    F = momentum(v) + q * ufl.div(u) * ufl.dx
    # steady problem (Newton start): same spatial operator at u^m = u
    mu_steady = fem.Constant(msh, PETSc.ScalarType(mu))   # viscosity continuation
    F_steady = ((rho * ufl.inner(ufl.grad(u) * u, v)
                 + mu_steady * ufl.inner(ufl.grad(u), ufl.grad(v))
                 - p * ufl.div(v) + q * ufl.div(u)) * ufl.dx)
    w_trial = ufl.TrialFunction(W)
    (du, dp_), (v_, q_) = ufl.split(w_trial), (v, q)
    a_stokes = (mu * ufl.inner(ufl.grad(du), ufl.grad(v_)) - dp_ * ufl.div(v_)
                + q_ * ufl.div(du)) * ufl.dx
    L_stokes = ufl.inner(fem.Constant(msh, PETSc.ScalarType((0.0, 0.0))), v_) * ufl.dx

    opts = {"snes_type": "newtonls", "snes_linesearch_type": "basic", "snes_rtol": 1e-9,
            "snes_atol": snes_atol, "snes_stol": 0.0, "snes_max_it": 12,
            "ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
            "snes_error_if_not_converged": True}
    if jacobian_lag > 1:
        opts.update({"snes_lag_jacobian": jacobian_lag, "snes_lag_jacobian_persists": True,
                     "snes_lag_preconditioner": jacobian_lag,
                     "snes_lag_preconditioner_persists": True, "snes_max_it": 30})
    problem = fpetsc.NonlinearProblem(F, w, bcs=bcs, petsc_options_prefix="st2d2_mono_",
                                      petsc_options=opts)
    lin_opts = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}

    # force forms: the momentum residual tested with vt (1 on the cylinder, 0 elsewhere on ∂Ω)
    cyl_dofs = fem.locate_dofs_topological(V, fdim, facets["cylinder"])
    ds_cyl = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)(fm.names["cylinder"])
    nrm = ufl.FacetNormal(msh)
    sigma = -p * ufl.Identity(gdim) + mu * (ufl.grad(um) + ufl.grad(um).T)
    f_vol, f_bnd = [], []
    for i in range(gdim):
        vt = fem.Function(V)
        vt.x.array.reshape(-1, gdim)[cyl_dofs, i] = 1.0
        f_vol.append(fem.form(momentum(vt)))
        f_bnd.append(fem.form(ufl.dot(sigma, nrm)[i] * ds_cyl))
    p_view = fem.Function(Q)
    p_at = _eval_at_points(p_view, np.array([[0.15, 0.2, 0.0], [0.25, 0.2, 0.0]]))
    coef = 2.0 / (rho * U_MEAN_M_S**2 * DIAMETER_M)

    timings = {}
    # ---- start state -------------------------------------------------------------------------
    t0 = time.perf_counter()
    if restart is not None:
        data = np.load(restart)
        if data["w"].shape != w.x.array.shape:
            raise ValueError(f"restart {restart} has {data['w'].shape[0]} values; this mesh "
                             f"has {w.x.array.shape[0]} (different h?)")
        w_n.x.array[:] = data["w"]
        w_prev = data["w_prev"].copy()
        t = float(data["t"])
    else:
        stokes = fpetsc.LinearProblem(a_stokes, L_stokes, bcs=bcs, petsc_options=lin_opts,
                                      petsc_options_prefix="st2d2_mono_stokes_")
        w.x.array[:] = stokes.solve().x.array
        steady = fpetsc.NonlinearProblem(F_steady, w, bcs=bcs,
                                         petsc_options_prefix="st2d2_mono_steady_",
                                         petsc_options=dict(opts, snes_max_it=30,
                                                            snes_linesearch_type="bt"))
        # continuation Re 10 → 30 → 100 (Newton from the Stokes guess at Re 100 diverged on the
        # h 0.015 mesh)
        for factor in (10.0, 10.0 / 3.0, 1.0):
            mu_steady.value = mu * factor
            steady.solve()
            logger.info("steady Newton at Re %.0f: %d iterations", 100 / factor,
                        steady.solver.getIterationNumber())
        pert = fem.Function(V)   # the start vortex of run_2d2
        pert.interpolate(start_vortex(perturbation * U_MEAN_M_S))
        w.x.array[V_to_W] += pert.x.array
        w_n.x.array[:] = w.x.array
        w_prev = w.x.array.copy()
        t = 0.0
    timings["start"] = time.perf_counter() - t0

    rows: list[tuple[float, ...]] = []
    newton_its: list[int] = []
    lag_state = [1]

    def _set_lag(snes, lag: int) -> None:
        # petsc4py has no SNESSetLagJacobian: go through the options database (-2 = rebuild at
        # the next iteration, then never until reset)
        db = PETSc.Options()
        for k in ("snes_lag_jacobian", "snes_lag_preconditioner"):
            db[f"st2d2_mono_{k}"] = lag
        snes.setFromOptions()
        for k in ("snes_lag_jacobian", "snes_lag_preconditioner"):
            db.delValue(f"st2d2_mono_{k}")

    def step(dt_s: float, record: bool) -> None:
        nonlocal t, w_prev
        if jacobian_lag > 1:
            if float(dt.value) != dt_s or not newton_its:
                _set_lag(problem.solver, -2)     # rebuild at the next iteration (Δt changed)
                lag_state[0] = -2
            elif lag_state[0] == -2:
                _set_lag(problem.solver, jacobian_lag)
                lag_state[0] = jacobian_lag
        dt.value = dt_s
        w.x.array[:] = 2.0 * w_n.x.array - w_prev          # extrapolated guess
        problem.solve()
        newton_its.append(problem.solver.getIterationNumber())
        t += dt_s
        if record:
            fv = [-coef * float(fem.assemble_scalar(f)) for f in f_vol]
            fb = [-coef * float(fem.assemble_scalar(f)) for f in f_bnd]
            p_view.x.array[:] = w.x.array[Q_to_W]
            pf, pb = p_at()
            rows.append((t - 0.5 * dt_s, *fv, *fb, float(pf[0] - pb[0])))
        w_prev = w_n.x.array.copy()
        w_n.x.array[:] = w.x.array

    # ---- spin-up -----------------------------------------------------------------------------
    t0 = time.perf_counter()
    n_spin = int(round(spinup_bench_s / spinup_dt_bench_s)) if spinup_bench_s > 0 else 0
    for k in range(n_spin):
        step(spinup_dt_bench_s, record=True)
        if (k + 1) % 200 == 0:
            logger.info("spin-up t=%.3f c_D=%.4f c_L=%.4f", t, rows[-1][1], rows[-1][2])
    spin_rows = list(rows)
    rows.clear()
    timings["spinup"] = time.perf_counter() - t0
    if n_spin:
        # the two states handed to the measured phase are Δt_spin apart; rescale the older one
        # so that the extrapolated guess 2uⁿ − u^{n−1} matches the new Δt
        r = dt_bench_s / spinup_dt_bench_s
        w_prev = w_n.x.array - r * (w_n.x.array - w_prev)

    # ---- measured phase ----------------------------------------------------------------------
    t0 = time.perf_counter()
    n_meas = int(round(measure_bench_s / dt_bench_s))
    for k in range(n_meas):
        step(dt_bench_s, record=True)
        if (k + 1) % 200 == 0:
            logger.info("t=%.4f c_D=%.4f c_L=%.4f Newton its (last 200): %.2f", t, rows[-1][1],
                        rows[-1][2], np.mean(newton_its[-200:]))
            if partial_series is not None:
                partial_series.parent.mkdir(parents=True, exist_ok=True)
                np.savez(partial_series, **_series(rows))
    timings["measure"] = time.perf_counter() - t0
    timings["per_step_measure"] = timings["measure"] / max(n_meas, 1)
    timings["wall_total"] = time.perf_counter() - t_wall
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        np.savez(checkpoint, w=w_n.x.array, w_prev=w_prev, t=t)

    s = _series(rows)
    q = {}
    if analyse:
        q = benchmark_quantities(s)
        q["lift_coefficient_min"] = float(-benchmark_quantities({**s, "cl": -s["cl"]})
                                          ["lift_coefficient_max"])
    return {"series": s, "spinup_series": _series(spin_rows) if spin_rows else None,
            "quantities": q, "scheme": "monolithic implicit midpoint, Newton, MUMPS",
            "mesh": {"h_m": h_m, "h_cylinder_m": h_cylinder_m, "n_dofs": int(n_dofs)},
            "elements": f"P{degree}-P{degree - 1}",
            "dt_bench_s": dt_bench_s, "measure_bench_s": measure_bench_s,
            "spinup_dt_bench_s": spinup_dt_bench_s, "spinup_bench_s": spinup_bench_s,
            "restart": str(restart) if restart else None, "perturbation": perturbation,
            "newton_iterations_mean": float(np.mean(newton_its)) if newton_its else 0.0,
            "newton_iterations_max": int(np.max(newton_its)) if newton_its else 0,
            "timings_s": timings}


def _series(rows) -> dict[str, np.ndarray]:
    a = np.array(rows)
    return {"t": a[:, 0], "cd": a[:, 1], "cl": a[:, 2], "cd_boundary": a[:, 3],
            "cl_boundary": a[:, 4], "dp": a[:, 5]}


def save(result: dict, out_dir: Path) -> None:
    """Write ``series.npz`` (measured phase), ``spinup_series.npz`` and ``result.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "series.npz", **result["series"])
    if result.get("spinup_series") is not None:
        np.savez(out_dir / "spinup_series.npz", **result["spinup_series"])
    meta = {k: v for k, v in result.items() if k not in ("series", "spinup_series")}
    if result["quantities"]:
        meta["outside_interval_by"] = check_intervals(result["quantities"])
    (out_dir / "result.json").write_text(json.dumps(meta, indent=2, default=float))


if __name__ == "__main__":
    import argparse
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=float, default=0.02)
    ap.add_argument("--hc", type=float, default=0.005)
    ap.add_argument("--dt", type=float, default=1.0 / 800.0)
    ap.add_argument("--measure", type=float, default=1.75)
    ap.add_argument("--spinup-dt", type=float, default=1.0 / 200.0)
    ap.add_argument("--spinup", type=float, default=5.0)
    ap.add_argument("--perturbation", type=float, default=1.0)
    ap.add_argument("--restart", type=Path, default=None)
    ap.add_argument("--jacobian-lag", type=int, default=1)
    ap.add_argument("--degree", type=int, default=2, help="velocity degree k of P_k-P_(k-1)")
    ap.add_argument("--out", type=Path, default=OUT_ROOT / "st2d2_monolithic")
    a = ap.parse_args()
    r = run_monolithic(h_m=a.h, h_cylinder_m=a.hc, dt_bench_s=a.dt, measure_bench_s=a.measure,
                       spinup_dt_bench_s=a.spinup_dt, spinup_bench_s=a.spinup,
                       perturbation=a.perturbation, restart=a.restart,
                       jacobian_lag=a.jacobian_lag, degree=a.degree,
                       checkpoint=a.out / "checkpoint.npz",
                       partial_series=a.out / "partial_series.npz")
    save(r, a.out)
    print(json.dumps({k: v for k, v in r.items() if k not in ("series", "spinup_series")},
                     indent=2, default=float))
    print("intervals:", INTERVALS_2D2)
