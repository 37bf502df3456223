"""Calibration of the flow model's boundary conditions from the patient's physiology.

Stage 1 runs the 3-D model at **mean systolic flow** (the flow that sets the clinical mean
transvalvular gradient): Q_sys = SV / LVET. Outlets are resistances ``p_i = p_dia + R_i·Q_i``.

* The equivalent systolic resistance R_eq makes the mean ejection pressure (taken as the mean of
  systolic and diastolic pressure) appear at Q_sys: R_eq = (P_ej − P_dia) / Q_sys.
* It is split over the outlets in parallel in proportion to Murray's law: the flow share of outlet i
  is w_i = A_i^{3/2} / Σ A_j^{3/2} (flow ∝ r³, Murray CD, PNAS 1926;12:207–214), so R_i = R_eq / w_i.

For the pulsatile model, :func:`calibrate_windkessel` gives every outlet a three-element
Windkessel (RCR) such that the patient's aortic flow waveform (heart rate, stroke volume, ejection
time) produces the measured systolic and diastolic pressures in the periodic state:

* The total load is one RCR with ``Rp = f·R``, ``Rd = (1 − f)·R`` (``f`` = 6 %, within the 5–10 %
  of Westerhof, Lankhaar & Westerhof, Med Biol Eng Comput 2009;47:131–141) and distal (venous)
  pressure 0. Its periodic pressure is exact in the frequency domain,
  ``p(t) = Σ Z(ω_k) Q̂_k e^{iω_k t}``, ``Z(ω) = Rp + Rd/(1 + iωτ)``, ``τ = Rd·C``.
* ``p/R`` depends on ``τ`` alone, so ``τ`` is the root of ``min p / max p = DBP/SBP`` (the ratio
  grows monotonically with ``τ``) and then ``R = SBP / max(p/R)``. The mean pressure follows:
  ``R·CO`` (not the one-third rule).
* With this inflow (peak about twice the mean ejection flow) ``Rp·Q`` alone makes much of the
  pulse pressure, so for a narrow pulse pressure the 6 % fraction forces a long ``τ`` and a large
  compliance, and beyond DBP/SBP ≈ 0.68 none fits. When ``τ`` would exceed 2 s (the order of
  the diastolic pressure decay time in adults), the fraction is lowered until ``τ`` = 2 s, but
  not below 0.5 %. Example, 70 bpm and 70 mL: 130/75 mmHg keeps 6 % (``τ`` 1.6 s, C 1.4
  mL/mmHg); 120/80 mmHg gets 3.9 % (C 1.7 mL/mmHg, where 6 % would need 3.1 mL/mmHg).
* Outlet ``i`` with flow share ``w_i`` (Murray, as above) gets ``R_i = R/w_i`` and ``C_i = C·w_i``:
  the same ``τ`` everywhere, so the parallel outlets are exactly the total load when the flow
  splits as ``w``. Every outlet starts at the periodic capacitor pressure at ``t = 0`` (start of
  ejection), so a 3-D run starts close to its periodic state.

Live recalibration from monitoring data: :mod:`cardiotwin.twin.assimilate` (a UKF on the total
load and the heart's period and stroke volume; per-outlet loads by :func:`split_total`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import brentq

from cardiotwin import units
from cardiotwin.errors import InputError
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.physics.waveforms import AorticFlowWaveform
from cardiotwin.physics.windkessel import RCR
from cardiotwin.twin.state import Physiology

log = logging.getLogger(__name__)

PROXIMAL_FRACTION = 0.06
"""Preferred Rp / (Rp + Rd) of the calibrated Windkessels (Westerhof et al. 2009: 5–10 %)."""

MAX_TIME_CONSTANT_S = 2.0
"""Largest Rd·C the fit accepts before lowering the proximal fraction (see the module notes)."""

_MIN_FRACTION = 0.005
_SAMPLES_PER_BEAT = 4096
_TAU_RANGE_S = (1e-3, 1e2)


@dataclass(frozen=True)
class OutletCalibration:
    """Calibrated steady boundary conditions (SI)."""

    inflow_m3_s: float
    p0_pa: float
    equivalent_resistance_pa_s_m3: float
    resistances_pa_s_m3: dict[str, float]
    flow_shares: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate_outlets(physiology: Physiology, domain: FluidDomain) -> OutletCalibration:
    """Steady inflow and outlet resistances from heart rate, stroke volume and blood pressure.

    Raises
    ------
    InputError
        When the domain has no outlets or an outlet has no area.
    """
    outlets = domain.outlets
    if not outlets:
        raise InputError(f"fluid domain {domain.mesh_path} has no outlets (caps named 'outlet:...')")
    q_sys = units.ml_to_m3(physiology.mean_systolic_flow_ml_s)
    p_dia = units.mmhg_to_pa(physiology.diastolic_bp_mmhg)
    p_ej = units.mmhg_to_pa(0.5 * (physiology.systolic_bp_mmhg + physiology.diastolic_bp_mmhg))
    r_eq = (p_ej - p_dia) / q_sys
    weights = {}
    for cap in outlets:
        if cap.area_mm2 <= 0:
            raise InputError(f"outlet {cap.name!r} has area {cap.area_mm2} mm²; expected > 0")
        weights[cap.name] = cap.area_mm2**1.5
    total = sum(weights.values())
    shares = {k: w / total for k, w in weights.items()}
    res = {k: r_eq / s for k, s in shares.items()}
    return OutletCalibration(q_sys, p_dia, r_eq, res, shares)


@dataclass(frozen=True)
class WindkesselCalibration:
    """Calibrated pulsatile boundary conditions (SI), from :func:`calibrate_windkessel`.

    Attributes
    ----------
    waveform : the inflow ``Q(t)`` the outlets were fitted to.
    outlets : outlet name (``"outlet:..."``) → :class:`~cardiotwin.physics.windkessel.RCR`.
    initial_pressures_pa : outlet name → capacitor pressure at ``t = 0`` (periodic state).
    total : the lumped load ``{"Rp", "C", "Rd", "tau_s"}`` in SI.
    flow_shares : outlet name → flow share (Murray weights).
    fitted_mmhg : systolic, diastolic and mean pressure of the periodic 0-D solution.
    target_mmhg : the patient's systolic and diastolic pressure.
    """

    waveform: AorticFlowWaveform
    outlets: dict[str, RCR]
    initial_pressures_pa: dict[str, float]
    total: dict[str, float]
    flow_shares: dict[str, float]
    fitted_mmhg: dict[str, float]
    target_mmhg: dict[str, float]
    proximal_fraction: float = PROXIMAL_FRACTION
    _trace: tuple[np.ndarray, np.ndarray] = field(default=(np.zeros(0), np.zeros(0)), repr=False,
                                                  compare=False)

    def pressure_trace(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t_s, p_pa)``: the periodic 0-D aortic pressure over one beat."""
        return self._trace

    def to_dict(self) -> dict:
        """JSON-able record (for results and provenance)."""
        return {
            "model": "RCR per outlet, fitted to SBP/DBP (twin.calibrate.calibrate_windkessel)",
            "heart_rate_bpm": self.waveform.heart_rate_bpm,
            "stroke_volume_ml": self.waveform.stroke_volume_ml,
            "ejection_time_s": self.waveform.lvet,
            "proximal_fraction": self.proximal_fraction,
            "total": dict(self.total),
            "outlets": {k: asdict(v) for k, v in self.outlets.items()},
            "initial_pressures_pa": dict(self.initial_pressures_pa),
            "flow_shares": dict(self.flow_shares),
            "fitted_mmhg": dict(self.fitted_mmhg),
            "target_mmhg": dict(self.target_mmhg),
        }


class _Beat:
    """One beat of the inflow in the frequency domain, for the periodic RCR pressure."""

    def __init__(self, waveform: AorticFlowWaveform, *, samples: int = _SAMPLES_PER_BEAT):
        n = samples
        self.t = np.arange(n) * (waveform.period_s / n)
        self.q = waveform(self.t)
        self.q_hat = np.fft.rfft(self.q)
        self.omega = 2.0 * math.pi * np.fft.rfftfreq(n, d=waveform.period_s / n)

    def shapes(self, tau_s: float, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """``p/R`` and ``p_c/R`` (m³/s) over the beat for time constant ``τ`` and share ``f``."""
        distal = (1.0 - fraction) / (1.0 + 1j * self.omega * tau_s)
        p_c = np.fft.irfft(self.q_hat * distal, len(self.t))
        return p_c + fraction * self.q, p_c

    def tau_for(self, target_ratio: float, fraction: float) -> float:
        """The ``τ`` with ``min p / max p = target_ratio``, or ``inf`` when none (ratio too high)."""
        def ratio(log_tau: float) -> float:
            p, _ = self.shapes(math.exp(log_tau), fraction)
            return float(p.min() / p.max())

        lo, hi = math.log(_TAU_RANGE_S[0]), math.log(_TAU_RANGE_S[1])
        if not ratio(lo) < target_ratio < ratio(hi):
            return math.inf
        return math.exp(brentq(lambda x: ratio(x) - target_ratio, lo, hi, xtol=1e-10))

    def max_ratio(self, fraction: float) -> float:
        p, _ = self.shapes(_TAU_RANGE_S[1], fraction)
        return float(p.min() / p.max())


def periodic_pressure(waveform: AorticFlowWaveform, *, r_total_pa_s_m3: float,
                      c_total_m3_pa: float, proximal_fraction: float,
                      samples: int = _SAMPLES_PER_BEAT) -> tuple[np.ndarray, np.ndarray]:
    """``(t_s, p_pa)``: the periodic aortic pressure of one total RCR load driven by ``waveform``.

    The load is ``Rp = f·R``, ``Rd = (1 − f)·R``, ``C``, distal pressure 0 (the module notes);
    the pressure is exact in the frequency domain up to the sampling of one beat in ``samples``
    points. Its mean is ``R·CO``; its maximum and minimum are the systolic and diastolic
    pressure. The assimilation (:mod:`cardiotwin.twin.assimilate`) predicts the cuff pressures
    with it.
    """
    beat = _Beat(waveform, samples=samples)
    rd = (1.0 - proximal_fraction) * r_total_pa_s_m3
    p_shape, _ = beat.shapes(rd * c_total_m3_pa, proximal_fraction)
    return beat.t, r_total_pa_s_m3 * p_shape


def split_total(total: dict[str, float], flow_shares: dict[str, float]) -> dict[str, RCR]:
    """Per-outlet RCRs from a total load ``{"Rp", "C", "Rd"}`` and Murray flow shares ``w_i``:
    ``Rp_i = Rp/w_i``, ``C_i = C·w_i``, ``Rd_i = Rd/w_i`` (the same ``Rd·C`` everywhere, so the
    parallel outlets are exactly the total load when the flow splits as ``w``)."""
    return {name: RCR(Rp=total["Rp"] / w, C=total["C"] * w, Rd=total["Rd"] / w)
            for name, w in flow_shares.items()}


def murray_shares(cap_areas_mm2: dict[str, float]) -> dict[str, float]:
    """Flow share of each outlet from its cap area, ``w_i = A_i^{3/2} / Σ A_j^{3/2}`` (Murray).

    Raises
    ------
    InputError
        When there is no outlet or an area is not positive.
    """
    if not cap_areas_mm2:
        raise InputError("no outlets to split the load over (caps named 'outlet:...')")
    weights = {}
    for name, area in cap_areas_mm2.items():
        if not area > 0:
            raise InputError(f"outlet {name!r} has area {area} mm²; expected > 0")
        weights[name] = float(area) ** 1.5
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def _fit(physiology: Physiology, proximal_fraction: float, max_time_constant_s: float
         ) -> tuple[AorticFlowWaveform, _Beat, float, float]:
    """The inflow, its beat, and the proximal fraction and ``τ`` that give DBP/SBP."""
    waveform = AorticFlowWaveform(heart_rate_bpm=physiology.heart_rate_bpm,
                                  stroke_volume_ml=physiology.stroke_volume_ml,
                                  ejection_time_s=physiology.effective_ejection_time_s)
    sbp, dbp = float(physiology.systolic_bp_mmhg), float(physiology.diastolic_bp_mmhg)
    target = dbp / sbp
    beat = _Beat(waveform)
    fraction = proximal_fraction
    tau = beat.tau_for(target, fraction)
    if tau > max_time_constant_s:
        tau_min = beat.tau_for(target, _MIN_FRACTION)
        if not math.isfinite(tau_min):
            raise InputError(
                f"no three-element Windkessel gives DBP/SBP = {dbp:g}/{sbp:g} = {target:.2f} with "
                f"a stroke volume of {physiology.stroke_volume_ml:g} mL at "
                f"{physiology.heart_rate_bpm:g} bpm; the achievable range is 0.00-"
                f"{beat.max_ratio(_MIN_FRACTION):.2f}. Check the blood pressure and the stroke "
                "volume (a pulse pressure this small needs a smaller stroke volume)")
        if tau_min >= max_time_constant_s:
            fraction, tau = _MIN_FRACTION, tau_min
        else:  # τ grows with the fraction: bisect for τ = max_time_constant_s
            lo, hi = _MIN_FRACTION, fraction
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if beat.tau_for(target, mid) <= max_time_constant_s else (lo, mid)
            fraction, tau = lo, beat.tau_for(target, lo)
        log.info("Windkessel fit: proximal fraction %.1f %% (preferred %.1f %%), Rd·C %.2f s",
                 100 * fraction, 100 * proximal_fraction, tau)
    return waveform, beat, fraction, tau


def fit_total_load(physiology: Physiology, *, proximal_fraction: float = PROXIMAL_FRACTION,
                   max_time_constant_s: float = MAX_TIME_CONSTANT_S) -> dict[str, float]:
    """The total RCR load that gives the patient's blood pressure (no mesh needed).

    The same fit as :func:`calibrate_windkessel` before the split over outlets.

    Returns
    -------
    dict
        ``{"Rp", "C", "Rd", "R", "tau_s", "proximal_fraction"}`` in SI (Pa·s/m³, m³/Pa, s).

    Raises
    ------
    InputError
        As :func:`calibrate_windkessel`, when no RCR gives the pulse pressure.
    """
    _check_options(proximal_fraction, max_time_constant_s)
    _, beat, fraction, tau = _fit(physiology, proximal_fraction, max_time_constant_s)
    p_shape, _ = beat.shapes(tau, fraction)
    r_total = units.mmhg_to_pa(float(physiology.systolic_bp_mmhg)) / float(p_shape.max())
    rd = (1.0 - fraction) * r_total
    return {"Rp": fraction * r_total, "C": tau / rd, "Rd": rd, "R": r_total, "tau_s": tau,
            "proximal_fraction": fraction}


def _check_options(proximal_fraction: float, max_time_constant_s: float) -> None:
    if not (_MIN_FRACTION <= proximal_fraction < 0.5):
        raise InputError(f"proximal_fraction must be in [{_MIN_FRACTION}, 0.5); got "
                         f"{proximal_fraction!r}")
    if not (isinstance(max_time_constant_s, int | float) and 0.1 <= max_time_constant_s <= 50):
        raise InputError(f"max_time_constant_s must be in [0.1, 50] s; got {max_time_constant_s!r}")


def calibrate_windkessel(physiology: Physiology, domain: FluidDomain, *,
                         proximal_fraction: float = PROXIMAL_FRACTION,
                         max_time_constant_s: float = MAX_TIME_CONSTANT_S) -> WindkesselCalibration:
    """RCR outlets that reproduce the patient's blood pressure with their aortic flow waveform.

    See the module notes for the method. The inflow is an
    :class:`~cardiotwin.physics.waveforms.AorticFlowWaveform` with the patient's heart rate,
    stroke volume and (measured or predicted) ejection time.

    Parameters
    ----------
    proximal_fraction : the preferred ``Rp/(Rp + Rd)``.
    max_time_constant_s : when the preferred fraction needs ``Rd·C`` above this (or cannot give
        the pulse pressure at all), the fraction is lowered until ``Rd·C`` equals it, but not
        below 0.5 %; the fraction used is in the result.

    Raises
    ------
    InputError
        When the domain has no outlets, or no RCR can give the measured pulse pressure with this
        stroke volume (even with a 0.5 % proximal resistance); the message gives the achievable
        range of DBP/SBP.
    """
    _check_options(proximal_fraction, max_time_constant_s)
    steady = calibrate_outlets(physiology, domain)
    waveform, beat, fraction, tau = _fit(physiology, proximal_fraction, max_time_constant_s)
    sbp, dbp = float(physiology.systolic_bp_mmhg), float(physiology.diastolic_bp_mmhg)
    p_shape, pc_shape = beat.shapes(tau, fraction)
    t = beat.t
    r_total = units.mmhg_to_pa(sbp) / float(p_shape.max())
    rp, rd = fraction * r_total, (1.0 - fraction) * r_total
    c_total = tau / rd
    p = r_total * p_shape
    p_c0 = float(r_total * pc_shape[0])
    outlets = split_total({"Rp": rp, "C": c_total, "Rd": rd}, steady.flow_shares)
    return WindkesselCalibration(
        waveform=waveform, outlets=outlets, initial_pressures_pa=dict.fromkeys(outlets, p_c0),
        total={"Rp": rp, "C": c_total, "Rd": rd, "tau_s": tau},
        flow_shares=dict(steady.flow_shares),
        fitted_mmhg={"systolic": units.pa_to_mmhg(float(p.max())),
                     "diastolic": units.pa_to_mmhg(float(p.min())),
                     "mean": units.pa_to_mmhg(float(p.mean()))},
        target_mmhg={"systolic": sbp, "diastolic": dbp},
        proximal_fraction=fraction, _trace=(t, p))
