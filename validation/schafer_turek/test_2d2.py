"""Schäfer–Turek 2D-2 (Re = 100, periodic vortex shedding) with the pulsatile IPCS solver.

Case (Schäfer & Turek 1996, "Benchmark computations of laminar flow around a cylinder", Notes
Numer. Fluid Mech. 52:547–566, test 2D-2): channel 2.2 × 0.41 m, cylinder centre (0.2, 0.2) m,
radius 0.05 m, ρ = 1 kg/m³, ν = 1e-3 m²/s, steady parabolic inflow U_max = 1.5 m/s
(U_mean = 1, Re = U_mean D/ν = 100), no-slip walls and cylinder, do-nothing outlet. The flow
becomes periodic; the benchmark asks for the largest drag and lift coefficients over a period,
the Strouhal number St = D f / U_mean and Δp = p(0.15, 0.2) − p(0.25, 0.2) at t0 + 1/(2f), t0
being the time of the lift maximum. The paper's acceptance intervals are in :data:`INTERVALS_2D2`.

Dynamic similarity: the run keeps a blood-like fluid rather than the benchmark's ρ = 1 (the
solver once accepted only 500 < ρ < 2000 kg/m³ and μ < 0.1 Pa·s). It uses ρ = 1000 kg/m³,
μ = 0.05 Pa·s (ν = 5e-5 m²/s) on the same geometry with U_mean = 0.05 m/s: the same Re = 100,
so velocities scale by 0.05, times by 20, pressures by ρ U² ratio 2.5. All reported numbers are
converted back to the benchmark's units (coefficients and St are dimensionless anyway).

Forces: the 'volume integral' (test-function) form of John (2004), "Reference values for drag and
lift of a two-dimensional time-dependent flow around a cylinder", IJNMF 44:777–788, eq. (4),
including the time-derivative term, evaluated at the half step t^{n+1/2} where the IPCS pressure
lives (u^{n+1/2} = (uⁿ + u^{n+1})/2, ∂u/∂t = (u^{n+1} − uⁿ)/Δt). The boundary integral of the
stress (:func:`cardiotwin.physics.pulsatile.boundary_force`, same expression) is recorded beside
it for comparison; it converges more slowly. :func:`cardiotwin.physics.verification.cylinder_forces`
is not used here because it has no ∂u/∂t term (steady residual).

Start: the steady (unstable, symmetric) Newton solution at Re = 100 plus a small vortex placed
asymmetrically behind the cylinder, so that shedding develops in ~3 benchmark seconds instead of
growing from round-off (the paper does not prescribe a start; the periodic state is unique).

Run standalone for the study: ``.venv/bin/python validation/schafer_turek/test_2d2.py [--h 0.02
--hc 0.005 --t-end 7 --perturbation 0.5]`` (writes ``out/validation/schafer_turek_2d2/`` with
``series.npz``, ``result.json``, ``forces.png``); ``make validate`` runs the test (~12 min).
``test_monolithic.py`` cross-checks the lift against an independent coupled solver.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest

# Schäfer & Turek (1996), table for test 2D-2: lower and upper bounds of the participants' results
INTERVALS_2D2 = {
    "drag_coefficient_max": (3.2200, 3.2400),
    "lift_coefficient_max": (0.9900, 1.0100),
    "strouhal": (0.2950, 0.3050),
    "pressure_difference_pa": (2.4600, 2.5000),
}

# FEATFLOW's own finest 2D-2 computation: the "new reference results" time series of the
# benchmark page (https://wwwold.mathematik.tu-dortmund.de/~featflow/en/benchmarks/cfdbenchmarking/
# flow/dfg_benchmark2_re100.html, file 20141124_dfg_bench2_official.zip: Q2/P1disc, Crank-Nicolson,
# level 6 = 667,264 dofs, dt = 1/1600). The zip cannot be downloaded here (no internet at run
# time); the maxima are those read off that series by two independent public extractions, which
# agree to 6 digits (c_D,max 3.22739 / 3.227393, St 0.30184 / 0.301841). The lift maximum of the
# benchmark's maintainers is itself below the 1996 interval [0.99, 1.01]. The per-level table of
# the same series (levels 3-6: c_L,max 0.98309, 0.98486, 0.98620, 0.98658 at dt 1/1600) converges
# from below towards 0.987, as ours does.
FEATFLOW_2D2 = {
    "drag_coefficient_max": 3.22739,
    "lift_coefficient_max": 0.98658,
    "strouhal": 0.1 / 0.33130,            # D / (U_mean * period), period 0.33130 s
}
# (the extraction also lists Δp 2.4829 "at c_L,max" without saying at which instant it is taken,
# so Δp stays checked against the 1996 interval only)
FEATFLOW_2D2_REL_TOL = 5e-3               # 0.5 %: our 54,923-dof run is within 0.15 % of each

# benchmark (b) and simulation (s) units, see the module docstring
NU_BENCH_M2_S = 1e-3
U_MEAN_BENCH_M_S = 1.0
DENSITY_SIM_KG_M3 = 1000.0
VISCOSITY_SIM_PA_S = 0.05
VELOCITY_SCALE = (VISCOSITY_SIM_PA_S / DENSITY_SIM_KG_M3) / NU_BENCH_M2_S   # u_s = 0.05 u_b
TIME_SCALE = 1.0 / VELOCITY_SCALE                                             # t_s = 20 t_b
PRESSURE_SCALE = DENSITY_SIM_KG_M3 * VELOCITY_SCALE**2                        # p_s = 2.5 p_b
DIAMETER_M = 0.1

# study settings (mesh as the 2D-1 study's middle one, 54,923 dofs; dt and duration in benchmark
# seconds: 4,800 steps, ~12 min on a shared 2-core machine)
MESH_H_M, MESH_H_CYL_M = 0.015, 0.00375
DT_BENCH_S = 1.0 / 800.0
T_END_BENCH_S = 6.0          # 4.5 left the lift peaks still growing by 0.1 % per period
PERTURBATION = 1.0          # peak speed of the start vortex / U_mean
# Measured (2026-11-25, periodic, drift < 1e-4): h 0.015/0.00375 (54,923 dofs): c_D,max 3.2280,
# c_L,max 0.9881, St 0.3018, Δp 2.4859, 11.6 min (shared machine); h 0.01/0.0025 (122,285 dofs):
# 3.2285, 0.9885, 0.3019, 2.4829, 36 min; h 0.02/0.005 (31,075 dofs, t_end 7, perturbation 0.5):
# 3.2250, 0.9841, 0.3014, 2.4743. c_L,max is below the published interval (0.99). Cross-check
# (test_monolithic.py): an independent fully coupled solver (implicit midpoint, Newton, no
# splitting, converged in Δt) gives 0.9820 / 0.9863 with P2–P1 on 31k / 55k dofs and 0.9873 with
# P3–P2 on the 31k mesh (75k dofs), with c_D,max, St and Δp within 0.001 of the IPCS. Three
# discretisations converge to c_L,max = 0.987 ± 0.001 (c_L,min −1.022): 0.3 % below the 1996
# participants' lower bound, not a splitting or force-evaluation defect. The test accepts
# c_L,max ≥ C_L_MAX_LOWER_ACCEPTED (a regression floor 0.003 below the measured 0.9881), holds
# c_D,max, c_L,max and St to FEATFLOW's finest series (FEATFLOW_2D2, within 0.5 %) and keeps the
# published interval as a strict xfail.
C_L_MAX_LOWER_ACCEPTED = 0.985
OUT_DIR = Path(__file__).resolve().parents[2] / "out" / "validation" / "schafer_turek_2d2"

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Post-processing
# ----------------------------------------------------------------------------------------------
def _eval_at_points(f, pts: np.ndarray):
    """Return ``g()`` giving ``f`` at fixed points (N, 3) (cells located once; serial use)."""
    from dolfinx import geometry

    msh = f.function_space.mesh
    tree = geometry.bb_tree(msh, msh.topology.dim)
    coll = geometry.compute_colliding_cells(msh, geometry.compute_collisions_points(tree, pts), pts)
    cells = np.array([coll.links(i)[0] for i in range(len(pts))], dtype=np.int32)

    def g() -> np.ndarray:
        return f.eval(pts, cells)

    return g


def sampler(f):
    """``(x, t) → values`` of a Lagrange Function at its own dof points, for
    ``initial_velocity`` on the same mesh and element (the interpolation points of a Lagrange
    space are its dof coordinates; each point is matched to the nearest dof)."""
    from scipy.spatial import cKDTree

    X = f.function_space.tabulate_dof_coordinates()
    tree = cKDTree(X)
    bs = f.function_space.dofmap.index_map_bs
    vals = f.x.array.reshape(-1, bs)

    def values(x: np.ndarray, t: float) -> np.ndarray:
        d, i = tree.query(x.T)
        if len(d) and d.max() > 1e-9:
            raise AssertionError(f"sampler: point {d.max():.2e} m away from any dof")
        return vals[i].T
    return values


class ForceRecorder:
    """Per-step callback of :func:`solve_pulsatile`: drag, lift (volume and boundary forms) and
    the front–back pressure difference at ``t^{n+1/2}``, in simulation units."""

    def __init__(self, fm, *, density_kg_m3: float, mu_pa_s: float, body: str = "cylinder",
                 front=(0.15, 0.2), back=(0.25, 0.2), dump_to: Path | None = None,
                 dump_every: int = 400):
        self.fm, self.rho, self.mu, self.body = fm, density_kg_m3, mu_pa_s, body
        self.dump_to, self.dump_every = dump_to, dump_every
        self.front_back = np.array([[*front, 0.0], [*back, 0.0]])
        self.rows: list[tuple[float, ...]] = []
        self._forms = None

    def _build(self, state) -> None:
        import ufl
        from dolfinx import fem

        fm = self.fm
        msh = fm.mesh
        V = state.u.function_space
        gdim = msh.geometry.dim
        self.u_old = fem.Function(V)
        self.u_old.x.array[:] = self._u_start
        self.u_new = fem.Function(V)
        self.p = fem.Function(state.p.function_space)
        self.dt = fem.Constant(msh, float(state.dt_s))
        dofs = fem.locate_dofs_topological(V, gdim - 1, fm.facet_tags.find(fm.names[self.body]))
        um = 0.5 * (self.u_old + self.u_new)
        dudt = (self.u_new - self.u_old) / self.dt
        rho, mu = self.rho, self.mu
        vol, bnd = [], []
        n = ufl.FacetNormal(msh)
        ds = ufl.Measure("ds", domain=msh, subdomain_data=fm.facet_tags)(fm.names[self.body])
        sigma = -self.p * ufl.Identity(gdim) + mu * (ufl.grad(um) + ufl.grad(um).T)
        for i in range(gdim):
            vt = fem.Function(V)
            vt.x.array.reshape(-1, gdim)[dofs, i] = 1.0
            R = (rho * ufl.inner(dudt, vt) + rho * ufl.inner(ufl.grad(um) * um, vt)
                 + mu * ufl.inner(ufl.grad(um), ufl.grad(vt)) - self.p * ufl.div(vt)) * ufl.dx
            vol.append(fem.form(R))
            bnd.append(fem.form(ufl.dot(sigma, n)[i] * ds))
        self._forms = (vol, bnd)
        self._dp = _eval_at_points(self.p, self.front_back)

    def start(self, u0_array: np.ndarray) -> None:
        """Give the initial velocity (the callback first sees step 1)."""
        self._u_start = np.array(u0_array)

    def __call__(self, state) -> None:
        from dolfinx import fem

        if self._forms is None:
            self._build(state)
        self.u_new.x.array[:] = state.u.x.array
        self.p.x.array[:] = state.p.x.array
        vol, bnd = self._forms
        fv = [-float(fem.assemble_scalar(f)) for f in vol]
        fb = [-float(fem.assemble_scalar(f)) for f in bnd]   # force on the body = −∫σn_fluid ds
        pf, pb = self._dp()
        self.rows.append((state.t_s - 0.5 * state.dt_s, *fv, *fb, float(pf[0] - pb[0])))
        self.u_old.x.array[:] = state.u.x.array
        if self.dump_to is not None and state.step % self.dump_every == 0:
            # partial series, so that a long run can be watched and analysed before its end
            self.dump_to.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.dump_to, **self.series())

    def series(self) -> dict[str, np.ndarray]:
        """Benchmark-unit series: time, c_D, c_L (volume form), c_D, c_L (boundary form), Δp."""
        a = np.array(self.rows)
        scale = 2.0 / (self.rho * (U_MEAN_BENCH_M_S * VELOCITY_SCALE) ** 2 * DIAMETER_M)
        return {"t": a[:, 0] / TIME_SCALE, "cd": a[:, 1] * scale, "cl": a[:, 2] * scale,
                "cd_boundary": a[:, 3] * scale, "cl_boundary": a[:, 4] * scale,
                "dp": a[:, 5] / PRESSURE_SCALE}


def _parabolic_max(t: np.ndarray, y: np.ndarray, i: int) -> tuple[float, float]:
    """Vertex of the parabola through samples i−1, i, i+1 (time, value)."""
    if i == 0 or i == len(y) - 1:
        return float(t[i]), float(y[i])
    y0, y1, y2 = y[i - 1], y[i], y[i + 1]
    den = y0 - 2 * y1 + y2
    s = 0.0 if den == 0 else 0.5 * (y0 - y2) / den
    s = float(np.clip(s, -1.0, 1.0))
    return float(t[i] + s * (t[i + 1] - t[i])), float(y1 - 0.25 * (y0 - y2) * s)


def shedding_frequency(t: np.ndarray, cl: np.ndarray, *, n_periods: int = 4) -> float:
    """Frequency (1/time unit of ``t``) from the last ``n_periods`` upward zero crossings of
    ``c_L − mean(c_L)``, crossing times linearly interpolated between samples."""
    y = cl - 0.5 * (cl.max() + cl.min())
    idx = np.flatnonzero((y[:-1] < 0) & (y[1:] >= 0))
    if len(idx) < 2:
        raise AssertionError(f"lift does not oscillate: {len(idx)} upward crossings")
    tc = t[idx] - y[idx] * (t[idx + 1] - t[idx]) / (y[idx + 1] - y[idx])
    tc = tc[-(n_periods + 1):]
    return float((len(tc) - 1) / (tc[-1] - tc[0]))


def start_vortex(peak_speed_m_s: float):
    """``x → (2, N)`` velocity of the start vortex ψ = A exp(−r²/s²) above the wake axis
    (centre (0.3, 0.23) m, s = 0.03 m), with peak speed √2 A e^{−1/2}/s = ``peak_speed_m_s``."""
    xc, yc, sv = 0.3, 0.23, 0.03
    amp = peak_speed_m_s * sv * math.exp(0.5) / math.sqrt(2)

    def velocity(x: np.ndarray) -> np.ndarray:
        dx, dy = x[0] - xc, x[1] - yc
        e = amp * np.exp(-(dx**2 + dy**2) / sv**2) * (-2.0 / sv**2)
        return np.vstack([e * dy, -e * dx])

    return velocity


def benchmark_quantities(s: dict[str, np.ndarray], *, n_periods: int = 4) -> dict[str, float]:
    """c_D,max, c_L,max (over the last ``n_periods`` lift periods, parabolic peak interpolation),
    St = D f / U_mean, and Δp at t0 + 1/(2f) (t0 the last lift maximum that leaves half a
    period), plus their boundary-form counterparts and the amplitude drift between periods."""
    t = s["t"]
    f = shedding_frequency(t, s["cl"], n_periods=n_periods)
    period = 1.0 / f
    window = t >= t[-1] - n_periods * period
    out = {"frequency_hz": f, "strouhal": DIAMETER_M * f / U_MEAN_BENCH_M_S}
    for key, name in (("cd", "drag_coefficient_max"), ("cl", "lift_coefficient_max"),
                      ("cd_boundary", "drag_coefficient_max_boundary"),
                      ("cl_boundary", "lift_coefficient_max_boundary")):
        y = s[key]
        i = int(np.flatnonzero(window)[0] + np.argmax(y[window]))
        out[name] = _parabolic_max(t, y, i)[1]
    # lift maxima per period: t0 and the drift of the amplitude (periodicity check)
    cl = s["cl"]
    peaks = [i for i in range(1, len(cl) - 1) if cl[i] >= cl[i - 1] and cl[i] > cl[i + 1]
             and cl[i] > 0.5 * cl.max()]
    tp = np.array([_parabolic_max(t, cl, i) for i in peaks])
    tp = tp[tp[:, 0] + 0.5 * period <= t[-1]]
    t0 = float(tp[-1, 0])
    out["t0_s"] = t0
    out["pressure_difference_pa"] = float(np.interp(t0 + 0.5 * period, t, s["dp"]))
    out["lift_peak_drift"] = float(abs(tp[-1, 1] - tp[-2, 1]) / tp[-1, 1]) if len(tp) > 1 else 1.0
    return out


# ----------------------------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------------------------
def run_2d2(*, h_m: float = MESH_H_M, h_cylinder_m: float = MESH_H_CYL_M,
            dt_bench_s: float = DT_BENCH_S, t_end_bench_s: float = T_END_BENCH_S,
            perturbation: float = PERTURBATION, analyse: bool = True,
            partial_series: Path | None = None) -> dict:
    """Run test 2D-2 and return the benchmark-unit series, the quantities and the cost."""
    import dolfinx_solver  # noqa: F401

    from cardiotwin.physics import verification as ver
    from cardiotwin.physics.newton import solve_newton
    from cardiotwin.physics.pulsatile import Inflow, PulsatileSettings, solve_pulsatile
    from cardiotwin.physics.rheology import Newtonian

    t_wall = time.perf_counter()
    u_max = 1.5 * VELOCITY_SCALE
    fm = ver.cylinder_channel_2d(h_m, h_cylinder_m=h_cylinder_m, geometry_order=2)
    profile = ver.schafer_turek_inflow(u_max)
    steady = solve_newton(fm, inflow=profile, reference_length_m=DIAMETER_M,
                          density_kg_m3=DENSITY_SIM_KG_M3, rheology=Newtonian(VISCOSITY_SIM_PA_S))
    t_newton = time.perf_counter() - t_wall
    base = sampler(steady.u)
    vortex = start_vortex(perturbation * U_MEAN_BENCH_M_S * VELOCITY_SCALE)

    def initial_velocity(x: np.ndarray, t: float) -> np.ndarray:
        return base(x, t) + vortex(x)

    rec = ForceRecorder(fm, density_kg_m3=DENSITY_SIM_KG_M3, mu_pa_s=VISCOSITY_SIM_PA_S,
                        dump_to=partial_series)
    from dolfinx import fem
    V0 = fem.functionspace(fm.mesh, ("Lagrange", 2, (2,)))
    u0 = fem.Function(V0)
    u0.interpolate(lambda x: initial_velocity(x, 0.0))
    rec.start(u0.x.array)
    blood = Newtonian(density_kg_m3=DENSITY_SIM_KG_M3, viscosity_pa_s=VISCOSITY_SIM_PA_S)
    res = solve_pulsatile(
        fm, inflow=Inflow(velocity=lambda x, t: profile(x)), outlets={"outlet": "open"},
        dt_s=dt_bench_s * TIME_SCALE, t_end_s=t_end_bench_s * TIME_SCALE, blood=blood,
        no_slip=("wall", "cylinder"), initial_velocity=initial_velocity,
        settings=PulsatileSettings(log_every=400), callback=rec)
    s = rec.series()
    q = benchmark_quantities(s) if analyse else {}
    n_steps = len(s["t"])
    return {"series": s, "quantities": q,
            "mesh": {"h_m": h_m, "h_cylinder_m": h_cylinder_m, "n_dofs": res.n_dofs},
            "dt_bench_s": dt_bench_s, "t_end_bench_s": t_end_bench_s, "n_steps": n_steps,
            "perturbation": perturbation, "cfl_max": float(np.max(res.cfl)),
            "timings_s": {"newton_start": t_newton, "pulsatile_total": res.timings_s["total"],
                          "per_step": res.timings_s["per_step"],
                          "wall_total": time.perf_counter() - t_wall}}


def check_intervals(q: dict[str, float]) -> dict[str, float]:
    """Signed distance of each quantity outside its Schäfer–Turek interval (0 when inside)."""
    miss = {}
    for k, (lo, hi) in INTERVALS_2D2.items():
        v = q[k]
        miss[k] = 0.0 if lo <= v <= hi else (v - lo if v < lo else v - hi)
    return miss


def save(result: dict, out_dir: Path = OUT_DIR) -> None:
    """Write ``series.npz``, ``result.json`` and ``forces.png`` (c_D, c_L and Δp against time,
    the Schäfer–Turek intervals shaded) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    s = result["series"]
    np.savez(out_dir / "series.npz", **s)
    meta = {k: v for k, v in result.items() if k != "series"}
    if result["quantities"]:
        meta["outside_interval_by"] = check_intervals(result["quantities"])
    (out_dir / "result.json").write_text(json.dumps(meta, indent=2, default=float))
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for ax, key, band, label in ((axes[0], "cd", "drag_coefficient_max", "$c_D$"),
                                 (axes[1], "cl", "lift_coefficient_max", "$c_L$"),
                                 (axes[2], "dp", "pressure_difference_pa", r"$\Delta p$ (Pa)")):
        ax.plot(s["t"], s[key], lw=0.8, label="volume form" if key != "dp" else None)
        if key in ("cd", "cl"):
            ax.plot(s["t"], s[f"{key}_boundary"], lw=0.6, ls="--", label="boundary form")
            ax.legend(loc="lower left", fontsize=8)
        ax.axhspan(*INTERVALS_2D2[band], color="tab:green", alpha=0.3)
        ax.set_ylabel(label)
    axes[-1].set_xlabel("t (benchmark s)")
    q = result["quantities"]
    if q:
        axes[0].set_title(f"Schäfer–Turek 2D-2: St = {q['strouhal']:.4f}, "
                          f"c_D,max = {q['drag_coefficient_max']:.4f}, "
                          f"c_L,max = {q['lift_coefficient_max']:.4f}, "
                          f"Δp = {q['pressure_difference_pa']:.4f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "forces.png", dpi=120)
    plt.close(fig)


@pytest.fixture(scope="module")
def result_2d2() -> dict:
    result = run_2d2()
    save(result)
    return result


@pytest.mark.slow
@pytest.mark.validation
def test_schafer_turek_2d2_intervals(result_2d2):
    """Schäfer & Turek (1996) test 2D-2: c_D,max, St and Δp(t0 + 1/(2f)) inside the published
    intervals (INTERVALS_2D2); a periodic lift (peak drift < 0.5 %); volume and boundary forms
    agree within 1 %; c_L,max not below C_L_MAX_LOWER_ACCEPTED (a regression floor: the
    published interval itself is the strict xfail test below)."""
    q = result_2d2["quantities"]
    assert q["lift_peak_drift"] < 5e-3, q
    for k, (lo, hi) in INTERVALS_2D2.items():
        if k == "lift_coefficient_max":
            lo = C_L_MAX_LOWER_ACCEPTED
        assert lo <= q[k] <= hi, (k, q[k], (lo, hi), q)
    assert q["drag_coefficient_max_boundary"] == pytest.approx(q["drag_coefficient_max"], rel=1e-2)
    assert q["lift_coefficient_max_boundary"] == pytest.approx(q["lift_coefficient_max"], rel=1e-2)


@pytest.mark.slow
@pytest.mark.validation
def test_schafer_turek_2d2_matches_featflow_reference(result_2d2):
    """c_D,max, c_L,max and St within 0.5 % of FEATFLOW's finest published 2D-2 series
    (:data:`FEATFLOW_2D2`; measured 2026-11-25 on 54,923 dofs: +0.02 %, +0.15 %, −0.01 %).
    This is the check the lift is held to: the 1996 interval excludes FEATFLOW's own
    converged value (next test)."""
    q = result_2d2["quantities"]
    errors = {k: q[k] / ref - 1.0 for k, ref in FEATFLOW_2D2.items()}
    print("relative error against FEATFLOW level 6:", errors)
    for k, e in errors.items():
        assert abs(e) < FEATFLOW_2D2_REL_TOL, (k, q[k], FEATFLOW_2D2[k], errors)


@pytest.mark.slow
@pytest.mark.validation
@pytest.mark.xfail(strict=True, reason=(
    "the 1996 interval excludes the converged lift (issue 5): c_L,max 0.9881 at 54,923 dofs, "
    "0.2 % below its lower bound 0.99. FEATFLOW's own finest series (level 6, 667k dofs) gives "
    "0.98658, also below it; converged discretisations here give 0.987 +- 0.001 (IPCS 122k dofs "
    "0.9885; coupled P2-P1 0.9863, coupled P3-P2 0.9873: test_monolithic.py). strict: if the "
    "lift ever moves into the interval this XPASSes and fails, and the change must be explained"))
def test_schafer_turek_2d2_lift_in_published_interval(result_2d2):
    lo, hi = INTERVALS_2D2["lift_coefficient_max"]
    assert lo <= result_2d2["quantities"]["lift_coefficient_max"] <= hi


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=float, default=MESH_H_M)
    ap.add_argument("--hc", type=float, default=MESH_H_CYL_M)
    ap.add_argument("--dt", type=float, default=DT_BENCH_S, help="benchmark seconds")
    ap.add_argument("--t-end", type=float, default=T_END_BENCH_S, help="benchmark seconds")
    ap.add_argument("--perturbation", type=float, default=PERTURBATION)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    a = ap.parse_args()
    r = run_2d2(h_m=a.h, h_cylinder_m=a.hc, dt_bench_s=a.dt, t_end_bench_s=a.t_end,
                perturbation=a.perturbation,
                partial_series=a.out / "partial_series.npz")
    save(r, a.out)
    print(json.dumps({k: v for k, v in r.items() if k != "series"}, indent=2, default=float))
