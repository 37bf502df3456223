"""0-D models: Windkessel outlets against their analytic solutions, and the 0-D beat.

Parameters are those of a resting adult systemic load (Westerhof et al., Med Biol Eng Comput
2009;47:131): Rp 0.05 and Rd 1.0 mmHg·s/mL, C 1.5 mL/mmHg (Rd·C = 1.5 s), p_d 5 mmHg.
"""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.physics.windkessel import (
    RCR,
    LVCirculation,
    TwoElement,
    ValveLaw,
    simulate,
    simulate_beat,
    simulate_periodic,
)

RP = units.mmhg_s_ml_to_pa_s_m3(0.05)
RD = units.mmhg_s_ml_to_pa_s_m3(1.0)
C = units.ml_to_m3(1.5) / units.mmhg_to_pa(1.0)
PD = units.mmhg_to_pa(5.0)
Q0 = units.ml_to_m3(100.0)  # 100 mL/s


def _step_error(model, rp, rd, c, dt, t_end=3.0):
    """Max error of the inlet pressure vs the analytic step response, relative to its rise."""
    t, p_in, p_c = simulate(model, lambda t: Q0, t_end, dt, model.p_d)
    # analytic: p_c = p_d + q0·Rd·(1 − exp(−t/(Rd·C))), p = p_c + Rp·q0 (q = q0 for t > 0)
    p_c_ex = model.p_d + Q0 * rd * (1 - np.exp(-t / (rd * c)))
    err = max(np.abs(p_c - p_c_ex).max(), np.abs(p_in - (p_c_ex + rp * Q0)).max())
    return err / (Q0 * (rp + rd))


def test_rcr_step_response_second_order():
    model = RCR(Rp=RP, C=C, Rd=RD, p_d=PD)
    e1 = _step_error(model, RP, RD, C, 1e-3)
    e2 = _step_error(model, RP, RD, C, 2e-3)
    assert e1 < 1e-3
    order = math.log2(e2 / e1)
    # trapezoidal rule: order 2 (observed 2.00)
    assert abs(order - 2.0) < 0.2, (e1, e2, order)


def test_two_element_step_response_second_order():
    model = TwoElement(R=RD, C=C, p_d=PD)
    e1 = _step_error(model, 0.0, RD, C, 1e-3)
    e2 = _step_error(model, 0.0, RD, C, 2e-3)
    assert e1 < 1e-3
    assert abs(math.log2(e2 / e1) - 2.0) < 0.2


@pytest.mark.parametrize("model", [RCR(Rp=RP, C=C, Rd=RD, p_d=PD), TwoElement(R=RD, C=C, p_d=PD)])
def test_periodic_response_matches_impedance(model):
    rp = model.Rp if isinstance(model, RCR) else 0.0
    q1, omega = units.ml_to_m3(60.0), 2 * np.pi * 1.25
    dt, t_end = 1e-3, 20.0  # 13 time constants: start-up transient decays to e^-13
    t, p, _ = simulate(model, lambda t: Q0 + q1 * np.sin(omega * t), t_end, dt, PD + Q0 * RD)
    last = t >= t_end - 4 * 0.8  # the last 4 periods
    a = np.column_stack([np.ones(last.sum()), np.sin(omega * t[last]), np.cos(omega * t[last])])
    mean, s, c = np.linalg.lstsq(a, p[last], rcond=None)[0]
    p1 = s + 1j * c  # p = mean + Im(P1·e^{iωt})
    z = rp + RD / (1 + 1j * omega * RD * C)  # Z(ω) = Rp + Rd/(1 + iωRdC)
    expected = z * q1
    assert abs(p1) == pytest.approx(abs(expected), rel=5e-3)
    assert abs(np.angle(p1 / expected)) < 5e-3  # phase, rad
    assert mean == pytest.approx(PD + Q0 * (rp + RD), rel=5e-3)
    assert model.impedance(omega) == pytest.approx(z, rel=1e-12)


def test_step_and_implicit_coefficients_agree_with_simulate():
    model = RCR(Rp=RP, C=C, Rd=RD, p_d=PD)
    dt = 1e-3
    q = lambda t: Q0 * (1 + np.sin(7 * t))  # noqa: E731
    t, p_in, p_c = simulate(model, q, 0.5, dt, 1.1e4)
    pc = 1.1e4
    for i in range(len(t) - 1):
        off, r_eff = model.implicit_coefficients(pc, q(t[i]), dt)
        pc = model.step(pc, q(t[i + 1]), dt, q_prev=q(t[i]))
        # p_inlet^{n+1} = p_offset + R_eff·q^{n+1} is exactly step() then pressure()
        assert off + r_eff * q(t[i + 1]) == pytest.approx(
            model.pressure(pc, q(t[i + 1])), rel=1e-12
        )
    assert pc == pytest.approx(p_c[-1], rel=1e-12)
    # a scalar-only callable gives the same trace
    _, p_in2, _ = simulate(model, lambda s: float(Q0 * (1 + math.sin(7 * s))), 0.5, dt, 1.1e4)
    np.testing.assert_allclose(p_in2, p_in, rtol=1e-12)


def test_valve_law_inverse_and_orifice():
    law = ValveLaw.from_orifice_area(units.cm2_to_m2(1.0))
    # b = ρ/(2A²) with ρ = 1060 kg/m³, A = 1e-4 m²
    assert law.b == pytest.approx(1060 / (2 * 1e-8), rel=1e-12)
    q = np.array([-3e-4, 0.0, 1e-4, 4e-4])
    np.testing.assert_allclose(law.flow(law.pressure_drop(q)), q, rtol=1e-12, atol=1e-18)
    lin = ValveLaw(a=2e6, b=0.0)
    assert lin.flow(2e6 * 3e-4) == pytest.approx(3e-4, rel=1e-12)
    # simplified Bernoulli: 4 v² mmHg with v in m/s (ρ/2 = 530 Pa·s²/m² ≈ 3.98 mmHg)
    v = 4.0
    assert units.pa_to_mmhg(law.pressure_drop(v * 1e-4)) == pytest.approx(4 * v * v, rel=1e-2)


def test_elastance_double_hill():
    c = LVCirculation.typical()
    t = np.linspace(0, c.period_s, 8001)
    e = c.elastance(t)
    assert e.max() == pytest.approx(c.e_max_pa_m3, rel=1e-6)
    assert e[0] == pytest.approx(c.e_min_pa_m3, rel=1e-6)
    # Stergiopulos 1996 double Hill peaks at t_n ≈ 0.9–1.0 of T_max
    assert 0.85 * c.time_to_peak_s < t[e.argmax()] < 1.05 * c.time_to_peak_s


@pytest.fixture(scope="module")
def beats():
    out = {}
    for name, area_cm2 in (("typical", None), ("severe", 0.8), ("mild", 2.5)):
        kw = (
            {}
            if area_cm2 is None
            else {"aortic_valve": ValveLaw(a=0.0, b=1060 / (2 * units.cm2_to_m2(area_cm2) ** 2))}
        )
        out[name] = simulate_periodic(LVCirculation.typical(**kw), dt_s=1e-3)
    return out


def test_beat_physiological(beats):
    m = beats["typical"].metrics
    # typical resting adult: ~120/80 mmHg, SV 60–90 mL, EF > 45 %
    assert 100 < m.systolic_mmhg < 180
    assert 60 < m.diastolic_mmhg < 90
    assert 60 < m.stroke_volume_ml < 90
    assert m.stroke_volume_m3 / m.end_diastolic_volume_m3 > 0.45
    assert m.diastolic_mmhg < m.mean_mmhg < m.systolic_mmhg


def test_beat_gradients_follow_orifice(beats):
    severe, mild = beats["severe"].metrics, beats["mild"].metrics
    # severe AS (EOA 0.8 cm²): mean gradient > 30 mmHg; near-normal EOA 2.5 cm²: < 10 mmHg
    # (ACC/AHA 2020 grading: severe AS mean gradient >= 40 mmHg at normal flow, EOA <= 1 cm²)
    assert severe.mean_gradient_mmhg > 30
    assert mild.mean_gradient_mmhg < 10
    assert severe.peak_gradient_mmhg > severe.mean_gradient_mmhg
    for m in (severe, mild):
        assert 100 < m.systolic_mmhg < 180


def test_beat_volume_and_mass_conservation(beats):
    for r in beats.values():
        sv = r.metrics.stroke_volume_m3
        dt = r.t_s[1] - r.t_s[0]
        # LV: ΔV over the beat = ∫(q_mv − q_ao) dt (trapezoidal rule of the scheme)
        dv = r.v_lv_m3[-1] - r.v_lv_m3[0]
        assert abs(dv - np.trapezoid(r.q_mv_m3_s - r.q_ao_m3_s, dx=dt)) < 1e-6 * sv
        # periodic beat: inflow = outflow, and aortic inflow leaves through Rd
        wk = LVCirculation.typical().systemic
        assert np.trapezoid(r.q_mv_m3_s, dx=dt) == pytest.approx(sv, rel=1e-6)
        assert np.trapezoid((r.p_c_pa - wk.p_d) / wk.Rd, dx=dt) == pytest.approx(sv, rel=1e-6)


def test_beat_conservation_with_both_valves_open():
    # capacitor starts below the atrial pressure: blood runs straight through the LV at first,
    # which exercises the bracketed two-valves-open solve
    c = LVCirculation.typical()
    r = simulate_beat(c, lv_volume0_m3=units.ml_to_m3(120.0), p_c0_pa=0.0)
    assert r.fallback_steps > 0
    dt = r.t_s[1] - r.t_s[0]
    dv = r.v_lv_m3[-1] - r.v_lv_m3[0]
    flow = np.trapezoid(r.q_mv_m3_s - r.q_ao_m3_s, dx=dt)
    assert abs(dv - flow) < 1e-6 * np.trapezoid(r.q_ao_m3_s, dx=dt)


def test_beat_matches_independent_integrator():
    # reference: the same ODEs integrated by scipy's LSODA with tight tolerances
    c = LVCirculation.typical(aortic_valve=ValveLaw.from_orifice_area(units.cm2_to_m2(1.0)))
    v0, p0 = units.ml_to_m3(130.0), units.mmhg_to_pa(80.0)
    r = simulate_beat(c, lv_volume0_m3=v0, p_c0_pa=p0, dt_s=1e-3)
    wk, av, mv = c.systemic, c.aortic_valve, c.mitral_valve

    def rhs(t, y):
        v, p = y
        plv = float(c.elastance(t)) * (v - c.v_unstressed_m3)
        qa = ValveLaw(av.a + wk.Rp, av.b).flow(plv - p) if plv > p else 0.0
        qm = mv.flow(c.p_la_pa - plv) if plv < c.p_la_pa else 0.0
        return [qm - qa, (qa - (p - wk.p_d) / wk.Rd) / wk.C]

    ref = solve_ivp(
        rhs,
        (0, c.period_s),
        [v0, p0],
        method="LSODA",
        t_eval=r.t_s,
        rtol=1e-10,
        atol=[1e-13, 1e-6],
        max_step=2e-4,
    )
    assert ref.success
    sv_ref = ref.y[0, 0] - ref.y[0].min()
    # CN at dt = 1 ms vs reference: volumes within 0.05 % of SV, pressures within 0.05 % (measured 4e-5, 8e-6)
    assert np.abs(r.v_lv_m3 - ref.y[0]).max() < 5e-4 * sv_ref
    assert np.abs(r.p_c_pa - ref.y[1]).max() < 5e-4 * ref.y[1].max()


def test_bad_parameters_name_the_field():
    with pytest.raises(InputError, match="Rp"):
        RCR(Rp=0.0, C=C, Rd=RD)
    with pytest.raises(InputError, match=r"RCR\.C "):
        RCR(Rp=RP, C=-C, Rd=RD)
    with pytest.raises(InputError, match="Rd"):
        RCR(Rp=RP, C=C, Rd=float("nan"))
    with pytest.raises(InputError, match=r"TwoElement\.R "):
        TwoElement(R=-1.0, C=C)
    with pytest.raises(InputError, match="p_d"):
        RCR(Rp=RP, C=C, Rd=RD, p_d=float("inf"))
    with pytest.raises(InputError, match=r"ValveLaw\.a "):
        ValveLaw(a=-1.0, b=1.0)
    with pytest.raises(InputError, match="area_m2"):
        ValveLaw.from_orifice_area(0.0)
    with pytest.raises(InputError, match="e_min_pa_m3"):
        LVCirculation.typical(e_min_pa_m3=1e12)
    with pytest.raises(InputError, match="period_s"):
        LVCirculation.typical(period_s=0.0)
    with pytest.raises(InputError, match="dt"):
        simulate(RCR(Rp=RP, C=C, Rd=RD), lambda t: Q0, 1.0, 0.0)
    with pytest.raises(InputError, match="dt"):
        RCR(Rp=RP, C=C, Rd=RD).step(1e4, Q0, -1e-3)
    with pytest.raises(InputError, match="theta"):
        simulate_beat(LVCirculation.typical(), lv_volume0_m3=1e-4, p_c0_pa=1e4, theta=0.2)
