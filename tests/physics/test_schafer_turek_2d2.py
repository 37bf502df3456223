"""The pulsatile IPCS solver against the Schäfer–Turek cylinder benchmark (fast CI checks).

The full test 2D-2 (Re = 100, periodic shedding, ~15 min) is in
``validation/schafer_turek/test_2d2.py``. Here the time-dependent solver is marched from a
non-solution start to the steady state of test 2D-1 (Re = 20) on a coarse mesh, and the drag,
lift and pressure difference are compared with the steady benchmark's reference values.

Dynamic similarity: the run uses a blood-like fluid rather than the benchmark's,
ρ = 1000 kg/m³, μ = 0.05 Pa·s (ν = 5e-5 m²/s instead of 1e-3) with velocities scaled by 0.05
(U_max = 0.015 m/s): the same Re = 20. Times scale by 20 and pressures by ρU² ratio 2.5.
"""

from __future__ import annotations

from types import SimpleNamespace

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest

from cardiotwin.physics import verification as ver
from cardiotwin.physics.pulsatile import (
    Inflow,
    PulsatileSettings,
    StepState,
    boundary_force,
    solve_pulsatile,
)
from cardiotwin.physics.rheology import Newtonian

RHO, MU = 1000.0, 0.05
SCALE_U = (MU / RHO) / ver.ST_VISCOSITY_PA_S       # 0.05
SCALE_T = 1.0 / SCALE_U                            # 20
SCALE_P = RHO * SCALE_U**2                         # 2.5
U_MAX_2D1 = ver.ST_U_MAX_M_S * SCALE_U             # Re = (2/3 U_max) D / ν = 20
DT_BENCH_S = 0.05
T_END_BENCH_S = 4.5
SAMPLE_EVERY = 10


@pytest.fixture(scope="module")
def steady_2d1_run():
    """March test 2D-1 in time (90 steps of 0.05 s benchmark time, CFL ≤ 4.7 near the cylinder)
    from the inflow profile copied over the whole channel, which violates no-slip on the
    cylinder, to t = 4.5 s = 9 D/U_mean; forces sampled every 10 steps. 14,297 dofs."""
    fm = ver.cylinder_channel_2d(0.03, h_cylinder_m=0.0075, geometry_order=2)
    profile = ver.schafer_turek_inflow(U_MAX_2D1)
    samples: list[tuple[float, float, float, float]] = []
    final: dict[str, object] = {}
    scale_f = 2.0 / (RHO * (2 * U_MAX_2D1 / 3) ** 2 * 0.1)
    n_steps = round(T_END_BENCH_S / DT_BENCH_S)

    def callback(state: StepState) -> None:
        if state.step % SAMPLE_EVERY and state.step != n_steps:
            return
        p_t = state.pressure_at_velocity_time()
        res = SimpleNamespace(rheology=Newtonian(MU), mesh=state.fm, u=state.u, p=p_t,
                              density_kg_m3=RHO)
        fx, fy = ver.cylinder_forces(res)
        bx, by = boundary_force(state.u, p_t, mu=MU, fm=state.fm, boundary="cylinder")
        samples.append((state.t_s / SCALE_T, fx * scale_f, fy * scale_f, bx * scale_f))
        if state.step == n_steps:
            final["dp"] = ver.pressure_difference(p_t, (0.15, 0.2), (0.25, 0.2)) / SCALE_P
            final["by"] = by * scale_f

    res = solve_pulsatile(
        fm, inflow=Inflow(velocity=lambda x, t: profile(x)), outlets={"outlet": "open"},
        dt_s=DT_BENCH_S * SCALE_T, t_end_s=T_END_BENCH_S * SCALE_T,
        blood=Newtonian(density_kg_m3=RHO, viscosity_pa_s=MU), no_slip=("wall", "cylinder"),
        initial_velocity=lambda x, t: profile(x), settings=PulsatileSettings(log_every=1000),
        callback=callback)
    return np.array(samples), final, res


def test_time_marched_2d1_matches_steady_benchmark(steady_2d1_run):
    """Schäfer & Turek (1996) test 2D-1 reference values of John & Matthies (2001)/FEATFLOW
    (ver.SCHAFER_TUREK_2D1: c_D = 5.5795, c_L = 0.010619, Δp = 0.11752 Pa) reached by the IPCS
    time-stepper. Measured at t = 4.5 s: c_D +0.02 %, c_L +10 % (the lift transient decays
    slowest), Δp +0.02 %, boundary-integral c_D −0.07 %, last c_D change 2.2e-4."""
    s, final, res = steady_2d1_run
    ref = ver.SCHAFER_TUREK_2D1
    t, cd, cl, cd_b = s.T
    assert t[-1] == pytest.approx(T_END_BENCH_S)
    # settling: the c_D transient contracts and has (nearly) died out
    d = np.abs(np.diff(cd[-4:]))
    assert np.all(d[1:] < d[:-1]) and d[-1] / cd[-1] < 1e-3, s[-4:]
    # the volume-integral (residual) forces of verification.cylinder_forces; ∂u/∂t ≈ 0 here
    assert cd[-1] == pytest.approx(ref["drag_coefficient"], rel=5e-3)
    assert cl[-1] == pytest.approx(ref["lift_coefficient"], rel=0.25)
    assert final["dp"] == pytest.approx(ref["pressure_difference_pa"], rel=1e-2)
    # boundary integral of the stress (pulsatile.boundary_force): less accurate, within 1 % here
    assert cd_b[-1] == pytest.approx(ref["drag_coefficient"], rel=1e-2)
    # mass: exact after the first (inconsistent-start) step
    assert np.max(np.abs(res.mass_imbalance[1:])) < 1e-8
