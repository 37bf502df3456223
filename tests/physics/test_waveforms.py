"""Inflow waveforms and the analytic Womersley solution (cardiotwin.physics.waveforms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from cardiotwin.errors import InputError
from cardiotwin.physics.waveforms import (
    AorticFlowWaveform,
    FourierFlow,
    lvet_s,
    womersley_flow,
    womersley_gradient_for_flow,
    womersley_number,
    womersley_profile_for_flow,
    womersley_velocity,
)

RHO, MU = 1060.0, 3.5e-3


def test_aortic_waveform_volume_period_mean_and_shape():
    """∫Q dt over a beat = SV (to 1e-6), period 60/HR, mean = SV·HR/60, positive in ejection."""
    w = AorticFlowWaveform(heart_rate_bpm=72.0, stroke_volume_ml=75.0)
    T = 60.0 / 72.0
    assert w.period_s == pytest.approx(T, rel=1e-15)
    # adaptive quadrature split at the kinks (end of ejection, end of backflow)
    pts = [0.0, w.lvet, w.lvet + w.backflow_duration_s, T]
    vol = sum(quad(w, a, b, limit=200, epsabs=0, epsrel=1e-12)[0] for a, b in zip(pts, pts[1:], strict=False))
    assert vol == pytest.approx(75e-6, rel=1e-6)
    assert w.mean_flow_m3_s == pytest.approx(75e-6 * 72 / 60, rel=1e-12)
    t = np.linspace(0, T, 20001)
    assert np.trapezoid(w(t), t) / T == pytest.approx(w.mean_flow_m3_s, rel=1e-5)
    # periodic
    assert np.allclose(w(t[:100] + 3 * T), w(t[:100]), rtol=0, atol=1e-12 * w.peak_flow_m3_s)
    # positive through ejection (open interval), peak at 33 % of LVET, small reverse flow after
    ej = (t > 1e-4) & (t < w.lvet - 1e-4)
    assert np.all(w(t[ej]) > 0)
    assert t[np.argmax(w(t))] / w.lvet == pytest.approx(0.33, abs=2e-3)
    assert w(t).min() == pytest.approx(-0.05 * w.peak_flow_m3_s, rel=1e-3)
    # Weissler 1968: LVET = 413 − 1.7·HR ms
    assert w.lvet == pytest.approx(0.413 - 0.0017 * 72, rel=1e-12)
    assert lvet_s(60) == pytest.approx(0.311, rel=1e-12)


def test_fourier_coefficients_reproduce_waveform():
    w = AorticFlowWaveform(heart_rate_bpm=60.0, stroke_volume_ml=70.0, backflow_fraction=0.0)
    c = w.fourier(60)
    assert c[0].real * w.period_s == pytest.approx(70e-6, rel=1e-6)
    f = FourierFlow(tuple(c), w.period_s)
    t = np.linspace(0, w.period_s, 997)
    # 60 harmonics of a C¹ shape with a kink of slope at t=0: max deviation < 1 % of peak
    assert np.max(np.abs(f(t) - w(t))) < 0.01 * w.peak_flow_m3_s


@pytest.mark.parametrize("kwargs,name", [
    ({"heart_rate_bpm": 0.0, "stroke_volume_ml": 70.0}, "heart_rate_bpm"),
    ({"heart_rate_bpm": -60.0, "stroke_volume_ml": 70.0}, "heart_rate_bpm"),
    ({"heart_rate_bpm": 60.0, "stroke_volume_ml": 0.0}, "stroke_volume_ml"),
    ({"heart_rate_bpm": 60.0, "stroke_volume_ml": float("nan")}, "stroke_volume_ml"),
    ({"heart_rate_bpm": 200.0, "stroke_volume_ml": 70.0, "ejection_time_s": 0.29}, "period"),
])
def test_waveform_bad_inputs(kwargs, name):
    with pytest.raises(InputError, match=name):
        AorticFlowWaveform(**kwargs)


def test_womersley_flow_is_integral_of_profile():
    """Q(t) = ∫ 2πr u(r,t) dr (Womersley 1955, eqs. for velocity and flow), α = 4 and 12."""
    R = 5e-3
    for alpha in (4.0, 12.0):
        omega = alpha**2 * MU / (RHO * R**2)
        assert womersley_number(R, omega, density_kg_m3=RHO, viscosity_pa_s=MU) == pytest.approx(alpha)
        G = 100.0 + 40.0j
        for t in np.linspace(0, 2 * math.pi / omega, 7):
            q_num = quad(lambda r, t=t, G=G, omega=omega: 2 * math.pi * r * womersley_velocity(
                r, t, radius_m=R, gradient_amplitude_pa_m=G, omega_rad_s=omega,
                density_kg_m3=RHO, viscosity_pa_s=MU), 0, R, epsabs=0, epsrel=1e-11, limit=200)[0]
            q = womersley_flow(t, radius_m=R, gradient_amplitude_pa_m=G, omega_rad_s=omega,
                               density_kg_m3=RHO, viscosity_pa_s=MU)
            scale = abs(womersley_flow(0, radius_m=R, gradient_amplitude_pa_m=abs(G),
                                       omega_rad_s=omega, density_kg_m3=RHO, viscosity_pa_s=MU))
            assert abs(q_num - q) < 1e-9 * max(scale, abs(G) * R**4 / MU)
        # no slip at the wall
        assert abs(womersley_velocity(R, 0.3, radius_m=R, gradient_amplitude_pa_m=G,
                                      omega_rad_s=omega, density_kg_m3=RHO,
                                      viscosity_pa_s=MU)) < 1e-12


def test_womersley_low_alpha_is_poiseuille():
    """α → 0: u → G(R² − r²)/(4μ) in phase with the gradient (quasi-steady Poiseuille)."""
    R = 5e-3
    alpha = 0.05
    omega = alpha**2 * MU / (RHO * R**2)
    G = 250.0
    r = np.linspace(0, R, 11)
    u = womersley_velocity(r, 0.0, radius_m=R, gradient_amplitude_pa_m=G, omega_rad_s=omega,
                           density_kg_m3=RHO, viscosity_pa_s=MU)
    u_p = G * (R**2 - r**2) / (4 * MU)
    # leading correction is O(α⁴) in amplitude (α⁴/... ≈ 1e-6 here)
    assert np.allclose(u, u_p, rtol=0, atol=1e-5 * u_p.max())
    q = womersley_flow(0.0, radius_m=R, gradient_amplitude_pa_m=G, omega_rad_s=omega,
                       density_kg_m3=RHO, viscosity_pa_s=MU)
    assert q == pytest.approx(math.pi * G * R**4 / (8 * MU), rel=1e-5)


def test_profile_for_flow_carries_the_flow_and_matches_gradient():
    """womersley_profile_for_flow integrates to Q(t) mode by mode; the gradient it implies drives
    the same velocity through womersley_velocity."""
    R, T = 5e-3, 0.8
    c = (3e-5, 4e-5 - 1e-5j, 1e-5j)
    f = FourierFlow(c, T)
    for t in (0.0, 0.13, 0.41):
        q_num = quad(lambda r, t=t: 2 * math.pi * r * womersley_profile_for_flow(
            r, t, c, radius_m=R, period_s=T, density_kg_m3=RHO, viscosity_pa_s=MU),
            0, R, epsabs=0, epsrel=1e-11, limit=200)[0]
        assert q_num == pytest.approx(f(t), rel=1e-9)
    omega = 2 * math.pi / T
    G = womersley_gradient_for_flow(c[1], radius_m=R, omega_rad_s=omega, density_kg_m3=RHO,
                                    viscosity_pa_s=MU)
    r = np.linspace(0, R, 9)
    u1 = womersley_profile_for_flow(r, 0.2, (0, c[1]), radius_m=R, period_s=T,
                                    density_kg_m3=RHO, viscosity_pa_s=MU)
    u2 = womersley_velocity(r, 0.2, radius_m=R, gradient_amplitude_pa_m=G, omega_rad_s=omega,
                            density_kg_m3=RHO, viscosity_pa_s=MU)
    assert np.allclose(u1, u2, rtol=1e-10, atol=1e-14)
