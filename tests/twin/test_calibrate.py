"""Calibration of the outlet boundary conditions from the patient's physiology.

The Windkessel fit is checked against an independent integration of the same outlets
(:func:`cardiotwin.physics.windkessel.simulate`, trapezoidal rule in time, where the fit works in
the frequency domain): driven by the patient's flow waveform from the calibrated initial
pressures, every outlet must show the measured systolic and diastolic pressure on its first beat.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.geometry.volume_mesh import BoundaryCap, FluidDomain
from cardiotwin.physics import windkessel
from cardiotwin.twin.calibrate import PROXIMAL_FRACTION, calibrate_outlets, calibrate_windkessel
from cardiotwin.twin.state import Physiology


def _domain() -> FluidDomain:
    """An aorta-like set of caps (areas in mm²): only the cap areas enter the calibration."""
    caps = (BoundaryCap("inlet", 1, (0, 0, 0), (0, 0, -1), 490.0),
            BoundaryCap("outlet:descending", 2, (0, 0, 0), (0, 0, 1), 310.0),
            BoundaryCap("outlet:brachiocephalic", 3, (0, 0, 0), (0, 0, 1), 95.0),
            BoundaryCap("outlet:left_subclavian", 4, (0, 0, 0), (0, 0, 1), 50.0))
    return FluidDomain("unused.msh", {"wall": 5}, {}, caps, 1, 1)


PATIENTS = [
    Physiology(heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=130, diastolic_bp_mmhg=75),
    Physiology(heart_rate_bpm=60, stroke_volume_ml=80, systolic_bp_mmhg=120, diastolic_bp_mmhg=80),
    Physiology(heart_rate_bpm=95, stroke_volume_ml=50, systolic_bp_mmhg=155, diastolic_bp_mmhg=60,
               ejection_time_s=0.26),
    Physiology(heart_rate_bpm=60, stroke_volume_ml=60, systolic_bp_mmhg=110, diastolic_bp_mmhg=90),
]


@pytest.mark.parametrize("phys", PATIENTS, ids=["AS-70bpm", "normal-60bpm", "hypertensive-95bpm",
                                                "narrow-pulse-pressure"])
def test_windkessel_outlets_reproduce_the_blood_pressure(phys):
    cal = calibrate_windkessel(phys, _domain())
    assert cal.fitted_mmhg["systolic"] == pytest.approx(phys.systolic_bp_mmhg, abs=1e-6)
    assert cal.fitted_mmhg["diastolic"] == pytest.approx(phys.diastolic_bp_mmhg, abs=1e-6)
    wave = cal.waveform
    assert wave.lvet == pytest.approx(phys.effective_ejection_time_s)
    # mean pressure of the periodic state = total resistance × cardiac output (exact identity)
    r_total = cal.total["Rp"] + cal.total["Rd"]
    assert units.mmhg_to_pa(cal.fitted_mmhg["mean"]) == pytest.approx(
        r_total * wave.mean_flow_m3_s, rel=1e-6)
    # independent time-domain integration of each outlet with its flow share, from the
    # calibrated initial pressure: periodic from the first beat (trapezoidal error ~ dt²)
    period = wave.period_s
    for name, model in cal.outlets.items():
        share = cal.flow_shares[name]
        tr = windkessel.simulate(model, lambda t, s=share: s * wave(t), 3 * period, 2e-5,
                                 p0=cal.initial_pressures_pa[name])
        for beat in range(3):
            sel = (tr.t >= beat * period) & (tr.t <= (beat + 1) * period)
            p = units.pa_to_mmhg(tr.p_inlet[sel])
            assert p.max() == pytest.approx(phys.systolic_bp_mmhg, abs=0.05), (name, beat)
            assert p.min() == pytest.approx(phys.diastolic_bp_mmhg, abs=0.05), (name, beat)


def test_outlets_in_parallel_are_the_total_load():
    cal = calibrate_windkessel(PATIENTS[0], _domain())
    steady = calibrate_outlets(PATIENTS[0], _domain())
    assert cal.flow_shares == steady.flow_shares  # the same Murray split as the steady model
    tau = cal.total["tau_s"]
    r_total = cal.total["Rp"] + cal.total["Rd"]
    assert sum(1.0 / (m.Rp + m.Rd) for m in cal.outlets.values()) == pytest.approx(1.0 / r_total)
    assert sum(m.C for m in cal.outlets.values()) == pytest.approx(cal.total["C"])
    for m in cal.outlets.values():
        assert m.time_constant_s == pytest.approx(tau)
        assert m.Rp / (m.Rp + m.Rd) == pytest.approx(PROXIMAL_FRACTION)
    # the impedance of the parallel outlets equals that of the lumped load at every frequency
    lumped = windkessel.RCR(Rp=cal.total["Rp"], C=cal.total["C"], Rd=cal.total["Rd"])
    for f_hz in (0.0, 1.2, 5.0, 20.0):
        w = 2 * math.pi * f_hz
        z_par = 1.0 / sum(1.0 / m.impedance(w) for m in cal.outlets.values())
        assert abs(z_par - lumped.impedance(w)) < 1e-9 * abs(lumped.impedance(w))


def test_the_proximal_fraction_is_lowered_only_when_the_time_constant_would_exceed_2_s():
    def fit(sbp, dbp, **kw):
        return calibrate_windkessel(Physiology(heart_rate_bpm=70, stroke_volume_ml=70,
                                               systolic_bp_mmhg=sbp, diastolic_bp_mmhg=dbp),
                                    _domain(), **kw)

    wide = fit(130, 75)
    assert wide.proximal_fraction == PROXIMAL_FRACTION and wide.total["tau_s"] < 2.0
    normal = fit(120, 80)
    assert normal.total["tau_s"] == pytest.approx(2.0, rel=1e-6)
    assert 0.005 < normal.proximal_fraction < PROXIMAL_FRACTION
    preferred = fit(120, 80, max_time_constant_s=50.0)  # 6 % kept: τ and C far longer
    assert preferred.proximal_fraction == PROXIMAL_FRACTION and preferred.total["tau_s"] > 3.0
    assert normal.total["C"] < 0.6 * preferred.total["C"]
    narrow = fit(110, 95)  # even 0.5 % needs τ > 2 s: the pressures decide
    assert narrow.proximal_fraction == 0.005 and narrow.total["tau_s"] > 2.0


def test_compliance_against_the_stroke_volume_over_pulse_pressure_bound():
    # With (almost) no proximal resistance the arteries store less than a stroke volume during
    # ejection (part of it runs off), so C < SV/PP; the fit must respect that bound.
    phys = Physiology(heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=120,
                      diastolic_bp_mmhg=80)
    cal = calibrate_windkessel(phys, _domain(), proximal_fraction=0.005)
    c_ml_mmhg = cal.total["C"] * units.mmhg_to_pa(1.0) * 1e6
    assert 0.5 * 70.0 / 40.0 < c_ml_mmhg < 70.0 / 40.0, c_ml_mmhg


def test_a_pulse_pressure_no_windkessel_can_give_is_refused():
    phys = Physiology(heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=100,
                      diastolic_bp_mmhg=98)
    with pytest.raises(InputError, match=r"DBP/SBP = 98/100 .*achievable range is 0\.00-0\.9\d"):
        calibrate_windkessel(phys, _domain())
    with pytest.raises(InputError, match="proximal_fraction"):
        calibrate_windkessel(PATIENTS[0], _domain(), proximal_fraction=0.7)


def test_the_periodic_trace_is_one_beat():
    cal = calibrate_windkessel(PATIENTS[0], _domain())
    t, p = cal.pressure_trace()
    assert t[0] == 0.0 and t[-1] < cal.waveform.period_s
    assert units.pa_to_mmhg(float(np.max(p))) == pytest.approx(130.0, abs=1e-6)
