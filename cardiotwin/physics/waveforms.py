"""Inflow waveforms and the analytic Womersley solution, in SI units (plain numpy/scipy).

Two things live here:

1. **Flow waveforms** for the inlet of :func:`cardiotwin.physics.pulsatile.solve_pulsatile`:
   :class:`AorticFlowWaveform` (a physiological ascending-aortic flow scaled to a patient's heart
   rate and stroke volume) and :class:`FourierFlow` (any periodic flow given by its Fourier
   coefficients, e.g. a single Womersley mode). Both are callables ``Q(t)`` in m³/s with a
   ``period_s`` and a :meth:`fourier` method, which the ``"womersley"`` inlet profile uses.

2. **Womersley flow** in a rigid straight pipe (Womersley 1955): the exact velocity profile and
   flow rate for a sinusoidal pressure gradient (:func:`womersley_velocity`,
   :func:`womersley_flow`) and, inversely, the profile carrying a prescribed flow mode
   (:func:`womersley_profile_for_flow`, :func:`womersley_gradient_for_flow`). With the pressure
   gradient ``−∂p/∂z = Re(G e^{iωt})`` and ``β = i^{3/2} α``, ``α = R √(ω ρ/μ)``::

       u(r, t) = Re[ G/(iωρ) · (1 − J0(β r/R)/J0(β)) · e^{iωt} ]
       Q(t)    = Re[ G πR²/(iωρ) · (1 − 2 J1(β)/(β J0(β))) · e^{iωt} ]

   For ``α → 0`` both tend to the quasi-steady Poiseuille solution ``u = G(R² − r²)/(4μ)``.

References
----------
Womersley JR. Method for the calculation of velocity, rate of flow and viscous drag in arteries
when the pressure gradient is known. J Physiol 1955;127:553–563.

Weissler AM, Harris WS, Schoenfeld CD. Systolic time intervals in heart failure in man.
Circulation 1968;37:149–159 (left-ventricular ejection time LVET = 413 − 1.7·HR ms, men).

Nichols WW, O'Rourke MF, Vlachopoulos C. McDonald's Blood Flow in Arteries, 6th ed. London:
Hodder Arnold; 2011, ch. 10–11 (shape of ascending-aortic flow: steep upstroke, peak in the first
third of ejection, brief reverse flow at aortic-valve closure, near-zero diastolic flow).
"""

from __future__ import annotations

import abc
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import jv

from cardiotwin import units
from cardiotwin.errors import InputError

__all__ = [
    "AorticFlowWaveform",
    "FourierFlow",
    "lvet_s",
    "womersley_flow_factor",
    "womersley_number",
    "womersley_shape",
    "womersley_velocity",
    "womersley_flow",
    "womersley_profile_for_flow",
    "womersley_gradient_for_flow",
]


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a finite number > 0; got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name} must be a finite number > 0; got {value!r}")
    return v


@functools.lru_cache(maxsize=4)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [-1, 1], computed once per ``n`` (an eigenvalue
    problem of size ``n``: tens of ms, which a filter building many waveforms cannot pay)."""
    x, w = np.polynomial.legendre.leggauss(n)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def lvet_s(heart_rate_bpm: float) -> float:
    """Left-ventricular ejection time in s from the heart rate (Weissler et al. 1968, men).

    ``LVET = (413 − 1.7·HR) ms``, clipped to [0.15 s, 0.6·T] so that diastole never vanishes.

    Raises
    ------
    InputError
        If ``heart_rate_bpm`` is not in (0, 250].
    """
    hr = _positive("heart_rate_bpm", heart_rate_bpm)
    if hr > 250:
        raise InputError(f"heart_rate_bpm must be <= 250; got {hr}")
    period = 60.0 / hr
    return float(min(max(0.413 - 0.0017 * hr, 0.15), 0.6 * period))


# --------------------------------------------------------------------------------------------
# Waveforms
# --------------------------------------------------------------------------------------------
class _Periodic(abc.ABC):
    period_s: float

    @abc.abstractmethod
    def __call__(self, t):
        """Flow in m³/s at time(s) ``t`` in s."""

    @property
    def angular_frequency_rad_s(self) -> float:
        """Fundamental angular frequency ``ω = 2π/T`` in rad/s."""
        return 2.0 * math.pi / self.period_s

    def fourier(self, n_harmonics: int = 24) -> np.ndarray:
        """Complex coefficients ``c_k`` (k = 0..n) with ``Q(t) ≈ Re Σ_k c_k e^{ikωt}`` (m³/s).

        ``c_0`` is the mean flow (real); computed by the FFT of 4096 samples per period, which is
        exact to round-off for the trapezoidal quadrature of a periodic function.
        """
        if not (isinstance(n_harmonics, int) and n_harmonics >= 0):
            raise InputError(f"n_harmonics must be an integer >= 0; got {n_harmonics!r}")
        n = 4096
        t = np.arange(n) * self.period_s / n
        c = np.fft.rfft(np.asarray(self(t), dtype=float)) / n
        c[1:] *= 2.0
        return c[: n_harmonics + 1]


@dataclass(frozen=True)
class FourierFlow(_Periodic):
    """Periodic flow ``Q(t) = Re Σ_k c_k e^{ikωt}`` in m³/s, ``ω = 2π/period_s``.

    Parameters
    ----------
    coefficients : complex ``c_0 .. c_n`` in m³/s (``c_0`` the mean flow; its imaginary part is
        ignored).
    period_s : period in s (> 0).
    """

    coefficients: tuple[complex, ...]
    period_s: float

    def __post_init__(self) -> None:
        _positive("period_s", self.period_s)
        c = np.asarray(self.coefficients, dtype=complex)
        if c.ndim != 1 or len(c) == 0 or not np.all(np.isfinite(c)):
            raise InputError("coefficients must be a non-empty sequence of finite numbers")
        object.__setattr__(self, "coefficients", tuple(complex(v) for v in c))

    @classmethod
    def sinusoid(cls, *, mean_m3_s: float, amplitude_m3_s: float, period_s: float,
                 phase_rad: float = 0.0) -> FourierFlow:
        """``Q(t) = mean + amplitude·cos(ωt + phase)``."""
        return cls((complex(mean_m3_s), amplitude_m3_s * complex(math.cos(phase_rad),
                                                                  math.sin(phase_rad))), period_s)

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        w = self.angular_frequency_rad_s
        q = np.full(t.shape, self.coefficients[0].real)
        for k, c in enumerate(self.coefficients[1:], start=1):
            q = q + (c * np.exp(1j * k * w * t)).real
        return q if q.ndim else float(q)

    def fourier(self, n_harmonics: int = 24) -> np.ndarray:
        """The exact coefficients (padded with zeros or truncated to ``n_harmonics``)."""
        c = np.zeros(n_harmonics + 1, dtype=complex)
        m = min(len(self.coefficients), n_harmonics + 1)
        c[:m] = self.coefficients[:m]
        c[0] = c[0].real
        return c

    @property
    def mean_flow_m3_s(self) -> float:
        return float(self.coefficients[0].real)


@dataclass(frozen=True)
class AorticFlowWaveform(_Periodic):
    """Ascending-aortic flow for a heart rate and stroke volume (SI output).

    Shape (per beat, ``τ = t/LVET`` during ejection)::

        s(τ) = sin²(π τ^p)                          0 ≤ τ ≤ 1  (ejection; p sets the peak time)
        s    = −b · sin²(π (t − LVET)/t_b)          LVET ≤ t ≤ LVET + t_b  (closure backflow)
        s    = 0                                     rest of diastole

    scaled so that the net volume per beat equals the stroke volume exactly. The default
    ``p = 0.63`` puts peak flow at 33 % of ejection, ``b = 0.05`` and ``t_b = 50 ms`` give the
    brief end-systolic reverse flow; these reproduce the qualitative features of measured
    ascending-aortic flow (Nichols, O'Rourke & Vlachopoulos 2011, ch. 10–11). The ejection time
    follows the heart rate (:func:`lvet_s`, Weissler 1968) unless given. The shape is a
    parametric model, not a fitted recording.

    Parameters
    ----------
    heart_rate_bpm : heart rate in beats/min, in (0, 250].
    stroke_volume_ml : net forward volume per beat in mL, in (0, 300].
    ejection_time_s : LVET in s; default from the heart rate.
    peak_fraction : time of peak flow as a fraction of LVET, in (0.1, 0.6).
    backflow_fraction : reverse-flow peak relative to forward peak, in [0, 0.3).
    backflow_duration_s : duration of the closure backflow in s.

    Raises
    ------
    InputError
        Naming the offending parameter.
    """

    heart_rate_bpm: float
    stroke_volume_ml: float
    ejection_time_s: float | None = None
    peak_fraction: float = 0.33
    backflow_fraction: float = 0.05
    backflow_duration_s: float = 0.05

    def __post_init__(self) -> None:
        hr = _positive("heart_rate_bpm", self.heart_rate_bpm)
        if hr > 250:
            raise InputError(f"heart_rate_bpm must be <= 250; got {hr}")
        sv = _positive("stroke_volume_ml", self.stroke_volume_ml)
        if sv > 300:
            raise InputError(f"stroke_volume_ml must be <= 300 mL; got {sv}")
        period = 60.0 / hr
        lvet = lvet_s(hr) if self.ejection_time_s is None else _positive("ejection_time_s",
                                                                           self.ejection_time_s)
        if not (0.1 < self.peak_fraction < 0.6):
            raise InputError(f"peak_fraction must be in (0.1, 0.6); got {self.peak_fraction}")
        if not (0 <= self.backflow_fraction < 0.3):
            raise InputError(f"backflow_fraction must be in [0, 0.3); got {self.backflow_fraction}")
        tb = _positive("backflow_duration_s", self.backflow_duration_s)
        if lvet + tb >= period:
            raise InputError(
                f"ejection_time_s + backflow_duration_s ({lvet + tb:.3f} s) must be shorter than "
                f"the period 60/heart_rate_bpm = {period:.3f} s")
        object.__setattr__(self, "_lvet", lvet)
        object.__setattr__(self, "_p", math.log(0.5) / math.log(self.peak_fraction))
        # net volume of the unit shape: ∫ sin²(π τ^p) dτ·LVET − b·t_b/2 (high-order quadrature)
        x, w = _gauss_legendre(200)
        tau = 0.5 * (x + 1)
        fwd = 0.5 * float(np.sum(w * np.sin(math.pi * tau ** self._p) ** 2)) * lvet
        net = fwd - self.backflow_fraction * tb / 2.0
        object.__setattr__(self, "_scale", units.ml_to_m3(sv) / net)

    @property
    def period_s(self) -> float:  # type: ignore[override]
        """Beat period ``60/HR`` in s."""
        return 60.0 / self.heart_rate_bpm

    @property
    def lvet(self) -> float:
        """Ejection time in s."""
        return self._lvet

    @property
    def stroke_volume_m3(self) -> float:
        return units.ml_to_m3(self.stroke_volume_ml)

    @property
    def mean_flow_m3_s(self) -> float:
        """Cardiac output ``SV·HR/60`` in m³/s."""
        return self.stroke_volume_m3 * self.heart_rate_bpm / 60.0

    @property
    def peak_flow_m3_s(self) -> float:
        return float(self._scale)

    def __call__(self, t):
        """Flow in m³/s at time(s) ``t`` (s), periodic."""
        t = np.asarray(t, dtype=float)
        tm = np.mod(t, self.period_s)
        lvet, tb = self._lvet, self.backflow_duration_s
        ej = tm <= lvet
        tau = np.clip(tm / lvet, 0.0, 1.0)
        q = np.where(ej, np.sin(math.pi * tau ** self._p) ** 2, 0.0)
        back = (tm > lvet) & (tm < lvet + tb)
        q = q - np.where(back, self.backflow_fraction
                         * np.sin(math.pi * np.clip((tm - lvet) / tb, 0, 1)) ** 2, 0.0)
        q = self._scale * q
        return q if q.ndim else float(q)


# --------------------------------------------------------------------------------------------
# Womersley
# --------------------------------------------------------------------------------------------
_I32 = complex(math.cos(3 * math.pi / 4), math.sin(3 * math.pi / 4))  # i^{3/2}


def womersley_number(radius_m: float, omega_rad_s: float, *, density_kg_m3: float = 1060.0,
                     viscosity_pa_s: float = 3.5e-3) -> float:
    """``α = R √(ω ρ / μ)`` (dimensionless)."""
    return radius_m * math.sqrt(omega_rad_s * density_kg_m3 / viscosity_pa_s)


def womersley_shape(r_over_R, alpha: float) -> np.ndarray:
    """Womersley velocity shape ``1 − J0(β r/R)/J0(β)`` (complex), ``β = i^{3/2} α``.

    ``r_over_R`` is the radial position over the radius (0 on the axis, 1 at the wall), ``α``
    the Womersley number; the velocity of one harmonic is this shape times ``iA/(ρω)``.
    """
    b = _I32 * alpha
    return 1.0 - jv(0, b * np.asarray(r_over_R, dtype=float)) / jv(0, b)


def womersley_flow_factor(alpha: float) -> complex:
    """Area mean of :func:`womersley_shape`: ``1 − 2 J1(β)/(β J0(β))``, ``β = i^{3/2} α``."""
    b = _I32 * alpha
    return complex(1.0 - 2.0 * jv(1, b) / (b * jv(0, b)))


def _check_common(radius_m, omega_rad_s, density_kg_m3, viscosity_pa_s):
    _positive("radius_m", radius_m)
    _positive("omega_rad_s", omega_rad_s)
    _positive("density_kg_m3", density_kg_m3)
    _positive("viscosity_pa_s", viscosity_pa_s)


def womersley_velocity(r_m, t_s, *, radius_m: float, gradient_amplitude_pa_m: complex,
                       omega_rad_s: float, density_kg_m3: float = 1060.0,
                       viscosity_pa_s: float = 3.5e-3):
    """Axial velocity (m/s) of Womersley flow for ``−∂p/∂z = Re(G e^{iωt})`` (Womersley 1955).

    Parameters
    ----------
    r_m : radial position(s) in m (0 ≤ r ≤ R); broadcast against ``t_s``.
    t_s : time(s) in s.
    radius_m : pipe radius R in m.
    gradient_amplitude_pa_m : complex amplitude ``G`` of the driving gradient in Pa/m.
    omega_rad_s : angular frequency ω in rad/s.
    """
    _check_common(radius_m, omega_rad_s, density_kg_m3, viscosity_pa_s)
    alpha = womersley_number(radius_m, omega_rad_s, density_kg_m3=density_kg_m3,
                             viscosity_pa_s=viscosity_pa_s)
    amp = gradient_amplitude_pa_m / (1j * omega_rad_s * density_kg_m3)
    r = np.asarray(r_m, dtype=float) / radius_m
    return (amp * womersley_shape(r, alpha) * np.exp(1j * omega_rad_s * np.asarray(t_s, dtype=float))).real


def womersley_flow(t_s, *, radius_m: float, gradient_amplitude_pa_m: complex, omega_rad_s: float,
                   density_kg_m3: float = 1060.0, viscosity_pa_s: float = 3.5e-3):
    """Flow rate (m³/s) of Womersley flow for ``−∂p/∂z = Re(G e^{iωt})`` (Womersley 1955)."""
    _check_common(radius_m, omega_rad_s, density_kg_m3, viscosity_pa_s)
    alpha = womersley_number(radius_m, omega_rad_s, density_kg_m3=density_kg_m3,
                             viscosity_pa_s=viscosity_pa_s)
    amp = gradient_amplitude_pa_m * math.pi * radius_m**2 / (1j * omega_rad_s * density_kg_m3)
    return (amp * womersley_flow_factor(alpha) * np.exp(1j * omega_rad_s * np.asarray(t_s, dtype=float))).real


def womersley_gradient_for_flow(flow_amplitude_m3_s: complex, *, radius_m: float,
                                omega_rad_s: float, density_kg_m3: float = 1060.0,
                                viscosity_pa_s: float = 3.5e-3) -> complex:
    """Complex gradient amplitude ``G`` (Pa/m, of ``−∂p/∂z``) that drives the flow ``Re(Q̂ e^{iωt})``.

    ``ω = 0`` is not allowed here; the steady mode is Poiseuille, ``G = 8μQ/(πR⁴)``.
    """
    _check_common(radius_m, omega_rad_s, density_kg_m3, viscosity_pa_s)
    alpha = womersley_number(radius_m, omega_rad_s, density_kg_m3=density_kg_m3,
                             viscosity_pa_s=viscosity_pa_s)
    return complex(flow_amplitude_m3_s * 1j * omega_rad_s * density_kg_m3
                   / (math.pi * radius_m**2 * womersley_flow_factor(alpha)))


def womersley_profile_for_flow(r_m, t_s, coefficients, *, radius_m: float, period_s: float,
                               density_kg_m3: float = 1060.0, viscosity_pa_s: float = 3.5e-3):
    """Axial velocity (m/s) of fully developed flow carrying ``Q(t) = Re Σ_k c_k e^{ikωt}``.

    Mode 0 is Poiseuille (``2 c_0/(πR²)·(1 − r²/R²)``), mode ``k ≥ 1`` the Womersley profile of
    angular frequency ``kω`` scaled to flow ``c_k``. Each mode integrates exactly to its flow.

    Parameters
    ----------
    r_m : radial position(s) in m; broadcast against ``t_s``.
    t_s : time(s) in s.
    coefficients : complex ``c_k`` in m³/s (e.g. :meth:`AorticFlowWaveform.fourier`).
    radius_m, period_s : pipe radius (m) and period (s).
    """
    _check_common(radius_m, 1.0, density_kg_m3, viscosity_pa_s)
    _positive("period_s", period_s)
    c = np.asarray(coefficients, dtype=complex)
    r = np.asarray(r_m, dtype=float) / radius_m
    t = np.asarray(t_s, dtype=float)
    w = 2.0 * math.pi / period_s
    area = math.pi * radius_m**2
    u = 2.0 * c[0].real / area * (1.0 - r**2) + 0.0 * t
    for k in range(1, len(c)):
        if c[k] == 0:
            continue
        alpha = womersley_number(radius_m, k * w, density_kg_m3=density_kg_m3,
                                 viscosity_pa_s=viscosity_pa_s)
        shape = womersley_shape(r, alpha) / (area * womersley_flow_factor(alpha))
        u = u + (c[k] * shape * np.exp(1j * k * w * t)).real
    return u
