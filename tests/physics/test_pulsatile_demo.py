"""Pulsatile flow through systole on a twin's own mesh (the coarse demo twin, h 2-4 mm).

Physiological inflow (70 bpm, 70 mL, parabolic profile on the inlet cap) and resistance outlets
from the twin's calibration (cardiotwin.twin.calibrate). At peak systole the cell Reynolds number
is in the thousands: the unstabilised Galerkin IPCS (like oasisx, docs/performance.md) blows up
in early systole, and the divergence guard must stop it with a SolverError naming the step and
the CFL number. With the Smagorinsky LES model (C_s = 0.1) the same run passes peak systole
with a modest CFL number and exact mass balance. Slow (~4 min on 2 cores): ``make validate``.
A whole cycle of the pulsatile rehearsal's run with calibrated Windkessel outlets must give the
patient's cuff pressures (~10 min).
"""

from __future__ import annotations

import csv

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest
from mpi4py import MPI

from cardiotwin import study, units, workflows
from cardiotwin.errors import SolverError
from cardiotwin.physics.mesh import load_domain
from cardiotwin.physics.pulsatile import Inflow, PulsatileSettings, solve_pulsatile
from cardiotwin.physics.rheology import Newtonian
from cardiotwin.physics.waveforms import AorticFlowWaveform
from cardiotwin.physics.windkessel import OutletResistance
from cardiotwin.twin.calibrate import calibrate_outlets

DT_S = 1e-3
T_SYSTOLE_S = 0.15  # the waveform peaks at ~0.1 s (70 bpm)


@pytest.fixture(scope="module")
def demo_case(coarse_demo):
    domain = workflows.twin_fluid_domain(coarse_demo["twin"], coarse_demo["store"])
    fm = load_domain(domain, comm=MPI.COMM_WORLD)
    cal = calibrate_outlets(study.default_physiology(), domain)
    outlets = {name: OutletResistance(r, cal.p0_pa) for name, r in cal.resistances_pa_s_m3.items()}
    wave = AorticFlowWaveform(heart_rate_bpm=70.0, stroke_volume_ml=70.0)
    return fm, outlets, wave


def _run(demo_case, cs: float):
    fm, outlets, wave = demo_case
    return solve_pulsatile(
        fm, inflow=Inflow(flow_m3_s=wave), outlets=outlets, dt_s=DT_S, t_end_s=T_SYSTOLE_S,
        blood=Newtonian(), initial_outlet_pressures_pa={k: o.p0_pa for k, o in outlets.items()},
        settings=PulsatileSettings(smagorinsky_cs=cs, log_every=50))


@pytest.mark.slow
@pytest.mark.validation
def test_unstabilised_systole_diverges_with_a_clear_error(demo_case):
    with pytest.raises(SolverError, match=r"CFL .* at step \d+.*smagorinsky_cs=0\.1") as info:
        _run(demo_case, 0.0)
    step = int(str(info.value).split(" at step ")[1].split()[0])
    print(f"unstabilised: {info.value}")
    assert step < T_SYSTOLE_S / DT_S, str(info.value)  # it happens before peak systole is over


@pytest.mark.slow
@pytest.mark.validation
def test_les_passes_peak_systole_with_mass_balance(demo_case):
    _, _, wave = demo_case
    r = _run(demo_case, 0.1)
    assert len(r.times_s) == round(T_SYSTOLE_S / DT_S)
    # peak inflow 460 mL/s through a 3.4 cm² inlet: a few m/s at most; CFL well below the guard
    print(f"LES C_s 0.1: {len(r.times_s)} steps, CFL max {float(np.max(r.cfl)):.2f}, mass "
          f"imbalance {float(np.max(np.abs(r.mass_imbalance))):.1e}, "
          f"{r.timings_s['per_step']:.2f} s/step, {r.n_dofs}")
    assert float(np.max(r.cfl)) < 2.0, float(np.max(r.cfl))
    q_in = np.array([wave(t) for t in r.times_s])
    np.testing.assert_allclose(r.inlet_flow_m3_s, q_in, rtol=0, atol=1e-3 * q_in.max())
    assert np.max(np.abs(r.mass_imbalance)) < 5e-3  # issue 5: outlets sum to the inflow ±0.5 %
    assert np.all(np.isfinite(r.u.x.array))


@pytest.mark.slow
@pytest.mark.validation
def test_calibrated_cycle_reproduces_the_cuff_pressures(coarse_demo, tmp_path):
    """A whole cycle of the pulsatile rehearsal's native-valve run (``study.run_cycle``) on
    the coarse twin, Δt 1 ms, C_s 0.1 (about 10 min): the 3-D aorta with the Windkessel outlets
    of ``calibrate_windkessel`` must give the patient's cuff pressures (default physiology
    130/75 mmHg, 70 mL at 70 bpm) and start periodic.

    Measured: aortic (flow-weighted outlet) pressure 130.0/75.0 mmHg, each outlet 130.7-133.4
    systolic, end-of-cycle pressures within 0.04 mmHg of their start, stroke volume 70.0 mL,
    mass imbalance 1.5e-10.
    """
    store, twin = coarse_demo["store"], coarse_demo["twin"]
    lms = twin.landmarks
    domain = workflows.twin_fluid_domain(twin, store)
    phys = twin.physiology
    run = study.run_cycle(domain, lms, phys, study.native_region(lms), label="baseline",
                              out_dir=tmp_path / "cycle",
                              settings=study.CycleSettings(dt_ms=1.0, smagorinsky_cs=0.1,
                                                               write_every=0))
    s = run.summary
    print({k: getattr(s, k) for k in ("aortic_systolic_mmhg", "aortic_diastolic_mmhg", "stroke_volume_ml",
                             "mass_imbalance_max", "cfl_max", "tawss_mean_pa", "osi_mean",
                             "solve_time_s")})
    assert s.whole_cycle and s.n_steps == 857
    assert s.aortic_systolic_mmhg == pytest.approx(phys.systolic_bp_mmhg, abs=2.0)
    assert s.aortic_diastolic_mmhg == pytest.approx(phys.diastolic_bp_mmhg, abs=1.0)
    assert s.stroke_volume_ml == pytest.approx(phys.stroke_volume_ml, abs=0.5)
    assert s.mass_imbalance_max < 5e-3
    with open(tmp_path / "cycle" / "traces.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    data = np.array(rows[1:], dtype=float)
    p0_mmhg = {k.removeprefix("outlet:"): units.pa_to_mmhg(v)
               for k, v in s.calibration["initial_pressures_pa"].items()}
    for j, name in enumerate(rows[0]):
        if name.startswith("pressure_"):
            outlet = name.removeprefix("pressure_").removesuffix("_mmhg")
            # periodic: at the end of diastole (no flow) each outlet is back at the capacitor
            # pressure it started from (measured within 0.04 mmHg)
            assert abs(data[-1, j] - p0_mmhg[outlet]) < 0.5, name
            assert abs(data[:, j].max() - phys.systolic_bp_mmhg) < 6.0, name
    assert 0 < s.tawss_mean_pa < 10 and 0 <= s.osi_mean <= 0.5
