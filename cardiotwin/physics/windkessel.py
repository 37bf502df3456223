"""Lumped (0-D) outlet models and a 0-D left-heart circulation, in SI units.

Three things live here, all plain numpy/scipy (no dolfinx):

1. **Windkessel outlet models** — :class:`RCR` (three-element: proximal resistance ``Rp``,
   compliance ``C``, distal resistance ``Rd`` to a distal pressure ``p_d``) and :class:`TwoElement`
   (``R``, ``C``). The state is the capacitor pressure ``p_c``::

       C · dp_c/dt = q − (p_c − p_d) / Rd,        p_inlet = p_c + Rp · q

   (the two-element model is the same with ``Rp = 0``). :meth:`RCR.step` advances ``p_c`` by the
   **trapezoidal (Crank–Nicolson) rule**, second order and A-stable (unconditionally stable for any
   ``dt > 0``); its amplification factor ``(1 − k)/(1 + k)``, ``k = dt/(2·Rd·C)``, tends to −1 when
   ``dt ≫ Rd·C``, so a transient is then damped slowly and alternates in sign — keep
   ``dt ≲ Rd·C`` (true for physiological outlets: ``Rd·C`` ~ 0.1–2 s, ``dt`` ~ 1 ms).

   **Coupling to the 3-D solver (issue 5).** Within one time step the trapezoidal update is affine
   in the new outlet flow ``q^{n+1}``::

       p_inlet^{n+1} = p_offset + R_eff · q^{n+1}         (:meth:`RCR.implicit_coefficients`)

   with ``p_offset`` built from the known ``p_c^n`` and ``q^n``. The intended coupling imposes this
   as an outlet traction ``−p_inlet n`` with ``q^{n+1} = ∫ u^{n+1}·n ds`` taken **implicitly**
   (a resistance / Robin-type term in the Newton or monolithic system, or inside the pressure
   correction of a fractional-step scheme), then calls :meth:`RCR.step` with the converged
   ``q^{n+1}`` to advance ``p_c``. This is unconditionally stable. The cheaper explicit variant
   (use ``q^n`` in place of ``q^{n+1}``, i.e. a lagged ``p_inlet``) is only conditionally stable
   and is known to become unstable for small ``Rp`` and large outlet areas; use it only with a
   sub-iteration on ``q``.

   A plain **resistance outlet** :class:`OutletResistance` (``p = p0 + R Q``) is the outlet
   model of the steady solver (:func:`~cardiotwin.physics.steady.solve_steady`) and also
   accepted by the pulsatile one.

2. **A 0-D left-heart circulation** (:class:`LVCirculation`, :func:`simulate_beat`,
   :func:`simulate_periodic`): a time-varying-elastance left ventricle filled from a constant
   left-atrial pressure through a mitral :class:`ValveLaw`, ejecting through an aortic
   :class:`ValveLaw` into an :class:`RCR` systemic load. This is the reduced model of DESIGN.md:
   the valve law ``ΔP(Q) = a·Q + b·Q·|Q|`` is what ``physics.reduced`` fits from 3-D runs.

   Ventricle (Suga & Sagawa 1974, time-varying elastance)::

       p_lv(t) = E(t) · (V_lv − V_u),    E(t) = (E_max − E_min) · E_n(t / T_max) + E_min

   with the normalised **double-Hill** activation of Stergiopulos, Meister & Westerhof (1996)::

       E_n(τ) = k · [(τ/0.7)^1.9 / (1 + (τ/0.7)^1.9)] · [1 / (1 + (τ/1.17)^21.9)]

   where ``k`` normalises the peak to exactly 1 (the paper's constant is 1.55) and, by default,
   ``T_max = 0.2 s + 0.15 · T`` for a beat period ``T`` (Simaan et al. 2009).
   Valves are ideal diodes (no regurgitation) with the pressure loss of their :class:`ValveLaw`
   while open; valve inertance is neglected. States ``(V_lv, p_c)`` are advanced by the
   trapezoidal rule (``theta=0.5``; ``theta=1`` gives backward Euler); the valve flows at the new
   time are algebraic and found in closed form for each valve state (one quadratic per step), with
   a bracketed root solve as fallback, so one beat at ``dt = 1 ms`` costs a few milliseconds.

References
----------
Suga H, Sagawa K. Instantaneous pressure-volume relationships and their ratio in the excised,
supported canine left ventricle. Circ Res 1974;35:117–126.

Stergiopulos N, Meister J-J, Westerhof N. Determinants of stroke volume and systolic and diastolic
aortic pressure. Am J Physiol 1996;270:H2050–H2059.

Simaan MA, Ferreira A, Chen S, Antaki JF, Galati DG. A dynamical state space representation and
performance analysis of a feedback-controlled rotary left ventricular assist device. IEEE Trans
Control Syst Technol 2009;17:15–28.

Westerhof N, Lankhaar J-W, Westerhof BE. The arterial Windkessel. Med Biol Eng Comput
2009;47:131–141.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq
from scipy.signal import lfilter

from cardiotwin import units
from cardiotwin.errors import InputError, SolverError

logger = logging.getLogger(__name__)

__all__ = ["BLOOD_DENSITY_KG_M3", "RCR", "BeatMetrics", "BeatResult", "LVCirculation",
           "OutletResistance", "TwoElement", "ValveLaw", "WindkesselTrace", "simulate",
           "simulate_beat", "simulate_periodic"]

BLOOD_DENSITY_KG_M3 = 1060.0
"""Default blood density (DESIGN.md §4)."""


def _require_positive(owner: str, name: str, value: float) -> None:
    if not (
        isinstance(value, (int, float, np.floating, np.integer))
        and math.isfinite(value)
        and value > 0
    ):
        raise InputError(f"{owner}.{name} must be a finite number > 0; got {value!r}")


def _require_nonnegative(owner: str, name: str, value: float) -> None:
    if not (
        isinstance(value, (int, float, np.floating, np.integer))
        and math.isfinite(value)
        and value >= 0
    ):
        raise InputError(f"{owner}.{name} must be a finite number >= 0; got {value!r}")


def _require_finite(owner: str, name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)):
        raise InputError(f"{owner}.{name} must be a finite number; got {value!r}")


def _check_dt(dt: float) -> None:
    if not (isinstance(dt, (int, float, np.floating, np.integer)) and math.isfinite(dt) and dt > 0):
        raise InputError(f"time step dt must be a finite number of seconds > 0; got {dt!r}")


# --------------------------------------------------------------------------------------------
# Windkessel outlet models
# --------------------------------------------------------------------------------------------


class _Windkessel(abc.ABC):
    """Shared trapezoidal update for ``C·dp_c/dt = q − (p_c − p_d)/Rd``, ``p = p_c + Rp·q``."""

    @abc.abstractmethod
    def _params(self) -> tuple[float, float, float, float]:
        """(Rp, C, Rd, p_d) of the concrete model."""

    def _coefficients(self, dt: float) -> tuple[float, float, float]:
        """``p_c^{n+1} = α·p_c^n + β·(q^n + q^{n+1}) + γ`` for the trapezoidal rule."""
        _check_dt(dt)
        _, c, rd, p_d = self._params()
        k = dt / (2.0 * rd * c)
        alpha = (1.0 - k) / (1.0 + k)
        beta = dt / (2.0 * c * (1.0 + k))
        gamma = 2.0 * k * p_d / (1.0 + k)
        return alpha, beta, gamma

    @property
    def time_constant_s(self) -> float:
        """Discharge time constant ``Rd·C`` in s."""
        _, c, rd, _ = self._params()
        return rd * c

    def pressure(self, p_c, q):
        """Inlet pressure ``p = p_c + Rp·q`` in Pa (``Rp = 0`` for the two-element model).

        Parameters
        ----------
        p_c : capacitor pressure in Pa (float or array).
        q : flow into the model in m³/s (float or array).
        """
        rp = self._params()[0]
        return p_c + rp * q

    def step(self, p_c, q, dt: float, *, q_prev=None):
        """Advance the capacitor pressure by one trapezoidal (Crank–Nicolson) step.

        Parameters
        ----------
        p_c : capacitor pressure at ``t^n`` in Pa (float or array, e.g. one entry per outlet).
        q : flow into the model at ``t^{n+1}`` in m³/s.
        dt : time step in s (> 0).
        q_prev : flow at ``t^n`` in m³/s; defaults to ``q`` (flow constant over the step).

        Returns
        -------
        Capacitor pressure at ``t^{n+1}`` in Pa. Second-order accurate, A-stable.
        """
        alpha, beta, gamma = self._coefficients(dt)
        q0 = q if q_prev is None else q_prev
        return alpha * p_c + beta * (q0 + q) + gamma

    def implicit_coefficients(self, p_c, q_prev, dt: float) -> tuple[float, float]:
        """Affine dependence of the next inlet pressure on the next flow, for implicit coupling.

        ``p_inlet^{n+1} = p_offset + r_eff · q^{n+1}`` exactly reproduces :meth:`step` followed by
        :meth:`pressure`. A 3-D solver imposes it as an outlet resistance ``r_eff`` [Pa·s/m³] with
        offset ``p_offset`` [Pa] (see the module docstring).

        Parameters
        ----------
        p_c : capacitor pressure at ``t^n`` in Pa.
        q_prev : outlet flow at ``t^n`` in m³/s.
        dt : time step in s.

        Returns
        -------
        ``(p_offset_pa, r_eff_pa_s_m3)``.
        """
        alpha, beta, gamma = self._coefficients(dt)
        rp = self._params()[0]
        return alpha * p_c + beta * q_prev + gamma, rp + beta

    def impedance(self, omega_rad_s: float) -> complex:
        """Input impedance ``Z(ω) = Rp + Rd / (1 + iωRdC)`` in Pa·s/m³ (continuous model)."""
        rp, c, rd, _ = self._params()
        return rp + rd / (1.0 + 1j * omega_rad_s * rd * c)


@dataclass(frozen=True)
class OutletResistance:
    """Resistance outlet: ``p = p0_pa + resistance_pa_s_m3 · Q`` (Q in m³/s, outward positive).

    Parameters
    ----------
    resistance_pa_s_m3 : R ≥ 0 in Pa·s/m³ (1 mmHg·s/mL = 1.333e8 Pa·s/m³).
    p0_pa : distal pressure in Pa.
    """

    resistance_pa_s_m3: float
    p0_pa: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.resistance_pa_s_m3) and self.resistance_pa_s_m3 >= 0):
            raise InputError(
                f"outlet resistance_pa_s_m3 must be finite and >= 0; got {self.resistance_pa_s_m3}")
        if not math.isfinite(self.p0_pa):
            raise InputError(f"outlet p0_pa must be finite; got {self.p0_pa}")



@dataclass(frozen=True)
class RCR(_Windkessel):
    """Three-element Windkessel (Westerhof 2009), SI units.

    Parameters
    ----------
    Rp : proximal (characteristic) resistance in Pa·s/m³ (> 0).
    C : compliance in m³/Pa (> 0).
    Rd : distal (peripheral) resistance in Pa·s/m³ (> 0).
    p_d : distal (venous) pressure in Pa; default 0.

    Raises
    ------
    InputError
        If a resistance or the compliance is not a finite positive number (the message names the
        field), or ``p_d`` is not finite. For ``Rp = 0`` use :class:`TwoElement`.
    """

    Rp: float
    C: float
    Rd: float
    p_d: float = 0.0

    def __post_init__(self) -> None:
        for name in ("Rp", "C", "Rd"):
            _require_positive("RCR", name, getattr(self, name))
        _require_finite("RCR", "p_d", self.p_d)

    def _params(self) -> tuple[float, float, float, float]:
        return float(self.Rp), float(self.C), float(self.Rd), float(self.p_d)


@dataclass(frozen=True)
class TwoElement(_Windkessel):
    """Two-element Windkessel (Frank): resistance ``R`` [Pa·s/m³] and compliance ``C`` [m³/Pa].

    ``C·dp/dt = q − (p − p_d)/R`` and the inlet pressure equals the capacitor pressure.
    ``p_d`` (Pa, default 0) is the distal pressure.

    Raises
    ------
    InputError
        If ``R`` or ``C`` is not a finite positive number (the message names the field).
    """

    R: float
    C: float
    p_d: float = 0.0

    def __post_init__(self) -> None:
        for name in ("R", "C"):
            _require_positive("TwoElement", name, getattr(self, name))
        _require_finite("TwoElement", "p_d", self.p_d)

    def _params(self) -> tuple[float, float, float, float]:
        return 0.0, float(self.C), float(self.R), float(self.p_d)


class WindkesselTrace(NamedTuple):
    """Result of :func:`simulate`: times [s], inlet pressure [Pa], capacitor pressure [Pa]."""

    t: np.ndarray
    p_inlet: np.ndarray
    p_c: np.ndarray


def simulate(
    model: RCR | TwoElement, q_of_t: Callable, t_end: float, dt: float, p0: float | None = None
) -> WindkesselTrace:
    """Drive a Windkessel model with a prescribed inflow.

    Parameters
    ----------
    model : the :class:`RCR` or :class:`TwoElement` model.
    q_of_t : inflow in m³/s as a function of time in s; called with the array of times if it
        accepts one, else point by point.
    t_end : end time in s; rounded to a whole number of steps ``dt``.
    dt : time step in s.
    p0 : capacitor pressure at ``t = 0`` in Pa; default ``model.p_d`` (at rest).

    Returns
    -------
    :class:`WindkesselTrace` ``(t, p_inlet, p_c)``, arrays of length ``n + 1``, advanced by the
    trapezoidal rule of :meth:`RCR.step` with ``q`` sampled at the step ends.

    Raises
    ------
    InputError
        Bad ``t_end``, ``dt`` or ``p0``, or ``q_of_t`` returns non-finite values.
    """
    _check_dt(dt)
    if not (math.isfinite(t_end) and t_end > 0):
        raise InputError(f"t_end must be a finite time in s > 0; got {t_end!r}")
    p_start = float(model.p_d) if p0 is None else p0
    _require_finite("simulate", "p0", p_start)
    n = max(1, int(round(t_end / dt)))
    t = np.arange(n + 1, dtype=float) * dt
    q = _sample(q_of_t, t)
    alpha, beta, gamma = model._coefficients(dt)
    u = beta * (q[:-1] + q[1:]) + gamma
    # p[n+1] = α p[n] + u[n], as a first-order recursive filter (same arithmetic as step()).
    p_next, _ = lfilter([1.0], [1.0, -alpha], u, zi=[alpha * p_start])
    p_c = np.concatenate(([p_start], p_next))
    return WindkesselTrace(t, model.pressure(p_c, q), p_c)


def _sample(q_of_t: Callable, t: np.ndarray) -> np.ndarray:
    try:
        q = np.asarray(q_of_t(t), dtype=float)
    except (TypeError, ValueError):
        q = None
    if q is None or q.shape not in (t.shape, ()):
        q = np.array([float(q_of_t(float(ti))) for ti in t])
    q = np.broadcast_to(q, t.shape).astype(float)
    if not np.all(np.isfinite(q)):
        bad = int(np.flatnonzero(~np.isfinite(q))[0])
        raise InputError(f"q_of_t returned a non-finite flow at t = {t[bad]:g} s")
    return q


# --------------------------------------------------------------------------------------------
# Valve law and 0-D circulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValveLaw:
    """Pressure loss across a valve or device: ``ΔP(Q) = a·Q + b·Q·|Q|`` (SI).

    Parameters
    ----------
    a : viscous coefficient in Pa·s/m³ (>= 0).
    b : convective (Bernoulli) coefficient in Pa·s²/m⁶ (>= 0); for an orifice of effective
        area ``A`` [m²] ``b = ρ / (2·A²)`` (see :meth:`from_orifice_area`).

    Raises
    ------
    InputError
        Negative or non-finite coefficients, or ``a = b = 0`` (a lossless valve has no flow law).
    """

    a: float
    b: float

    def __post_init__(self) -> None:
        _require_nonnegative("ValveLaw", "a", self.a)
        _require_nonnegative("ValveLaw", "b", self.b)
        if self.a == 0 and self.b == 0:
            raise InputError(
                "ValveLaw needs a > 0 or b > 0 (a = b = 0 is a lossless valve); "
                "give the orifice area or a small resistance"
            )

    @classmethod
    def from_orifice_area(
        cls,
        area_m2: float,
        *,
        density_kg_m3: float = BLOOD_DENSITY_KG_M3,
        contraction: float = 1.0,
        a: float = 0.0,
    ) -> ValveLaw:
        """Bernoulli loss of an orifice: ``b = ρ / (2·(Cc·A)²)``.

        Parameters
        ----------
        area_m2 : orifice area ``A`` in m²; with ``contraction = 1`` it is the effective orifice
            area (vena contracta), as measured by Doppler continuity.
        density_kg_m3 : blood density ρ.
        contraction : contraction coefficient ``Cc`` in (0, 1] turning a geometric area into
            an effective one.
        a : viscous coefficient in Pa·s/m³ to add.
        """
        _require_positive("ValveLaw.from_orifice_area", "area_m2", area_m2)
        _require_positive("ValveLaw.from_orifice_area", "density_kg_m3", density_kg_m3)
        if not (math.isfinite(contraction) and 0 < contraction <= 1):
            raise InputError(
                f"ValveLaw.from_orifice_area.contraction must be in (0, 1]; got {contraction!r}"
            )
        eoa = contraction * area_m2
        return cls(a=a, b=density_kg_m3 / (2.0 * eoa * eoa))

    def pressure_drop(self, q):
        """``ΔP`` in Pa for flow ``q`` in m³/s (float or array, signed)."""
        return self.a * q + self.b * q * np.abs(q)

    def flow(self, dp):
        """Inverse law: the signed flow in m³/s that gives pressure drop ``dp`` in Pa."""
        dp = np.asarray(dp, dtype=float)
        m = np.abs(dp)
        # 2|dp|/(a + sqrt(a² + 4b|dp|)) is the positive root, free of cancellation, valid for b = 0
        q = 2.0 * m / (self.a + np.sqrt(self.a * self.a + 4.0 * self.b * m) + (m == 0))
        q = np.sign(dp) * q
        return float(q) if q.ndim == 0 else q


def _root(a: float, b: float, c: float) -> float:
    """Non-negative root of ``b·x² + a·x = c`` for ``a > 0``, ``b >= 0``, ``c >= 0``."""
    return 2.0 * c / (a + math.sqrt(a * a + 4.0 * b * c))


@dataclass(frozen=True)
class LVCirculation:
    """Parameters of the 0-D left-heart circulation, SI units (see the module docstring).

    Parameters
    ----------
    period_s : beat period ``T`` in s (60 / heart rate in bpm).
    e_max_pa_m3 : end-systolic (peak) elastance in Pa/m³.
    e_min_pa_m3 : diastolic elastance in Pa/m³ (< ``e_max_pa_m3``).
    v_unstressed_m3 : unstressed LV volume ``V_u`` in m³ (>= 0).
    p_la_pa : left-atrial (filling) pressure in Pa, constant.
    aortic_valve : :class:`ValveLaw` of the aortic valve (or device).
    mitral_valve : :class:`ValveLaw` of the mitral valve.
    systemic : :class:`RCR` load; its inlet pressure is the aortic pressure.
    t_max_s : time to peak elastance in s; default ``0.2 + 0.15·T`` (Simaan 2009).
    """

    period_s: float
    e_max_pa_m3: float
    e_min_pa_m3: float
    v_unstressed_m3: float
    p_la_pa: float
    aortic_valve: ValveLaw
    mitral_valve: ValveLaw
    systemic: RCR
    t_max_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("period_s", "e_max_pa_m3", "e_min_pa_m3"):
            _require_positive("LVCirculation", name, getattr(self, name))
        _require_nonnegative("LVCirculation", "v_unstressed_m3", self.v_unstressed_m3)
        _require_finite("LVCirculation", "p_la_pa", self.p_la_pa)
        if not self.e_min_pa_m3 < self.e_max_pa_m3:
            raise InputError(
                f"LVCirculation.e_min_pa_m3 ({self.e_min_pa_m3:g}) must be below "
                f"e_max_pa_m3 ({self.e_max_pa_m3:g})"
            )
        for name, typ in (
            ("aortic_valve", ValveLaw),
            ("mitral_valve", ValveLaw),
            ("systemic", RCR),
        ):
            if not isinstance(getattr(self, name), typ):
                raise InputError(
                    f"LVCirculation.{name} must be a {typ.__name__}; "
                    f"got {type(getattr(self, name)).__name__}"
                )
        if self.t_max_s is not None:
            _require_positive("LVCirculation", "t_max_s", self.t_max_s)
            if self.t_max_s >= self.period_s:
                raise InputError(
                    f"LVCirculation.t_max_s ({self.t_max_s:g} s) must be shorter "
                    f"than period_s ({self.period_s:g} s)"
                )

    @property
    def time_to_peak_s(self) -> float:
        """``T_max`` in s."""
        return self.t_max_s if self.t_max_s is not None else 0.2 + 0.15 * self.period_s

    def elastance(self, t_s) -> np.ndarray:
        """LV elastance in Pa/m³ at times ``t_s`` (s, taken modulo the period)."""
        tn = np.mod(np.asarray(t_s, dtype=float), self.period_s) / self.time_to_peak_s
        return (self.e_max_pa_m3 - self.e_min_pa_m3) * _double_hill(tn) + self.e_min_pa_m3

    @classmethod
    def typical(cls, **overrides) -> LVCirculation:
        """A resting adult (documented set; values from Stergiopulos 1996 and Westerhof 2009).

        Heart rate 75 bpm; E_max 2.0 mmHg/mL, E_min 0.06 mmHg/mL, V_u 10 mL; left-atrial
        pressure 8 mmHg; mitral valve ``a`` = 0.005 mmHg·s/mL plus a 4 cm² orifice; aortic valve a
        3 cm² effective orifice; RCR Rp 0.05, Rd 1.0 mmHg·s/mL, C 1.5 mL/mmHg, p_d 5 mmHg.
        Gives about 118/75 mmHg (mean 96), stroke volume 69 mL, end-diastolic volume 134 mL
        (ejection fraction 52 %), mean aortic gradient 4.5 mmHg. Any field can be overridden by
        keyword (in SI).
        """
        r = units.mmhg_s_ml_to_pa_s_m3
        params = dict(
            period_s=60.0 / 75.0,
            e_max_pa_m3=units.mmhg_to_pa(2.0) / units.ml_to_m3(1.0),
            e_min_pa_m3=units.mmhg_to_pa(0.06) / units.ml_to_m3(1.0),
            v_unstressed_m3=units.ml_to_m3(10.0),
            p_la_pa=units.mmhg_to_pa(8.0),
            aortic_valve=ValveLaw.from_orifice_area(units.cm2_to_m2(3.0)),
            mitral_valve=ValveLaw.from_orifice_area(units.cm2_to_m2(4.0), a=r(0.005)),
            systemic=RCR(
                Rp=r(0.05),
                C=units.ml_to_m3(1.5) / units.mmhg_to_pa(1.0),
                Rd=r(1.0),
                p_d=units.mmhg_to_pa(5.0),
            ),
        )
        params.update(overrides)
        return cls(**params)


def _double_hill(tn: np.ndarray) -> np.ndarray:
    """Double-Hill activation (Stergiopulos 1996) normalised to a peak of exactly 1."""
    return _double_hill_raw(tn) / _DOUBLE_HILL_PEAK


def _double_hill_raw(tn):
    g1 = (tn / 0.7) ** 1.9
    return g1 / (1.0 + g1) / (1.0 + (tn / 1.17) ** 21.9)


def _double_hill_peak() -> float:
    tn = np.linspace(0.5, 1.5, 200_001)
    return float(_double_hill_raw(tn).max())


_DOUBLE_HILL_PEAK = _double_hill_peak()


@dataclass(frozen=True)
class BeatMetrics:
    """Per-beat figures of :func:`simulate_beat`, SI, with clinical-unit views.

    Pressures in Pa, volumes in m³, times in s. ``mean_gradient_pa`` is the mean of
    ``p_lv − p_ao`` over the ejection period (aortic flow > 0), ``peak_gradient_pa`` its maximum
    (peak instantaneous gradient, no pressure recovery: the Doppler/vena-contracta value).
    """

    systolic_pa: float
    diastolic_pa: float
    mean_pa: float
    stroke_volume_m3: float
    mean_gradient_pa: float
    peak_gradient_pa: float
    end_diastolic_volume_m3: float
    end_systolic_volume_m3: float
    ejection_time_s: float

    @property
    def systolic_mmhg(self) -> float:
        return units.pa_to_mmhg(self.systolic_pa)

    @property
    def diastolic_mmhg(self) -> float:
        return units.pa_to_mmhg(self.diastolic_pa)

    @property
    def mean_mmhg(self) -> float:
        return units.pa_to_mmhg(self.mean_pa)

    @property
    def stroke_volume_ml(self) -> float:
        return units.m3_to_ml(self.stroke_volume_m3)

    @property
    def mean_gradient_mmhg(self) -> float:
        return units.pa_to_mmhg(self.mean_gradient_pa)

    @property
    def peak_gradient_mmhg(self) -> float:
        return units.pa_to_mmhg(self.peak_gradient_pa)

    def to_clinical(self) -> dict[str, float]:
        """The figures in clinical units (mmHg, mL, ms) for reports and the app."""
        return {
            "systolic_mmhg": self.systolic_mmhg,
            "diastolic_mmhg": self.diastolic_mmhg,
            "mean_mmhg": self.mean_mmhg,
            "stroke_volume_ml": self.stroke_volume_ml,
            "mean_gradient_mmhg": self.mean_gradient_mmhg,
            "peak_gradient_mmhg": self.peak_gradient_mmhg,
            "end_diastolic_volume_ml": units.m3_to_ml(self.end_diastolic_volume_m3),
            "end_systolic_volume_ml": units.m3_to_ml(self.end_systolic_volume_m3),
            "ejection_time_ms": self.ejection_time_s * 1e3,
        }


@dataclass(frozen=True, eq=False)
class BeatResult:
    """Waveforms of one beat (arrays of length ``n + 1`` at ``t_s``) and its :class:`BeatMetrics`.

    ``p_ao_pa`` is the aortic (RCR inlet) pressure, ``p_c_pa`` the RCR capacitor pressure,
    ``q_ao_m3_s`` / ``q_mv_m3_s`` the aortic / mitral valve flows, ``v_lv_m3`` the LV volume.
    ``n_beats`` is the number of beats simulated to reach this one (1 for :func:`simulate_beat`).
    """

    t_s: np.ndarray
    p_lv_pa: np.ndarray
    p_ao_pa: np.ndarray
    p_c_pa: np.ndarray
    q_ao_m3_s: np.ndarray
    q_mv_m3_s: np.ndarray
    v_lv_m3: np.ndarray
    metrics: BeatMetrics
    n_beats: int = 1
    fallback_steps: int = field(default=0)

    @property
    def end_state(self) -> tuple[float, float]:
        """``(lv_volume_m3, p_c_pa)`` at the end of the beat: the start of the next."""
        return float(self.v_lv_m3[-1]), float(self.p_c_pa[-1])


def simulate_beat(
    circulation: LVCirculation,
    *,
    lv_volume0_m3: float,
    p_c0_pa: float,
    dt_s: float = 1e-3,
    theta: float = 0.5,
) -> BeatResult:
    """Run one heartbeat of the 0-D circulation from a given state.

    Parameters
    ----------
    circulation : the model parameters.
    lv_volume0_m3 : LV volume at the start of the beat (onset of contraction) in m³.
    p_c0_pa : RCR capacitor pressure at the start of the beat in Pa.
    dt_s : time step in s; the period is divided into ``round(T/dt_s)`` equal steps.
    theta : 0.5 for the trapezoidal rule (2nd order, default), 1 for backward Euler
        (1st order, L-stable: use it if a very small ``Rp`` makes the ejection phase stiff).

    Returns
    -------
    :class:`BeatResult` with the waveforms and :class:`BeatMetrics`. Over the beat
    ``V_lv(T) − V_lv(0)`` equals the θ-rule integral of ``q_mv − q_ao`` to round-off.

    Raises
    ------
    InputError
        Bad ``dt_s``, ``theta`` or initial state.
    SolverError
        If the state becomes non-finite.
    """
    _check_dt(dt_s)
    if not (0.5 <= theta <= 1.0):
        raise InputError(
            f"theta must be in [0.5, 1] (0.5 trapezoidal, 1 backward Euler); got {theta!r}"
        )
    _require_positive("simulate_beat", "lv_volume0_m3", lv_volume0_m3)
    _require_finite("simulate_beat", "p_c0_pa", p_c0_pa)
    circ = circulation
    n = max(1, int(round(circ.period_s / dt_s)))
    dt = circ.period_s / n
    t = np.arange(n + 1, dtype=float) * dt
    e_arr = circ.elastance(t)
    e_arr[-1] = e_arr[0]  # exactly periodic (t = T is the next beat's t = 0)
    e_list = e_arr.tolist()

    av, mv, wk = circ.aortic_valve, circ.mitral_valve, circ.systemic
    rp, cap, rd, p_d = float(wk.Rp), float(wk.C), float(wk.Rd), float(wk.p_d)
    a_ao, b_ao = float(av.a) + rp, float(av.b)  # valve + Rp in series, seen from p_lv − p_c
    a_mv, b_mv = float(mv.a), float(mv.b)
    v_u, p_la = float(circ.v_unstressed_m3), float(circ.p_la_pa)
    dtt, dt1 = theta * dt, (1.0 - theta) * dt
    denom = cap + dtt / rd
    b_coef = dtt / denom

    v = float(lv_volume0_m3)
    p = float(p_c0_pa)
    p_lv = e_list[0] * (v - v_u)
    qa = _root(a_ao, b_ao, p_lv - p) if p_lv > p else 0.0
    qm = _root(a_mv, b_mv, p_la - p_lv) if p_la > p_lv and a_mv + b_mv > 0 else 0.0
    vs, ps, qas, qms = [v], [p], [qa], [qm]
    fallback = 0
    for i in range(1, n + 1):
        e1 = e_list[i]
        # RCR: p_c^{n+1} = A + B·q_ao^{n+1};  LV: V^{n+1} = Vr + θdt·(q_mv − q_ao)^{n+1}
        a_c = (cap * p + dt1 * (qa - (p - p_d) / rd) + dtt * p_d / rd) / denom
        vr = v + dt1 * (qm - qa)
        p_iso = e1 * (vr - v_u)
        if p_iso > a_c:  # aortic valve opens: b·q² + (a + Rp + B + E·θdt)·q = p_iso − A
            qa1 = _root(a_ao + b_coef + e1 * dtt, b_ao, p_iso - a_c)
            qm1 = 0.0
            ok = p_iso - e1 * dtt * qa1 >= p_la
        elif p_iso < p_la:  # mitral valve opens
            qm1 = _root(a_mv + e1 * dtt, b_mv, p_la - p_iso)
            qa1 = 0.0
            ok = p_iso + e1 * dtt * qm1 <= a_c
        else:  # isovolumic
            qa1 = qm1 = 0.0
            ok = True
        if not ok:  # both valves open (p_la above aortic pressure): bracketed scalar solve
            fallback += 1
            qa1, qm1 = _both_open(e1, vr, v_u, a_c, p_la, dtt, a_ao + b_coef, b_ao, a_mv, b_mv)
        v = vr + dtt * (qm1 - qa1)
        p = a_c + b_coef * qa1
        qa, qm = qa1, qm1
        vs.append(v)
        ps.append(p)
        qas.append(qa)
        qms.append(qm)

    v_arr, pc_arr = np.array(vs), np.array(ps)
    qa_arr, qm_arr = np.array(qas), np.array(qms)
    if not (np.all(np.isfinite(v_arr)) and np.all(np.isfinite(pc_arr))):
        raise SolverError(
            "0-D beat produced non-finite volume or pressure; check the "
            "circulation parameters (elastances, resistances) and dt_s"
        )
    p_lv_arr = e_arr * (v_arr - v_u)
    p_ao_arr = pc_arr + rp * qa_arr
    metrics = _metrics(t, p_lv_arr, p_ao_arr, qa_arr, v_arr, theta)
    if fallback:
        logger.debug("0-D beat: %d of %d steps used the two-valves-open solve", fallback, n)
    return BeatResult(
        t, p_lv_arr, p_ao_arr, pc_arr, qa_arr, qm_arr, v_arr, metrics, fallback_steps=fallback
    )


def _both_open(e1, vr, v_u, a_c, p_la, dtt, a_ao, b_ao, a_mv, b_mv) -> tuple[float, float]:
    """Solve ``F(V) = V − Vr − θdt·(q_mv(V) − q_ao(V)) = 0`` (monotone, slope >= 1)."""

    def flows(vol: float) -> tuple[float, float]:
        plv = e1 * (vol - v_u)
        qa = _root(a_ao, b_ao, plv - a_c) if plv > a_c else 0.0
        qm = _root(a_mv, b_mv, p_la - plv) if plv < p_la else 0.0
        return qa, qm

    def f(vol: float) -> float:
        qa, qm = flows(vol)
        return vol - vr - dtt * (qm - qa)

    f0 = f(vr)
    if f0 == 0.0:
        return flows(vr)
    lo, hi = (vr - f0, vr) if f0 > 0 else (vr, vr - f0)  # |V* − Vr| <= |F(Vr)| as F' >= 1
    vol = brentq(f, lo, hi, xtol=1e-15 * max(abs(vr), 1e-12), rtol=4 * np.finfo(float).eps)
    return flows(vol)


def _metrics(t, p_lv, p_ao, q_ao, v, theta) -> BeatMetrics:
    dt = t[1] - t[0]
    w = np.full(t.shape, dt)
    w[0] = w[-1] = dt / 2  # trapezoidal weights
    period = t[-1] - t[0]
    # stroke volume by the same θ-rule as the volume update, so SV = ΔV during ejection
    sv = float(theta * dt * q_ao[1:].sum() + (1 - theta) * dt * q_ao[:-1].sum())
    ejecting = q_ao > 0
    if ejecting.any():
        grad = (p_lv - p_ao)[ejecting]
        mean_grad = float(grad.mean())
        peak_grad = float(grad.max())
        t_ej = float(ejecting.sum() * dt)
    else:
        mean_grad = peak_grad = t_ej = 0.0
    return BeatMetrics(
        systolic_pa=float(p_ao.max()),
        diastolic_pa=float(p_ao.min()),
        mean_pa=float((w * p_ao).sum() / period),
        stroke_volume_m3=sv,
        mean_gradient_pa=mean_grad,
        peak_gradient_pa=peak_grad,
        end_diastolic_volume_m3=float(v[0]),
        end_systolic_volume_m3=float(v.min()),
        ejection_time_s=t_ej,
    )


def simulate_periodic(
    circulation: LVCirculation,
    *,
    dt_s: float = 1e-3,
    theta: float = 0.5,
    rtol: float = 1e-7,
    max_beats: int = 200,
    lv_volume0_m3: float | None = None,
    p_c0_pa: float | None = None,
) -> BeatResult:
    """Repeat beats until the state at the start of a beat repeats (periodic steady state).

    Parameters
    ----------
    circulation : the model parameters.
    dt_s, theta : as in :func:`simulate_beat`.
    rtol : relative change of LV volume and capacitor pressure from one beat to the next at which
        the beat is periodic.
    max_beats : give up after this many beats.
    lv_volume0_m3, p_c0_pa : initial state; by default the LV filled to ``p_la`` and the
        capacitor at ``p_d`` plus half the filled volume ejected per beat through ``Rd``.

    Returns
    -------
    The last (periodic) :class:`BeatResult`; ``n_beats`` says how many beats it took.

    Raises
    ------
    SolverError
        If the beat-to-beat change is still above ``rtol`` after ``max_beats`` beats.
    """
    c = circulation
    if not (isinstance(max_beats, int) and max_beats >= 1):
        raise InputError(f"max_beats must be an integer >= 1; got {max_beats!r}")
    v0 = (
        c.v_unstressed_m3 + max(c.p_la_pa, 0.0) / c.e_min_pa_m3
        if lv_volume0_m3 is None
        else lv_volume0_m3
    )
    p0 = (
        c.systemic.p_d + c.systemic.Rd * 0.5 * (v0 - c.v_unstressed_m3) / c.period_s
        if p_c0_pa is None
        else p_c0_pa
    )
    change = math.inf
    for k in range(1, max_beats + 1):
        beat = simulate_beat(c, lv_volume0_m3=v0, p_c0_pa=p0, dt_s=dt_s, theta=theta)
        v1, p1 = beat.end_state
        change = max(abs(v1 - v0) / abs(v1), abs(p1 - p0) / max(abs(p1), 1.0))
        v0, p0 = v1, p1
        if change < rtol:
            return BeatResult(
                beat.t_s,
                beat.p_lv_pa,
                beat.p_ao_pa,
                beat.p_c_pa,
                beat.q_ao_m3_s,
                beat.q_mv_m3_s,
                beat.v_lv_m3,
                beat.metrics,
                n_beats=k,
                fallback_steps=beat.fallback_steps,
            )
    raise SolverError(
        f"0-D circulation not periodic after {max_beats} beats (relative "
        f"beat-to-beat change {change:.2e} > rtol {rtol:.1e}); raise max_beats or "
        f"check that Rd·C is not far longer than the period"
    )
