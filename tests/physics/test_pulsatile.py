"""Pulsatile Navier–Stokes (IPCS P2–P1) with Windkessel outlets: Womersley flow, RCR agreement
with the 0-D model, mass conservation, restart, input errors, divergence guard, MPI."""

from __future__ import annotations

import json
import math

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest

from cardiotwin.errors import InputError, SolverError
from cardiotwin.physics import verification
from cardiotwin.physics.mesh import load_domain
from cardiotwin.physics.pulsatile import (
    Inflow,
    PulsatileSettings,
    ValvePlanes,
    boundary_force,
    solve_pulsatile,
)
from cardiotwin.physics.rheology import Newtonian
from cardiotwin.physics.waveforms import (
    AorticFlowWaveform,
    FourierFlow,
    womersley_gradient_for_flow,
    womersley_profile_for_flow,
)
from cardiotwin.physics.windkessel import RCR, OutletResistance, TwoElement, simulate

from .conftest import make_pipe, make_tee, run_mpi, save_domain

BLOOD = Newtonian()


# ----------------------------------------------------------------------------------------------
# Womersley (shared with validation/womersley)
# ----------------------------------------------------------------------------------------------
def womersley_case(fm, *, radius_m: float, length_m: float, alpha: float, steps_per_period: int,
                   u_mean_m_s: float = 0.01, blood: Newtonian = BLOOD, periods: float = 1.0):
    """Pipe flow Q(t) = Q̄(1 + cos ωt) with the analytic Womersley inlet profile, started from the
    exact solution; returns (space-time relative L2 velocity error over the run, result, RMS
    relative error of the mean inlet-face pressure against the exact ``p(0, t)`` at the
    pressure times).

    The exact solution (Womersley 1955: Poiseuille mode + one Womersley mode) satisfies every
    boundary condition of the discrete problem: the inlet profile, no slip, and the do-nothing
    outlet with p = 0 (∂u/∂n = 0 for fully developed flow). Backflow stabilisation is off
    because the near-wall flow reverses during the cycle and the exact solution does not satisfy
    the stabilised outlet condition there.
    """
    import ufl
    from dolfinx import fem
    from mpi4py import MPI

    R, L = radius_m, length_m
    nu = blood.viscosity_pa_s / blood.density_kg_m3
    omega = alpha**2 * nu / R**2
    T = 2 * math.pi / omega
    A = math.pi * R**2
    wf = FourierFlow((u_mean_m_s * A, u_mean_m_s * A), T)
    G1 = womersley_gradient_for_flow(wf.coefficients[1], radius_m=R, omega_rad_s=omega,
                                     density_kg_m3=blood.density_kg_m3,
                                     viscosity_pa_s=blood.viscosity_pa_s)
    G0 = 8 * blood.viscosity_pa_s * wf.coefficients[0].real / (math.pi * R**4)

    def u_exact(x, t):
        r = np.minimum(np.sqrt(x[0] ** 2 + x[1] ** 2), R)
        w = womersley_profile_for_flow(r, t, wf.coefficients, radius_m=R, period_s=T,
                                       density_kg_m3=blood.density_kg_m3,
                                       viscosity_pa_s=blood.viscosity_pa_s)
        return np.vstack([0 * w, 0 * w, w])

    def p_exact(x, t):
        return (G0 + (G1 * np.exp(1j * omega * t)).real) * (L - x[2])

    acc = {"e": 0.0, "r": 0.0}
    ue = None

    def callback(st):
        nonlocal ue
        if ue is None:
            ue = fem.Function(st.u.function_space)
        ue.interpolate(lambda x: u_exact(x, st.t_s))
        comm = st.u.function_space.mesh.comm
        acc["e"] += comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(st.u - ue, st.u - ue) * ufl.dx)), op=MPI.SUM)
        acc["r"] += comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(ue, ue) * ufl.dx)), op=MPI.SUM)

    res = solve_pulsatile(
        fm, inflow=Inflow(flow_m3_s=wf, profile="womersley"), outlets={"out": "open"},
        dt_s=T / steps_per_period, t_end_s=periods * T, blood=blood,
        settings=PulsatileSettings(backflow_beta=0.0), initial_velocity=u_exact,
        initial_pressure=p_exact, callback=callback)
    p_in = p_exact(np.zeros((3, 1)), res.pressure_times_s)
    p_err = np.sqrt(np.mean((res.boundary_pressures_pa["inlet"] - p_in) ** 2) / np.mean(p_in**2))
    return math.sqrt(acc["e"] / acc["r"]), res, float(p_err)


@pytest.fixture(scope="module")
def short_pipe(physics_tmp):
    dom = make_pipe(physics_tmp / "pulsatile_pipe_10mm.msh", radius_mm=5.0, length_mm=10.0,
                    h_mm=1.25)
    return load_domain(dom)


def test_womersley_alpha4_pipe(short_pipe):
    """α = 4, 40 steps per period, h = 1.25 mm (4 cells per radius), P2: space-time relative L2
    velocity error over one period < 2 % (issue target). Measured 1.32 % (0.78 % at h = 0.9 mm,
    validation/womersley has α = 4 and 10 on finer meshes)."""
    err, res, p_err = womersley_case(short_pipe, radius_m=5e-3, length_m=10e-3, alpha=4.0,
                                     steps_per_period=40)
    print(f"Womersley α=4: L2 {err:.4f}, inlet pressure {p_err:.4f}, dofs {res.n_dofs}, "
          f"{res.timings_s['per_step']:.3f} s/step")
    assert err < 0.02, err
    # flow imposed exactly: inlet flux = Q(t) of the Fourier series
    q = res.inlet_flow_m3_s
    t = res.times_s
    A = math.pi * 25e-6
    assert np.allclose(q, 0.01 * A * (1 + np.cos(2 * math.pi * t / (t[-1]))), rtol=0,
                       atol=1e-9 * A)
    # rigid pipe: conservative outflow = inflow to the solver tolerance; the raw outlet face flux
    # differs by the divergence of the outlet cell layer (reported, measured 0.5 %)
    assert np.max(np.abs(res.mass_imbalance)) < 1e-6
    print(f"face-flux imbalance {np.max(np.abs(res.face_mass_imbalance)):.2e}")


# ----------------------------------------------------------------------------------------------
# RCR outlet on a pipe against the 0-D model
# ----------------------------------------------------------------------------------------------
HR, SV_ML = 75.0, 2.0
WAVE = AorticFlowWaveform(heart_rate_bpm=HR, stroke_volume_ml=SV_ML)
# small flow, large resistances: pipe resistance 8μL/(πR⁴) ≈ 2.9e5 ≪ Rp (about 0.1 % of it)
PIPE_RCR = RCR(Rp=4.0e8, C=5.0e-10, Rd=4.0e9, p_d=0.0)
P0_PA = 8000.0
DT_RCR = 0.008


@pytest.fixture(scope="module")
def rcr_pipe(physics_tmp):
    dom = make_pipe(physics_tmp / "pulsatile_pipe_20mm.msh", radius_mm=5.0, length_mm=20.0,
                    h_mm=2.5)
    return load_domain(dom)


@pytest.fixture(scope="module")
def rcr_run(rcr_pipe):
    return solve_pulsatile(rcr_pipe, inflow=Inflow(flow_m3_s=WAVE, profile="parabolic"),
                           outlets={"out": PIPE_RCR}, dt_s=DT_RCR, t_end_s=1.25 * WAVE.period_s,
                           initial_outlet_pressures_pa={"out": P0_PA})


def test_rcr_outlet_matches_0d_model(rcr_run):
    """Inlet and outlet pressure traces of the 3-D pipe with an RCR outlet against
    windkessel.simulate driven by the same inflow from the same capacitor pressure: the outlet
    pressure agrees to 1e-6 of the pulse pressure (same trapezoidal update, and the conservative
    outlet flow equals the inflow), the inlet pressure to 3 % (it adds the pipe's resistive and inertial drop,
    ρL/A·dQ/dt ≈ 50 Pa at peak acceleration, and the mesh error of the pressure drop on this
    coarse pipe: docs/pulsatile.md, "Limitations").
    """
    r = rcr_run
    trace = simulate(PIPE_RCR, WAVE, r.times_s[-1], DT_RCR, p0=P0_PA)
    p0d = np.interp(r.times_s, trace.t, trace.p_inlet)
    pulse = float(np.ptp(p0d))
    out_err = np.max(np.abs(r.outlet_pressures_pa["out"] - p0d)) / pulse
    # 0-D pressure at the half steps where the field pressure lives: fine 0-D run
    fine = simulate(PIPE_RCR, WAVE, r.times_s[-1], DT_RCR / 16, p0=P0_PA)
    p_half = np.interp(r.pressure_times_s, fine.t, fine.p_inlet)
    late = r.times_s > 0.1  # after the start-up of the first steps
    in_err = np.max(np.abs(r.boundary_pressures_pa["inlet"] - p_half)[late]) / pulse
    print(f"RCR: pulse {pulse:.0f} Pa, outlet err {out_err:.2e}, inlet err {in_err:.2e}, "
          f"imbalance {np.max(np.abs(r.mass_imbalance)):.2e}, dofs {r.n_dofs}, "
          f"{r.timings_s['per_step']:.3f} s/step")
    assert out_err < 1e-6, out_err
    assert in_err < 0.03, in_err
    assert np.max(np.abs(r.mass_imbalance)) < 1e-6
    s = r.summary()
    json.dumps(s)
    assert s["stroke_volume_ml"] == pytest.approx(SV_ML, rel=0.01)


# ----------------------------------------------------------------------------------------------
# Tee with two RCR outlets: implicit coupling, mass conservation, valve metrics, WSS
# ----------------------------------------------------------------------------------------------
# SV 1 mL: peak Reynolds number ≈ 300 in the 8 mm trunk. At SV 3 mL (Re ≈ 1000) this 2 mm mesh
# (1.5 cells per branch radius) develops spurious jets at the sharp junction edge during
# deceleration and the CFL guard stops the run; see docs/pulsatile.md.
TEE_WAVE = AorticFlowWaveform(heart_rate_bpm=75.0, stroke_volume_ml=1.0)
r_ = 1.333e8  # 1 mmHg·s/mL in Pa·s/m³
TEE_OUTLETS = {"main": RCR(Rp=0.5 * r_, C=1e-9, Rd=10 * r_), "branch": RCR(Rp=1.0 * r_, C=5e-10, Rd=20 * r_)}
TEE_DT, TEE_T = 0.004, 0.28


@pytest.fixture(scope="module")
def tee_fm(physics_tmp):
    return load_domain(make_tee(physics_tmp / "pulsatile_tee.msh", h_mm=2.0))


@pytest.fixture(scope="module")
def tee_run(tee_fm):
    return solve_pulsatile(tee_fm, inflow=Inflow(flow_m3_s=TEE_WAVE), outlets=TEE_OUTLETS,
                           dt_s=TEE_DT, t_end_s=TEE_T, period_s=TEE_T,
                           initial_outlet_pressures_pa={"main": 1.0e4, "branch": 1.0e4},
                           valve=ValvePlanes((0, 0, 10), (0, 0, 1), 4.0, upstream_mm=6.0,
                                             downstream_mm=8.0))


def test_tee_mass_conservation_and_coupling(tee_run):
    """Systole and valve closure through a tee with RCR outlets whose Rp is ~10x the tee's 3-D
    resistance: no oscillation, Σ outlet flows = inflow within 0.5 % at every step, each outlet
    pressure = its RCR law exactly (implicit coupling)."""
    r = tee_run
    imb = np.max(np.abs(r.mass_imbalance))
    print(f"tee: max imbalance {imb:.2e}, dofs {r.n_dofs}, {r.timings_s['per_step']:.3f} s/step")
    assert imb < 5e-3, imb
    # replay each outlet's RCR with its recorded flow (from the same initial state)
    for name, model in TEE_OUTLETS.items():
        q = r.outlet_flows_m3_s[name]
        pc, qp = 1.0e4, 0.0
        p = []
        for qq in q:
            pc = model.step(pc, qq, TEE_DT, q_prev=qp)
            qp = qq
            p.append(model.pressure(pc, qq))
        assert np.allclose(r.outlet_pressures_pa[name], p, rtol=1e-12, atol=1e-9)
    # smooth split: flows do not alternate in sign of their increments late in the run
    qb = r.outlet_flows_m3_s["branch"][-10:]
    d2 = np.diff(qb, 2)
    assert np.all(np.abs(d2) < 0.05 * np.max(np.abs(qb))), d2
    s = r.summary()
    assert set(s["valve"]) >= {"mean_gradient_mmhg", "peak_gradient_mmhg", "eoa_gorlin_cm2",
                               "eoa_continuity_cm2"}
    # an open pipe: continuity EOA is bounded by the lumen area (0.50 cm²) and above half of it
    assert 0.1 < s["valve"]["eoa_continuity_cm2"] < 0.503
    assert s["wall_shear"]["tawss_pa_mean"] > 0 and 0 <= s["wall_shear"]["osi_max"] <= 0.5


# ----------------------------------------------------------------------------------------------
# Restart, input errors, divergence guard, outputs
# ----------------------------------------------------------------------------------------------
RESTART_KW = dict(outlets={"out": PIPE_RCR}, dt_s=DT_RCR, t_end_s=16 * DT_RCR,
                  initial_outlet_pressures_pa={"out": P0_PA})


def _adios_available() -> None:
    """adios4dolfinx checkpoints need the MPI-enabled adios2 module that `make test` builds;
    fail with the remedy rather than deep inside the solver."""
    try:
        import adios2
        import adios4dolfinx  # noqa: F401
    except ImportError as exc:
        raise AssertionError(f"{exc}: build the MPI adios2 bindings and adios4dolfinx into the "
                             "venv with `bash scripts/build-adios2.sh .venv` (make test does)") from exc
    assert adios2.is_built_with_mpi, "adios2 without MPI: run `bash scripts/build-adios2.sh .venv`"


def test_checkpoint_keep_prunes_older_checkpoints(rcr_pipe, tmp_path):
    solve_pulsatile(rcr_pipe, inflow=Inflow(flow_m3_s=WAVE), out_dir=tmp_path, checkpoint_every=4,
                    settings=PulsatileSettings(checkpoint_format="npz", checkpoint_keep=2),
                    **RESTART_KW)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_000012", "step_000016"]
    with pytest.raises(InputError, match="checkpoint_keep"):
        PulsatileSettings(checkpoint_keep=-1)


@pytest.mark.parametrize("fmt", ["adios4dolfinx", "npz"])
def test_restart_reproduces_uninterrupted_run(rcr_pipe, tmp_path, fmt):
    if fmt == "adios4dolfinx":
        _adios_available()
    kw = dict(inflow=Inflow(flow_m3_s=WAVE), settings=PulsatileSettings(checkpoint_format=fmt),
              **RESTART_KW)
    calls = []
    full = solve_pulsatile(rcr_pipe, out_dir=tmp_path / "a", checkpoint_every=8, write_every=8,
                           progress=lambda k, n: calls.append((k, n)), **kw)
    assert calls[0] == (1, 16) and calls[-1] == (16, 16)
    ck = tmp_path / "a" / "checkpoints" / "step_000008"
    assert json.loads((ck / "state.json").read_text())["format"] == fmt
    assert (ck / "state.bp").is_dir() == (fmt == "adios4dolfinx")
    assert (tmp_path / "a" / "velocity.bp").is_dir()
    # another mesh (same names, coarser) is refused before anything is read into it
    other = load_domain(make_pipe(tmp_path / "coarse.msh", radius_mm=5.0, length_mm=20.0,
                                  h_mm=3.5))
    with pytest.raises(InputError, match="another mesh|dof layout"):
        solve_pulsatile(other, restart_from=ck, **kw)
    again = solve_pulsatile(rcr_pipe, restart_from=ck, **kw)
    assert len(again.times_s) == 16
    np.testing.assert_allclose(again.outlet_flows_m3_s["out"], full.outlet_flows_m3_s["out"],
                               rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(again.outlet_pressures_pa["out"], full.outlet_pressures_pa["out"],
                               rtol=1e-9)
    np.testing.assert_allclose(again.u.x.array, full.u.x.array, rtol=0,
                               atol=1e-9 * np.abs(full.u.x.array).max())


def test_input_errors_name_the_parameter(rcr_pipe, tee_fm):
    inflow = Inflow(flow_m3_s=WAVE)
    with pytest.raises(InputError, match="heart_rate_bpm"):
        AorticFlowWaveform(heart_rate_bpm=0, stroke_volume_ml=70)
    with pytest.raises(InputError, match="Rp"):
        RCR(Rp=-1.0, C=1e-9, Rd=1e9)
    with pytest.raises(InputError, match="C"):
        TwoElement(R=1e9, C=-1e-9)
    with pytest.raises(InputError, match="resistance"):
        OutletResistance(-5.0)
    with pytest.raises(InputError, match="dt_s"):
        solve_pulsatile(rcr_pipe, inflow=inflow, outlets={"out": PIPE_RCR}, dt_s=0.0, t_end_s=1.0)
    with pytest.raises(InputError, match="dt_s"):
        solve_pulsatile(rcr_pipe, inflow=inflow, outlets={"out": PIPE_RCR}, dt_s=-1e-3, t_end_s=1.0)
    with pytest.raises(InputError, match="branch"):
        solve_pulsatile(tee_fm, inflow=inflow, outlets={"main": TEE_OUTLETS["main"]}, dt_s=1e-3,
                        t_end_s=1e-2)
    with pytest.raises(InputError, match="aorta"):
        solve_pulsatile(rcr_pipe, inflow=inflow, outlets={"out": PIPE_RCR, "aorta": "open"},
                        dt_s=1e-3, t_end_s=1e-2)
    with pytest.raises(InputError, match="cylinder"):
        solve_pulsatile(rcr_pipe, inflow=inflow, outlets={"out": PIPE_RCR}, dt_s=1e-3,
                        t_end_s=1e-2, no_slip=("wall", "cylinder"))
    with pytest.raises(InputError, match="womersley"):
        Inflow(flow_m3_s=lambda t: 1e-6, profile="womersley")


def test_forced_divergence_raises_solver_error(rcr_pipe, tmp_path):
    """dt = 0.2 s at peak systole: CFL ≫ 10 at the first step; nothing is written."""
    with pytest.raises(SolverError, match=r"CFL .* at step 1 .*reduce dt_s below"):
        solve_pulsatile(rcr_pipe, inflow=Inflow(flow_m3_s=lambda t: 2e-4), outlets={"out": "open"},
                        dt_s=0.2, t_end_s=1.0, out_dir=tmp_path / "bad", write_every=1)
    assert not any((tmp_path / "bad").glob("**/*.npz"))


def test_2d_channel_velocity_inflow_and_boundary_force():
    """2-D mesh built in dolfinx (FlowMesh without a FluidDomain), inflow given as a velocity
    expression of (x, t), ramped: the settled plane Poiseuille flow has the exact pressure drop
    12μLU/H² and the wall force balances it (F_x = Δp·H); flows are conserved."""

    L, H, U = 0.02, 0.005, 0.01
    fm = verification.channel_2d(L, H, 32, 8, outlet_name="outlet:out", diagonal="right")
    blood = Newtonian(viscosity_pa_s=0.05)

    def inflow(x, t):
        return np.vstack([6 * U * x[1] * (H - x[1]) / H**2 * min(1.0, t / 0.05), 0 * x[0]])

    r = solve_pulsatile(fm, inflow=Inflow(velocity=inflow), outlets={"out": "open"}, dt_s=0.01,
                        t_end_s=0.5, blood=blood)
    dp_exact = 12 * blood.viscosity_pa_s * L * U / H**2
    dp = r.pressure_drop_pa("inlet", "outlet:out")[-1]
    force = boundary_force(r.u, r.p, mu=blood.viscosity_pa_s, fm=fm, boundary="wall")
    print(f"2-D channel: dp {dp:.5f} vs {dp_exact:.5f}, F {force}, dofs {r.n_dofs}")
    assert dp == pytest.approx(dp_exact, rel=2e-3)       # measured −0.03 %
    assert force[0] == pytest.approx(dp_exact * H, rel=2e-3)
    assert abs(force[1]) < 1e-3 * force[0]
    assert r.inlet_flow_m3_s[-1] == pytest.approx(U * H, rel=1e-12)
    assert np.max(np.abs(r.mass_imbalance)) < 1e-8


# ----------------------------------------------------------------------------------------------
# MPI
# ----------------------------------------------------------------------------------------------
MPI_SCRIPT = """
import json, sys
import dolfinx_solver
from mpi4py import MPI
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.physics.mesh import load_domain
from cardiotwin.physics.pulsatile import Inflow, solve_pulsatile
from cardiotwin.physics.waveforms import AorticFlowWaveform
from cardiotwin.physics.windkessel import RCR
d = FluidDomain.from_dict(json.load(open(sys.argv[1])))
fm = load_domain(d, comm=MPI.COMM_WORLD)
outs = {{k: RCR(**v) for k, v in {outs}.items()}}
r = solve_pulsatile(fm, inflow=Inflow(flow_m3_s=AorticFlowWaveform(heart_rate_bpm=75.0,
                    stroke_volume_ml=1.0)), outlets=outs, dt_s={dt}, t_end_s={t_end},
                    initial_outlet_pressures_pa={{"main": 1.0e4, "branch": 1.0e4}})
if MPI.COMM_WORLD.rank == 0:
    json.dump({{k: v.tolist() for k, v in r.outlet_flows_m3_s.items()}}, open(sys.argv[2], "w"))
"""


@pytest.mark.mpi
def test_mpi_two_ranks_match_serial(tee_fm, tee_run, physics_tmp, tmp_path):
    from dataclasses import asdict

    dom = save_domain(tee_fm.domain, tmp_path / "tee.json")
    script = tmp_path / "run.py"
    n = 15
    script.write_text(MPI_SCRIPT.format(outs={k: asdict(v) for k, v in TEE_OUTLETS.items()},
                                         dt=TEE_DT, t_end=n * TEE_DT))
    out = tmp_path / "flows.json"
    run_mpi(script, dom, out)
    par = json.loads(out.read_text())
    for k in TEE_OUTLETS:  # same discrete problem; iterative solves at rtol 1e-10
        np.testing.assert_allclose(par[k], tee_run.outlet_flows_m3_s[k][:n], rtol=1e-6,
                                   atol=1e-6 * np.max(np.abs(tee_run.outlet_flows_m3_s[k][:n])))


RESTART_MPI_SCRIPT = """
import json, sys
import dolfinx_solver
from mpi4py import MPI
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.physics.mesh import load_domain
from cardiotwin.physics.pulsatile import Inflow, PulsatileSettings, solve_pulsatile
from cardiotwin.physics.waveforms import AorticFlowWaveform
from cardiotwin.physics.windkessel import RCR
fm = load_domain(FluidDomain.from_dict(json.load(open(sys.argv[1]))), comm=MPI.COMM_WORLD)
restart = sys.argv[2] != "write"   # "write": a full run that checkpoints into sys.argv[4]
r = solve_pulsatile(fm, inflow=Inflow(flow_m3_s=AorticFlowWaveform(**{wave})),
                    outlets={{"out": RCR(**{rcr})}}, dt_s={dt}, t_end_s={t_end},
                    initial_outlet_pressures_pa={{"out": {p0}}},
                    restart_from=sys.argv[2] if restart else None,
                    out_dir=None if restart else sys.argv[4], checkpoint_every=0 if restart else 8,
                    settings=PulsatileSettings(checkpoint_format="adios4dolfinx"))
if MPI.COMM_WORLD.rank == 0:
    json.dump({{"q": r.outlet_flows_m3_s["out"].tolist(), "p": r.outlet_pressures_pa["out"].tolist(),
               "p_in": r.boundary_pressures_pa["inlet"].tolist()}}, open(sys.argv[3], "w"))
"""


@pytest.mark.mpi
def test_adios4dolfinx_checkpoint_restarts_on_two_ranks(rcr_pipe, tmp_path):
    """A checkpoint written by a serial run (adios4dolfinx, fields in the mesh's input ordering)
    restarts under mpiexec -n 2 and continues the serial run, and one written under mpiexec -n 2
    restarts in serial: outlet flow and pressure and the inlet pressure equal the uninterrupted
    serial run within the iterative solvers' tolerance."""
    from dataclasses import asdict

    _adios_available()
    kw = dict(inflow=Inflow(flow_m3_s=WAVE), **RESTART_KW,
              settings=PulsatileSettings(checkpoint_format="adios4dolfinx"))
    full = solve_pulsatile(rcr_pipe, out_dir=tmp_path / "a", checkpoint_every=8, **kw)
    script = tmp_path / "restart.py"
    script.write_text(RESTART_MPI_SCRIPT.format(
        wave={"heart_rate_bpm": WAVE.heart_rate_bpm, "stroke_volume_ml": WAVE.stroke_volume_ml},
        rcr=asdict(PIPE_RCR), dt=DT_RCR, t_end=16 * DT_RCR, p0=P0_PA))
    out = tmp_path / "restarted.json"
    dom = save_domain(rcr_pipe.domain, tmp_path / "pipe.json")
    run_mpi(script, dom, tmp_path / "a" / "checkpoints" / "step_000008", out)
    # two ranks write, one rank restarts
    run_mpi(script, dom, "write", tmp_path / "written_by_2.json", tmp_path / "b")
    ck2 = tmp_path / "b" / "checkpoints" / "step_000008"
    assert json.loads((ck2 / "state.json").read_text())["mpi_size"] == 2
    serial = solve_pulsatile(rcr_pipe, restart_from=ck2, **kw)
    q, p_in = full.outlet_flows_m3_s["out"], full.boundary_pressures_pa["inlet"]
    for par in (json.loads(out.read_text()),
                {"q": serial.outlet_flows_m3_s["out"], "p": serial.outlet_pressures_pa["out"],
                 "p_in": serial.boundary_pressures_pa["inlet"]}):
        assert len(par["q"]) == 16
        np.testing.assert_allclose(par["q"], q, rtol=1e-6, atol=1e-6 * np.abs(q).max())
        np.testing.assert_allclose(par["p"], full.outlet_pressures_pa["out"], rtol=1e-6)
        np.testing.assert_allclose(par["p_in"], p_in, rtol=1e-6, atol=1e-6 * np.abs(p_in).max())


# ----------------------------------------------------------------------------------------------
# Shear-thinning blood (Carreau–Yasuda)
# ----------------------------------------------------------------------------------------------
H_CH, L_CH, U_CH = 0.01, 0.04, 0.005  # as test_newton's Carreau–Yasuda channel


def _parabola(x, t=0.0):
    return np.vstack([6 * U_CH * x[1] * (H_CH - x[1]) / H_CH**2, np.zeros(x.shape[1])])


def _eval_points(f, pts):
    from dolfinx import geometry

    msh = f.function_space.mesh
    tree = geometry.bb_tree(msh, msh.topology.dim)
    cells = geometry.compute_colliding_cells(msh, geometry.compute_collisions_points(tree, pts), pts)
    return np.array([f.eval(pts[i], cells.links(i)[:1]) for i in range(len(pts))])


def test_carreau_yasuda_channel_reaches_shear_thinning_steady_state():
    """Carreau–Yasuda blood (Cho & Kensey 1991 via Johnston et al. 2004, the rheology defaults) in
    a 1 cm channel, steady parabolic (Newtonian-shaped) inflow, started from that parabola and
    marched 50 steps of 25 ms (≈ 4 viscous times ρH²/(π²μ)): the developed profile at x = 3L/4
    matches the independent 1-D integration of μ(γ̇)γ̇ = Gη (verification.channel_flow_profile)
    within 0.5 % (measured 6.1e-4), −dp/dx within 0.5 % (measured 1.0e-4), and the whole field
    matches the steady Taylor–Hood Newton solution with the same rheology on the same mesh
    within 0.5 % in L2 (measured 4.4e-5; it includes the developing inlet region, where the
    ∇uᵀ part of the stress is non-zero). The Newtonian parabola differs from the reference by
    9 %, so the check can fail."""
    import ufl
    from dolfinx import fem

    from cardiotwin.physics import verification as ver
    from cardiotwin.physics.newton import solve_newton
    from cardiotwin.physics.rheology import CarreauYasuda

    cy = CarreauYasuda()
    fm = ver.channel_2d(L_CH, H_CH, 32, 8)
    r = solve_pulsatile(fm, inflow=Inflow(velocity=_parabola), outlets={"outlet": "open"},
                        dt_s=0.025, t_end_s=1.25, rheology=cy, initial_velocity=_parabola)
    y = np.linspace(0.0, H_CH, 41)
    u_ref, G = ver.channel_flow_profile(cy, height_m=H_CH, flow_per_depth_m2_s=U_CH * H_CH, y_m=y)
    pts = np.column_stack([np.full_like(y, 0.75 * L_CH), y, np.zeros_like(y)])
    u_h = _eval_points(r.u, pts)[:, 0]
    err = np.linalg.norm(u_h - u_ref) / np.linalg.norm(u_ref)
    G_h = ver.pressure_difference(r.p, (0.5 * L_CH, H_CH / 2), (0.9 * L_CH, H_CH / 2)) / (0.4 * L_CH)
    steady = solve_newton(fm, inflow=_parabola, rheology=cy, density_kg_m3=BLOOD.density_kg_m3)
    d2 = fem.assemble_scalar(fem.form(ufl.inner(r.u - steady.u, r.u - steady.u) * ufl.dx))
    n2 = fem.assemble_scalar(fem.form(ufl.inner(steady.u, steady.u) * ufl.dx))
    err_newton = math.sqrt(d2 / n2)
    parab = _parabola(pts.T)[0]
    err_parab = np.linalg.norm(parab - u_ref) / np.linalg.norm(u_ref)
    print(f"Carreau–Yasuda channel: profile {err:.2e}, G {G_h / G - 1:+.2e}, vs Newton "
          f"{err_newton:.2e}, parabola {err_parab:.3f}, {r.timings_s['per_step']:.3f} s/step")
    assert err < 5e-3, err
    assert G_h == pytest.approx(G, rel=5e-3)
    assert err_newton < 5e-3, err_newton
    assert err_parab > 0.05, err_parab
    assert np.max(np.abs(r.mass_imbalance)) < 1e-8
    assert r.provenance.parameters["rheology"]["CarreauYasuda"]["n"] == cy.n


def test_smagorinsky_les_is_consistent_and_checked():
    """The LES eddy viscosity ρ(C_s Δ)²γ̇ (PulsatileSettings.smagorinsky_cs) is a model error that
    vanishes with the mesh: in the resolved Poiseuille channel above (steady parabolic inflow,
    started from the parabola, 50 steps of 25 ms) the developed profile at x = 3L/4 departs from
    the exact parabola by an amount that falls like Δ² (measured 0.065 % → 0.016 %, ratio 4.1, for
    C_s = 0.17 on 32 × 8 and 64 × 16 cells; the bound asks for ≥ 3), while without the model
    it is exact to 1e-4 (measured 3.6e-6). C_s outside [0, 0.5] is refused before solving."""
    from cardiotwin.physics import verification as ver

    y = np.linspace(0.0, H_CH, 41)
    pts = np.column_stack([np.full_like(y, 0.75 * L_CH), y, np.zeros_like(y)])
    exact = _parabola(pts.T)[0]
    err = {}
    for cs, n in ((0.0, 8), (0.17, 8), (0.17, 16)):
        fm = ver.channel_2d(L_CH, H_CH, 4 * n, n)
        r = solve_pulsatile(fm, inflow=Inflow(velocity=_parabola), outlets={"outlet": "open"},
                            dt_s=0.025, t_end_s=1.25, initial_velocity=_parabola,
                            settings=PulsatileSettings(smagorinsky_cs=cs))
        err[cs, n] = np.linalg.norm(_eval_points(r.u, pts)[:, 0] - exact) / np.linalg.norm(exact)
        assert r.provenance.parameters["settings"]["smagorinsky_cs"] == cs
    print(f"Smagorinsky channel: {err}")
    assert err[0.0, 8] < 1e-4, err
    assert err[0.17, 8] > 10 * err[0.0, 8], err   # the model is active
    assert err[0.17, 8] / err[0.17, 16] > 3.0, err  # and falls like Δ²
    for bad in (-0.1, 0.6, float("nan")):
        with pytest.raises(InputError, match="smagorinsky_cs"):
            PulsatileSettings(smagorinsky_cs=bad)
    with pytest.raises(InputError, match="semi-implicit"):
        PulsatileSettings(smagorinsky_cs=0.1, convection="explicit")


def test_newtonian_rheology_is_the_default_path(rcr_pipe):
    """rheology=None and rheology=Newtonian(μ of the blood) run the same scheme: identical traces;
    an object without the viscosity methods is rejected before any work."""
    from cardiotwin.physics.rheology import Newtonian

    kw = dict(inflow=Inflow(flow_m3_s=WAVE), outlets={"out": PIPE_RCR}, dt_s=DT_RCR,
              t_end_s=4 * DT_RCR, initial_outlet_pressures_pa={"out": P0_PA})
    a = solve_pulsatile(rcr_pipe, **kw)
    b = solve_pulsatile(rcr_pipe, rheology=Newtonian(BLOOD.viscosity_pa_s), **kw)
    # same operators; repeated runs of either path differ by iterative-solver round-off
    # (measured up to 3e-13 m/s, 1e-11 of the peak speed; a 1 % change of μ moves it ~1e-3)
    np.testing.assert_allclose(a.u.x.array, b.u.x.array, rtol=0,
                               atol=1e-8 * np.abs(a.u.x.array).max())
    np.testing.assert_allclose(a.outlet_pressures_pa["out"], b.outlet_pressures_pa["out"],
                               rtol=1e-10)

    class NoViscosity:
        reference_viscosity_pa_s = 3.5e-3

    with pytest.raises(InputError, match=r"rheology must provide .*ufl_viscosity"):
        solve_pulsatile(rcr_pipe, rheology=NoViscosity(), **kw)
    with pytest.raises(InputError, match="rheology"):
        solve_pulsatile(rcr_pipe, rheology=PIPE_RCR, **kw)


def test_time_step_and_waveform_checked_before_solving(rcr_pipe):
    """dt_s > period_s cannot resolve a cycle; a non-finite or non-scalar flow waveform is
    rejected before any assembly (zero heart rate and negative R/C are rejected by the
    AorticFlowWaveform/RCR constructors: test_input_errors_name_the_parameter)."""
    with pytest.raises(InputError, match=r"dt_s .* longer than the cycle period_s"):
        solve_pulsatile(rcr_pipe, inflow=Inflow(flow_m3_s=WAVE), outlets={"out": PIPE_RCR},
                        dt_s=1.0, t_end_s=2.0)
    with pytest.raises(InputError, match="not finite"):
        solve_pulsatile(rcr_pipe, inflow=Inflow(flow_m3_s=lambda t: float("nan")),
                        outlets={"out": PIPE_RCR}, dt_s=1e-3, t_end_s=1e-2)
    with pytest.raises(InputError, match="flow_m3_s must map a time"):
        solve_pulsatile(rcr_pipe, inflow=Inflow(flow_m3_s=lambda t: [1e-6, 2e-6]),
                        outlets={"out": PIPE_RCR}, dt_s=1e-3, t_end_s=1e-2)


# ----------------------------------------------------------------------------------------------
# Brinkman orifice plate (stenotic valve stand-in) in a pipe
# ----------------------------------------------------------------------------------------------
PLATE_Z_MM, HOLE_MM2, HF_MM = 10.0, 40.0, 1.25
PLATE_Q, PLATE_T, PLATE_DT = 1.0e-5, 0.1, 0.005


def test_brinkman_plate_is_impermeable_and_valve_metrics(physics_tmp):
    """Pipe R = 6 mm with a 4 mm Brinkman plate (κ = 1e-12 m², hole 40 mm²) at z = 10 mm, one
    sin² systole Q = Q_pk sin²(πt/T), Q_pk = 10 mL/s, T = 0.1 s (peak jet Re ≈ 800), 20 steps.

    * Impermeable: at peak flow, the axial flux through the plate's central 2 mm outside
      r_hole + h (one cell: a cell is porous only when wholly inside the region, so the open
      orifice reaches the first porous vertices, up to one cell beyond the nominal rim) is
      < 0.5 % of Q (measured −0.05 %; with a 0.5 mm margin the rim cells give 8 %).
    * Continuity EOA = stroke volume / jet VTI against the hole area: the contraction
      coefficient C_c lies in 0.6–1.0 (sharp-edged orifices 0.6–0.65, rounded up to 1; Idelchik,
      Handbook of Hydraulic Resistance, ch. 4); measured 0.71 (0.67 before the jet speed
      excluded the plate's own dofs).
    * Gorlin EOA finite and within a factor 3 of the hole area (the downstream section 7 mm
      past the plate recovers part of the pressure, so Gorlin reads larger; measured 1.54×).
    * Peak gradient against the simplified Bernoulli 4v² (mmHg, v in m/s; Hatle & Angelsen,
      Doppler Ultrasound in Cardiology, 1985): ratio in 0.8–1.5 (measured 1.19: the
      instantaneous gradient adds the local acceleration ρ∫∂u/∂t·dl while the flow accelerates).
    """
    import ufl
    from dolfinx import fem
    from mpi4py import MPI

    from cardiotwin.physics.brinkman import native_valve_region

    dom = make_pipe(physics_tmp / "plate_coarse.msh",
                    radius_mm=6.0, length_mm=24.0, h_mm=3.0,
                    refine_z_mm=(PLATE_Z_MM - 4.0, PLATE_Z_MM + 9.0), h_fine_mm=HF_MM)
    fm = load_domain(dom)
    reg = native_valve_region(orifice_centre_mm=(0, 0, PLATE_Z_MM), axis=(0, 0, 1),
                              orifice_area_mm2=HOLE_MM2, outer_radius_mm=8.0)
    r_hole_mm = math.sqrt(HOLE_MM2 / math.pi)
    leak = {}

    def callback(st):
        if abs(st.t_s - PLATE_T / 2) < PLATE_DT / 2:  # peak flow
            msh = st.u.function_space.mesh
            x = ufl.SpatialCoordinate(msh)
            rr = ufl.sqrt(x[0] ** 2 + x[1] ** 2)
            ind = ufl.conditional(ufl.And(ufl.gt(rr, (r_hole_mm + HF_MM) * 1e-3),
                                          ufl.lt(abs(x[2] - PLATE_Z_MM * 1e-3), 1e-3)), 1.0, 0.0)
            flux = msh.comm.allreduce(fem.assemble_scalar(fem.form(ind * st.u[2] * ufl.dx)),
                                      op=MPI.SUM)
            leak["fraction"] = flux / 2e-3 / PLATE_Q

    r = solve_pulsatile(fm, inflow=Inflow(flow_m3_s=lambda t: PLATE_Q * math.sin(math.pi * t / PLATE_T) ** 2),
                        outlets={"out": "open"}, dt_s=PLATE_DT, t_end_s=PLATE_T, period_s=PLATE_T,
                        regions=[reg], callback=callback,
                        valve=ValvePlanes.from_region(reg, radius_mm=6.0, upstream_mm=6.0,
                                                      downstream_mm=7.0))
    vm = r.valve_metrics()
    hole_cm2 = HOLE_MM2 / 100
    cc = vm["eoa_continuity_cm2"] / hole_cm2
    bern = vm["peak_gradient_mmhg"] / (4 * vm["peak_jet_velocity_m_s"] ** 2)
    print(f"Brinkman plate: leak {leak['fraction']:+.2e}, C_c {cc:.3f}, Gorlin/hole "
          f"{vm['eoa_gorlin_cm2'] / hole_cm2:.3f}, peak/4v² {bern:.3f}, v_jet "
          f"{vm['peak_jet_velocity_m_s']:.3f} m/s, dofs {r.n_dofs}, "
          f"{r.timings_s['per_step']:.2f} s/step")
    assert abs(leak["fraction"]) < 5e-3, leak
    # The solver's own leak check (quadrature-level footprint of the plate's central half, every
    # step): at peak flow it agrees with the measure above (both < 0.5 %); while the flow
    # accelerates or decelerates the projection pushes a little flow into the plate (the
    # pressure increment does not see the drag; docs/pulsatile.md), measured ≤ 3.1 % of Q for
    # Q > Q_pk/2, which region_leak() reports.
    ratio = r.region_flux_m3_s["native valve/0"] / r.inlet_flow_m3_s
    peak = int(np.argmax(r.inlet_flow_m3_s))
    print(f"solver region_leak: {r.region_leak()}, at peak flow {ratio[peak]:+.2e}")
    assert abs(ratio[peak]) < 5e-3, ratio
    assert set(r.region_leak()) == {"native valve/0"}
    assert r.region_leak()["native valve/0"] < 5e-2, r.region_leak()
    assert 0.6 <= cc <= 1.0, cc
    assert math.isfinite(vm["eoa_gorlin_cm2"]) and 1 / 3 < vm["eoa_gorlin_cm2"] / hole_cm2 < 3
    assert 0.8 < bern < 1.5, bern
    assert np.max(np.abs(r.mass_imbalance)) < 1e-6


def test_fluid_function_initial_velocity_and_u_previous():
    """A benchmark ``Newtonian`` fluid (ρ = 1, not a blood range), an initial velocity given as a Function on
    the same mesh (velocity and pressure), and ``StepState.u_previous``: plane Poiseuille flow
    started from the exact solution (P2 velocity and P1 pressure represent it exactly) stays
    exact: u and u_previous agree to 1e-8 relative, pressure drop 12μLU/H² to 1e-6."""
    from dolfinx import fem


    with pytest.raises(InputError, match="density_kg_m3"):
        Newtonian(density_kg_m3=0.0, viscosity_pa_s=1e-3)
    L, H, U = 2.0, 0.5, 1.0
    fm = verification.channel_2d(L, H, 16, 4, outlet_name="outlet:out", diagonal="right")
    msh = fm.mesh
    fluid = Newtonian(density_kg_m3=1.0, viscosity_pa_s=0.05)

    def prof(x, t=0.0):
        return np.vstack([6 * U * x[1] * (H - x[1]) / H**2, 0 * x[0]])

    u0 = fem.Function(fem.functionspace(msh, ("Lagrange", 2, (2,))))
    u0.interpolate(prof)
    dp_exact = 12 * fluid.viscosity_pa_s * L * U / H**2
    p0 = fem.Function(fem.functionspace(msh, ("Lagrange", 1)))
    p0.interpolate(lambda x: dp_exact * (L - x[0]) / L)
    seen = []

    def callback(st):
        seen.append(float(np.max(np.abs(st.u.x.array - st.u_previous.x.array))))

    r = solve_pulsatile(fm, inflow=Inflow(velocity=prof), outlets={"out": "open"}, dt_s=0.05,
                        t_end_s=0.5, blood=fluid, initial_velocity=u0, initial_pressure=p0,
                        callback=callback)
    assert r.pressure_drop_pa("inlet", "outlet:out")[-1] == pytest.approx(dp_exact, rel=1e-6)
    assert len(seen) == 10 and max(seen) < 1e-8 * 1.5 * U, seen
    assert r.blood is fluid
